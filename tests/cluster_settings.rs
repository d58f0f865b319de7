//! Settings drift: the first host's timing settings become the cluster's
//! (`gm:settings`); a host with other values warns at start and on every
//! reload naming the keys, counts them (`Redis-Drift-Keys`), keeps
//! deciding; `greymilter cluster adopt-settings` makes a host's values the
//! cluster's. Real daemons, a real redis-server.

#[path = "support/cluster/mod.rs"]
mod cluster_support;
mod support;

use std::fs;
use std::path::Path;

use cluster_support::{Redis, redis_present};
use nix::sys::signal::Signal;
use support::{Daemon, cli, cli_ok, metrics_addr};

fn config(r: &Redis, key: &Path, greylist: &str) -> String {
    format!(
        "[milter]\nlisten = \"inet:0@127.0.0.1\"\n[greylist]\n{greylist}\n\
         [control]\nsocket = \"{{dir}}/control.sock\"\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n\
         [cluster]\nredis = \"{}\"\nsecret_file = \"{}\"\ntimeout = \"2s\"\n",
        r.url(),
        key.display()
    )
}

fn stored(r: &Redis) -> String {
    redis::cmd("GET")
        .arg("gm:settings")
        .query(&mut r.conn())
        .unwrap()
}

/// The gauge on the metrics endpoint.
fn scraped_diff(d: &Daemon) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(metrics_addr(d)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find(|l| l.starts_with("greymilter_cluster_settings_differ "))
        .unwrap_or_else(|| panic!("{text}"))
        .to_string()
}

fn settings_diff(d: &Daemon) -> u64 {
    let report = cli_ok(d, &["stats"]);
    report
        .lines()
        .find_map(|l| l.strip_prefix("Redis-Drift-Keys"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{report}"))
}

#[test]
fn a_host_with_other_settings_warns_and_adopt_settings_moves_the_cluster() {
    if !redis_present() {
        return;
    }
    let r = Redis::start(&[]);
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("cluster.key");
    fs::write(&key, [7u8; 32]).unwrap();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Daemon::start_in(da.path(), &config(&r, &key, "delay = \"5m\""));
    a.wait_for_log(|l| l.contains("cluster settings match"));
    assert!(stored(&r).contains("delay = \"5m\"\n"), "{}", stored(&r));
    assert_eq!(settings_diff(&a), 0);

    // B differs in two keys: named at start, counted, mail still decided
    // (a new tuple deferred through Redis, never refused).
    let b = Daemon::start_in(
        db.path(),
        &config(&r, &key, "delay = \"10m\"\nipv4_prefix = 32"),
    );
    let line = b.wait_for_log(|l| l.contains("cluster settings differ"));
    assert!(
        line.contains("delay (this host \"10m\", cluster \"5m\")")
            && line.contains("ipv4_prefix (this host 32, cluster 24)")
            && !line.contains("retry_window"),
        "{line}"
    );
    assert_eq!(settings_diff(&b), 2);
    assert_eq!(scraped_diff(&b), "greymilter_cluster_settings_differ 2");
    let q = b.query("198.51.100.7", "a@example.org", &["b@example.net"]);
    assert_eq!(q.status, 4, "{q:?}");

    // Every reload warns again while they differ.
    let from = b.log_len();
    b.signal(Signal::SIGHUP);
    let again = b.wait_for_log_after(from, |l| l.contains("cluster settings differ"));
    assert!(again.contains("ipv4_prefix"), "{again}");

    // B's values become the cluster's; A now differs at its next reload.
    let out = cli_ok(&b, &["cluster", "adopt-settings"]);
    assert!(
        out.contains("now the cluster's") && out.contains("delay"),
        "{out}"
    );
    assert!(stored(&r).contains("delay = \"10m\"\n"), "{}", stored(&r));
    assert_eq!(settings_diff(&b), 0);
    let from = a.log_len();
    a.signal(Signal::SIGHUP);
    let line = a.wait_for_log_after(from, |l| l.contains("cluster settings differ"));
    assert!(
        line.contains("delay (this host \"5m\", cluster \"10m\")"),
        "{line}"
    );
    assert_eq!(settings_diff(&a), 2);
    let out = cli_ok(&b, &["cluster", "adopt-settings"]);
    assert!(out.contains("already were"), "{out}");
}

#[test]
fn adopt_settings_without_a_cluster_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let node = Daemon::start_in(d.path(), "[control]\nsocket = \"{dir}/control.sock\"\n");
    let (status, out, err) = cli(&node, &["cluster", "adopt-settings"]);
    assert_ne!(status, 0);
    assert!(
        format!("{out}{err}").contains("no [cluster] section"),
        "{out}{err}"
    );
}
