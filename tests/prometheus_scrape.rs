//! A real Prometheus (Debian's prometheus package) scrapes the daemon's
//! `[metrics] listen` endpoint: the target is up and a greymilter counter
//! carries the decision made before. Skipped locally when prometheus is
//! missing, a failure under CI (`.ci/install-ops.sh` installs it).
//!
//! About 6 s: Prometheus starts in milliseconds, but its scrape manager
//! takes up new targets on a 5 s tick.

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Daemon, PATIENCE, metrics_addr, watch};

const CONFIG: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

fn prometheus_present() -> bool {
    let found = Command::new("prometheus")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "prometheus missing: .ci/install-ops.sh installs Debian's prometheus"
        );
        eprintln!("skipped: prometheus not installed (apt-get install prometheus)");
    }
    found
}

/// Killed and reaped when the test ends, passed or not.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One instant query against Prometheus' HTTP API: the answer's body, or
/// `None` while it is not listening yet.
fn query(api: SocketAddr, q: &str) -> Option<String> {
    let mut s = TcpStream::connect(api).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!(
        "GET /api/v1/query?query={} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n",
        encode(q)
    );
    s.write_all(request.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// Polls `q` until its single sample has the value `want` (bounded).
fn wait_for(api: SocketAddr, q: &str, want: &str, log: &std::path::Path) {
    let deadline = Instant::now() + PATIENCE;
    let needle = format!(",\"{want}\"]");
    loop {
        let body = query(api, q);
        if body.as_deref().is_some_and(|b| b.contains(&needle)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{q} never became {want}; last answer: {body:?}\nprometheus log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_real_prometheus_scrapes_the_endpoint() {
    if !prometheus_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), CONFIG);
    let target = metrics_addr(&d);
    assert_eq!(
        d.query("192.0.2.1", "a@example.org", &["b@example.net"])
            .status,
        4
    );

    let prom = tempfile::tempdir().unwrap();
    let config = prom.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: greymilter\n    static_configs:\n      \
             - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let api = {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        l.local_addr().unwrap()
    };
    let log = prom.path().join("prometheus.log");
    let started = Instant::now();
    let _prometheus = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={api}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap(),
    );
    wait_for(api, "up{job=\"greymilter\"}", "1", &log);
    wait_for(
        api,
        "greymilter_decisions_total{job=\"greymilter\",action=\"greylist\",reason=\"new\"}",
        "1",
        &log,
    );
    eprintln!(
        "prometheus saw the counter {:?} after its start",
        started.elapsed()
    );
    assert_eq!(watch::proc_status(d.pid().as_raw(), "Threads"), 1);
}
