//! A sharded Redis Cluster (`redis+cluster://`): three real primaries
//! started by the test on loopback. Decisions and every control verb work
//! on it, key walks visit every primary, MOVED and ASK are followed while
//! a slot migrates, and a dead node or a cluster that is down makes the
//! node decide locally within its timeout.

#[path = "support/cluster/mod.rs"]
mod cluster_support;
mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use cluster_support::shard::RedisCluster;
use cluster_support::tls::Ca;
use cluster_support::{
    FAULT_TIMEOUT, Redis, SCHEDULING_SLACK, options, plain_args, redis_present, run, unix_now,
};
use greymilter::cluster::REFRESH_EVERY;
use greymilter::cluster::keys;
use greymilter::cluster::{Cluster, ImportOp, Outcome};
use greymilter::cluster::{TlsFiles, TlsSetup};
use greymilter::greylist::Times;
use greymilter::greylist::key::TupleKey;
use support::{Daemon, cli_ok as ok, watch};

fn tuple<'a>(verb: &'a str, t: &(&'a str, &'a str, &'a str)) -> Vec<&'a str> {
    vec![verb, "--client", t.0, "--from", t.1, "--to", t.2]
}

/// The values of the tuple keys one node holds.
fn tuple_values(r: &Redis) -> Vec<String> {
    r.snapshot()
        .into_iter()
        .filter(|(k, _)| k.starts_with("gm{") && k.contains("}t") && !k.contains("admin"))
        .map(|(_, (v, _))| v)
        .collect()
}

fn all_tuple_values(c: &RedisCluster) -> Vec<Vec<String>> {
    c.nodes.iter().map(tuple_values).collect()
}

fn config(url: &str, key: &Path) -> String {
    format!(
        "[greylist]\ndelay = \"1h\"\nauto_whitelist_after = 0\n\
         [state]\nfile = \"{{dir}}/state\"\n\
         [control]\nsocket = \"{{dir}}/control.sock\"\n\
         [cluster]\nredis = \"{url}\"\nsecret_file = \"{}\"\ntimeout = \"2s\"\n",
        key.display(),
    )
}

/// Clients in 30 different networks: their tuples spread over every
/// primary (the slot follows the network's hash tag).
fn spread() -> Vec<String> {
    (0..30).map(|n| format!("10.0.{n}.1")).collect()
}

#[test]
fn decisions_and_control_verbs_on_a_sharded_cluster() {
    if !redis_present() {
        return;
    }
    let c = RedisCluster::start();
    let tuplesdir = tempfile::tempdir().unwrap();
    let key = tuplesdir.path().join("cluster.key");
    fs::write(&key, [7u8; 32]).unwrap();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A knows one node, B two: each finds the others from CLUSTER SLOTS.
    let a = Daemon::start_in(da.path(), &config(&c.url(1), &key));
    let b = Daemon::start_in(db.path(), &config(&c.url(2), &key));
    a.wait_for_log(|l| l.contains("shared secret matches"));

    // A defers 30 tuples; every primary holds some of them.
    let clients = spread();
    for ip in &clients {
        assert_eq!(a.query(ip, "s@example.org", &["r@example.net"]).status, 4);
    }
    let held = all_tuple_values(&c);
    assert!(held.iter().all(|v| !v.is_empty()), "{held:?}");
    assert_eq!(held.iter().map(Vec::len).sum::<usize>(), 30, "{held:?}");

    // B's check reads A's tuple from whichever primary holds it and
    // changes nothing.
    let t1 = (clients[0].as_str(), "s@example.org", "r@example.net");
    let before: Vec<_> = c.nodes.iter().map(Redis::snapshot).collect();
    let out = ok(&b, &tuple("check", &t1));
    for want in [
        "reason: early",
        "source: redis",
        "redis-tuple: pending",
        "recorded: nothing",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    let after: Vec<_> = c.nodes.iter().map(Redis::snapshot).collect();
    assert_eq!(after, before, "check changed Redis");

    // allow at A passes at B from Redis; forget at A defers it again at B
    // once B has polled the epoch (another slot than the tuple's).
    let t2 = ("192.0.2.20", "two@example.org", "rcpt2@example.net");
    let out = ok(&a, &tuple("allow", &t2));
    assert!(out.contains("redis: tuple whitelisted until"), "{out}");
    let mark = b.log_len();
    assert_eq!(b.query(t2.0, t2.1, &[t2.2]).status, 0);
    let lines = b.wait_rcpt_lines(mark, t2.2, |l| l.contains("action=pass"));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("reason=whitelisted") && l.contains("src=redis")),
        "{lines:?}"
    );
    let out = ok(&a, &tuple("forget", &t2));
    assert!(out.contains("redis: tuple forgotten"), "{out}");
    let mark = b.log_len();
    b.query_until(t2.0, t2.1, &[t2.2], |q| q.status == 4);
    // The deferral query_until stopped at is the first greylist line.
    let lines = b.wait_rcpt_lines(mark, t2.2, |l| l.contains("action=greylist"));
    let last = lines.last().unwrap();
    assert!(
        last.contains("reason=new") && last.contains("src=redis"),
        "{lines:?}"
    );

    // flush --pending walks every primary: 31 pending tuples, all
    // tombstones now, wherever they live.
    let out = ok(&a, &["flush", "--pending"]);
    assert!(out.contains("redis: 31 pending tuple(s) flushed"), "{out}");
    let held = all_tuple_values(&c);
    assert!(
        held.iter().flatten().all(|v| v == "x") && held.iter().map(Vec::len).sum::<usize>() == 31,
        "{held:?}"
    );

    // forget --network walks every primary too.
    for ip in &clients {
        assert_eq!(b.query(ip, "s@example.org", &["r@example.net"]).status, 4);
    }
    let out = ok(&a, &["forget", "--network", "10.0.0.0/16"]);
    assert!(out.contains("redis: 30 tuple(s)"), "{out}");

    // A network allowance (its epoch and set share a slot) reaches B.
    let out = ok(
        &a,
        &["allow", "--network", "198.51.100.0/24", "--for", "1h"],
    );
    assert!(
        out.contains("redis: network 198.51.100.0/24 allowed"),
        "{out}"
    );
    b.query_until("198.51.100.9", "x@example.org", &["y@example.net"], |q| {
        q.status == 0
    });
    let out = ok(&a, &["forget", "--network", "198.51.100.0/24"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("redis: ") && l.ends_with("allowance removed")),
        "{out}"
    );

    // The statistics count shared decisions and no failure.
    let report = ok(&b, &["stats"]);
    let value = |name: &str| -> u64 {
        report
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name}: {report}"))
    };
    assert!(value("Redis-Calls") > 30, "{report}");
    assert_eq!(value("Redis-Errors"), 0, "{report}");
    assert_eq!(value("Redis-Fallbacks"), 0, "{report}");
    for node in [&a, &b] {
        assert_eq!(watch::proc_status(node.pid().as_raw(), "Threads"), 1);
    }
}

