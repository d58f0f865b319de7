//! The daemon as admins run it: the real binary, a temp config, and the
//! MTA side played by `greymilter query`.

mod support;

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::Instant;

use nix::sys::signal::Signal;
use support::{Daemon, PATIENCE, query};

const GREYLISTED: &str = "tempfail: 451 4.7.1 Greylisted, please try again in";

fn passes(q: &support::Query) -> bool {
    q.status == 0
}

#[test]
fn new_tuple_is_greylisted_then_passes_after_the_delay_with_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "[greylist]\ndelay = \"2s\"\n");
    let first = Instant::now();
    let q = d.query("198.51.100.7", "alice@example.org", &["bob@example.net"]);
    assert_eq!(q.status, 4, "{q:?}");
    assert!(
        q.line("RCPT TO:<bob@example.net>").contains(GREYLISTED),
        "{q:?}"
    );

    // Retries before the delay are deferred; the first pass comes only
    // once the delay counted from the first attempt is over.
    let q = d.query_until(
        "198.51.100.7",
        "Alice@Example.ORG",
        &["bob@example.net"],
        passes,
    );
    // Times are whole seconds (the first attempt at 10.9 s is recorded as
    // 10), so the pass may come up to one second before the nominal delay.
    assert!(
        first.elapsed().as_secs_f64() >= 1.0,
        "passed after {:?}",
        first.elapsed()
    );
    assert_eq!(
        q.line("RCPT TO:<bob@example.net>"),
        "RCPT TO:<bob@example.net>: pass (continue)"
    );
    assert!(
        q.line("EOM: add header")
            .contains("X-Greylist: delayed 2 seconds by greymilter-"),
        "{q:?}"
    );

    // Whitelisted now: passes at once, from another address of the same /24,
    // and without a second header.
    let q = d.query("198.51.100.200", "alice@example.org", &["bob@example.net"]);
    assert_eq!(q.status, 0, "{q:?}");
    assert!(!q.stdout.contains("add header"), "{q:?}");
    // Decision lines are batched: wait for them rather than read at once.
    d.wait_for_log(|l| l.contains("action=greylist reason=new"));
    d.wait_for_log(|l| l.contains("action=pass reason=retried"));
}

#[test]
fn early_retry_is_told_the_remaining_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "[greylist]\ndelay = \"1h\"\n");
    let q = d.query("192.0.2.1", "a@x.test", &["b@y.test"]);
    assert!(
        q.line("RCPT TO:").contains("try again in 3600 seconds"),
        "{q:?}"
    );
    let q = d.query("192.0.2.1", "a@x.test", &["b@y.test"]);
    let line = q.line("RCPT TO:");
    let remaining: u64 = line
        .split("again in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((3590..=3600).contains(&remaining), "{line}");
}

#[test]
fn sighup_adding_an_accept_entry_takes_effect_and_keeps_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "[greylist]\ndelay = \"1s\"\n");
    let q = d.query("203.0.113.5", "a@x.test", &["b@y.test"]);
    assert_eq!(q.status, 4, "{q:?}");
    // A tuple whitelisted before the reload: only the table remembers it
    // (its client is on no list), so it passes afterwards only if the
    // table survived.
    let q = d.query("198.51.100.1", "kept@x.test", &["b@y.test"]);
    assert_eq!(q.status, 4, "{q:?}");
    let q = d.query_until("198.51.100.1", "kept@x.test", &["b@y.test"], passes);
    assert_eq!(q.status, 0, "{q:?}");

    let text = fs::read_to_string(&d.config).unwrap();
    fs::write(
        &d.config,
        format!("{text}\n[lists]\nclients = {{ \"203.0.113.0/24\" = \"accept\" }}\n"),
    )
    .unwrap();
    let mark = d.log_len();
    d.signal(Signal::SIGHUP);
    d.wait_for_log_after(mark, |l| l.contains("configuration reloaded"));

    let q = d.query("203.0.113.9", "new@x.test", &["b@y.test"]);
    assert_eq!(q.status, 0, "{q:?}");
    assert!(q.line("CONNECT").contains("accept"), "{q:?}");
    // The table survived the reload: the tuple whitelisted before it
    // passes at once, as whitelisted, not greylisted as new.
    let mark = d.log_len();
    let q = d.query("198.51.100.1", "kept@x.test", &["b@y.test"]);
    assert_eq!(q.status, 0, "table lost on reload: {q:?}");
    let line = d.wait_for_log_after(mark, |l| l.contains("from=<kept@x.test>"));
    assert!(line.contains("action=pass reason=whitelisted"), "{line}");
}

