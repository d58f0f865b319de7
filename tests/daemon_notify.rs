//! systemd's notification protocol against the real binary: the test owns
//! the `NOTIFY_SOCKET` datagram socket, as systemd would.

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::Instant;

use nix::sys::signal::Signal;
use support::{Daemon, PATIENCE};

/// What the daemon sends once it serves (at start and after a reload).
const READY: &str = "READY=1\nSTATUS=serving";

/// The next datagram, or a panic after PATIENCE.
fn next(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no notification within {PATIENCE:?}: {e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Datagrams until one satisfies `want` (watchdog pings interleave), or a
/// panic after PATIENCE in all: the pings alone never end the wait.
fn until(sock: &UnixDatagram, want: impl Fn(&str) -> bool) -> (String, Vec<String>) {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        let m = next(sock);
        if want(&m) {
            return (m, seen);
        }
        assert!(
            Instant::now() < deadline,
            "awaited datagram not seen within {PATIENCE:?}; seen {} others, last {m:?}",
            seen.len()
        );
        seen.push(m);
    }
}

/// A daemon started with a notify socket of the test's and `env`.
fn start(dir: &std::path::Path, config: &str, env: &[(&str, &str)]) -> (Daemon, UnixDatagram) {
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    let path = path.display().to_string();
    let mut all = vec![("NOTIFY_SOCKET", path.as_str())];
    all.extend_from_slice(env);
    (Daemon::start_with_env(dir, config, &all), sock)
}

#[test]
fn ready_reloading_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let (mut d, sock) = start(
        dir.path(),
        "[state]\nfile = \"{dir}/state\"\n",
        &[("WATCHDOG_USEC", "400000")],
    );

    // READY comes once, after the listener is bound and the state restored.
    // The first datagram of all is READY, with the status line.
    assert_eq!(next(&sock), READY);
    std::net::TcpStream::connect(d.milter_addr()).unwrap();
    assert!(d.log_text().contains("no state file yet"));

    // Watchdog pings keep coming (every half of WATCHDOG_USEC) while idle.
    for _ in 0..3 {
        assert_eq!(next(&sock), "WATCHDOG=1");
    }

    // Reload: RELOADING=1 with MONOTONIC_USEC, then READY=1 again.
    d.signal(Signal::SIGHUP);
    let (reloading, _) = until(&sock, |m| m.contains("RELOADING=1"));
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"))
        .parse()
        .unwrap();
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    let now = now.tv_sec() as u64 * 1_000_000 + now.tv_nsec() as u64 / 1000;
    assert!(usec <= now && now - usec < PATIENCE.as_micros() as u64);
    // After RELOADING only watchdog pings, then READY once the new
    // configuration is in force.
    let (ready, between) = until(&sock, |m| m != "WATCHDOG=1");
    assert_eq!(ready, READY, "after RELOADING, before it: {between:?}");
    // READY may come before the batched info line is written.
    d.wait_for_log(|l| l.contains("configuration reloaded"));

    d.signal(Signal::SIGTERM);
    until(&sock, |m| m == "STOPPING=1");
    assert!(d.wait_exit().success());
}

#[test]
fn a_watchdog_for_another_pid_is_not_armed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut d, sock) = start(
        dir.path(),
        "",
        &[("WATCHDOG_USEC", "100000"), ("WATCHDOG_PID", "1")],
    );
    assert_eq!(next(&sock), READY);
    // No pings: the next datagram after SIGTERM is STOPPING.
    d.signal(Signal::SIGTERM);
    assert_eq!(next(&sock), "STOPPING=1");
    assert!(d.wait_exit().success());
}