/// A test on a cluster of three and a node connected to it (one seed,
/// a 2 s timeout; connecting loads the slot map).
fn with_cluster(test: impl AsyncFnOnce(&RedisCluster, &Cluster)) {
    if !redis_present() {
        return;
    }
    let c = RedisCluster::start();
    let o = options(c.url(1), Duration::from_secs(2));
    run(async {
        let node = Cluster::connect(&o).await.unwrap();
        test(&c, &node).await;
    });
}

#[test]
fn moved_and_ask_are_followed_while_a_slot_migrates() {
    with_cluster(async |c, node| {
        let ask = async |k: TupleKey| {
            let call = node.decide(&k, plain_args(unix_now(), 0)).unwrap();
            call.await.map(|r| r.outcome)
        };
        let first = TupleKey([0x5eed, 1]);
        let second = TupleKey([0x5eed, 2]);
        assert!(matches!(ask(first).await, Some(Outcome::New { .. })));
        let (t1, n) = keys(&first);
        let (t2, _) = keys(&second);
        let slot = c.slot(&t1);
        assert_eq!(slot, c.slot(&n));
        let (from, to) = c.begin_move(slot);

        // Half moved: a command on one key absent at the old owner gets
        // ASK and is followed; the decision script, on two keys, gets
        // TRYAGAIN at the new owner (Redis' rule while a slot moves) and
        // is decided locally at once.
        let started = Instant::now();
        assert_eq!(ask(second).await, None);
        assert!(started.elapsed() < Duration::from_secs(2));
        let now = u64::from(unix_now());
        node.allow_tuple(&second, now, now + 3600).await.unwrap();
        assert!(c.holds(to, &t2), "the ASK was not followed");
        assert!(!c.holds(from, &t2));

        // Moved: the rest migrates, every node learns the new owner; the
        // old owner answers MOVED and the node follows it.
        let () = redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(c.nodes[to].port)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&t1)
            .query(&mut c.nodes[from].conn())
            .unwrap();
        c.end_move(slot, to);
        assert!(matches!(ask(first).await, Some(Outcome::Early { .. })));
        assert_eq!(ask(second).await, Some(Outcome::Whitelisted));
        assert_eq!(node.counters().errors, 1, "only the TRYAGAIN");
    });
}

