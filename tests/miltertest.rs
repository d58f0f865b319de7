//! Interop with an independent MTA-side implementation: Debian's
//! `miltertest` (OpenDKIM) runs the Lua scripts in tests/miltertest/
//! against an in-process server on loopback TCP and a Unix socket.
//! (miltertest's `mt.connect` cannot reach an `inet6:` socket; IPv6 *client
//! addresses* are covered by the scripts, IPv6 listeners by
//! milter_listener.rs.)
//!
//! tests/miltertest/first_attempt.lua, which docs/troubleshooting.md shows
//! verbatim, runs against the real daemon: with its lean negotiation (no
//! CONNECT, no MAIL) and with DNS checks on (both events sent).
//!
//! When `miltertest` is missing the tests fail if `CI` is set (CI installs
//! it with apt-get) and are skipped with a message otherwise.

#[path = "support/milter/mod.rs"]
mod milter_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::Duration;

use greymilter::milter::decision::SessionSummary;
use greymilter::milter::listener::{ListenSpec, Listener, UnixSocketOptions};
use greymilter::milter::server::{Limits, ServeSummary, serve};
use milter_support::GreyFactory;
use tokio::sync::oneshot;

fn miltertest_present() -> bool {
    let found = Command::new("miltertest").arg("-V").output().is_ok();
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!(
                "miltertest is not installed; CI must install it (apt-get install -y miltertest)"
            );
        }
        eprintln!("miltertest not found: skipping (install the Debian package miltertest)");
    }
    found
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/miltertest")
}

/// A greymilter server on its own thread, with its own current_thread
/// runtime and LocalSet, like the daemon.
struct Server {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<(ServeSummary, Vec<SessionSummary>)>,
    /// What miltertest connects to (`inet:PORT@HOST`, `unix:/path`).
    sock: String,
}

fn start(spec: &str) -> Server {
    let spec: ListenSpec = spec.parse().unwrap();
    let listener = Listener::bind(&spec, &UnixSocketOptions::default()).unwrap();
    let sock = match (&spec, listener.tcp_port()) {
        (ListenSpec::Tcp(addr), Some(port)) => format!("inet:{port}@{}", addr.ip()),
        (other, _) => other.to_string(),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        let factory = Rc::new(GreyFactory::new());
        let shutdown = async move {
            let _ = stopped.await;
        };
        let summary = local.block_on(
            &runtime,
            serve(
                &listener,
                Rc::clone(&factory),
                Limits::default(),
                shutdown,
                Duration::from_secs(5),
            ),
        );
        listener.remove_socket_file().unwrap();
        let sessions = factory.seen.borrow().summaries.clone();
        (summary, sessions)
    });
    Server { stop, thread, sock }
}

/// Runs one script against a fresh server; asserts a clean exit and that
/// no session ended in a protocol error.
fn run(script: &str, listen: &str) {
    let server = start(listen);
    let dir = scripts();
    let output = Command::new("miltertest")
        .arg("-D")
        .arg(format!("sock={}", server.sock))
        .arg("-D")
        .arg(format!("dir={}", dir.display()))
        .arg("-s")
        .arg(dir.join(script))
        .output()
        .expect("run miltertest");
    let _ = server.stop.send(());
    let (summary, sessions) = server.thread.join().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} on {listen}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(
        summary.accepted > 0,
        "{script}: no connection reached the server"
    );
    assert_eq!(
        sessions.len() as u64,
        summary.accepted,
        "{script}: {summary:?}"
    );
    assert!(
        sessions.iter().all(|s| !s.protocol_error && !s.timed_out),
        "{script}: {sessions:?}"
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn greylist_cycle_over_tcp() {
    if miltertest_present() {
        run("greylist_cycle.lua", "inet:127.0.0.1:0");
    }
}

#[test]
fn greylist_cycle_over_a_unix_socket() {
    if miltertest_present() {
        let dir = tempfile::tempdir().unwrap();
        run(
            "greylist_cycle.lua",
            &format!("unix:{}/g.sock", dir.path().display()),
        );
    }
}

#[test]
fn negotiation() {
    if miltertest_present() {
        run("negotiation.lua", "inet:127.0.0.1:0");
    }
}

#[test]
fn postfix_sequences() {
    if miltertest_present() {
        run("postfix_sequences.lua", "inet:127.0.0.1:0");
    }
}

/// The script of docs/troubleshooting.md against the real binary, in both
/// negotiations greymilter makes; each run must defer the new tuple.
#[test]
fn the_documented_script_defers_a_first_attempt_at_the_daemon() {
    if !miltertest_present() {
        return;
    }
    // A nameserver that never answers: the SPF lookup times out and the
    // recipient is decided without it.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dns = format!(
        "[greylist]\nspf = \"key\"\n[dns]\nservers = [\"{}\"]\ntimeout = \"1s\"\n",
        silent.local_addr().unwrap()
    );
    for (config, lean) in [("", true), (dns.as_str(), false)] {
        let dir = tempfile::tempdir().unwrap();
        let d = support::Daemon::start_in(dir.path(), config);
        let output = Command::new("miltertest")
            .arg("-D")
            .arg(format!("sock=inet:{}@127.0.0.1", d.port))
            .arg("-s")
            .arg(scripts().join("first_attempt.lua"))
            .output()
            .expect("run miltertest");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{output:?}");
        assert!(
            stdout.contains("RCPT TO:<bob@example.net>: deferred (4xx), a new tuple"),
            "{stdout}"
        );
        assert_eq!(stdout.contains("CONNECT skipped"), lean, "{stdout}");
        assert_eq!(stdout.contains("MAIL skipped"), lean, "{stdout}");
        d.wait_for_log(|l| {
            l.contains("action=greylist reason=new")
                && l.contains("from=<alice@example.org> to=<bob@example.net>")
        });
    }
}

/// docs/troubleshooting.md shows the script as it is in tests/miltertest/.
#[test]
fn the_troubleshooting_page_shows_the_tested_script_verbatim() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = std::fs::read_to_string(scripts().join("first_attempt.lua")).unwrap();
    let page = std::fs::read_to_string(root.join("docs/troubleshooting.md")).unwrap();
    assert!(
        page.contains(&format!("```lua\n{script}```\n")),
        "docs/troubleshooting.md must show tests/miltertest/first_attempt.lua verbatim in a lua block"
    );
}
