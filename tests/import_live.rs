//! `greymilter import` into live state: a running daemon through its
//! control socket (in batches), a real redis-server with a `[cluster]`
//! configuration and a sharded Redis Cluster of three, then a daemon on
//! that Redis. The dumps are written in milter-greylist's and postgrey's
//! (`db_dump -p`) formats by the test (the readers meet the real tools in
//! import_real.rs); after the import, the retry of each imported tuple
//! passes on its first attempt at greymilter, whose own delay (1 h) could
//! not have let it through.

#[path = "support/cluster/mod.rs"]
mod cluster_support;
mod support;

use cluster_support::shard::RedisCluster;
use cluster_support::{Redis, redis_present};
use std::path::Path;
use support::{Daemon, cli_with};

/// Whitelisted tuples in the dump: more than one batch of 1000.
const WHITE: usize = 1500;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn tuple(i: usize) -> (String, String, String) {
    (
        format!("10.{}.{}.7", i / 250, i % 250),
        format!("sender{i}@example.org"),
        "bob@example.net".to_string(),
    )
}

const PENDING: (&str, &str, &str) = ("192.0.2.50", "frank@example.org", "gina@example.net");

/// A milter-greylist dump: [`WHITE`] whitelisted tuples (for a day more)
/// and [`PENDING`], whose retry milter-greylist would accept in 50 min.
fn write_dump(path: &Path) {
    let now = now();
    let mut text = String::from(
        "#\n# milter-greylist databases, dumped by milter-greylist-4.6.2 on 2026-12-06 18:20:00.\n#\n",
    );
    for i in 0..WHITE {
        let (c, s, r) = tuple(i);
        text.push_str(&format!("{c}\t<{s}>\t<{r}>\t{} AUTO\n", now + 86_400));
    }
    let (c, s, r) = PENDING;
    text.push_str(&format!("{c}\t<{s}>\t<{r}>\t{}\n", now + 3000));
    std::fs::write(path, text).unwrap();
}

fn import(config: &Path, args: &[&str]) -> (i32, String) {
    let mut all = vec!["import"];
    all.extend_from_slice(args);
    cli_with(config, &all)
}

fn passes(d: &Daemon, (client, from, to): (&str, &str, &str)) -> bool {
    let q = d.query(client, from, &[to]);
    assert!(q.status == 0 || q.status == 4, "{q:?}");
    q.status == 0
}

fn check_imported(d: &Daemon) {
    for i in [0, 999, 1000, WHITE - 1] {
        let (c, s, r) = tuple(i);
        assert!(
            passes(d, (&c, &s, &r)),
            "{c} {s} {r} was greylisted after the import:\n{}",
            d.log_text()
        );
    }
    // Recorded but not passed at the source: still waiting here.
    assert!(!passes(d, PENDING));
    // A tuple the source never saw is greylisted.
    assert!(!passes(
        d,
        ("10.0.0.7", "new@example.org", "bob@example.net")
    ));
}

#[test]
fn import_into_a_running_daemon_through_the_control_socket() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let dump = root.join("greylist.db");
    write_dump(&dump);
    let d = Daemon::start_in(
        root,
        "[greylist]\ndelay = \"1h\"\n[state]\nfile = \"{dir}/state\"\n[daemon]\npidfile = \"{dir}/greymilter.pid\"\n[control]\nsocket = \"{dir}/control.sock\"\n",
    );
    d.wait_for_log(|l| l.contains("control socket ready"));
    let dump = dump.display().to_string();
    let (code, out) = import(&d.config, &["--dry-run", "milter-greylist", &dump]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("dry run: nothing written"), "{out}");
    let (code, out) = import(&d.config, &["milter-greylist", &dump]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "control socket {}/control.sock): {WHITE} whitelisted and 1 pending tuples and 0 networks added, 0 already there",
            root.display()
        )),
        "{out}"
    );
    // Two batches, each one edit in the log.
    d.wait_for_log(|l| l.contains("control: import entries=1000: imported white=1000"));
    d.wait_for_log(|l| l.contains("control: import entries=501: imported white=500 pending=1"));
    check_imported(&d);
    // Again: everything is already there, nothing counted twice.
    let (code, out) = import(&d.config, &["milter-greylist", &dump]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("0 whitelisted and 0 pending tuples and 0 networks added, 1501 already there"),
        "{out}"
    );
    // A broken batch is refused whole, with the line it broke at.
    let mut s = std::os::unix::net::UnixStream::connect(root.join("control.sock")).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"import entries=2\nw 192.0.2.1/32 1 2 <a@b> <c@d>\nw nonsense\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("error: entry 2: import:"), "{answer}");
}