/// The idle timeout a reload sets is the one new connections get: a peer
/// that sends one byte and falls silent is closed after the reloaded 1 s,
/// not the 10 minutes the daemon started with.
#[test]
fn sighup_applies_a_new_idle_timeout_to_new_connections() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(
        dir.path(),
        "[milter]\nlisten = \"inet:0@127.0.0.1\"\nidle_timeout = \"10m\"\n",
    );
    let text = fs::read_to_string(&d.config).unwrap();
    fs::write(
        &d.config,
        text.replace("idle_timeout = \"10m\"", "idle_timeout = \"1s\""),
    )
    .unwrap();
    let mark = d.log_len();
    d.signal(Signal::SIGHUP);
    d.wait_for_log_after(mark, |l| l.contains("configuration reloaded"));

    let mut conn = std::net::TcpStream::connect(d.milter_addr()).unwrap();
    conn.set_read_timeout(Some(PATIENCE)).unwrap();
    conn.write_all(&[0]).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let read = conn.read(&mut buf);
    assert!(
        matches!(read, Ok(0))
            || read
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "{read:?} after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < PATIENCE,
        "not closed by the reloaded idle timeout"
    );
}

#[test]
fn sighup_with_a_broken_config_keeps_the_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(
        dir.path(),
        "[greylist]\ndelay = \"1h\"\n[lists]\nsenders = { \"spam@bad.test\" = \"reject\" }\n",
    );
    let q = d.query("192.0.2.10", "spam@bad.test", &["b@y.test"]);
    assert_eq!(q.status, 5, "{q:?}");

    let text = fs::read_to_string(&d.config).unwrap();
    fs::write(
        &d.config,
        text.replace("delay = \"1h\"", "delay = \"1h\"\nipv4_prefix = 33"),
    )
    .unwrap();
    let mark = d.log_len();
    d.signal(Signal::SIGHUP);
    let line = d.wait_for_log_after(mark, |l| l.contains("reload failed"));
    let position = format!("{}:5:15:", d.config.display());
    assert!(line.contains(&position), "{line}");

    // Still the old configuration: the reject entry applies, greylisting too.
    let q = d.query("192.0.2.10", "spam@bad.test", &["b@y.test"]);
    assert_eq!(q.status, 5, "{q:?}");
    assert!(
        q.line("RCPT TO:")
            .contains("reject: 550 5.7.1 Message refused"),
        "{q:?}"
    );
    let q = d.query("192.0.2.10", "ok@good.test", &["b@y.test"]);
    assert_eq!(q.status, 4, "{q:?}");
}

