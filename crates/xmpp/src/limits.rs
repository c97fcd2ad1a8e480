//! Rate limits on what clients control: new connections per IP, and authentication failures
//! per IP and per account.
//!
//! Failures are slowed, not locked out: after `auth_failures_before_delay` failures in the
//! window, each further *failure answer* is delayed (doubling, up to a ceiling). A correct
//! login is answered at once, so an attacker guessing a user's password cannot lock that user
//! out, while guessing slows to a crawl (plus the per-connection attempt cap and the per-IP
//! connection rate).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::config::Limits;

/// Token bucket per IP for new connections.
pub struct ConnectionRate {
    burst: f64,
    per_sec: f64,
    buckets: DashMap<IpAddr, (f64, Instant)>,
}

impl ConnectionRate {
    pub fn new(limits: &Limits) -> Self {
        Self {
            burst: f64::from(limits.connection_burst_per_ip),
            per_sec: f64::from(limits.connections_per_minute_per_ip) / 60.0,
            buckets: DashMap::new(),
        }
    }

    /// Takes a token for `ip`; false when the IP is over its rate.
    pub fn admit(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        if self.buckets.len() > 100_000 {
            // Forget full buckets so the map cannot grow without bound.
            let burst = self.burst;
            let per_sec = self.per_sec;
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_sec < burst
            });
        }
        let mut entry = self.buckets.entry(ip).or_insert((self.burst, now));
        let (tokens, at) = &mut *entry;
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Counts authentication failures per IP and per account.
pub struct AuthThrottle {
    threshold: u32,
    window: Duration,
    max_delay: Duration,
    by_ip: DashMap<IpAddr, (u32, Instant)>,
    by_account: DashMap<String, (u32, Instant)>,
}

impl AuthThrottle {
    pub fn new(limits: &Limits) -> Self {
        Self {
            threshold: limits.auth_failures_before_delay,
            window: limits.auth_failure_window,
            max_delay: limits.auth_failure_max_delay,
            by_ip: DashMap::new(),
            by_account: DashMap::new(),
        }
    }

    /// Records a failure and returns how long to hold back its answer.
    pub fn failure(&self, ip: IpAddr, account: Option<&str>) -> Duration {
        let now = Instant::now();
        let ip_count = bump(&self.by_ip, ip, now, self.window);
        let acct_count = account.map_or(0, |a| {
            bump(&self.by_account, a.to_owned(), now, self.window)
        });
        let over = ip_count.max(acct_count).saturating_sub(self.threshold);
        if over == 0 {
            return Duration::ZERO;
        }
        let delay = Duration::from_millis(250).saturating_mul(1u32 << over.min(10));
        delay.min(self.max_delay)
    }

    /// A successful login clears the account's count (the real user is in), not the IP's.
    pub fn success(&self, account: &str) {
        self.by_account.remove(account);
    }
}

fn bump<K: std::hash::Hash + Eq>(
    map: &DashMap<K, (u32, Instant)>,
    key: K,
    now: Instant,
    window: Duration,
) -> u32 {
    if map.len() > 100_000 {
        map.retain(|_, (_, at)| now.duration_since(*at) < window);
    }
    let mut e = map.entry(key).or_insert((0, now));
    if now.duration_since(e.1) > window {
        *e = (0, now);
    }
    e.0 = e.0.saturating_add(1);
    e.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_burst_is_enforced_per_ip() {
        let limits = Limits {
            connection_burst_per_ip: 3,
            connections_per_minute_per_ip: 1,
            ..Limits::default()
        };
        let rate = ConnectionRate::new(&limits);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        assert!((0..3).all(|_| rate.admit(a)));
        assert!(!rate.admit(a));
        assert!(rate.admit(b));
    }

    #[test]
    fn failures_are_delayed_after_the_threshold_and_capped() {
        let limits = Limits {
            auth_failures_before_delay: 2,
            ..Limits::default()
        };
        let t = AuthThrottle::new(&limits);
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        assert_eq!(t.failure(ip, Some("a@x")), Duration::ZERO);
        assert_eq!(t.failure(ip, Some("a@x")), Duration::ZERO);
        let third = t.failure(ip, Some("a@x"));
        assert!(third > Duration::ZERO);
        let mut later = Duration::ZERO;
        for _ in 0..20 {
            later = t.failure(ip, Some("a@x"));
        }
        assert_eq!(later, limits.auth_failure_max_delay);
        // Another IP guessing the same account is slowed by the account count.
        let other: IpAddr = "10.0.0.9".parse().expect("ip");
        assert!(t.failure(other, Some("a@x")) > Duration::ZERO);
        t.success("a@x");
        assert_eq!(t.failure(other, Some("a@x")), Duration::ZERO);
    }
}
