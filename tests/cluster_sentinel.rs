//! A Sentinel failover: one primary, one replica, three sentinels on
//! loopback; the primary is killed and the node follows the new one: the
//! cluster client alone, then two real daemons with a healthy MTA beside.

#[path = "support/cluster/mod.rs"]
mod cluster_support;
mod support;

use std::fs;
use std::time::{Duration, Instant};

use cluster_support::{
    FAULT_TIMEOUT, PATIENCE, Redis, SCHEDULING_SLACK, Sentinel, options, plain_args, redis_present,
    run, unix_now,
};
use greymilter::cluster::keys;
use greymilter::cluster::{Args, Cluster, Outcome};
use greymilter::greylist::key::TupleKey;
use support::Daemon;
use support::healthy::{Healthy, Plan};

/// A primary, its replica (synced) and three sentinels that know both;
/// the `redis+sentinel://` URL for them.
fn sentinel_set() -> (Redis, Redis, Vec<Sentinel>, String) {
    let primary = Redis::start(&[]);
    let port = primary.port.to_string();
    let replica = Redis::start(&["--replicaof", "127.0.0.1", &port]);
    // The replica's first full sync must be over, or WAIT below can time
    // out on a loaded machine.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut replica.conn())
            .unwrap();
        if info.contains("master_link_status:up") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never synced: {info}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(primary.port)).collect();
    // Every sentinel must know the replica before the primary dies.
    let deadline = Instant::now() + Duration::from_secs(60);
    for s in &sentinels {
        loop {
            let known = matches!(s.query(&["SENTINEL", "replicas", "gm"]),
                Some(redis::Value::Array(r)) if !r.is_empty());
            if known {
                break;
            }
            assert!(Instant::now() < deadline, "sentinels never saw the replica");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let url = format!(
        "redis+sentinel://{}/gm/0",
        sentinels
            .iter()
            .map(Sentinel::addr)
            .collect::<Vec<_>>()
            .join(",")
    );
    (primary, replica, sentinels, url)
}

/// Every write the primary has taken so far is on the replica before the
/// primary dies. WAIT alone would not say so: it waits for the calling
/// connection's own last write, and a fresh connection has none, so it
/// returns at once (the race behind `New` instead of `Early` after the
/// failover). The marker written here comes after the node's writes in
/// the replication stream, which the replica applies in order: once it
/// acknowledges the marker it has them all.
fn replicated(primary: &Redis) {
    let mut c = primary.conn();
    let () = redis::cmd("SET")
        .arg("test:replicated")
        .arg(unix_now())
        .query(&mut c)
        .unwrap();
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(PATIENCE.as_millis() as u64)
        .query(&mut c)
        .unwrap();
    assert_eq!(acked, 1);
}

#[test]
fn a_node_follows_a_sentinel_failover() {
    if !redis_present() {
        return;
    }
    let (mut primary, replica, _sentinels, url) = sentinel_set();

    run(async {
        let node = Cluster::connect(&options(url, Duration::from_millis(500)))
            .await
            .unwrap();
        let now = unix_now();
        let args = plain_args(now, 0);
        let key = TupleKey([7, 7]);
        let first = node.decide(&key, args).unwrap().await.map(|r| r.outcome);
        assert_eq!(first, Some(Outcome::New { remaining: 300 }));
        replicated(&primary);
        let (tuple, _) = keys(&key);
        let copy: Option<String> = redis::cmd("GET")
            .arg(&tuple)
            .query(&mut replica.conn())
            .unwrap();
        assert_eq!(copy, Some(now.to_string()), "the replica lacks the tuple");
        primary.kill();
        let deadline = Instant::now() + PATIENCE * 3;
        let again = loop {
            let answer = match node.decide(
                &key,
                Args {
                    now: now + 10,
                    ..args
                },
            ) {
                Some(call) => call.await,
                None => None,
            };
            if let Some(r) = answer {
                break r.outcome;
            }
            assert!(
                Instant::now() < deadline,
                "the node never found the new primary"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // The new primary is the old replica, and it had the tuple.
        assert_eq!(
            again,
            Outcome::Early {
                waited: 10,
                remaining: 290
            }
        );
        let role: redis::Value = redis::cmd("ROLE").query(&mut replica.conn()).unwrap();
        assert!(format!("{role:?}").contains("master"), "{role:?}");
    });
}

/// Two daemons on the sentinels' URL. A tuple first tried at A before the
/// primary dies passes its retry at B after the failover, decided in Redis
/// (the promoted replica has it); a healthy MTA at A is served throughout,
/// never held past the deadline.
#[test]
fn daemons_follow_a_failover_and_keep_deciding() {
    if !redis_present() {
        return;
    }
    let (mut primary, _replica, _sentinels, url) = sentinel_set();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("cluster.key");
    fs::write(&key, [1u8; 32]).unwrap();
    let config = format!(
        "[greylist]\ndelay = \"2s\"\n[cluster]\nredis = \"{url}\"\nsecret_file = \"{}\"\n\
         timeout = \"{}ms\"\n",
        key.display(),
        FAULT_TIMEOUT.as_millis()
    );
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Daemon::start_in(dir_a.path(), &config);
    let b = Daemon::start_in(dir_b.path(), &config);
    let healthy = Healthy::start(a.milter_addr(), Plan::beside());
    a.wait_for_log(|l| l.contains("src=redis"));
    let rcpt = ["b@example.net"];
    assert_eq!(a.query("192.0.2.10", "a@example.org", &rcpt).status, 4);
    replicated(&primary);

    primary.kill();
    back_on_redis(&b);
    // B never saw the tuple: it asks the promoted replica, which has it
    // (deferred as early if the failover took less than the 2 s delay).
    let mark = b.log_len();
    b.query_until("192.0.2.10", "a@example.org", &rcpt, |q| q.status == 0);
    // The passing attempt's decision line, once written (lines are batched).
    b.wait_for_log_after(mark, |l| {
        l.contains("action=pass") && l.contains("from=<a@example.org>")
    });
    let log = b.log_text();
    assert!(
        log[mark..]
            .lines()
            .any(|l| l.contains("reason=retried") && l.contains("src=redis")),
        "{log}"
    );

    let outcome = healthy.finish();
    outcome.assert_all_served(&a.log_text());
    outcome.assert_rcpt_answered_within(FAULT_TIMEOUT + SCHEDULING_SLACK);
}

/// Sends `node` tuples of its own (new each time, so none is answered
/// from its local table) until one is decided in Redis again: a failover
/// takes a few seconds, a breaker probe a few more.
fn back_on_redis(node: &Daemon) {
    let deadline = Instant::now() + PATIENCE * 3;
    for n in 1u32.. {
        let mark = node.log_len();
        let client = format!("198.51.{}.{}", 100 + n / 250, 1 + n % 250);
        let from = format!("p{n}@example.org");
        let q = node.query(&client, &from, &["b@example.net"]);
        assert_eq!(q.status, 4, "{q:?}");
        // This attempt's decision line, once written (lines are batched).
        let from = format!("from=<{from}>");
        let line = node.wait_for_log_after(mark, |l| l.contains(&from) && l.contains("reason="));
        if line.contains("src=redis") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the node never decided in Redis after the failover; log:\n{}",
            node.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
