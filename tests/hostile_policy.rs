//! Hostile clients on the policy port (`[policy] listen`) against the real
//! binary, the sibling of hostile_clients.rs for the milter port. Each
//! test runs its own daemon, a well-behaved client asking beside it the
//! whole time, and ROUNDS hostile connections at once; then checks that the
//! daemon is alive without a panic, every hostile connection got its
//! bounded reaction (closed, within the bound), the well-behaved client
//! had every request answered, the warn lines are the expected one and
//! rate-limited, memory stayed bounded, and a new client is served.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::watch::{assert_alive, proc_status, rss_kib, warn_lines};
use support::{Daemon, PATIENCE};

/// Hostile connections per test, all at once.
const ROUNDS: usize = 20;
/// How far the daemon's peak resident memory may rise: a connection
/// buffers at most one request (16 KiB), the rest is allocator slack.
const PEAK_GROWTH_KIB: u64 = 8 * 1024;

const CONFIG: &str = "[milter]\nenabled = false\n[policy]\nlisten = \"inet:0@127.0.0.1\"\nidle_timeout = \"1s\"\nmax_connections = 64\n[greylist]\ndelay = \"1h\"\n";

fn request(client: &str, sender: &str, recipient: &str) -> String {
    format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address={client}\nclient_name=unknown\nhelo_name=mx.example.org\nsender={sender}\nrecipient={recipient}\ninstance={client}.{recipient}\n\n"
    )
}

/// One answer (up to its empty line), or why there is none.
fn answer(s: &mut TcpStream) -> Result<String, String> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\n\n") {
        match s.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            Ok(_) => return Err(format!("closed after {got:?}")),
            Err(e) => return Err(format!("{e} after {got:?}")),
        }
    }
    Ok(String::from_utf8_lossy(&got).trim_end().to_string())
}

/// The well-behaved client: one connection (as Postfix keeps it), a new
/// tuple every 20 ms, each deferred; returns how many were answered.
struct Healthy {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u32>,
}

impl Healthy {
    fn start(addr: SocketAddr) -> Healthy {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(PATIENCE)).unwrap();
            let mut served = 0u32;
            while !flag.load(Ordering::Relaxed) {
                let req = request(
                    &format!("198.51.100.{}", served % 250 + 1),
                    "h@example.org",
                    &format!("h{served}@example.net"),
                );
                s.write_all(req.as_bytes()).unwrap();
                let a = answer(&mut s).unwrap_or_else(|e| panic!("healthy request {served}: {e}"));
                assert!(a.starts_with("action=DEFER_IF_PERMIT"), "{a}");
                served += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            served
        });
        Healthy { stop, thread }
    }

    fn finish(self) -> u32 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the healthy client failed")
    }
}

/// Waits until the daemon closes `s` (EOF or reset), at most PATIENCE;
/// returns how long that took.
fn closed_within_patience(s: &mut TcpStream, what: &str) -> Duration {
    let started = Instant::now();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut sink = [0u8; 4096];
    match s.read(&mut sink) {
        Ok(0) => started.elapsed(),
        Ok(n) => panic!("{what}: answered {:?}", String::from_utf8_lossy(&sink[..n])),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => started.elapsed(),
        Err(e) => panic!("{what}: not closed within {PATIENCE:?}: {e}"),
    }
}

/// Runs `hostile(addr, i)` on ROUNDS threads at once beside the healthy
/// client; every warn line must contain one of `warns`' texts, each text
/// seen and at most once per its interval (its limiter).
fn run(hostile: impl Fn(SocketAddr, usize) + Sync, warns: &[(&str, Duration)]) {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(dir.path(), CONFIG);
    assert_ne!(d.port, 0, "{}", d.log_text());
    let addr = d.milter_addr();
    let rss_before = rss_kib(&d);
    let mark = d.log_len();
    let healthy = Healthy::start(addr);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for i in 0..ROUNDS {
            let hostile = &hostile;
            scope.spawn(move || hostile(addr, i));
        }
    });
    let served = healthy.finish();
    assert!(served > 0, "the healthy client was never answered");
    assert_alive(&mut d);
    let lines = warn_lines(&d, mark, "");
    let elapsed = started.elapsed().as_secs();
    for (text, interval) in warns {
        let n = lines.iter().filter(|l| l.contains(text)).count();
        let allowed = 1 + (elapsed / interval.as_secs()) as usize;
        assert!(
            (1..=allowed).contains(&n),
            "expected 1 (at most {allowed}) warn line with {text:?} for {ROUNDS} hostile connections, got:\n{}",
            lines.join("\n")
        );
    }
    assert!(
        lines
            .iter()
            .all(|l| warns.iter().any(|(t, _)| l.contains(t))),
        "unexpected warn lines:\n{}",
        lines.join("\n")
    );
    let peak = proc_status(d.pid().as_raw(), "VmHWM");
    assert!(
        peak.saturating_sub(rss_before) < PEAK_GROWTH_KIB,
        "peak memory grew from {rss_before} KiB to {peak} KiB"
    );
    let mut next = TcpStream::connect(addr).unwrap();
    next.set_read_timeout(Some(PATIENCE)).unwrap();
    next.write_all(request("203.0.113.9", "n@example.org", "n@example.net").as_bytes())
        .unwrap();
    let a = answer(&mut next).unwrap();
    assert!(a.starts_with("action=DEFER_IF_PERMIT"), "{a}");
}

