//! `greymilter import` into live state: a running daemon through its
//! control socket (in batches), and a real redis-server with a
//! `[cluster]` configuration, then a daemon on that Redis. The dump is
//! written in milter-greylist's format by the test (the readers meet the
//! real tools in import_real.rs); after the import, the retry of each
//! imported tuple passes on its first attempt at greymilter, whose own
//! delay (1 h) could not have let it through.

#[path = "support/cluster/mod.rs"]
mod cluster_support;
mod support;

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