/// `greymilter import`'s batches go one pipeline per primary; an entry
/// whose slot is half moved is answered ASK and sent to the importing
/// node, one whose slot moved since the map was loaded is answered MOVED
/// and follows it.
#[test]
fn an_import_follows_moved_and_ask() {
    with_cluster(async |c, node| {
        let tuples: Vec<TupleKey> = (0..30).map(|i| TupleKey([0x7000 + i, 1])).collect();
        let slot = |k: &TupleKey| c.slot(&keys(k).0);
        let asked = tuples[0];
        let moved = *tuples.iter().find(|k| slot(k) != slot(&asked)).unwrap();
        let (ask_from, ask_to) = c.begin_move(slot(&asked));
        let (moved_from, moved_to) = c.begin_move(slot(&moved));
        c.end_move(slot(&moved), moved_to);

        let now = unix_now();
        let times = Times {
            first_seen: now - 600,
            last: now - 60,
        };
        let ops: Vec<ImportOp> = tuples.iter().map(|k| ImportOp::White(*k, times)).collect();
        let done = node.import(&ops, 3600, 86_400).await.unwrap();
        assert_eq!(done.new_white, 30, "{done:?}");
        let holds = |i: usize, k: &TupleKey| c.holds(i, &keys(k).0);
        assert!(holds(ask_to, &asked), "the ASK was not followed");
        assert!(!holds(ask_from, &asked));
        assert!(holds(moved_to, &moved), "the MOVED was not followed");
        assert!(!holds(moved_from, &moved));
        // The half moved slot ends its move (its key is there already).
        c.end_move(slot(&asked), ask_to);
        let held = all_tuple_values(c);
        assert_eq!(held.iter().map(Vec::len).sum::<usize>(), 30, "{held:?}");
        // Whitelisted since the first sighting (a negative time).
        let first = format!("-{}", times.first_seen);
        assert!(held.iter().flatten().all(|v| *v == first), "{held:?}");
    });
}

/// One decision per key, each ended within the timeout (plus the slack);
/// returns how many were decided locally.
async fn bounded_round(node: &Cluster, keys: &[TupleKey]) -> u32 {
    let mut local = 0;
    for k in keys {
        let started = Instant::now();
        let answer = match node.decide(k, plain_args(unix_now(), 0)) {
            Some(call) => call.await,
            None => None,
        };
        let took = started.elapsed();
        assert!(took < FAULT_TIMEOUT + SCHEDULING_SLACK, "{took:?}");
        local += u32::from(answer.is_none());
    }
    local
}