/// Sends `bytes` and expects the connection closed for them.
fn closes_on(bytes: Vec<u8>, warn: &str) {
    run(
        |addr, _| {
            let mut s = TcpStream::connect(addr).unwrap();
            // The daemon may close before it has read everything.
            let _ = s.write_all(&bytes);
            closed_within_patience(&mut s, warn);
        },
        &[(warn, Duration::from_secs(10))],
    );
}

#[test]
fn an_over_long_line_closes() {
    let mut bytes = b"request=smtpd_access_policy\nsender=".to_vec();
    bytes.extend(std::iter::repeat_n(b'a', 3000));
    closes_on(bytes, "line 2 of a request is over 2048 bytes");
}

#[test]
fn too_many_attributes_close() {
    let mut bytes = b"request=smtpd_access_policy\n".to_vec();
    for i in 0..150 {
        bytes.extend_from_slice(format!("x{i}=1\n").as_bytes());
    }
    closes_on(bytes, "request has more than 100 attributes");
}

#[test]
fn an_oversize_request_closes() {
    // 20 lines of 1 KiB: each line and the count within their bounds.
    let mut bytes = b"request=smtpd_access_policy\n".to_vec();
    for i in 0..20 {
        bytes.extend_from_slice(format!("x{i}=").as_bytes());
        bytes.extend(std::iter::repeat_n(b'v', 1000));
        bytes.push(b'\n');
    }
    bytes.push(b'\n');
    closes_on(bytes, "request is over 16384 bytes");
}

#[test]
fn non_utf8_closes() {
    closes_on(
        b"request=smtpd_access_policy\nprotocol_state=RCPT\nsender=\xff\xfe@example.org\n\n"
            .to_vec(),
        "line 3 of a request is not UTF-8",
    );
}

#[test]
fn a_request_without_request_smtpd_access_policy_closes() {
    closes_on(
        b"protocol_state=RCPT\nclient_address=192.0.2.1\nrecipient=a@example.net\n\n".to_vec(),
        "request has no request=smtpd_access_policy",
    );
}

#[test]
fn an_idle_connection_is_closed_at_idle_timeout() {
    run(
        |addr, _| {
            let mut s = TcpStream::connect(addr).unwrap();
            let took = closed_within_patience(&mut s, "idle");
            assert!(took >= Duration::from_millis(900), "closed after {took:?}");
        },
        &[(
            "policy connection closed: idle for 1s",
            Duration::from_secs(60),
        )],
    );
}

/// A valid request, one byte every 100 ms (10 s in all): cut off 1 s
/// after its first byte, as an idle peer would be.
#[test]
fn slowloris_is_closed_idle_timeout_after_its_first_byte() {
    run(
        |addr, i| {
            let req = request(
                &format!("192.0.2.{}", i + 1),
                "s@example.org",
                "r@example.net",
            );
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let started = Instant::now();
            let mut sink = [0u8; 64];
            for b in req.bytes() {
                if s.write_all(&[b]).is_err() {
                    break;
                }
                match s.read(&mut sink) {
                    Ok(0) => break,
                    Ok(n) => panic!("answered {:?}", String::from_utf8_lossy(&sink[..n])),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
                assert!(
                    started.elapsed() < PATIENCE,
                    "the slowloris is never cut off"
                );
            }
            let took = started.elapsed();
            assert!(
                took >= Duration::from_millis(900) && took < Duration::from_secs(8),
                "cut off after {took:?}"
            );
        },
        &[(
            "request still incomplete 1s after its first byte",
            Duration::from_secs(10),
        )],
    );
}

/// Far more connections than `max_connections` (64), each holding its slot
/// while saying nothing: the ones past the bound wait in the backlog, every
/// one is closed at idle_timeout once served, and the healthy client
/// (already connected) keeps being answered throughout.
#[test]
fn many_connections_wait_their_turn_and_are_closed_when_idle() {
    run(
        |addr, _| {
            let mut held: Vec<TcpStream> =
                (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
            for s in &mut held {
                closed_within_patience(s, "crowd");
            }
        },
        &[
            (
                "policy connection closed: idle for 1s",
                Duration::from_secs(60),
            ),
            (
                "max_connections reached: new policy connections wait",
                Duration::from_secs(60),
            ),
        ],
    );
}
