//! What a run measures besides its own clock: latency percentiles, and the server process's
//! resident memory and CPU time read from `/proc` (Linux) when its PID is given.

use std::fmt::Write as _;
use std::time::Duration;

/// Latencies in microseconds.
#[derive(Debug, Default)]
pub struct Latencies(Vec<u64>);

impl Latencies {
    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    pub fn push(&mut self, d: Duration) {
        self.push_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn push_micros(&mut self, us: u64) {
        self.0.push(us);
    }

    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// Percentiles by nearest rank, in milliseconds.
    pub fn summary(mut self) -> Summary {
        self.0.sort_unstable();
        let pick = |p: f64| -> f64 {
            if self.0.is_empty() {
                return 0.0;
            }
            // Nearest rank: the smallest value with at least p% of the samples at or below it.
            let rank = (p / 100.0 * self.0.len() as f64).ceil() as usize;
            self.0[rank.clamp(1, self.0.len()) - 1] as f64 / 1000.0
        };
        Summary {
            count: self.0.len(),
            p50_ms: pick(50.0),
            p99_ms: pick(99.0),
            max_ms: pick(100.0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Reads the server process (if a PID was given) and this process.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub pid: Option<u32>,
}

/// CPU time of the server and of the load generator since [`Probe::start`].
pub struct CpuMark {
    server: Option<Duration>,
    client: Option<Duration>,
}

impl Probe {
    /// Resident memory of the server in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn server_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub fn start(&self) -> CpuMark {
        CpuMark {
            server: self.pid.and_then(|p| cpu_time(&p.to_string())),
            client: cpu_time("self"),
        }
    }

    /// CPU used since `mark`: (server, client).
    pub fn cpu_since(&self, mark: &CpuMark) -> (Option<Duration>, Option<Duration>) {
        let server = self.pid.and_then(|p| cpu_time(&p.to_string()));
        let client = cpu_time("self");
        (
            server.zip(mark.server).map(|(b, a)| b.saturating_sub(a)),
            client.zip(mark.client).map(|(b, a)| b.saturating_sub(a)),
        )
    }
}

/// User + system CPU time of a whole process (all its threads, exited ones included).
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime); `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // In clock ticks of USER_HZ, which the /proc ABI fixes at 100 on Linux.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// A scenario's outcome: named values printed for people and as one machine-readable line.
pub struct Report {
    scenario: &'static str,
    label: String,
    values: Vec<(&'static str, String)>,
}

impl Report {
    pub fn new(scenario: &'static str, label: &str) -> Self {
        Self {
            scenario,
            label: label.to_owned(),
            values: Vec::new(),
        }
    }

    pub fn add(&mut self, key: &'static str, value: impl std::fmt::Display) {
        self.values.push((key, value.to_string()));
    }

    pub fn add_f(&mut self, key: &'static str, value: f64) {
        self.add(key, format!("{value:.2}"));
    }

    pub fn add_opt(&mut self, key: &'static str, value: Option<impl std::fmt::Display>) {
        if let Some(v) = value {
            self.add(key, v);
        }
    }

    pub fn add_latencies(&mut self, s: &Summary) {
        self.add_f("p50_ms", s.p50_ms);
        self.add_f("p99_ms", s.p99_ms);
        self.add_f("max_ms", s.max_ms);
    }

    /// CPU per unit of work, in milliseconds, and the total.
    pub fn add_cpu(&mut self, cpu: (Option<Duration>, Option<Duration>), units: usize) {
        let (server, client) = cpu;
        let per = |d: Duration| d.as_secs_f64() * 1000.0 / units.max(1) as f64;
        if let Some(s) = server {
            self.add_f("server_cpu_s", s.as_secs_f64());
            self.add("server_cpu_ms_per_op", format!("{:.4}", per(s)));
        }
        if let Some(c) = client {
            self.add_f("client_cpu_s", c.as_secs_f64());
        }
    }

    /// `key: value` lines, then `result scenario=... label=... key=value ...`.
    pub fn render(&self) -> String {
        let mut out = format!("{} [{}]\n", self.scenario, self.label);
        for (k, v) in &self.values {
            let _ = writeln!(out, "  {k:<22} {v}");
        }
        let _ = write!(
            out,
            "result scenario={} label={}",
            self.scenario, self.label
        );
        for (k, v) in &self.values {
            let _ = write!(out, " {k}={}", v.replace(char::is_whitespace, "_"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut l = Latencies::default();
        for us in (1..=100).rev() {
            l.push_micros(us * 1000);
        }
        let s = l.summary();
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
        assert_eq!(Latencies::default().summary().p99_ms, 0.0);
    }

    #[test]
    fn reads_this_process() {
        assert!(cpu_time("self").is_some());
        let probe = Probe {
            pid: Some(std::process::id()),
        };
        assert!(probe.server_rss_kib().is_some_and(|kib| kib > 0));
    }

    #[test]
    fn result_line_has_no_spaces_in_values() {
        let mut r = Report::new("logins", "postern");
        r.add("first_error", "login of user1: timed out");
        assert!(r.render().ends_with(
            "result scenario=logins label=postern first_error=login_of_user1:_timed_out"
        ));
    }
}