#[test]
fn import_into_redis_with_a_cluster_configuration() {
    if !redis_present() {
        return;
    }
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let key = root.join("cluster.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let dump = root.join("greylist.db");
    write_dump(&dump);
    let config_text = format!(
        "[milter]\nlisten = \"inet:0@127.0.0.1\"\n[greylist]\ndelay = \"1h\"\n[cluster]\nredis = \"{}\"\nsecret_file = \"{}\"\ntimeout = \"2s\"\n",
        redis.url(),
        key.display()
    );
    let config = root.join("greymilter.toml");
    std::fs::write(&config, &config_text).unwrap();
    let dump = dump.display().to_string();
    let (code, out) = import(&config, &["milter-greylist", &dump]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            ": {WHITE} whitelisted and 1 pending tuples and 0 networks added, 0 already there"
        )),
        "{out}"
    );
    assert_eq!(
        redis.snapshot().keys().filter(|k| k.contains("}t")).count(),
        WHITE + 1
    );
    let d = Daemon::start_in(root, &config_text);
    check_imported(&d);
    // Again, with a node running: merged, nothing new.
    let (code, out) = import(&config, &["milter-greylist", &dump]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("0 whitelisted and 0 pending tuples and 0 networks added"),
        "{out}"
    );
    // Another secret would key every tuple apart: Redis refuses it.
    std::fs::write(&key, [8u8; 32]).unwrap();
    let (code, out) = import(&config, &["milter-greylist", &dump]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("fingerprint"), "{out}");
}

/// postgrey's networks in the sharded test (their tuples spread over the
/// primaries by the network's hash tag), each with [`RECIPIENTS`] tuples.
const NETWORKS: usize = 40;
const RECIPIENTS: usize = 8;
/// postgrey's client records: networks 198.18.0-2.0/24.
const CLIENTS: usize = 3;
const POSTGREY_PENDING: (&str, &str, &str) = ("198.19.0.5", "late@example.org", "bob@example.net");

fn postgrey_recipients() -> Vec<String> {
    (0..RECIPIENTS)
        .map(|r| format!("rcpt{r}@example.net"))
        .collect()
}

/// `db_dump -p` of one database.
fn db_dump(records: &[(String, String)]) -> String {
    let mut text =
        String::from("VERSION=3\nformat=print\ntype=hash\ndb_pagesize=4096\nHEADER=END\n");
    for (k, v) in records {
        text.push_str(&format!(" {k}\n {v}\n"));
    }
    text.push_str("DATA=END\n");
    text
}

/// postgrey's tuple database (passed a day ago, used an hour ago) and
/// its clients database.
fn write_postgrey(tuples: &Path, clients: &Path) {
    let now = now();
    let mut records = Vec::new();
    for n in 0..NETWORKS {
        for r in postgrey_recipients() {
            records.push((
                format!("198.18.{n}.0/alice@example.org/{r}"),
                format!("{},{}", now - 86_400, now - 3600),
            ));
        }
    }
    let (c, s, r) = POSTGREY_PENDING;
    records.push((
        format!("{}.0/{s}/{r}", c.rsplit_once('.').unwrap().0),
        format!("{},{}", now - 60, now - 60),
    ));
    std::fs::write(tuples, db_dump(&records)).unwrap();
    let clients_records: Vec<(String, String)> = (0..CLIENTS)
        .map(|n| (format!("198.18.{n}.9"), format!("5,{}", now - 3600)))
        .collect();
    std::fs::write(clients, db_dump(&clients_records)).unwrap();
}