#[test]
fn sigusr1_writes_a_report_with_every_label() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(
        dir.path(),
        "[stats]\nfile = \"{dir}/stats\"\n[state]\nfile = \"{dir}/state\"\n[daemon]\npidfile = \"{dir}/pid\"\n",
    );
    d.query("192.0.2.1", "a@x.test", &["b@y.test", "c@y.test"]);
    // `greymilter stats` signals the daemon through its pidfile and prints the fresh report.
    let out = Command::new(support::BIN)
        .args(["stats", "--config"])
        .arg(&d.config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report = String::from_utf8(out.stdout).unwrap();
    // Every engine label, in order, then the daemon's checkpoint lines,
    // then the later ones.
    let labels: Vec<&str> = support::watch::REPORT_LABELS
        .iter()
        .chain(&support::watch::CHECKPOINT_LABELS)
        .chain(&support::watch::LATER_LABELS)
        .copied()
        .collect();
    let found: Vec<&str> = report
        .lines()
        .map(|l| l.split("  ").next().unwrap_or("").trim())
        .collect();
    for &label in &labels {
        assert!(found.contains(&label), "missing {label} in:\n{report}");
    }
    // In order: the original daemon's labels first, then ours.
    let order: Vec<usize> = labels
        .iter()
        .map(|l| found.iter().position(|f| f == l).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{report}");
    let value = |label: &str| -> String {
        report
            .lines()
            .find(|l| l.starts_with(&format!("{label} ")))
            .unwrap()[label.len()..]
            .trim()
            .to_string()
    };
    assert_eq!(value("Requests"), "2");
    assert_eq!(value("Tuples"), "2");
    assert_eq!(value("Graylisted"), "2");
    assert_eq!(value("IPs"), "1");
    // And the same report went to the log (maybe a moment after the file).
    d.wait_for_log(|l| l.contains("Graylisted         2"));
}

#[test]
fn sigusr2_then_kill9_then_restart_keeps_the_tuple() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(
        dir.path(),
        "[greylist]\ndelay = \"2s\"\n[state]\nfile = \"{dir}/state\"\ncheckpoint_interval = \"1h\"\n",
    );
    let first = Instant::now();
    let q = d.query("198.51.100.7", "a@x.test", &["b@y.test"]);
    assert_eq!(q.status, 4);
    let mark = d.log_len();
    d.signal(Signal::SIGUSR2);
    d.wait_for_log_after(mark, |l| l.contains("checkpoint written"));
    d.kill9();

    d.spawn();
    let line = d.wait_for_log(|l| l.contains("restored state"));
    assert!(line.contains("pending=1"), "{line}");
    // Wait out the delay counted from the first attempt, before the crash.
    while first.elapsed().as_secs_f64() < 2.2 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let q = d.query("198.51.100.7", "a@x.test", &["b@y.test"]);
    assert_eq!(
        q.status,
        0,
        "the first attempt after the restart must pass: {q:?}\n{}",
        d.log_text()
    );
}

#[test]
fn sigterm_writes_a_final_checkpoint_and_removes_the_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("milter.sock");
    let mut d = Daemon::start_in(
        dir.path(),
        "[milter]\nlisten = \"unix:{dir}/milter.sock\"\nsocket_mode = \"0600\"\n\
         [state]\nfile = \"{dir}/state\"\ncheckpoint_interval = \"1h\"\n[daemon]\npidfile = \"{dir}/pid\"\n",
    );
    let meta = fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let spec = format!("unix:{}", sock.display());
    let q = query(&spec, "192.0.2.1", "a@x.test", &["b@y.test"], &[]);
    assert_eq!(q.status, 4, "{q:?}");
    assert!(
        !dir.path().join("state").exists(),
        "no checkpoint before the interval"
    );

    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit().success());
    assert!(dir.path().join("state").exists(), "final checkpoint");
    assert!(!sock.exists(), "socket removed");
    assert!(!dir.path().join("pid").exists(), "pidfile removed");
    assert!(d.log_text().contains("final checkpoint written"));

    d.spawn();
    let line = d.wait_for_log(|l| l.contains("restored state"));
    assert!(line.contains("pending=1"), "{line}");
}

#[test]
fn a_stale_socket_is_replaced_but_a_regular_file_is_never_touched() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("milter.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists(), "a stale socket left behind");
    let d = Daemon::start_in(
        dir.path(),
        "[milter]\nlisten = \"local:{dir}/milter.sock\"\n",
    );
    let q = query(
        &format!("unix:{}", sock.display()),
        "192.0.2.1",
        "a@x.test",
        &["b@y.test"],
        &[],
    );
    assert_eq!(q.status, 4, "{q:?}\n{}", d.log_text());
    drop(d);

    let other = tempfile::tempdir().unwrap();
    let path = other.path().join("milter.sock");
    fs::write(&path, "precious").unwrap();
    let config = other.path().join("g.toml");
    fs::write(
        &config,
        format!("[milter]\nlisten = \"unix:{}\"\n", path.display()),
    )
    .unwrap();
    let out = Command::new(support::BIN)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "precious");
}

