//! Real greymilter daemons sharing one real redis-server: the retry of a
//! first attempt at one MX passes at another, faults never cost a session,
//! checkpoints still fork.

mod cluster_support;
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use cluster_support::{Redis, redis_present};
use support::healthy::{Healthy, Plan};
use support::{BIN, Daemon, PATIENCE, watch};

fn key_file(dir: &Path, byte: u8) -> PathBuf {
    let path = dir.join(format!("cluster-{byte}.key"));
    fs::write(&path, [byte; 32]).unwrap();
    path
}

fn cluster_config(r: &Redis, key: &Path, timeout: &str, extra: &str) -> String {
    format!(
        "{extra}\n[cluster]\nredis = \"{}\"\nsecret_file = \"{}\"\ntimeout = \"{timeout}\"\n",
        r.url(),
        key.display()
    )
}

fn rcpt_line<'a>(log: &'a str, needle: &str) -> Option<&'a str> {
    log.lines().find(|l| l.contains(needle))
}

#[test]
fn three_daemons_share_one_redis() {
    if !redis_present() {
        return;
    }
    let r = Redis::start(&[]);
    let keys = tempfile::tempdir().unwrap();
    let key = key_file(keys.path(), 1);
    // Atomicity and sharing, not speed: a deadline a loaded CI machine meets.
    let config = cluster_config(
        &r,
        &key,
        "2s",
        // 192.0.2.0/24 is greylisted by a list entry, which skips the
        // auto-whitelist: its tuple shows the tuple states.
        "[greylist]\ndelay = \"2s\"\nauto_whitelist_after = 1\n[lists.clients]\n\"192.0.2.0/24\" = \"greylist\"\n",
    );
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes: Vec<Daemon> = dirs
        .iter()
        .map(|d| Daemon::start_in(d.path(), &config))
        .collect();
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let rcpt = ["b@example.net"];

    let first = a.query("192.0.2.10", "a@example.org", &rcpt);
    assert_eq!(first.status, 4, "{first:?}");
    // The retry lands at B once the delay is over, and passes there.
    let retry = b.query_until("192.0.2.10", "a@example.org", &rcpt, |q| q.status == 0);
    assert_eq!(retry.status, 0);
    let log = b.log_text();
    let line = rcpt_line(&log, "reason=retried").unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("src=redis"), "{line}");
    // Later use at C passes as whitelisted.
    assert_eq!(c.query("192.0.2.10", "a@example.org", &rcpt).status, 0);
    let log = c.log_text();
    let line = rcpt_line(&log, "reason=whitelisted").unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("src=redis"), "{line}");
    // A second use at C is answered from its cache.
    assert_eq!(c.query("192.0.2.10", "a@example.org", &rcpt).status, 0);
    let log = c.wait_for_log(|l| l.contains("reason=whitelisted") && l.contains("src=local"));
    assert!(log.contains("to=<b@example.net>"), "{log}");
    // Another network is greylisted once, wherever it lands...
    assert_eq!(a.query("198.51.100.7", "a@example.org", &rcpt).status, 4);
    let again = c.query("198.51.100.7", "a@example.org", &rcpt);
    assert_eq!(again.status, 4);
    let log = c.log_text();
    assert!(
        rcpt_line(&log, "reason=early").is_some_and(|l| l.contains("src=redis")),
        "{log}"
    );
    // ...and its pass at B auto-whitelists the /24 for every node.
    b.query_until("198.51.100.7", "a@example.org", &rcpt, |q| q.status == 0);
    assert_eq!(
        c.query("198.51.100.99", "new@example.org", &["x@example.net"])
            .status,
        0
    );
    let log = c.log_text();
    let line = rcpt_line(&log, "reason=auto-whitelisted").unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("src=redis"), "{line}");
}

