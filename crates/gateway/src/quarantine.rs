//! The quarantine: copies held by the `hold` missing-key policy until an admin releases
//! (`postern quarantine release ID`: relayed to the next hop as they are) or deletes them.
//!
//! One item is two files: `<id>.eml`, the copy exactly as it would have been relayed, and
//! `<id>.env`, its envelope as `key value` lines (`from`, `to` (repeated), `reason`,
//! `held`, `8bitmime`, `smtputf8`). The envelope is written last, after the message is
//! synced, and renamed into place, so an item is complete or absent.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::envelope::XForward;
use crate::error::GatewayError;
use crate::relay::{self, Content, Copy, NextHop};

/// The quarantine directory.
#[derive(Debug, Clone)]
pub struct Quarantine {
    dir: PathBuf,
}

/// One held copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Item id (file stem).
    pub id: String,
    /// Envelope sender.
    pub from: String,
    /// Recipients of this copy.
    pub to: Vec<String>,
    /// Why it is held.
    pub reason: String,
    /// When, seconds since the epoch.
    pub held_at: u64,
    /// Message size.
    pub size: u64,
    /// `BODY=8BITMIME` when relayed.
    pub eight_bit: bool,
    /// `SMTPUTF8` when relayed.
    pub smtputf8: bool,
}

impl Quarantine {
    /// Opens (creating) the directory; removes half-written items of a crash.
    pub fn open(dir: &Path) -> Result<Quarantine, GatewayError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| GatewayError::io(format!("creating {}", dir.display()), e))?;
        Ok(Quarantine {
            dir: dir.to_owned(),
        })
    }

    /// Writes one item from a copy's bytes; returns its id.
    pub fn hold(&self, message: &[u8], held: &Held) -> Result<String, GatewayError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let id = format!(
            "{now:x}{:04x}{:x}",
            std::process::id() & 0xffff,
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let eml = self.dir.join(format!("{id}.eml"));
        write_synced(&eml, message)?;
        let mut env = format!(
            "from {}\nreason {}\nheld {}\n8bitmime {}\nsmtputf8 {}\n",
            held.from,
            held.reason.replace(['\r', '\n'], " "),
            now / 1_000_000_000,
            u8::from(held.eight_bit),
            u8::from(held.smtputf8)
        );
        for to in &held.to {
            env.push_str(&format!("to {to}\n"));
        }
        let tmp = self.dir.join(format!("{id}.env.tmp"));
        write_synced(&tmp, env.as_bytes())?;
        let final_path = self.dir.join(format!("{id}.env"));
        std::fs::rename(&tmp, &final_path)
            .map_err(|e| GatewayError::io(format!("renaming {}", tmp.display()), e))?;
        tracing::info!(id, to = ?held.to, reason = %held.reason, "mail held in quarantine");
        Ok(id)
    }

    /// Every complete item, oldest first.
    pub fn list(&self) -> Result<Vec<Held>, GatewayError> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| GatewayError::io(format!("reading {}", self.dir.display()), e))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".env")
                && let Ok(h) = self.get(id)
            {
                out.push(h);
            }
        }
        out.sort_by(|a, b| (a.held_at, &a.id).cmp(&(b.held_at, &b.id)));
        Ok(out)
    }

    /// One item.
    pub fn get(&self, id: &str) -> Result<Held, GatewayError> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(GatewayError::NotFound(format!("quarantine item {id:?}")));
        }
        let env = std::fs::read_to_string(self.dir.join(format!("{id}.env")))
            .map_err(|_| GatewayError::NotFound(format!("quarantine item {id}")))?;
        let size = std::fs::metadata(self.message_path(id))
            .map_err(|_| GatewayError::NotFound(format!("quarantine message {id}")))?
            .len();
        let mut held = Held {
            id: id.to_owned(),
            from: String::new(),
            to: Vec::new(),
            reason: String::new(),
            held_at: 0,
            size,
            eight_bit: false,
            smtputf8: false,
        };
        for line in env.lines() {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "from" => held.from = v.to_owned(),
                "to" => held.to.push(v.to_owned()),
                "reason" => held.reason = v.to_owned(),
                "held" => held.held_at = v.parse().unwrap_or(0),
                "8bitmime" => held.eight_bit = v == "1",
                "smtputf8" => held.smtputf8 = v == "1",
                _ => {}
            }
        }
        Ok(held)
    }

    /// Relays an item to the next hop and removes it once accepted.
    pub async fn release(&self, id: &str, hop: &NextHop) -> Result<Held, GatewayError> {
        let held = self.get(id)?;
        let copy = Copy {
            from: held.from.clone(),
            rcpts: held.to.clone(),
            content: Content::File(self.message_path(id)),
            eight_bit: held.eight_bit,
            smtputf8: held.smtputf8,
        };
        relay::deliver(hop, &[copy], &XForward::default())
            .await
            .map_err(|reply| {
                GatewayError::io(
                    format!("releasing {id}"),
                    std::io::Error::other(reply.to_string()),
                )
            })?;
        self.delete(id)?;
        tracing::info!(id, to = ?held.to, "quarantined mail released");
        Ok(held)
    }

    /// Removes an item.
    pub fn delete(&self, id: &str) -> Result<(), GatewayError> {
        self.get(id)?;
        let env = self.dir.join(format!("{id}.env"));
        std::fs::remove_file(&env)
            .map_err(|e| GatewayError::io(format!("removing {}", env.display()), e))?;
        let _ = std::fs::remove_file(self.message_path(id));
        Ok(())
    }

    fn message_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.eml"))
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), GatewayError> {
    let mut f = std::fs::File::create(path)
        .map_err(|e| GatewayError::io(format!("creating {}", path.display()), e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| GatewayError::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_list_get_delete() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::open(dir.path()).unwrap();
        let held = Held {
            id: String::new(),
            from: "alice@example.org".into(),
            to: vec!["x@bank.example".into(), "y@bank.example".into()],
            reason: "no OpenPGP key\nfor x".into(),
            held_at: 0,
            size: 0,
            eight_bit: true,
            smtputf8: false,
        };
        let id = q.hold(b"Subject: s\r\n\r\nbody\r\n", &held).unwrap();
        let listed = q.list().unwrap();
        assert_eq!(listed.len(), 1);
        let got = &listed[0];
        assert_eq!(got.id, id);
        assert_eq!(got.to, held.to);
        assert_eq!(got.reason, "no OpenPGP key for x");
        assert_eq!(got.size, 20);
        assert!(got.eight_bit && !got.smtputf8);
        assert!(q.get("../etc").is_err());
        q.delete(&id).unwrap();
        assert!(q.list().unwrap().is_empty());
        assert!(q.delete(&id).is_err());
    }
}
