//! The control verbs at cluster nodes: two real daemons share one real
//! redis-server; what an administrator does at one node holds at the
//! other, `check` changes nothing in Redis, and a dead Redis gives a clear
//! error within a bounded time while the node goes on deciding.

#[path = "support/cluster/mod.rs"]
mod cluster_support;
mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use cluster_support::{Redis, SCHEDULING_SLACK, redis_present};
use support::{Daemon, cli, cli_ok as ok, watch};

fn tuple<'a>(verb: &'a str, t: &(&'a str, &'a str, &'a str)) -> Vec<&'a str> {
    vec![verb, "--client", t.0, "--from", t.1, "--to", t.2]
}

/// The values of the tuple keys (`gm{NET}tTUPLE`).
fn tuple_values(r: &Redis) -> Vec<String> {
    r.snapshot()
        .into_iter()
        .filter(|(k, _)| k.starts_with("gm{") && k.contains("}t") && !k.contains("admin"))
        .map(|(_, (v, _))| v)
        .collect()
}

fn config(r: &Redis, key: &Path) -> String {
    format!(
        "[greylist]\ndelay = \"1h\"\nauto_whitelist_after = 0\n\
         [state]\nfile = \"{{dir}}/state\"\n\
         [control]\nsocket = \"{{dir}}/control.sock\"\n\
         [cluster]\nredis = \"{}\"\nsecret_file = \"{}\"\ntimeout = \"{}ms\"\n",
        r.url(),
        key.display(),
        CLUSTER_TIMEOUT.as_millis()
    )
}

/// `[cluster] timeout` of both nodes: an edit with Redis hung answers
/// within it (plus the scheduling slack).
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(2);

#[test]
fn control_verbs_act_on_the_shared_state() {
    if !redis_present() {
        return;
    }
    let r = Redis::start(&[]);
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("cluster.key");
    fs::write(&key, [7u8; 32]).unwrap();
    let config = config(&r, &key);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Daemon::start_in(da.path(), &config);
    let b = Daemon::start_in(db.path(), &config);
    let t1 = ("192.0.2.10", "one@example.org", "rcpt@example.net");
    let t2 = ("192.0.2.20", "two@example.org", "rcpt2@example.net");
    let t3 = ("192.0.2.30", "three@example.org", "rcpt3@example.net");

    // A sees T1 first; B's check shows it, from Redis, and changes nothing.
    assert_eq!(a.query(t1.0, t1.1, &[t1.2]).status, 4);
    let before = r.snapshot();
    let out = ok(&b, &tuple("check", &t1));
    for want in [
        "action: greylist",
        "reason: early",
        "source: redis",
        "redis-tuple: pending",
        "recorded: nothing",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    assert_eq!(r.snapshot(), before, "check changed Redis");

    // allow at A: T2, never seen, passes at B, decided by Redis.
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
    // B caches it now...
    assert_eq!(b.query(t2.0, t2.1, &[t2.2]).status, 0);

    // ...but forget at A makes B defer it again, once B has seen the
    // change (it polls once a second), as a new tuple decided by Redis.
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
    b.wait_for_log(|l| l.contains("cache distrusted"));

    // flush --pending at A: T1 (pending, A's) and T2 (pending, seen by
    // B) go; T3, allowed, stays.
    ok(&a, &tuple("allow", &t3));
    let out = ok(&a, &["flush", "--pending"]);
    assert!(out.contains("redis: 2 pending tuple(s) flushed"), "{out}");
    let values = tuple_values(&r);
    assert_eq!(
        values.iter().filter(|v| v.starts_with('-')).count(),
        1,
        "{values:?}"
    );
    assert_eq!(values.iter().filter(|v| *v == "x").count(), 2, "{values:?}");
    // B still remembers T2 as pending; Redis does not take its memory
    // back: the next attempt is new, not early.
    let mark = b.log_len();
    assert_eq!(b.query(t2.0, t2.1, &[t2.2]).status, 4);
    let lines = b.wait_rcpt_lines(mark, t2.2, |l| l.contains("action=greylist"));
    assert!(lines.iter().any(|l| l.contains("reason=new")), "{lines:?}");
    assert_eq!(b.query(t3.0, t3.1, &[t3.2]).status, 0);
    for node in [&a, &b] {
        assert_eq!(watch::proc_status(node.pid().as_raw(), "Threads"), 1);
    }

    // A network allowance made at A lets a new tuple through at B once B
    // has polled; forgetting the network at A forgets its tuples too.
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
    let out = ok(&a, &["forget", "--network", "192.0.2.0/24"]);
    assert!(out.contains("redis: 2 tuple(s)"), "{out}");
    // T1, T2, T3 are tombstones; the tuple B deferred at 198.51.100.9
    // before it saw the allowance stays pending.
    let values = tuple_values(&r);
    assert_eq!(values.iter().filter(|v| *v == "x").count(), 3, "{values:?}");
    assert_eq!(values.len(), 4, "{values:?}");

    // A forced allowance of every IPv4 client is undone by forget, at
    // every node, though the network is far too wide to walk its tuples.
    let out = ok(
        &a,
        &["allow", "--network", "0.0.0.0/0", "--for", "1h", "--force"],
    );
    assert!(out.contains("redis: network 0.0.0.0/0 allowed"), "{out}");
    b.query_until("192.0.2.77", "w@example.org", &["y@example.net"], |q| {
        q.status == 0
    });
    let out = ok(&a, &["forget", "--network", "0.0.0.0/0"]);
    assert!(
        out.contains("allowance removed\nredis: allowance removed"),
        "{out}"
    );
    b.query_until("192.0.2.78", "w@example.org", &["y@example.net"], |q| {
        q.status == 4
    });

    // Redis hangs (SIGSTOP): an edit says what was applied where, within
    // the cluster timeout (2 s), and both nodes keep deciding.
    r.freeze();
    let t4 = ("203.0.113.4", "four@example.org", "rcpt4@example.net");
    let started = Instant::now();
    let (status, out, err) = cli(&a, &tuple("allow", &t4));
    let took = started.elapsed();
    assert_eq!(status, 1, "{out}{err}");
    assert!(
        err.contains("applied on this node only (tuple whitelisted until"),
        "{err}"
    );
    eprintln!("allow with Redis down answered in {took:?}");
    assert!(took < CLUSTER_TIMEOUT + SCHEDULING_SLACK, "{took:?}");
    assert_eq!(a.query(t4.0, t4.1, &[t4.2]).status, 0);
    let out = ok(&b, &tuple("check", &t4));
    assert!(out.contains("source: local (redis unreachable"), "{out}");
    assert!(out.contains("no answer within 2000 ms"), "{out}");
    let log = a.log_text();
    assert!(
        log.contains("redis failed, applied on this node only"),
        "{log}"
    );
    r.thaw();
}
