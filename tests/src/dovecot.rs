//! A real Dovecot IMAP server on loopback (Debian's dovecot-imapd, installed by
//! `scripts/deps test`), for the tests of the account backends: a passwd-file of its own,
//! implicit TLS and STARTTLS listeners, a self-signed certificate for `localhost`, and
//! Dovecot's per-IP authentication penalty off, as docs/accounts.md asks of a Dovecot that
//! Postern checks passwords with. Runs as
//! the test's user (root in CI: Dovecot drops to its own users for logins).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Dovecot {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Implicit TLS (IMAPS).
    pub imaps_port: u16,
    /// Plain IMAP with STARTTLS.
    pub imap_port: u16,
    /// Versions of the passwd-file written.
    versions: u64,
}

/// A hash Dovecot made: `doveadm pw -s SCHEME -p PASSWORD`.
pub fn doveadm_pw(scheme: &str, password: &str) -> String {
    let out = Command::new("doveadm")
        .args(["pw", "-s", scheme, "-p", password])
        .output()
        .expect("doveadm (dovecot-core) is needed: scripts/deps test installs it");
    assert!(
        out.status.success(),
        "doveadm pw -s {scheme}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Dovecot {
    /// Starts Dovecot with these (address, password) users.
    pub fn start(users: &[(&str, &str)]) -> Dovecot {
        let dir = tempfile::tempdir().expect("tempdir");
        // Dovecot's login processes run as its own users: they need to reach the files.
        set_mode(dir.path(), 0o755);
        let key =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
        std::fs::write(dir.path().join("cert.pem"), key.cert.pem()).expect("cert");
        std::fs::write(dir.path().join("key.pem"), key.signing_key.serialize_pem()).expect("key");
        let mut dovecot = Dovecot {
            dir,
            child: None,
            imaps_port: 0,
            imap_port: 0,
            versions: 0,
        };
        for (address, password) in users {
            dovecot.write_password(address, password);
        }
        // Dovecot takes fixed ports: try a few random ones until both bind.
        for attempt in 0..8 {
            let base = 20_000 + (std::process::id() as u16 % 1000) * 40 + attempt * 2;
            dovecot.imaps_port = base;
            dovecot.imap_port = base + 1;
            if dovecot.launch() {
                return dovecot;
            }
        }
        panic!("Dovecot did not start: {}", dovecot.log());
    }

    /// The certificate its listeners present (for a client's `ca_file`).
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Sets (or adds) a user's password in the passwd-file, and (when running) waits until
    /// Dovecot's auth process takes it: it looks at the file again only now and then.
    pub fn set_password(&mut self, address: &str, password: &str) {
        self.write_password(address, password);
        if self.child.is_none() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.auth_test(address, password) {
            assert!(
                Instant::now() < deadline,
                "Dovecot never took the new password"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `doveadm auth test`: whether Dovecot's auth process takes this password now.
    fn auth_test(&self, address: &str, password: &str) -> bool {
        Command::new("doveadm")
            .arg("-c")
            .arg(self.dir.path().join("dovecot.conf"))
            .args(["auth", "test", address, password])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn write_password(&mut self, address: &str, password: &str) {
        let path = self.dir.path().join("users");
        let mut lines: Vec<String> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with(&format!("{address}:")))
            .map(str::to_owned)
            .collect();
        lines.push(format!(
            "{address}:{}",
            doveadm_pw("SHA512-CRYPT", password)
        ));
        // A new file renamed over the old, so Dovecot never reads half of one. It reads the
        // file again when its mtime (in seconds) or size differ, and a new hash has the same
        // size: each version gets an mtime of its own.
        self.versions += 1;
        let tmp = self.dir.path().join("users.new");
        let mut f = std::fs::File::create(&tmp).expect("users");
        for l in &lines {
            writeln!(f, "{l}").expect("users");
        }
        f.set_modified(std::time::SystemTime::now() + Duration::from_secs(self.versions))
            .expect("mtime");
        f.sync_all().expect("users");
        set_mode(&tmp, 0o644);
        std::fs::rename(&tmp, &path).expect("users");
    }

    /// Stops it (the ports go quiet); [`Dovecot::restart`] brings it back on the same ones.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
        // Its login processes go with the master; wait until the port refuses.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.imaps_port)).is_ok() {
            assert!(Instant::now() < deadline, "Dovecot did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        assert!(self.launch(), "Dovecot did not start again: {}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Writes the config for the current ports and starts Dovecot; true once it greets
    /// with its capabilities (its auth process is up), false when it exits (a port taken).
    fn launch(&mut self) -> bool {
        let d = self.dir.path();
        let conf = d.join("dovecot.conf");
        std::fs::write(
            &conf,
            format!(
                "base_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\n\
                 listen = 127.0.0.1\nprotocols = imap\nssl = yes\n\
                 service anvil {{\n  unix_listener anvil-auth-penalty {{\n    mode = 0\n  }}\n}}\n\
                 ssl_cert = <{d}/cert.pem\nssl_key = <{d}/key.pem\n\
                 disable_plaintext_auth = yes\nauth_mechanisms = plain login\n\
                 passdb {{\n  driver = passwd-file\n  args = scheme=CRYPT username_format=%u {d}/users\n}}\n\
                 userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={d}/home/%u\n}}\n\
                 mail_location = maildir:{d}/home/%u/Maildir\n\
                 service imap-login {{\n  inet_listener imap {{\n    port = {}\n  }}\n  \
                 inet_listener imaps {{\n    port = {}\n    ssl = yes\n  }}\n}}\n",
                self.imap_port,
                self.imaps_port,
                d = d.display()
            ),
        )
        .expect("dovecot.conf");
        let mut child = Command::new("dovecot")
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dovecot (dovecot-imapd) is needed: scripts/deps test installs it");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if ready(self.imap_port) {
                self.child = Some(child);
                return true;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether the plain listener greets with its capabilities (the auth process answers).
fn ready(port: u16) -> bool {
    let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    let _ = BufReader::new(&tcp).read_line(&mut line);
    line.starts_with("* OK [CAPABILITY")
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}
