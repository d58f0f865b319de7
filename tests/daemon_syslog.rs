//! `[log] target = "syslog"`: the real binary logging to a syslog socket
//! the test owns (and, as root, to the `/dev/log` catcher of the Sendmail
//! tests), with facility mail.

mod support;
#[path = "support/e2e/syslog.rs"]
mod syslog_catcher;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use support::{BIN, PATIENCE, query};

/// Starts the daemon on a Unix milter socket in `dir` with `log` as the
/// `[log]` section; stderr goes to `dir/stderr`.
fn start(dir: &Path, log: &str) -> (Child, String) {
    let socket = format!("unix:{}/milter.sock", dir.display());
    let config = dir.join("greymilter.toml");
    std::fs::write(
        &config,
        format!("[milter]\nlisten = \"{socket}\"\n[log]\n{log}\n"),
    )
    .unwrap();
    let child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    (child, socket)
}

fn stop(mut child: Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
}

/// Datagrams until one contains `want`.
fn until(sock: &UnixDatagram, want: &str) -> String {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no syslog line with {want:?} within {PATIENCE:?}: {e}"));
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        if line.contains(want) {
            return line;
        }
    }
}

#[test]
fn decision_lines_go_to_syslog_with_facility_mail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    let (child, socket) = start(
        dir.path(),
        &format!(
            "target = \"syslog\"\nsyslog_socket = \"{}\"",
            path.display()
        ),
    );
    let tag = format!("<22>greymilter[{}]: ", child.id());
    let listening = until(&sock, "listening");
    assert!(listening.starts_with(&tag), "{listening}");

    let q = query(
        &socket,
        "198.51.100.7",
        "alice@example.org",
        &["bob@example.net"],
        &[],
    );
    assert_eq!(q.status, 4, "{q:?}");
    let line = until(&sock, "action=greylist reason=new");
    assert!(line.starts_with(&tag), "{line}");
    assert!(!line.ends_with('\n') && !line.contains("INFO"), "{line}");
    stop(child);
    until(&sock, "greymilter stopped");
    // Nothing went to stderr: syslog was there all along.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("stderr")).unwrap(),
        ""
    );
}

#[test]
fn without_a_syslog_socket_lines_go_to_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let (child, _) = start(
        dir.path(),
        &format!(
            "target = \"syslog\"\nfacility = \"local3\"\nsyslog_socket = \"{}/nowhere\"",
            dir.path().display()
        ),
    );
    let deadline = Instant::now() + PATIENCE;
    while !std::fs::read_to_string(dir.path().join("stderr"))
        .unwrap()
        .contains("listening")
    {
        assert!(Instant::now() < deadline, "no listening line on stderr");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    stop(child);
}

/// The default socket, `/dev/log`, with the catcher the Sendmail tests use
/// (binding `/dev/log` needs root).
#[test]
fn default_socket_is_dev_log() {
    if !nix::unistd::Uid::effective().is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root; binding /dev/log failed"
        );
        eprintln!("skipped: binding /dev/log needs root");
        return;
    }
    let lease = syslog_catcher::SyslogLease::acquire();
    let dir = tempfile::tempdir().unwrap();
    let (child, _) = start(dir.path(), "target = \"syslog\"");
    let pid = child.id();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let lines = lease.lines_tagged("greymilter");
        if let Some(l) = lines.iter().find(|l| l.contains("listening")) {
            assert!(l.starts_with(&format!("<22>greymilter[{pid}]: ")), "{l}");
            break;
        }
        assert!(Instant::now() < deadline, "no line at /dev/log: {lines:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    stop(child);
}
