//! DNS checks on cluster nodes: two real daemons sharing one real
//! redis-server, with the in-process DNS server of `dns_support`. The
//! shared tuple of an SPF-passing sender follows its domain, so a provider
//! retrying from another /24 at the other MX passes; a sender without SPF
//! from the same networks is still greylisted; an allow-zone client passes
//! without a Redis call; a block-zone client gets the block delay in the
//! shared tuple; a dead resolver never costs the decision its budget.

#[path = "support/cluster/mod.rs"]
mod cluster_support;
#[path = "support/dns/mod.rs"]
mod dns_support;
mod support;

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use cluster_support::{Redis, redis_present};
use dns_support::{PROVIDER_POOL as POOL, Servers};
use support::healthy::REPLY_TIMEOUT;
use support::watch;
use support::{Daemon, Query, query};

const RCPT: [&str; 1] = ["user@our.example"];

fn config(r: &Redis, keys: &Path, dns: SocketAddr, dns_timeout: &str) -> String {
    let key = keys.join("cluster.key");
    fs::write(&key, [7u8; 32]).unwrap();
    format!(
        "[greylist]\ndelay = \"1s\"\nauto_whitelist_after = 0\nspf = \"key\"\n\
         allow_zones = [\"wl.test=127.0.0.2\"]\nblock_zones = [\"bl.test\"]\nblock_delay = \"1h\"\n\
         [dns]\nservers = [\"{dns}\"]\ntimeout = \"{dns_timeout}\"\n\
         [stats]\nfile = \"{{dir}}/stats\"\n\
         [cluster]\nredis = \"{}\"\nsecret_file = \"{}\"\ntimeout = \"1s\"\n",
        r.url(),
        key.display()
    )
}

fn named(d: &Daemon, client: &str, name: &str, from: &str) -> Query {
    query(&d.socket(), client, from, &RCPT, &["--client-name", name])
}

/// The first log line after byte `mark` containing `want`, once written
/// (decision lines are batched: see `src/log_output.rs`).
fn line_after(d: &Daemon, mark: usize, want: &str) -> String {
    d.wait_for_log_after(mark, |l| l.contains(want))
}

fn db_size(r: &Redis) -> u64 {
    redis::cmd("DBSIZE").query(&mut r.conn()).unwrap()
}

/// Script calls Redis has served (EVAL and EVALSHA), from INFO.
fn script_calls(r: &Redis) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut r.conn())
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_eval:") || l.starts_with("cmdstat_evalsha:"))
        .filter_map(|l| l.split([':', ',']).find_map(|f| f.strip_prefix("calls=")))
        .map(|n| n.parse::<u64>().unwrap())
        .sum()
}