/// Each key's outcome once Redis decides it again (polled, up to 20 s).
async fn until_shared(node: &Cluster, keys: &[TupleKey]) -> Vec<Outcome> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut outcomes = Vec::new();
    for k in keys {
        loop {
            let answer = match node.decide(k, plain_args(unix_now(), 0)) {
                Some(call) => call.await,
                None => None,
            };
            if let Some(r) = answer {
                outcomes.push(r.outcome);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster never answered again"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    outcomes
}

#[test]
fn a_dead_node_and_a_cluster_down_fail_open_within_the_timeout() {
    if !redis_present() {
        return;
    }
    let mut c = RedisCluster::start();
    let o = options(c.url(3), FAULT_TIMEOUT);
    run(async {
        let node = Cluster::connect(&o).await.unwrap();
        let keys: Vec<TupleKey> = (0..30).map(|i| TupleKey([0x1000 + i, 1])).collect();
        for k in &keys {
            let call = node.decide(k, plain_args(unix_now(), 0)).unwrap();
            assert!(call.await.is_some());
        }
        // A node dies: every call ends within the timeout, shared or not;
        // those for its slots are decided locally.
        c.nodes[2].kill();
        let local = bounded_round(&node, &keys).await;
        assert!(local > 0, "no call reached the dead node");

        // The others declare the cluster down: a host started now (its
        // breaker closed) meets CLUSTERDOWN, bounded like any failure.
        let alive: Vec<&Redis> = c.nodes[..2].iter().collect();
        c.wait_state_on(&alive, "fail");
        let late = Cluster::connect(&o).await.unwrap();
        assert_eq!(
            bounded_round(&late, &keys).await,
            30,
            "an answer from a cluster down"
        );
        // Calls were made (not all cut short by the breaker) and failed.
        let n = late.counters();
        assert!(n.errors + n.timeouts >= 1, "{n:?}");

        // The node comes back with its slots (nodes.conf kept), without
        // its keys (no persistence here): shared decisions resume, and the
        // tuples the other primaries hold are still there.
        let on_dead: Vec<bool> = keys
            .iter()
            .map(|k| c.owner(c.slot(&greymilter::cluster::keys(k).0)) == 2)
            .collect();
        c.nodes[2].restart();
        c.wait_state("ok");
        for (outcome, lost) in until_shared(&node, &keys).await.into_iter().zip(on_dead) {
            match outcome {
                Outcome::New { .. } => assert!(lost, "{outcome:?}"),
                Outcome::Early { .. } => assert!(!lost, "{outcome:?}"),
                _ => panic!("{outcome:?}"),
            }
        }
    });
}

/// With `cluster-require-full-coverage no` the other primaries serve on
/// while one is dead: only its slots are decided locally, and reloading
/// the slot map (due after the dead node's I/O errors) does not wait on
/// it, though it is the first node known and the first seed.
#[test]
fn a_dead_primary_costs_only_its_own_slots() {
    if !redis_present() {
        return;
    }
    let mut c = RedisCluster::start_partial();
    // A generous timeout: a live slot decided locally must mean routing,
    // not a loaded machine.
    let o = options(c.url(3), SCHEDULING_SLACK);
    run(async {
        let node = Cluster::connect(&o).await.unwrap();
        let keys: Vec<TupleKey> = (0..30).map(|i| TupleKey([0x5000 + i, 1])).collect();
        let owner = |k: &TupleKey| c.owner(c.slot(&greymilter::cluster::keys(k).0));
        let dead = keys.iter().find(|k| owner(k) == 0).copied().unwrap();
        let live: Vec<TupleKey> = keys.iter().filter(|k| owner(k) != 0).copied().collect();
        let first = c.nodes[0].port;
        assert!(c.url(3).contains(&format!("//127.0.0.1:{first},")));
        for k in &keys {
            assert!(
                node.decide(k, plain_args(unix_now(), 0))
                    .unwrap()
                    .await
                    .is_some()
            );
        }
        c.nodes[0].kill();
        // Longer than the map's reload interval: at least one reload falls
        // among the live calls. One dead call to two live ones: the breaker
        // never sees three failures in a row.
        let until = Instant::now() + REFRESH_EVERY * 2;
        let mut rounds = 0;
        while Instant::now() < until || rounds < 3 {
            if let Some(call) = node.decide(&dead, plain_args(unix_now(), 0)) {
                assert_eq!(call.await, None, "an answer from a dead node");
            }
            for k in live.iter().cycle().skip(rounds * 2).take(2) {
                let r = node.decide(k, plain_args(unix_now(), 0)).unwrap().await;
                assert!(
                    matches!(r.map(|r| r.outcome), Some(Outcome::Early { .. })),
                    "a live primary's slot decided locally: {r:?}"
                );
            }
            rounds += 1;
        }
    });
}

/// A node that hangs (SIGSTOP) holds no call past the timeout; once it
/// thaws, shared decisions resume.
#[test]
fn a_frozen_node_holds_no_call_past_the_timeout() {
    if !redis_present() {
        return;
    }
    let c = RedisCluster::start();
    let o = options(c.url(3), FAULT_TIMEOUT);
    run(async {
        let node = Cluster::connect(&o).await.unwrap();
        let keys: Vec<TupleKey> = (0..30).map(|i| TupleKey([0x4000 + i, 1])).collect();
        for k in &keys {
            let call = node.decide(k, plain_args(unix_now(), 0)).unwrap();
            assert!(call.await.is_some());
        }
        c.nodes[1].freeze();
        let local = bounded_round(&node, &keys).await;
        assert!(local > 0, "no call met the frozen node");
        c.nodes[1].thaw();
        for outcome in until_shared(&node, &keys).await {
            assert!(matches!(outcome, Outcome::Early { .. }), "{outcome:?}");
        }
    });
}

/// TLS to every node (`rediss+cluster://`, the bus over TLS too): the
/// slot map names the nodes' TLS ports, decisions are shared across the
/// primaries; a node with another CA never gets a tuple and decides
/// locally.
#[test]
fn a_tls_cluster_shares_decisions_and_refuses_a_wrong_ca() {
    if !redis_present() {
        return;
    }
    let ca = Ca::new("gm test CA");
    let c = RedisCluster::start_tls(&ca, &ca.issue(&["127.0.0.1"], false));
    let setup = |ca: &Ca, name: &str| {
        let dir = c.files.as_ref().unwrap().path();
        let files = TlsFiles {
            ca_file: Some(ca.write(dir, name)),
            ..TlsFiles::default()
        };
        TlsSetup::load(&files).unwrap_or_else(|(k, e)| panic!("{k}: {e}"))
    };
    let mut good = options(c.tls_url(), Duration::from_secs(2));
    good.tls = Some(setup(&ca, "trusted"));
    let mut bad = options(c.tls_url(), Duration::from_secs(2));
    bad.tls = Some(setup(&Ca::new("another CA"), "other"));
    run(async {
        let a = Cluster::connect(&good).await.unwrap();
        let b = Cluster::connect(&good).await.unwrap();
        let keys: Vec<TupleKey> = (0..30).map(|i| TupleKey([0x2000 + i, 1])).collect();
        let now = unix_now();
        for k in &keys {
            let r = a.decide(k, plain_args(now, 0)).unwrap().await.unwrap();
            assert!(matches!(r.outcome, Outcome::New { .. }), "{r:?}");
        }
        for k in &keys {
            let r = b.decide(k, plain_args(now + 1, 0)).unwrap().await.unwrap();
            assert!(matches!(r.outcome, Outcome::Early { .. }), "{r:?}");
        }
        let stranger = Cluster::connect(&bad).await.unwrap();
        let fresh = TupleKey([0x3000, 1]);
        let answer = match stranger.decide(&fresh, plain_args(now, 0)) {
            Some(call) => call.await,
            None => None,
        };
        assert_eq!(answer, None);
    });
    let held = all_tuple_values(&c);
    assert!(held.iter().all(|v| !v.is_empty()), "{held:?}");
    assert_eq!(held.iter().map(Vec::len).sum::<usize>(), 30, "{held:?}");
}

/// `check-config` on a `[cluster]` section with `redis = URL`.
fn check_config(url: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    fs::write(&key, [7u8; 32]).unwrap();
    let conf = dir.path().join("greymilter.conf");
    fs::write(
        &conf,
        format!(
            "[cluster]\nredis = \"{url}\"\nsecret_file = \"{}\"\n",
            key.display()
        ),
    )
    .unwrap();
    let mut out = std::process::Command::new(env!("CARGO_BIN_EXE_greymilter"))
        .arg("check-config")
        .arg("--config")
        .arg(&conf)
        .output()
        .unwrap();
    // The file's name, so that callers can check the location.
    out.stdout = conf.display().to_string().into_bytes();
    out
}

#[test]
fn check_config_locates_a_bad_cluster_url() {
    let out = check_config("redis+cluster://127.0.0.1:7000,redis-b:7001/0");
    let (conf, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("{conf}:2:9"))
            && err.contains("node \"redis-b:7001\" must be IP:PORT"),
        "{err}"
    );
    let out = check_config("redis+cluster://127.0.0.1:7000/1");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("database 0 only"),
        "{out:?}"
    );
    let out = check_config("rediss+cluster://127.0.0.1:7000,127.0.0.1:7001/0");
    assert!(out.status.success(), "{out:?}");
}