#[test]
fn a_node_with_another_secret_refuses_to_start() {
    if !redis_present() {
        return;
    }
    let r = Redis::start(&[]);
    let keys = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let _a = Daemon::start_in(
        dir.path(),
        &cluster_config(&r, &key_file(keys.path(), 1), "1s", ""),
    );
    let other = tempfile::tempdir().unwrap();
    let conf = other.path().join("greymilter.toml");
    fs::write(
        &conf,
        format!(
            "[milter]\nlisten = \"inet:0@127.0.0.1\"\n{}",
            cluster_config(&r, &key_file(keys.path(), 2), "1s", "")
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&conf)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fingerprint") && stderr.contains("secret_file"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
}

/// Kills, restarts, freezes and thaws Redis under a healthy client; every
/// session is answered right (fallback decisions included), none waits
/// past the client's reply bound, checkpoints keep forking.
#[test]
fn faults_cost_no_session_and_checkpoints_still_fork() {
    if !redis_present() {
        return;
    }
    let mut r = Redis::start(&[]);
    let keys = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = cluster_config(
        &r,
        &key_file(keys.path(), 1),
        "50ms",
        "[greylist]\ndelay = \"2s\"\n[state]\nfile = \"{dir}/state\"\ncheckpoint_interval = \"1s\"\n",
    );
    let a = Daemon::start_in(dir.path(), &config);
    let healthy = Healthy::start(a.milter_addr(), Plan::beside());
    a.wait_for_log(|l| l.contains("src=redis"));

    let mark = a.log_len();
    r.kill();
    a.wait_for_log_after(mark, |l| l.contains("deciding locally"));
    a.wait_for_log_after(mark, |l| l.contains("src=fallback"));
    let mark = a.log_len();
    r.restart();
    a.wait_for_log_after(mark, |l| l.contains("redis answers again"));
    a.wait_for_log_after(mark, |l| l.contains("src=redis"));

    let mark = a.log_len();
    r.freeze();
    a.wait_for_log_after(mark, |l| l.contains("deciding locally"));
    a.wait_for_log_after(mark, |l| l.contains("src=fallback"));
    let mark = a.log_len();
    r.thaw();
    a.wait_for_log_after(mark, |l| l.contains("redis answers again"));
    a.wait_for_log_after(mark, |l| {
        l.contains("reason=retried") && l.contains("src=redis")
    });

    // The checkpoint forks in cluster mode: one thread, and it is written.
    assert_eq!(watch::proc_status(a.pid().as_raw(), "Threads"), 1);
    let mark = a.log_len();
    a.wait_for_log_after(mark, |l| l.contains("checkpoint written"));

    let outcome = healthy.finish();
    outcome.assert_all_served(&a.log_text());

    // The report's Redis lines come after the existing ones.
    a.signal(nix::sys::signal::Signal::SIGUSR1);
    let line = a.wait_for_log(|l| l.contains("Redis-Breaker"));
    assert!(!line.contains("Redis-Breaker      0"), "{line}");
    let text = a.log_text();
    let decision_timeouts = text.rfind("Decision-Timeouts").unwrap();
    let calls = text.rfind("Redis-Calls").unwrap();
    assert!(calls > decision_timeouts);
}

#[test]
fn a_node_restarted_while_redis_is_down_decides_locally_then_shares() {
    if !redis_present() {
        return;
    }
    let mut r = Redis::start(&[]);
    let keys = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = cluster_config(&r, &key_file(keys.path(), 1), "50ms", "");
    let mut a = Daemon::start_in(dir.path(), &config);
    r.kill();
    a.kill9();
    let started = Instant::now();
    a.spawn();
    assert!(started.elapsed() < PATIENCE);
    a.wait_for_log(|l| l.contains("unreachable at start") || l.contains("did not answer"));
    let q = a.query("192.0.2.10", "a@example.org", &["b@example.net"]);
    assert_eq!(q.status, 4, "{q:?}");
    assert!(a.log_text().contains("src=fallback"));
    r.restart();
    a.query_until("192.0.2.11", "a@example.org", &["b@example.net"], |q| {
        q.status == 4 && a.log_text().contains("src=redis")
    });
    // The secret was checked and stored before the first shared decision.
    let fp: Option<String> = redis::cmd("GET")
        .arg(greymilter::cluster::script::FINGERPRINT_KEY)
        .query(&mut r.conn())
        .unwrap();
    assert!(fp.is_some());
}
