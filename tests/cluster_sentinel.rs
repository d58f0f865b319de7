//! A Sentinel failover: one primary, one replica, three sentinels on
//! loopback; the primary is killed and the node follows the new one.

mod cluster_support;

use std::time::{Duration, Instant};

use cluster_support::{
    PATIENCE, Redis, Sentinel, options, plain_args, redis_present, run, unix_now,
};
use greymilter::cluster::{Args, Cluster, Outcome};
use greymilter::greylist::key::TupleKey;

#[test]
fn a_node_follows_a_sentinel_failover() {
    if !redis_present() {
        return;
    }
    let mut primary = Redis::start(&[]);
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
    run(async {
        let node = Cluster::connect(&options(url, Duration::from_millis(500)))
            .await
            .unwrap();
        let now = unix_now();
        let args = plain_args(now, 0);
        let key = TupleKey([7, 7]);
        let first = node.decide(&key, args).unwrap().await.map(|r| r.outcome);
        assert_eq!(first, Some(Outcome::New { remaining: 300 }));
        // Replicated before the primary dies.
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(PATIENCE.as_millis() as u64)
            .query(&mut primary.conn())
            .unwrap();
        assert_eq!(acked, 1);
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
