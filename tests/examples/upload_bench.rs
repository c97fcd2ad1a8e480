//! XEP-0363 uploads: server memory while files stream in, and upload speed against nginx
//! (Debian package, WebDAV PUT over TLS with the same certificate) on the same machine in the
//! same run. Not a test: it prints numbers (bench/README.md).
//!
//! ```text
//! scripts/deps bench && cargo build --release -p postern
//! cargo run --release -p postern-tests --example upload_bench -- [BIG_MIB] [CLIENTS] [EACH_MIB]
//! ```
//!
//! Defaults: one 1024 MiB file, then 50 clients uploading 20 MiB each at once, both with
//! `curl -T` (one process per client), to Postern (slots over XMPP first) and to nginx.
//! Postern syncs every file to disk before its `201`; nginx does not: its figure is an upper
//! bound for any server on this disk. RSS is sampled every 50 ms from /proc.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark: panics and prints

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use postern_tests::process::{binary, free_ports, postern, serve};
use postern_tests::{Raw, attr, trusting};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Samples the peak RSS of `pids` (summed) until dropped.
struct Peak {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Peak {
    fn start(pids: Vec<u32>) -> Peak {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = std::thread::spawn({
            let (stop, peak) = (stop.clone(), peak.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let now: u64 = pids.iter().map(|p| rss_kib(*p)).sum();
                    peak.fetch_max(now, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
        Peak {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

fn make_file(path: &Path, mib: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&block).unwrap();
    }
}

/// `curl -T file url` processes, all at once; the wall time until every one finished.
fn put_all(jobs: &[(PathBuf, String)], ca: &Path, host_port: &str, extra: &[&str]) -> Duration {
    let started = Instant::now();
    let children: Vec<Child> = jobs
        .iter()
        .map(|(file, url)| {
            Command::new("curl")
                .args(["-sS", "-f", "-o", "/dev/null", "--http1.1", "--cacert"])
                .arg(ca)
                .args(["--resolve", &format!("localhost:{host_port}")])
                .args(extra)
                .arg("-T")
                .arg(file)
                .arg(url)
                .stdout(Stdio::null())
                .spawn()
                .expect("curl must be installed (scripts/deps bench)")
        })
        .collect();
    for mut c in children {
        let status = c.wait().unwrap();
        assert!(status.success(), "a curl upload failed");
    }
    started.elapsed()
}

struct Nginx {
    child: Child,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx(dir: &Path, port: u16, cert: &Path, key: &Path) -> Nginx {
    let root = dir.join("nginx_root/up");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(dir.join("nginx_tmp")).unwrap();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; master_process off; user root; worker_processes 1;\n\
             pid {d}/nginx.pid; error_log {d}/nginx.err;\n\
             events {{}}\n\
             http {{ access_log off; client_max_body_size 0; client_body_temp_path {d}/nginx_tmp;\n\
               server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {c}; ssl_certificate_key {k};\n\
                 location /up/ {{ root {d}/nginx_root; dav_methods PUT; create_full_put_path on; }} }} }}\n",
            d = dir.display(),
            c = cert.display(),
            k = key.display()
        ),
    )
    .unwrap();
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx must be installed (scripts/deps bench)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Nginx { child, port }
}

async fn slot(raw: &mut Raw, n: usize, name: &str, size: u64) -> (String, String) {
    raw.send(&format!(
        "<iq type='get' id='s{n}' to='upload.localhost'><request xmlns='urn:xmpp:http:upload:0' \
         filename='{name}' size='{size}' content-type='application/octet-stream'/></iq>"
    ))
    .await
    .unwrap();
    let answer = raw.read_element("iq").await.unwrap();
    let put = &answer[answer.find("<put").unwrap_or_else(|| panic!("{answer}"))..];
    let get = &answer[answer.find("<get").unwrap()..];
    (
        attr(put, "url").unwrap().replace("&amp;", "&"),
        attr(get, "url").unwrap(),
    )
}

fn mbps(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / 1_048_576.0 / t.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let big = args.first().copied().unwrap_or(1024);
    let clients = args.get(1).copied().unwrap_or(50);
    let each = args.get(2).copied().unwrap_or(20);
    println!("postern binary: {}", binary().display());
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/tmp".into())).unwrap();
    let [xmpp_port, https_port, nginx_port] = free_ports::<3>();
    let data = dir.path().join("data");
    let cfg = dir.path().join("postern.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\nlog = \"warn\"\n[[domain]]\nname = \"localhost\"\n\
             [xmpp]\nstarttls = [\"127.0.0.1:{xmpp_port}\"]\ndirect_tls = []\n\
             [xmpp.upload]\nmax_file_size = \"8 GiB\"\nquota_per_user = \"unlimited\"\nslot_lifetime = \"30m\"\n\
             [xmpp.proxy65]\nenabled = false\n[gateway]\nenabled = false\n\
             [http]\nlisten = [\"127.0.0.1:{https_port}\"]\nmax_connections_per_ip = 1000\n",
            data.display()
        ),
    )
    .unwrap();
    postern(
        &cfg,
        &["account", "add", "bench@localhost", "--password-stdin"],
        "pw\n",
    );
    let (mut server, addr, _problems) = serve(&cfg);
    let pid = server.id();
    let ca = data.join("certs/localhost.crt");
    let key = data.join("certs/localhost.key");
    let tls = trusting(CertificateDer::from_pem_file(&ca).unwrap());
    let raw = Raw::connect(addr).await.unwrap();
    let mut raw = Raw::login_trusting(raw, tls, "bench@localhost", "pw", "bench")
        .await
        .unwrap();

    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let big_file = files.join("big.bin");
    make_file(&big_file, big);
    let small: Vec<PathBuf> = (0..clients)
        .map(|i| {
            let p = files.join(format!("f{i}.bin"));
            make_file(&p, each);
            p
        })
        .collect();
    let idle_rss = rss_kib(pid);

    // Postern: one big file.
    let (put, _) = slot(&mut raw, 0, "big.bin", (big as u64) << 20).await;
    let peak = Peak::start(vec![pid]);
    let t_big = put_all(
        &[(big_file.clone(), put)],
        &ca,
        &format!("{https_port}:127.0.0.1"),
        &[],
    );
    let big_peak = peak.finish();
    // Postern: many clients at once.
    let mut jobs = Vec::new();
    for (i, f) in small.iter().enumerate() {
        let (put, _) = slot(&mut raw, i + 1, &format!("f{i}.bin"), (each as u64) << 20).await;
        jobs.push((f.clone(), put));
    }
    let peak = Peak::start(vec![pid]);
    let t_many = put_all(&jobs, &ca, &format!("{https_port}:127.0.0.1"), &[]);
    let many_peak = peak.finish();
    let _ = server.kill();
    let _ = server.wait();

    // nginx: the same uploads, same certificate.
    let ng = nginx(dir.path(), nginx_port, &ca, &key);
    let url = |name: &str| format!("https://localhost:{}/up/{name}", ng.port);
    let hp = format!("{}:127.0.0.1", ng.port);
    let n_big = put_all(&[(big_file.clone(), url("big.bin"))], &ca, &hp, &[]);
    let jobs: Vec<(PathBuf, String)> = small
        .iter()
        .enumerate()
        .map(|(i, f)| (f.clone(), url(&format!("f{i}.bin"))))
        .collect();
    let n_many = put_all(&jobs, &ca, &hp, &[]);
    drop(ng);

    let total_many = (clients * each) as u64 * 1_048_576;
    let big_bytes = big as u64 * 1_048_576;
    println!(
        "\nupload bench: {big} MiB once; {clients} clients x {each} MiB at once (curl -T, HTTP/1.1, TLS)"
    );
    println!("| case | Postern MB/s | nginx MB/s | Postern/nginx | Postern RSS idle → peak |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| {big} MiB | {:.0} | {:.0} | {:.2} | {} → {} MiB |",
        mbps(big_bytes, t_big),
        mbps(big_bytes, n_big),
        mbps(big_bytes, t_big) / mbps(big_bytes, n_big),
        idle_rss / 1024,
        big_peak / 1024
    );
    println!(
        "| {clients} x {each} MiB | {:.0} | {:.0} | {:.2} | {} → {} MiB |",
        mbps(total_many, t_many),
        mbps(total_many, n_many),
        mbps(total_many, t_many) / mbps(total_many, n_many),
        idle_rss / 1024,
        many_peak / 1024
    );
}
