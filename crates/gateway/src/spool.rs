//! Messages on disk while they are processed: a message is written to the spool as it
//! arrives and read back from there, so a 50 MiB pass-through mail never sits in memory.
//! A spool file lives exactly as long as its handle (removed on drop): the MTA keeps its
//! own copy until we answer 250, so nothing in the spool has to survive a crash, and
//! whatever a crash left behind is removed at start.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};

/// The spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

/// A spool file being written.
pub struct SpoolFile {
    file: BufWriter<File>,
    len: u64,
    guard: Remove,
}

/// A complete message in the spool.
#[derive(Debug)]
pub struct Spooled {
    len: u64,
    guard: Remove,
}

impl Spool {
    /// Opens (creating) the directory and removes leftovers of an earlier run.
    pub fn open(dir: &Path) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)?.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".spool") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Spool {
            dir: dir.to_owned(),
        })
    }

    /// A new, empty spool file with a unique name.
    pub async fn create(&self) -> std::io::Result<SpoolFile> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(
            "{nanos}-{}-{}.spool",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.dir.join(name);
        let file = File::create_new(&path).await?;
        Ok(SpoolFile {
            file: BufWriter::with_capacity(64 * 1024, file),
            len: 0,
            guard: Remove(path),
        })
    }
}

impl SpoolFile {
    /// Appends message bytes.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes).await?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Flushes and closes the file.
    pub async fn finish(mut self) -> std::io::Result<Spooled> {
        self.file.flush().await?;
        Ok(Spooled {
            len: self.len,
            guard: self.guard,
        })
    }
}

impl Spooled {
    /// Message size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the message is.
    pub fn path(&self) -> &Path {
        &self.guard.0
    }

    /// The first `max` bytes (or the whole message if shorter).
    pub async fn read_prefix(&self, max: usize) -> std::io::Result<Vec<u8>> {
        let file = File::open(self.path()).await?;
        let mut out = Vec::with_capacity(max.min(self.len as usize));
        file.take(max as u64).read_to_end(&mut out).await?;
        Ok(out)
    }

    /// The whole message, for the copies that are encrypted, signed or decrypted.
    pub async fn read_all(&self) -> std::io::Result<Vec<u8>> {
        tokio::fs::read(self.path()).await
    }

    /// Whether `needle` occurs in the message, reading it in pieces (memory stays bounded).
    pub async fn contains(&self, needle: &[u8]) -> std::io::Result<bool> {
        if needle.is_empty() {
            return Ok(true);
        }
        let mut file = File::open(self.path()).await?;
        let mut window: Vec<u8> = Vec::with_capacity(64 * 1024 + needle.len());
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Ok(false);
            }
            window.extend_from_slice(&buf[..n]);
            if window.windows(needle.len()).any(|w| w == needle) {
                return Ok(true);
            }
            let keep = needle.len() - 1;
            let cut = window.len().saturating_sub(keep);
            window.drain(..cut);
        }
    }

    /// A reader positioned at `offset`.
    pub async fn open_at(&self, offset: u64) -> std::io::Result<File> {
        let mut file = File::open(self.path()).await?;
        file.seek(std::io::SeekFrom::Start(offset)).await?;
        Ok(file)
    }
}

/// Removes the file when dropped.
#[derive(Debug)]
struct Remove(PathBuf);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spool_files_are_written_read_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stale.spool"), b"x").unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert!(!dir.path().join("stale.spool").exists());
        let mut f = spool.create().await.unwrap();
        f.write(b"Subject: x\r\n\r\nbody\r\n").await.unwrap();
        let s = f.finish().await.unwrap();
        assert_eq!(s.len(), 20);
        assert_eq!(s.read_prefix(7).await.unwrap(), b"Subject");
        assert_eq!(s.read_all().await.unwrap().len(), 20);
        assert!(s.contains(b"body").await.unwrap());
        assert!(!s.contains(b"nobody").await.unwrap());
        let path = s.path().to_owned();
        drop(s);
        assert!(!path.exists());
        let aborted = spool.create().await.unwrap();
        drop(aborted);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
