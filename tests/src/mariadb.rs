//! A real MariaDB on loopback (Debian's mariadb-server, installed by `scripts/deps test`) for
//! the `sql` account backend's tests: a fresh data directory, a database `mail`, an admin
//! user for the test's own statements and a `postern` user that may only read `mail`, as
//! docs/accounts.md asks. Runs as the test's user (root in CI: `--user=root`).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct MariaDb {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub port: u16,
}

impl MariaDb {
    pub fn start() -> MariaDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let out = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args([
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .output()
            .expect("mariadb-install-db (mariadb-server) is needed: scripts/deps test installs it");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut db = MariaDb {
            dir,
            child: None,
            port: 0,
        };
        for _ in 0..8 {
            [db.port] = crate::process::free_ports();
            if db.launch() {
                db.setup();
                return db;
            }
        }
        panic!("MariaDB did not start: {}", db.log());
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("err.log")).unwrap_or_default()
    }

    /// Runs SQL as root over the socket (the `mariadb` client).
    pub fn root(&self, sql: &str) {
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg("-S")
            .arg(self.socket())
            .args(["-u", "root", "-e", sql])
            .output()
            .expect("mariadb client");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn setup(&self) {
        self.root(
            "CREATE DATABASE mail; \
             CREATE USER 'admin'@'127.0.0.1' IDENTIFIED BY 'admin pw'; \
             GRANT ALL ON *.* TO 'admin'@'127.0.0.1' WITH GRANT OPTION; \
             CREATE USER 'postern'@'127.0.0.1' IDENTIFIED BY 'postern pw'; \
             GRANT SELECT ON mail.* TO 'postern'@'127.0.0.1';",
        );
    }

    /// The test's own connection (may do anything).
    pub fn admin_url(&self) -> String {
        format!("mysql://admin:admin%20pw@127.0.0.1:{}/mail", self.port)
    }

    /// Postern's (reads `mail` only).
    pub fn postern_url(&self) -> String {
        format!("mysql://postern:postern%20pw@127.0.0.1:{}/mail", self.port)
    }

    fn launch(&mut self) -> bool {
        let d = self.dir.path();
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-name-resolve",
            ])
            .arg(format!("--pid-file={}", d.join("pid").display()))
            .arg(format!("--log-error={}", d.join("err.log").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd (mariadb-server) is needed: scripts/deps test installs it");
        let (socket, port) = (self.socket(), self.port);
        self.child = crate::process::ready_within(child, Duration::from_secs(30), || {
            socket.exists() && TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        self.child.is_some()
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}
