//! A real Dovecot IMAP server on loopback (Debian's dovecot-imapd, installed by
//! `scripts/deps test`), for the tests of the account backends: a passwd-file of its own
//! (passdb and userdb, so its users can be listed), implicit TLS and STARTTLS listeners, a
//! self-signed certificate for `localhost`, its auth service on a Unix socket and a TCP
//! port, and Dovecot's per-IP authentication penalty off, as docs/accounts.md asks of a
//! Dovecot that Postern checks passwords with. Runs as the test's user (root in CI:
//! Dovecot drops to its own users for logins).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
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
    /// The auth service's `inet_listener` (Dovecot's authentication protocol over TCP).
    pub auth_port: u16,
    /// Versions of the passwd-file written.
    versions: u64,
    /// One scheme for every line, instead of [`SCHEMES`] in turn.
    scheme: Option<&'static str>,
}

/// The schemes the passwd-file's lines are written in, in turn.
const SCHEMES: [&str; 4] = ["SHA512-CRYPT", "BLF-CRYPT", "SSHA512", "ARGON2ID"];

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
    /// Starts Dovecot with these (address, password) users, their hashes in mixed schemes.
    pub fn start(users: &[(&str, &str)]) -> Dovecot {
        Dovecot::start_with(users, None)
    }

    /// Starts Dovecot with every user's hash in `scheme` (a benchmark's fixed cost).
    pub fn start_with_scheme(users: &[(&str, &str)], scheme: &'static str) -> Dovecot {
        Dovecot::start_with(users, Some(scheme))
    }

    fn start_with(users: &[(&str, &str)], scheme: Option<&'static str>) -> Dovecot {
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
            auth_port: 0,
            versions: 0,
            scheme,
        };
        for (address, password) in users {
            dovecot.write_password(address, password, "");
        }
        // Dovecot takes fixed ports: free ones the system picks, tried again when another
        // process took one in between.
        for _ in 0..8 {
            let [imaps, imap, auth] = crate::process::free_ports();
            dovecot.imaps_port = imaps;
            dovecot.imap_port = imap;
            dovecot.auth_port = auth;
            if dovecot.launch() {
                return dovecot;
            }
        }
        panic!("Dovecot did not start: {}", dovecot.log());
    }

    /// The auth service's client socket (Dovecot's authentication protocol).
    pub fn auth_socket(&self) -> PathBuf {
        self.dir.path().join("run/auth-client")
    }

    /// The auth-userdb socket (the auth-master protocol: user lookups and listing).
    pub fn userdb_socket(&self) -> PathBuf {
        self.dir.path().join("run/auth-userdb")
    }

    /// The certificate its listeners present (for a client's `ca_file`).
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Sets (or adds) a user's password in the passwd-file, and (when running) waits until
    /// Dovecot's auth process takes it: it looks at the file again only now and then.
    pub fn set_password(&mut self, address: &str, password: &str) {
        self.set_password_with(address, password, "");
    }

    /// As [`Dovecot::set_password`], with passdb extra fields (`nologin reason=…`).
    pub fn set_password_with(&mut self, address: &str, password: &str, extra: &str) {
        self.write_password(address, password, extra);
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

    /// Removes a user from the passwd-file, and (when running) waits until Dovecot's auth
    /// process no longer takes its password.
    pub fn remove_user(&mut self, address: &str, password: &str) {
        let path = self.dir.path().join("users");
        let lines: Vec<String> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with(&format!("{address}:")))
            .map(str::to_owned)
            .collect();
        self.write_users(&lines);
        if self.child.is_none() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.auth_test(address, password) {
            assert!(Instant::now() < deadline, "Dovecot never dropped the user");
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

    fn write_password(&mut self, address: &str, password: &str, extra: &str) {
        let path = self.dir.path().join("users");
        let mut lines: Vec<String> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with(&format!("{address}:")))
            .map(str::to_owned)
            .collect();
        // passwd-file: user:password:uid:gid:(gecos):home:(shell), so that the userdb can
        // list and look up users too. Mixed schemes, as in a passwd-file that has lived
        // through several defaults: each version of a line takes the next one.
        let scheme = self
            .scheme
            .unwrap_or(SCHEMES[(self.versions as usize) % SCHEMES.len()]);
        lines.push(format!(
            "{address}:{}:65534:65534::{}/home::{extra}",
            doveadm_pw(scheme, password),
            self.dir.path().display()
        ));
        self.write_users(&lines);
    }

    fn write_users(&mut self, lines: &[String]) {
        // A new file renamed over the old, so Dovecot never reads half of one. It reads the
        // file again when its mtime (in seconds) or size differ, and a new hash has the same
        // size: each version gets an mtime of its own.
        self.versions += 1;
        let tmp = self.dir.path().join("users.new");
        let mut f = std::fs::File::create(&tmp).expect("users");
        for l in lines {
            writeln!(f, "{l}").expect("users");
        }
        f.set_modified(std::time::SystemTime::now() + Duration::from_secs(self.versions))
            .expect("mtime");
        f.sync_all().expect("users");
        set_mode(&tmp, 0o644);
        std::fs::rename(&tmp, self.dir.path().join("users")).expect("users");
    }

    /// Stops it, all its processes (the auth process would go on serving connections it
    /// has, after the master is gone); [`Dovecot::restart`] brings it back on the same
    /// ports.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&child);
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.imaps_port)).is_ok()
            || TcpStream::connect(("127.0.0.1", self.auth_port)).is_ok()
        {
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
                 userdb {{\n  driver = passwd-file\n  args = username_format=%u {d}/users\n}}\n\
                 service auth {{\n  inet_listener {{\n    address = 127.0.0.1\n    port = {}\n  }}\n}}\n\
                 mail_location = maildir:{d}/home/%u/Maildir\n\
                 service imap-login {{\n  inet_listener imap {{\n    port = {}\n  }}\n  \
                 inet_listener imaps {{\n    port = {}\n    ssl = yes\n  }}\n}}\n",
                self.auth_port,
                self.imap_port,
                self.imaps_port,
                d = d.display()
            ),
        )
        .expect("dovecot.conf");
        let child = Command::new("dovecot")
            .process_group(0)
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dovecot (dovecot-imapd) is needed: scripts/deps test installs it");
        // Its own auth socket too: the port alone might be another Dovecot's.
        let socket = self.auth_socket();
        let port = self.imap_port;
        self.child = crate::process::ready_within(child, Duration::from_secs(20), || {
            ready(port) && std::os::unix::net::UnixStream::connect(&socket).is_ok()
        });
        self.child.is_some()
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

/// SIGTERM to Dovecot's process group: the master and every process it started.
fn kill_group(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{}", child.id())])
        .status();
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&child);
            let _ = child.wait();
        }
    }
}
