//! Real greymilter daemons sharing one real redis-server: the retry of a
//! first attempt at one MX passes at another, faults never cost a session,
//! checkpoints still fork.

#[path = "support/cluster/mod.rs"]
mod cluster_support;
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster_support::{FAULT_TIMEOUT, Redis, SCHEDULING_SLACK, redis_present};
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

/// How long each fault lasts at least while the healthy client runs: far
/// longer than any bound a reply is held to.
const FAULT_HOLD: Duration = Duration::from_secs(3);

/// The configuration of the fault tests: [`FAULT_TIMEOUT`], the healthy
/// client's 2 s delay, then `extra`.
fn fault_config(r: &Redis, keys: &Path, extra: &str) -> String {
    cluster_config(
        r,
        &key_file(keys, 1),
        &format!("{}ms", FAULT_TIMEOUT.as_millis()),
        &format!("[greylist]\ndelay = \"2s\"\n{extra}"),
    )
}

/// Every healthy session was served, and none waited past the deadline.
fn assert_healthy_served(healthy: Healthy, node: &Daemon) {
    let outcome = healthy.finish();
    outcome.assert_all_served(&node.log_text());
    outcome.assert_rcpt_answered_within(FAULT_TIMEOUT + SCHEDULING_SLACK);
}

/// Keeps a fault in place until `until`.
fn hold_until(until: Instant) {
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
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
    let line = b.wait_for_log(|l| l.contains("reason=retried"));
    assert!(line.contains("src=redis"), "{line}");
    // Later use at C passes as whitelisted.
    assert_eq!(c.query("192.0.2.10", "a@example.org", &rcpt).status, 0);
    let line = c.wait_for_log(|l| l.contains("reason=whitelisted"));
    assert!(line.contains("src=redis"), "{line}");
    // A second use at C is answered from its cache.
    assert_eq!(c.query("192.0.2.10", "a@example.org", &rcpt).status, 0);
    let log = c.wait_for_log(|l| l.contains("reason=whitelisted") && l.contains("src=local"));
    assert!(log.contains("to=<b@example.net>"), "{log}");
    // Another network is greylisted once, wherever it lands...
    assert_eq!(a.query("198.51.100.7", "a@example.org", &rcpt).status, 4);
    let again = c.query("198.51.100.7", "a@example.org", &rcpt);
    assert_eq!(again.status, 4);
    let line = c.wait_for_log(|l| l.contains("reason=early"));
    assert!(line.contains("src=redis"), "{line}");
    // ...and its pass at B auto-whitelists the /24 for every node.
    b.query_until("198.51.100.7", "a@example.org", &rcpt, |q| q.status == 0);
    assert_eq!(
        c.query("198.51.100.99", "new@example.org", &["x@example.net"])
            .status,
        0
    );
    let line = c.wait_for_log(|l| l.contains("reason=auto-whitelisted"));
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
    let config = fault_config(
        &r,
        keys.path(),
        "[state]\nfile = \"{dir}/state\"\ncheckpoint_interval = \"1s\"\n",
    );
    let a = Daemon::start_in(dir.path(), &config);
    let healthy = Healthy::start(a.milter_addr(), Plan::beside());
    a.wait_for_log(|l| l.contains("src=redis"));

    let mark = a.log_len();
    r.kill();
    let down = Instant::now();
    a.wait_for_log_after(mark, |l| l.contains("deciding locally"));
    a.wait_for_log_after(mark, |l| l.contains("src=fallback"));
    hold_until(down + FAULT_HOLD);
    let mark = a.log_len();
    r.restart();
    a.wait_for_log_after(mark, |l| l.contains("redis answers again"));
    a.wait_for_log_after(mark, |l| l.contains("src=redis"));

    let mark = a.log_len();
    r.freeze();
    let frozen = Instant::now();
    a.wait_for_log_after(mark, |l| l.contains("deciding locally"));
    a.wait_for_log_after(mark, |l| l.contains("src=fallback"));
    // A node that waited for the frozen Redis past its deadline would
    // hold a healthy RCPT for the whole freeze.
    hold_until(frozen + FAULT_HOLD);
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

    assert_healthy_served(healthy, &a);

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
    let config = fault_config(&r, keys.path(), "");
    let mut a = Daemon::start_in(dir.path(), &config);
    r.kill();
    a.kill9();
    let started = Instant::now();
    a.spawn();
    // The dead Redis holds the start for its check at most.
    let start_bound = greymilter::cluster::START_CHECK + SCHEDULING_SLACK;
    assert!(started.elapsed() < start_bound, "{:?}", started.elapsed());
    // Redis refuses connections from the node's start on.
    let healthy = Healthy::start(a.milter_addr(), Plan::beside());
    a.wait_for_log(|l| l.contains("unreachable at start") || l.contains("did not answer"));
    // The healthy client's decisions are logged too: each check reads the
    // line of the test's own query, found by its sender.
    let own_line = |sender: &str| a.wait_for_log(|l| l.contains(&format!("from=<{sender}>")));
    let q = a.query("192.0.2.10", "restarted@example.org", &["b@example.net"]);
    assert_eq!(q.status, 4, "{q:?}");
    let line = own_line("restarted@example.org");
    assert!(line.contains("src=fallback"), "{line}");
    r.restart();
    // Once Redis answers again (the breaker lets a call through within
    // PATIENCE), a new tuple is decided there: deferred, by Redis.
    let deadline = Instant::now() + PATIENCE;
    for n in 0.. {
        let sender = format!("after{n}@example.org");
        let q = a.query("192.0.2.11", &sender, &["b@example.net"]);
        assert_eq!(q.status, 4, "{q:?}");
        if own_line(&sender).contains("src=redis") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no decision in Redis:\n{}",
            a.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The secret was checked and stored before the first shared decision.
    let fp: Option<String> = redis::cmd("GET")
        .arg(greymilter::cluster::FINGERPRINT_KEY)
        .query(&mut r.conn())
        .unwrap();
    assert!(fp.is_some());
    assert_healthy_served(healthy, &a);
}

/// A node that joins a cluster already serving sees the tuples the others
/// wrote, and the serving node's sessions go on untouched.
#[test]
fn a_node_joining_a_serving_cluster_shares_its_tuples() {
    if !redis_present() {
        return;
    }
    let r = Redis::start(&[]);
    let keys = tempfile::tempdir().unwrap();
    let config = fault_config(&r, keys.path(), "");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Daemon::start_in(dir_a.path(), &config);
    let healthy = Healthy::start(a.milter_addr(), Plan::beside());
    a.wait_for_log(|l| l.contains("src=redis"));
    let rcpt = ["b@example.net"];
    assert_eq!(a.query("192.0.2.10", "a@example.org", &rcpt).status, 4);

    let b = Daemon::start_in(dir_b.path(), &config);
    let retry = b.query_until("192.0.2.10", "a@example.org", &rcpt, |q| q.status == 0);
    assert_eq!(retry.status, 0);
    let line = b.wait_for_log(|l| l.contains("reason=retried"));
    assert!(line.contains("src=redis"), "{line}");

    assert_healthy_served(healthy, &a);
}

/// Someone else's junk at a greymilter key, then a Redis that refuses
/// writes (maxmemory reached, noeviction): the junk is logged and treated
/// as absent, the full Redis sends the node to its local table, and a
/// healthy MTA beside never waits past the deadline nor sees a 5xx.
#[test]
fn junk_and_a_full_redis_at_a_running_node_cost_no_session() {
    if !redis_present() {
        return;
    }
    let r = Redis::start(&["--maxmemory-policy", "noeviction"]);
    let keys = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = fault_config(&r, keys.path(), "");
    let a = Daemon::start_in(dir.path(), &config);
    let healthy = Healthy::start(a.milter_addr(), Plan::beside());
    a.wait_for_log(|l| l.contains("src=redis"));

    // The keys the node will use for this tuple (key_file's secret).
    let secret = greymilter::cluster::SharedSecret::from_bytes(&[1; 32]).unwrap();
    let net = greymilter::greylist::key::Network::of("192.0.2.10".parse().unwrap(), 24, 64);
    let tuple = secret
        .secret
        .tuple_key(&net, b"a@example.org", b"b@example.net");
    let (tuple_key, net_key) = greymilter::cluster::keys(&tuple);
    let mut c = r.conn();
    let _: () = redis::cmd("LPUSH")
        .arg(&tuple_key)
        .arg("x")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(&net_key)
        .arg("f")
        .arg("v")
        .query(&mut c)
        .unwrap();
    let mark = a.log_len();
    let q = a.query("192.0.2.10", "a@example.org", &["b@example.net"]);
    assert_eq!(
        q.status, 4,
        "junk is read as no tuple: a first attempt; {q:?}"
    );
    a.wait_for_log_after(mark, |l| l.contains("junk at a greymilter key"));
    let line = a.wait_for_log_after(mark, |l| l.contains("reason=new"));
    assert!(line.contains("src=redis"), "{line}");

    // Someone else's data, then a limit below what Redis holds: every
    // write is refused (noeviction), reads still work.
    let blob = "x".repeat(256 * 1024);
    for i in 0..4 {
        let _: () = redis::cmd("SET")
            .arg(format!("other:{i}"))
            .arg(&blob)
            .query(&mut c)
            .unwrap();
    }
    let info: String = redis::cmd("INFO").arg("memory").query(&mut c).unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used / 2)
        .query(&mut c)
        .unwrap();
    let refused: redis::RedisResult<()> = redis::cmd("SET").arg("other:x").arg("y").query(&mut c);
    assert!(refused.is_err(), "Redis still takes writes");
    let mark = a.log_len();
    let full = Instant::now();
    a.wait_for_log_after(mark, |l| l.contains("src=fallback"));
    hold_until(full + FAULT_HOLD);
    let mark = a.log_len();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(0)
        .query(&mut c)
        .unwrap();
    a.wait_for_log_after(mark, |l| l.contains("src=redis"));

    assert_healthy_served(healthy, &a);
}