#[test]
fn a_corrupt_state_file_is_moved_aside_and_the_daemon_starts() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("state"),
        b"GREYMLTR this is not a state file",
    )
    .unwrap();
    let d = Daemon::start_in(dir.path(), "[state]\nfile = \"{dir}/state\"\n");
    let line = d.wait_for_log(|l| l.contains("moved the bad state file aside"));
    assert!(line.contains("ERROR"), "{line}");
    let aside: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state.bad-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        fs::read(dir.path().join(&aside[0])).unwrap(),
        b"GREYMLTR this is not a state file"
    );
    let q = d.query("192.0.2.1", "a@x.test", &["b@y.test"]);
    assert_eq!(q.status, 4, "serving with an empty table: {q:?}");
}

#[test]
fn many_checkpoints_leave_no_zombie() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(
        dir.path(),
        "[state]\nfile = \"{dir}/state\"\ncheckpoint_interval = \"1s\"\n[stats]\nfile = \"{dir}/stats\"\n",
    );
    for i in 0..40 {
        // A change, so the checkpoint has something new, then ask for one.
        d.query("192.0.2.1", &format!("s{i}@x.test"), &["b@y.test"]);
        d.signal(Signal::SIGUSR2);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Every child is reaped: poll until the daemon has no child at all.
    let deadline = Instant::now() + PATIENCE;
    while !d.children().is_empty() {
        assert!(
            Instant::now() < deadline,
            "children left: {:?}",
            d.children()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mark = d.log_len();
    d.signal(Signal::SIGUSR1);
    d.wait_for_log_after(mark, |l| l.contains("Checkpoint-Last"));
    let report = fs::read_to_string(dir.path().join("stats")).unwrap();
    let written: u64 = report
        .lines()
        .find(|l| l.starts_with("Checkpoints "))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    assert!(written >= 2, "{report}");
    assert!(report.contains("Checkpoint-Failed  0"), "{report}");
}

#[test]
fn check_config_prints_the_effective_config_or_file_line_column() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    fs::write(&good, "[greylist]\ndelay = 120\n").unwrap();
    let out = Command::new(support::BIN)
        .args(["check-config", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("delay = \"2m\""), "{printed}");
    assert!(
        printed.contains("listen = \"inet:10030@127.0.0.1\""),
        "{printed}"
    );
    greymilter::config::Config::parse(&printed, "printed").unwrap();

    let bad = dir.path().join("bad.toml");
    fs::write(&bad, "[greylist]\ndelay = \"5m\"\nipv6_prefix = 129\n").unwrap();
    let out = Command::new(support::BIN)
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with(&format!(
            "{}:3:15: prefix length must be between 1 and 128",
            bad.display()
        )),
        "{stderr}"
    );
}

/// The README's run command: no configuration at all, so the built-in
/// defaults and their fixed port 10030. Run in a mount and network
/// namespace of its own: an empty /etc/greymilter (whatever the host has
/// installed there) and a loopback no other test or daemon shares.
#[test]
fn runs_on_built_in_defaults_without_a_config_file() {
    if !support::require_root("a private mount and network namespace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = fs::File::create(dir.path().join("log")).unwrap();
    let mut child = Command::new("unshare")
        .args(["--mount", "--net", "sh", "-c"])
        .arg(
            "ip link set lo up || exit 97
             if [ -d /etc/greymilter ]; then mount -t tmpfs tmpfs /etc/greymilter || exit 98; fi
             exec \"$0\"",
        )
        .arg(support::BIN)
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let text = loop {
        let text = fs::read_to_string(dir.path().join("log")).unwrap();
        if text.contains("listening") || Instant::now() > deadline {
            break text;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("exited with {status} before listening:\n{text}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert!(text.contains("built-in defaults"), "{text}");
    assert!(text.contains("listen=inet:127.0.0.1:10030"), "{text}");
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", child.id()))
        .arg(support::BIN)
        .args([
            "query",
            "--socket",
            "inet:10030@127.0.0.1",
            "--client",
            "192.0.2.1",
        ])
        .args(["--from", "a@x.test", "--to", "b@y.test", "--timeout", "10s"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(status.success());
}

#[test]
fn json_log_format_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "[log]\nformat = \"json\"\n");
    d.query("192.0.2.1", "a@x.test", &["b@y.test"]);
    let line = d.wait_for_log(|l| l.contains("action=greylist"));
    let text = d.log_text();
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v.get("level").is_some() && v.get("fields").is_some(), "{l}");
    }
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["level"], "INFO");
    assert!(
        v["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("reason=new"),
        "{line}"
    );
}

#[test]
fn learn_mode_lets_new_tuples_through_then_a_reload_enforces_them() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.txt");
    let d = Daemon::start_in(
        dir.path(),
        "[greylist]\nmode = \"learn\"\n[stats]\nfile = \"{dir}/stats.txt\"\n",
    );
    let q = d.query("198.51.100.7", "alice@example.org", &["bob@example.net"]);
    assert_eq!(q.status, 0, "{q:?}");
    assert_eq!(
        q.line("RCPT TO:<bob@example.net>"),
        "RCPT TO:<bob@example.net>: pass (continue)"
    );
    d.wait_for_log(|l| {
        l.contains("action=would-greylist reason=new")
            && l.contains("from=<alice@example.org> to=<bob@example.net>")
    });
    let report = support::watch::fetch_report(&d, &stats);
    assert_eq!(
        (report.num("Would-Greylist"), report.num("Deferred")),
        (1, 0)
    );
    assert_eq!(report.num("Tuples"), 1);

    // Switched to enforce: the tuple recorded while learning is still
    // early (a real deferral), and a new one is greylisted as well.
    let text = fs::read_to_string(&d.config).unwrap();
    fs::write(&d.config, text.replace("\"learn\"", "\"enforce\"")).unwrap();
    let marker = d.log_len();
    d.signal(Signal::SIGHUP);
    d.wait_for_log_after(marker, |l| l.contains("configuration reloaded"));
    let q = d.query("198.51.100.7", "alice@example.org", &["bob@example.net"]);
    assert_eq!(q.status, 4, "{q:?}");
    d.wait_for_log(|l| l.contains("action=greylist reason=early"));
}

/// Pids of the daemon's prefault helper (`greymilter-pf`), from /proc.
fn prefault_helpers(parent: i32) -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let Some((head, after)) = stat.rsplit_once(')') else {
                return false;
            };
            let ppid = after.split_whitespace().nth(1).and_then(|p| p.parse().ok());
            head.ends_with("(greymilter-pf") && ppid == Some(parent)
        })
        .collect()
}