#[test]
fn spf_keyed_tuples_and_zones_apply_on_cluster_nodes() {
    if !redis_present() {
        return;
    }
    let dns = Servers::start();
    let r = Redis::start(&[]);
    let keys = tempfile::tempdir().unwrap();
    let conf = config(&r, keys.path(), dns.good, "2s");
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Daemon::start_in(da.path(), &conf);
    let b = Daemon::start_in(db.path(), &conf);
    let provider = "bounce-1@provider.test";
    let spammer = "x@nospf.test";

    // First attempts at A, from the provider's first network.
    let mark = a.log_len();
    let first = named(&a, POOL[0], "out1.provider.test", provider);
    assert_eq!(first.status, 4, "{first:?}");
    let line = line_after(&a, mark, "reason=new");
    assert!(
        line.contains("src=redis") && line.contains("spf=pass"),
        "{line}\n{}",
        a.log_text()
    );
    let first = named(&a, POOL[0], "[x]", spammer);
    assert_eq!(first.status, 4, "{first:?}");

    // The provider's retry reaches B from another /24 once the delay is
    // over: the shared tuple is keyed by provider.test, so it passes.
    let mark = b.log_len();
    b.query_until(POOL[1], provider, &RCPT, |q| q.status == 0);
    let line = line_after(&b, mark, "reason=retried");
    assert!(
        line.contains("src=redis") && line.contains("spf=pass") && line.contains(POOL[1]),
        "{line}"
    );
    // Every other network of the provider passes too, at either node.
    for (i, client) in POOL.iter().enumerate().skip(2) {
        let node = if i % 2 == 0 { &a } else { &b };
        assert_eq!(node.query(client, provider, &RCPT).status, 0, "{client}");
    }
    // The spammer's attempt from the second network is a new tuple: its
    // first was at A from the first network, long enough ago.
    let mark = b.log_len();
    let again = named(&b, POOL[1], "[x]", spammer);
    assert_eq!(again.status, 4, "{again:?}");
    let line = line_after(&b, mark, "reason=new");
    assert!(
        line.contains("spf=none") && line.contains("src=redis"),
        "{line}"
    );

    // An allow-zone client passes at B without a call to Redis.
    let (calls, before) = (script_calls(&r), db_size(&r));
    assert!(calls > 0);
    let mark = b.log_len();
    let listed = named(&b, "192.0.2.10", "x.example", "z@nospf.test");
    assert_eq!(listed.status, 0, "{listed:?}");
    let line = line_after(&b, mark, "reason=dnswl");
    assert!(line.contains("src=local"), "{line}");
    assert_eq!((script_calls(&r), db_size(&r)), (calls, before));

    // A block-zone client: the shared tuple carries the block delay, so its
    // retry at the other node after `delay` is still early.
    let blocked = named(&a, "192.0.2.20", "x.example", "y@nospf.test");
    assert_eq!(blocked.status, 4, "{blocked:?}");
    assert!(db_size(&r) > before);
    let waited = |line: &str| -> u64 {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix("delay="))
            .map_or(0, |n| n.parse().unwrap())
    };
    // The early line of the attempt that ended the loop may still be
    // buffered when the loop reads the log: that only costs another attempt.
    let mark = b.log_len();
    b.query_until("192.0.2.20", "y@nospf.test", &RCPT, |q| {
        q.status == 4
            && b.log_text()
                .get(mark..)
                .unwrap_or_default()
                .lines()
                .any(|l| l.contains("reason=early") && waited(l) >= 1)
    });
    let line = b.wait_for_log_after(mark, |l| l.contains("reason=early") && waited(l) >= 1);
    let remaining: u64 = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("remaining="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(line.contains("src=redis") && remaining > 3000, "{line}");

    // The resolver and Redis client started no thread.
    assert_eq!(watch::proc_status(a.pid().as_raw(), "Threads"), 1);
    assert_eq!(watch::proc_status(b.pid().as_raw(), "Threads"), 1);
}

/// Three recipients at once while the resolver never answers: each is
/// decided as without DNS (shared, greylisted) within the DNS budget.
#[test]
fn a_dead_resolver_on_a_cluster_node_fails_open_within_the_budget() {
    if !redis_present() {
        return;
    }
    let dns = Servers::start();
    let r = Redis::start(&[]);
    let keys = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = Daemon::start_in(dir.path(), &config(&r, keys.path(), dns.silent, "500ms"));
    let socket = a.socket();
    let budget = Duration::from_millis(500);
    let runs: Vec<_> = POOL
        .iter()
        .take(3)
        .enumerate()
        .map(|(i, client)| {
            let socket = socket.clone();
            let from = format!("a{i}@provider.test");
            std::thread::spawn(move || {
                let t = Instant::now();
                let q = query(&socket, client, &from, &RCPT, &[]);
                (q, t.elapsed())
            })
        })
        .collect();
    for run in runs {
        let (q, took) = run.join().unwrap();
        assert_eq!(q.status, 4, "{q:?}");
        assert!(took < budget + REPLY_TIMEOUT / 4, "{took:?}");
    }
    // Each attempt's decision line, once written (they are batched).
    for i in 0..3 {
        let from = format!("from=<a{i}@provider.test>");
        a.wait_for_log(|l| l.contains(&from) && l.contains("reason="));
    }
    let log = a.log_text();
    let decided = log.lines().filter(|l| l.contains("reason=new")).count();
    assert_eq!(decided, 3, "{log}");
    assert!(
        log.lines()
            .filter(|l| l.contains("reason=new"))
            .all(|l| l.contains("src=redis") && !l.contains("spf=pass")),
        "{log}"
    );
    assert!(!log.contains("expired"), "{log}");
}
