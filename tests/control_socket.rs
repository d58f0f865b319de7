//! The control socket against the real binary: `check` records nothing,
//! live edits act at once, are logged and survive a restart; bad clients
//! get an error line and the daemon stays up on one thread.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;
use support::{BIN, Daemon, cli_ok as ok, watch};

const CONFIG: &str = "[greylist]\ndelay = \"1h\"\n\
[state]\nfile = \"{dir}/state\"\n\
[stats]\nfile = \"{dir}/stats.txt\"\n\
[control]\nsocket = \"{dir}/control.sock\"\n";

/// One raw exchange on the control socket.
fn raw(d: &Daemon, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(d.dir.join("control.sock")).unwrap();
    s.set_read_timeout(Some(support::PATIENCE)).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

const TUPLE: [&str; 6] = [
    "--client",
    "198.51.100.7",
    "--from",
    "alice@example.org",
    "--to",
    "bob@example.net",
];

#[test]
fn check_records_nothing_and_live_edits_act_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(dir.path(), CONFIG);
    d.wait_for_log(|l| l.contains("control socket ready"));
    let mode = std::fs::metadata(dir.path().join("control.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let mut args = vec!["check"];
    args.extend(TUPLE);
    let out = ok(&d, &args);
    assert!(out.contains("action: greylist\nreason: new\n"), "{out}");
    assert!(
        out.contains("tuple: none\n") && out.contains("remaining: 3600\n"),
        "{out}"
    );
    let stats = ok(&d, &["stats"]);
    assert!(stats.contains("\nRequests           0\n"), "{stats}");
    assert!(stats.contains("\nTuples             0\n"), "{stats}");

    let q = d.query("198.51.100.7", "alice@example.org", &["bob@example.net"]);
    assert_eq!(q.status, 4, "{q:?}");
    let out = ok(&d, &args);
    assert!(
        out.contains("reason: early\n") && out.contains("tuple: pending"),
        "{out}"
    );

    // Allow the tuple: it passes now.
    let mut allow = vec!["allow"];
    allow.extend(TUPLE);
    assert!(ok(&d, &allow).starts_with("tuple whitelisted until "));
    d.wait_for_log(|l| l.contains("control: allow client=198.51.100.7"));
    let q = d.query("198.51.100.7", "alice@example.org", &["bob@example.net"]);
    assert_eq!(q.status, 0, "{q:?}");

    // A sender domain and a network, for an hour.
    ok(
        &d,
        &["allow", "--sender-domain", "partner.example", "--for", "1h"],
    );
    let q = d.query("192.0.2.9", "news@partner.example", &["bob@example.net"]);
    assert_eq!(q.status, 0, "{q:?}");
    ok(&d, &["allow", "--network", "203.0.113.0/24", "--for", "1h"]);
    let q = d.query("203.0.113.77", "x@elsewhere.example", &["bob@example.net"]);
    assert_eq!(q.status, 0, "{q:?}");
    d.wait_for_log(|l| l.contains("action=accept reason=allow:network"));

    // Flush the pending ones; the whitelisted tuple stays.
    d.query("192.0.2.50", "y@elsewhere.example", &["bob@example.net"]);
    let out = ok(&d, &["flush", "--pending"]);
    assert_eq!(out, "1 pending tuple(s) flushed\n");
    assert_eq!(ok(&d, &["reload"]), "configuration reloaded\n");

    // Restart: the allowed tuple (table) and allowances (their file) remain.
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit().success());
    d.spawn();
    let q = d.query("198.51.100.7", "alice@example.org", &["bob@example.net"]);
    assert_eq!(q.status, 0, "{q:?}");
    let q = d.query("192.0.2.10", "other@partner.example", &["bob@example.net"]);
    assert_eq!(q.status, 0, "{q:?}");
    let q = d.query("203.0.113.78", "z@elsewhere.example", &["bob@example.net"]);
    assert_eq!(q.status, 0, "{q:?}");

    // Forget the network: its allowance goes, its clients are greylisted.
    let out = ok(&d, &["forget", "--network", "203.0.113.0/24"]);
    assert!(out.ends_with("allowance removed\n"), "{out}");
    let q = d.query("203.0.113.78", "z@elsewhere.example", &["bob@example.net"]);
    assert_eq!(q.status, 4, "{q:?}");
    let mut forget = vec!["forget"];
    forget.extend(TUPLE);
    assert_eq!(ok(&d, &forget), "tuple forgotten\n");
    let q = d.query("198.51.100.7", "alice@example.org", &["bob@example.net"]);
    assert_eq!(q.status, 4, "{q:?}");

    let report = watch::fetch_report(&d, &dir.path().join("stats.txt"));
    report.assert_identity();
    assert_eq!(report.num("Forgotten"), 1);
}

#[test]
fn bad_requests_get_an_error_line_and_the_daemon_stays_on_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), CONFIG);
    d.wait_for_log(|l| l.contains("control socket ready"));
    for (bytes, want) in [
        (
            b"frobnicate\n".to_vec(),
            "error: unknown command \"frobnicate\"\n",
        ),
        (Vec::new(), "error: empty line\n"),
        (vec![b'x'; 5000], "error: line longer than 1024 bytes\n"),
        (b"check client=1.2.3.4\n".to_vec(), "error: from= missing\n"),
        (b"stats \xff\n".to_vec(), "error: the line is not UTF-8\n"),
        (
            b"forget network=0.0.0.0/0\n".to_vec(),
            "error: 0.0.0.0/0 covers 16777216 /24 client networks; at most 65536 at once\n",
        ),
    ] {
        assert_eq!(raw(&d, &bytes), want);
    }
    // One command per connection: the second line is not read.
    let answer = raw(&d, b"stats\nreload\n");
    assert!(answer.starts_with("ok\nStart"), "{answer}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    assert!(status.lines().any(|l| l == "Threads:\t1"), "{status}");
    // Still serving the milter.
    assert_eq!(
        d.query("192.0.2.1", "a@example.org", &["b@example.net"])
            .status,
        4
    );
}

#[test]
fn other_users_are_refused() {
    if !nix::unistd::Uid::effective().is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        eprintln!("skipped: switching users needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // World-connectable, so only the peer-credential check stands between.
    let d = Daemon::start_in(dir.path(), &format!("{CONFIG}mode = \"0666\"\n"));
    d.wait_for_log(|l| l.contains("control socket ready"));
    std::fs::set_permissions(&d.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = Command::new(BIN);
    std::os::unix::process::CommandExt::uid(&mut cmd, 65534);
    std::os::unix::process::CommandExt::gid(&mut cmd, 65534);
    let out = cmd
        .args(["--config"])
        .arg(&d.config)
        .arg("stats")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "greymilter: permission denied\n"
    );
    d.wait_for_log(|l| l.contains("control: client refused") && l.contains("uid=65534"));
}
