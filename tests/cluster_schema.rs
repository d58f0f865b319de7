//! `gm:schema`: a fresh Redis gets this release's version; a Redis left by
//! a release before `gm:schema` (version 1's keys, no version) is adopted
//! with its tuples; a newer or unreadable version is refused: the host
//! decides locally, says so in the log and in `Redis-Schema-Bad`, and
//! writes nothing. Redis seeded by the test.

#[path = "support/cluster/mod.rs"]
mod cluster_support;
mod support;

use std::time::Duration;

use cluster_support::{Redis, options, plain_args, redis_present, run, unix_now};
use greymilter::cluster::{Cluster, Outcome};
use greymilter::cluster::{SCHEMA_KEY, SCHEMA_VERSION as VERSION};
use greymilter::greylist::key::TupleKey;
use support::{Daemon, cli_ok};

fn get(r: &Redis, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(&mut r.conn()).unwrap()
}

fn set(r: &Redis, key: &str, value: &str) {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query(&mut r.conn())
        .unwrap();
}

fn keys(r: &Redis) -> Vec<String> {
    let mut k: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut r.conn()).unwrap();
    k.sort();
    k
}

/// One decision by a fresh node: `None` = decided locally.
fn decide(r: &Redis, key: u64) -> (Option<Outcome>, u64) {
    run(async {
        let node = Cluster::connect(&options(r.url(), Duration::from_secs(2)))
            .await
            .unwrap();
        let outcome = match node.decide(&TupleKey([key, 1]), plain_args(unix_now(), 1)) {
            Some(call) => call.await.map(|r| r.outcome),
            None => None,
        };
        (outcome, node.counters().schema_refused)
    })
}

#[test]
fn a_fresh_or_pre_schema_redis_is_used_and_gets_the_version() {
    if !redis_present() {
        return;
    }
    let r = Redis::start(&[]);
    let (first, refused) = decide(&r, 1);
    assert!(matches!(first, Some(Outcome::New { .. })), "{first:?}");
    assert_eq!(refused, 0);
    assert_eq!(get(&r, SCHEMA_KEY), Some(VERSION.to_string()));
    // As a release before gm:schema leaves it: version 1's keys, no version.
    let _: () = redis::cmd("DEL")
        .arg(SCHEMA_KEY)
        .query(&mut r.conn())
        .unwrap();
    let (retry, refused) = decide(&r, 1);
    assert!(matches!(retry, Some(Outcome::Early { .. })), "{retry:?}");
    assert_eq!(refused, 0);
    assert_eq!(get(&r, SCHEMA_KEY), Some(VERSION.to_string()));
}

#[test]
fn a_newer_or_unreadable_schema_is_refused_and_nothing_is_written() {
    if !redis_present() {
        return;
    }
    for seeded in [(VERSION + 1).to_string(), "not a version".to_string()] {
        let r = Redis::start(&[]);
        set(&r, SCHEMA_KEY, &seeded);
        let before = keys(&r);
        let (outcome, refused) = decide(&r, 1);
        assert_eq!(outcome, None, "{seeded}");
        assert_eq!(refused, 1, "{seeded}");
        let after: Vec<String> = keys(&r)
            .into_iter()
            .filter(|k| k != "gm:fingerprint")
            .collect();
        assert_eq!(after, before, "{seeded}: a key was written");
        assert_eq!(get(&r, SCHEMA_KEY), Some(seeded));
    }
}

/// The daemon: a loud error at start, mail deferred locally (never 5xx),
/// Redis-Schema-Bad 1 in its report.
#[test]
fn a_daemon_facing_a_newer_schema_says_so_and_decides_locally() {
    if !redis_present() {
        return;
    }
    let r = Redis::start(&[]);
    set(&r, SCHEMA_KEY, "2");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    std::fs::write(&key, [3u8; 32]).unwrap();
    let d = Daemon::start_in(
        dir.path(),
        &format!(
            "[control]\nsocket = \"{{dir}}/control.sock\"\n\
             [cluster]\nredis = \"{}\"\nsecret_file = \"{}\"\ntimeout = \"1s\"\n",
            r.url(),
            key.display()
        ),
    );
    let line = d.wait_for_log(|l| l.contains("refused: redis holds schema version 2"));
    assert!(
        line.contains("ERROR") && line.contains("upgrade this host"),
        "{line}"
    );
    let q = d.query("198.51.100.7", "a@example.org", &["b@example.net"]);
    assert_eq!(q.status, 4, "{q:?}");
    let report = cli_ok(&d, &["stats"]);
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("Redis-Schema-Bad") && l.ends_with(" 1")),
        "{report}"
    );
    assert!(
        keys(&r).iter().all(|k| !k.starts_with("gm{")),
        "{:?}",
        keys(&r)
    );
}