#[test]
fn the_prefault_helper_runs_beside_the_daemon_and_dies_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(dir.path(), "[state]\nfile = \"{dir}/state\"\n");
    let parent = d.pid().as_raw();
    let helpers = prefault_helpers(parent);
    assert_eq!(
        helpers.len(),
        1,
        "one helper with huge_pages on: {helpers:?}"
    );
    let q = d.query("192.0.2.1", "a@x.test", &["b@y.test"]);
    assert_eq!(q.status, 4, "{q:?}");
    d.kill9();
    let deadline = Instant::now() + PATIENCE;
    while fs::metadata(format!("/proc/{}", helpers[0])).is_ok() {
        let stat = fs::read_to_string(format!("/proc/{}/stat", helpers[0])).unwrap_or_default();
        if stat.contains(") Z") {
            // A zombie of init: gone as far as the daemon is concerned.
            break;
        }
        assert!(Instant::now() < deadline, "the helper outlived the daemon");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn no_prefault_helper_without_huge_pages() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(
        dir.path(),
        "[state]\nfile = \"{dir}/state\"\nhuge_pages = false\n",
    );
    let q = d.query("192.0.2.1", "a@x.test", &["b@y.test"]);
    assert_eq!(q.status, 4, "{q:?}");
    assert!(prefault_helpers(d.pid().as_raw()).is_empty());
}
