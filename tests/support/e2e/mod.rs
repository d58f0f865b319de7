//! Test support for the end-to-end suites (`tests/e2e_postfix.rs`, `tests/e2e_sendmail.rs`):
//! private Postfix and Sendmail instances on loopback, a raw SMTP client, and the greymilter
//! daemon under test. Everything a helper starts is stopped by its `Drop`, also when a test
//! panics, and every wait is bounded.
//!
//! CI policy: with `CI` set, a missing MTA fails the test; without it the test prints why it
//! skips and returns (see [`require_postfix`], [`require_sendmail`]).

pub mod daemon;
pub mod netns;
pub mod postfix;
pub mod process;
pub mod sendmail;
pub mod smtp;
/// The shared "run the real binary" helper of the daemon tests.
#[path = "../mod.rs"]
pub mod support;
pub mod syslog;

use std::net::{Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

pub use daemon::{
    Greymilter, GreymilterConfig, REJECT_REPLY, assert_greylist_header, assert_greylisted,
    greylist_then_pass, wait_out,
};
pub use netns::in_private_network;
pub use postfix::{Delivered, PostfixInstance, PostfixOptions};
pub use sendmail::{SendmailInstance, SendmailOptions};
pub use smtp::{Envelope, Gate, Outcome, Reply, SmtpClient, Xclient};

/// How to install what these tests need; printed whenever something is missing.
pub const INSTALL_HINT: &str = "run `sudo .ci/install-mtas.sh` (Debian 12) to install Postfix, \
Sendmail, miltertest and iproute2 for the end-to-end tests";

/// Whether an end-to-end test can run, given what is missing for it: under `CI` a missing
/// piece fails the test (issue 5: "a missing MTA in CI is a failure, not a skip").
fn availability(missing: Vec<String>) -> bool {
    if missing.is_empty() {
        return true;
    }
    let reason = missing.join("; ");
    if std::env::var_os("CI").is_some() {
        panic!("end-to-end prerequisites missing in CI: {reason}. {INSTALL_HINT}");
    }
    eprintln!("SKIPPED (end-to-end prerequisites missing: {reason}). {INSTALL_HINT}");
    false
}

fn missing_common() -> Vec<String> {
    let mut missing = Vec::new();
    if !nix::unistd::Uid::effective().is_root() {
        missing.push("the private MTAs must be started as root".to_string());
    }
    missing
}

/// True if the Postfix tests can run here; panics under `CI` if they cannot.
pub fn require_postfix() -> bool {
    let mut missing = missing_common();
    for bin in [postfix::MASTER, postfix::POSTCONF] {
        if !Path::new(bin).exists() {
            missing.push(format!("{bin} not found"));
        }
    }
    availability(missing)
}

/// True if the Sendmail tests can run here; panics under `CI` if they cannot.
pub fn require_sendmail() -> bool {
    let mut missing = missing_common();
    let bin = sendmail::binary();
    if !bin.exists() {
        missing.push(format!("{} not found", bin.display()));
    }
    for path in [sendmail::CF_M4, "/usr/bin/m4", "/usr/bin/unshare"] {
        if !Path::new(path).exists() {
            missing.push(format!("{path} not found"));
        }
    }
    availability(missing)
}

/// A scratch directory that Postfix's unprivileged processes can traverse (mode 755; gotcha 5).
/// Kept on disk when the test panics, so its logs can be read afterwards.
pub struct WorkDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl WorkDir {
    pub fn new(label: &str) -> WorkDir {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix(&format!("greymilter-e2e-{label}-"))
            .tempdir()
            .expect("create a scratch directory");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod 755 the scratch directory");
        let path = dir.path().to_path_buf();
        WorkDir {
            dir: Some(dir),
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!("e2e: kept {} for inspection", kept.display());
        }
    }
}

/// Ports come from a range below Linux's ephemeral range (32768+), so that the many outgoing
/// loopback connections of a test run cannot occupy a port between choosing and binding it.
/// The start depends on the PID so that concurrently running test binaries do not collide.
static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// A loopback TCP port that is free on 127.0.0.1 (and ::1 where available) right now.
pub fn free_port() -> u16 {
    const BASE: u16 = 20_000;
    const SPAN: u16 = 12_000;
    let _ = NEXT_PORT.compare_exchange(
        0,
        (std::process::id() % u32::from(SPAN)) as u16,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let offset = NEXT_PORT.fetch_add(1, Ordering::SeqCst) % SPAN;
        let port = BASE + offset;
        let v4_free = TcpListener::bind(("127.0.0.1", port)).is_ok();
        let v6_free = !ipv6_loopback_available() || TcpListener::bind(("::1", port)).is_ok();
        if v4_free && v6_free {
            return port;
        }
    }
    panic!("no free loopback port in {BASE}..{}", BASE + SPAN);
}

/// Whether this host has a usable ::1 (CI hosts may have IPv6 disabled).
pub fn ipv6_loopback_available() -> bool {
    UdpSocket::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, 0))).is_ok()
}

/// Polls `probe` every 50 ms until it yields a value or `timeout` passes.
pub fn poll_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether something listens on 127.0.0.1:`port` (or [::1]:`port` with `v6`), read from
/// /proc/thread-self/net/tcp{,6} so that no probe connection reaches the MTA or its milter
/// (gotcha 7). thread-self, not self: a test thread may have a network namespace of its own.
pub fn is_listening(port: u16, v6: bool) -> bool {
    let (file, local) = if v6 {
        (
            "/proc/thread-self/net/tcp6",
            format!("00000000000000000000000001000000:{port:04X}"),
        )
    } else {
        ("/proc/thread-self/net/tcp", format!("0100007F:{port:04X}"))
    };
    let Ok(table) = std::fs::read_to_string(file) else {
        return false;
    };
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let local_addr = fields.nth(1);
        let state = fields.nth(1);
        local_addr == Some(local.as_str()) && state == Some("0A")
    })
}

/// The last `n` lines of a log file, for panic messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Reads a file that may not exist yet as a possibly empty string.
pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// Waits for a line in a growing log file that satisfies `matches`; returns it.
pub fn wait_for_line(
    path: &Path,
    timeout: Duration,
    matches: impl Fn(&str) -> bool,
) -> Option<String> {
    poll_until(timeout, || {
        read_lossy(path)
            .lines()
            .find(|line| matches(line))
            .map(str::to_string)
    })
}

/// True if a test can have a network namespace of its own (see [`netns`]); panics under `CI`
/// if it cannot.
pub fn require_private_network() -> bool {
    let mut missing = missing_common();
    if !Path::new(netns::IP).exists() {
        missing.push(format!("{} not found (package iproute2)", netns::IP));
    }
    availability(missing)
}

/// True if ::1 is usable (IPv6 scenarios); panics under `CI` if it is not.
pub fn require_ipv6() -> bool {
    let missing = if ipv6_loopback_available() {
        Vec::new()
    } else {
        vec!["IPv6 loopback ::1 (the IPv6 scenarios need it)".to_string()]
    };
    availability(missing)
}
