//! The real binary in its own process: the admin CLI and `postern serve`, for the tests that
//! need a process of its own (a `kill -9`, the CLI reading a running server's store).
//!
//! The binary comes from this workspace's target directory: `cargo test --workspace` builds
//! it before any test runs; `cargo test -p postern-tests` alone does not, and uses the binary
//! last built (`cargo build -p postern` first).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};

pub fn binary() -> PathBuf {
    // target/<profile>/deps/archive_crash-… → target/<profile>/postern
    let exe = std::env::current_exe().expect("postern serve");
    let bin = exe
        .parent()
        .expect("postern serve")
        .parent()
        .expect("postern serve")
        .join("postern");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p postern, or cargo test --workspace)",
        bin.display()
    );
    bin
}

/// Runs `postern --config CONFIG ARGS...` with `stdin`; returns its output.
pub fn run(config: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(binary())
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn postern");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("postern output")
}

/// Like [`run`], for a command that must succeed; returns its standard output.
pub fn postern(config: &Path, args: &[&str], stdin: &str) -> String {
    let out = run(config, args, stdin);
    assert!(
        out.status.success(),
        "postern {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `postern serve`; returns it, its STARTTLS address (read from its log) and the
/// warnings and errors it logs.
pub fn serve(
    config: &Path,
) -> (
    Child,
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let mut child = Command::new(binary())
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("postern serve");
    let mut lines = BufReader::new(child.stderr.take().expect("postern serve")).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("postern exited before it ran")
            .expect("postern serve");
        if let Some(rest) = line.split("starttls=[").nth(1) {
            break rest
                .split(']')
                .next()
                .expect("postern serve")
                .parse()
                .expect("postern serve");
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    let problems = Arc::new(Mutex::new(Vec::new()));
    std::thread::spawn({
        let problems = problems.clone();
        move || {
            for line in lines.map_while(Result::ok) {
                if line.contains("WARN") || line.contains("ERROR") {
                    problems.lock().expect("postern serve").push(line);
                }
            }
        }
    });
    (child, addr, problems)
}

/// Loopback ports free a moment ago (bound together, so distinct), for the daemons the
/// tests start that take fixed ports (Dovecot, slapd, MariaDB).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: [std::net::TcpListener; N] =
        std::array::from_fn(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"));
    held.map(|l| l.local_addr().expect("port").port())
}

/// Waits for a daemon just spawned: `Some(child)` once `ready` holds, `None` when it exits
/// first (a port taken) or after `timeout` (then it is killed).
pub fn ready_within(
    mut child: Child,
    timeout: std::time::Duration,
    ready: impl Fn() -> bool,
) -> Option<Child> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        if ready() {
            return Some(child);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