/// Calls of a command a node served (`INFO commandstats`), e.g.
/// `evalsha` or `script|load`.
fn calls(r: &Redis, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut r.conn())
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[test]
fn import_into_a_sharded_redis_cluster() {
    if !redis_present() {
        return;
    }
    let c = RedisCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let key = root.join("cluster.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let (tuples, clients, greylist) = (
        root.join("tuples.dump"),
        root.join("clients.dump"),
        root.join("greylist.db"),
    );
    write_postgrey(&tuples, &clients);
    write_dump(&greylist);
    let [tuples, clients, greylist] =
        [&tuples, &clients, &greylist].map(|p| p.display().to_string());
    let postgrey = ["postgrey", "--clients", &clients, &tuples];
    let milter_greylist = ["milter-greylist", &greylist];
    // One seed: the import finds the other primaries from CLUSTER SLOTS.
    let config_text = format!(
        "[milter]\nlisten = \"inet:0@127.0.0.1\"\n[greylist]\ndelay = \"1h\"\nauto_whitelist_after = 2\n[cluster]\nredis = \"{}\"\nsecret_file = \"{}\"\ntimeout = \"2s\"\n",
        c.url(1),
        key.display()
    );
    let config = root.join("greymilter.toml");
    std::fs::write(&config, &config_text).unwrap();

    // A dry run reads the secret file and never asks the cluster.
    let asked = |c: &RedisCluster| -> Vec<u64> {
        c.nodes.iter().map(|n| calls(n, "cluster|slots")).collect()
    };
    let before = asked(&c);
    let mut dry = vec!["--dry-run"];
    dry.extend(postgrey);
    let (code, out) = import(&config, &dry);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("dry run: nothing written"), "{out}");
    assert_eq!(asked(&c), before, "a dry run asked the cluster");
    assert!(c.nodes.iter().all(|n| n.snapshot().is_empty()));

    let (code, out) = import(&config, &postgrey);
    assert_eq!(code, 0, "{out}");
    let white = NETWORKS * RECIPIENTS;
    assert!(
        out.contains(&format!(
            ": {white} whitelisted and 1 pending tuples and {CLIENTS} networks added, 0 already there"
        )),
        "{out}"
    );
    // One pipeline per primary and batch (the script loaded with it),
    // one script call per entry: no round trip per entry.
    let loads: Vec<u64> = c.nodes.iter().map(|n| calls(n, "script|load")).collect();
    let evalsha: u64 = c.nodes.iter().map(|n| calls(n, "evalsha")).sum();
    let (code, out) = import(&config, &milter_greylist);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            ": {WHITE} whitelisted and 1 pending tuples and 0 networks added, 0 already there"
        )),
        "{out}"
    );
    // 4 batches: at most one pipeline to each primary in each.
    let batches = (WHITE + 1).div_ceil(500) as u64;
    let pipelines: u64 = c
        .nodes
        .iter()
        .zip(loads)
        .map(|(n, before)| calls(n, "script|load") - before)
        .sum();
    assert!(
        (batches..=3 * batches).contains(&pipelines),
        "{pipelines} pipelines"
    );
    assert!(c.nodes.iter().all(|n| calls(n, "eval") == 0));
    let evalsha_now: u64 = c.nodes.iter().map(|n| calls(n, "evalsha")).sum();
    assert_eq!(evalsha_now - evalsha, WHITE as u64 + 1);
    // Every primary holds its share of the tuples.
    let held: Vec<usize> = c
        .nodes
        .iter()
        .map(|n| n.snapshot().keys().filter(|k| k.contains("}t")).count())
        .collect();
    assert!(held.iter().all(|&n| n > 0), "{held:?}");
    assert_eq!(
        held.iter().sum::<usize>(),
        white + 1 + WHITE + 1,
        "{held:?}"
    );

    // A node on the cluster passes every imported retry at once.
    let d = Daemon::start_in(root, &config_text);
    let recipients = postgrey_recipients();
    let recipients: Vec<&str> = recipients.iter().map(String::as_str).collect();
    for n in 0..NETWORKS {
        let q = d.query(&format!("198.18.{n}.20"), "alice@example.org", &recipients);
        assert_eq!(q.status, 0, "198.18.{n}.0/24: {q:?}\n{}", d.log_text());
    }
    assert!(!passes(&d, POSTGREY_PENDING));
    // postgrey's client records: a new tuple of their networks passes.
    assert!(passes(
        &d,
        ("198.18.1.77", "new@example.org", "bob@example.net")
    ));
    check_imported(&d);

    // Again: everything is already there.
    for (args, known) in [
        (&postgrey[..], white + 1 + CLIENTS),
        (&milter_greylist[..], WHITE + 1),
    ] {
        let (code, out) = import(&config, args);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains(&format!(
                "0 whitelisted and 0 pending tuples and 0 networks added, {known} already there"
            )),
            "{out}"
        );
    }

    // Another secret would key every tuple apart: refused, nothing written.
    std::fs::write(&key, [8u8; 32]).unwrap();
    let before: Vec<_> = c.nodes.iter().map(Redis::snapshot).collect();
    let (code, out) = import(&config, &milter_greylist);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("of another hashing secret")
            && out.contains("every node must use the same cluster secret_file"),
        "{out}"
    );
    let after: Vec<_> = c.nodes.iter().map(Redis::snapshot).collect();
    assert_eq!(after.len(), before.len());
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    }
}
