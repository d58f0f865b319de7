//! `greymilter spf-walk` (the binary) against the authoritative test DNS
//! server on loopback: include chains, redirect, a, mx, ip6, the RFC 7208
//! limits, loops, and output that the list-file parser reads back.

#[path = "support/dns/mod.rs"]
mod dns_support;

use std::net::SocketAddr;
use std::process::Output;
use std::sync::mpsc;

use greymilter::lists::Kind;
use greymilter::lists::parse::{Item, parse_line};

/// The test server on its own thread (the binary is another process, so
/// the server must keep answering while the test waits for it).
fn server() -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        dns_support::runtime().block_on(async {
            let server = dns_support::authoritative().await;
            tx.send(server.addr).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

fn walk(domains: &[&str]) -> Output {
    walk_with(server(), "2s", domains)
}

/// The non-comment lines of stdout, each checked to be a network that the
/// list-file parser reads.
fn networks(out: &Output) -> Vec<String> {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let mut nets = Vec::new();
    for line in text.lines() {
        match parse_line(Kind::Clients, line).unwrap() {
            None => assert!(line.starts_with('#'), "{line:?}"),
            Some(l) => {
                assert!(matches!(l.item, Item::Net(_)), "{line:?}");
                assert_eq!(l.action, None);
                nets.push(line.to_string());
            }
        }
    }
    nets
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const TOP: &[&str] = &[
    "100.64.10.0/24",     // l1: a:host.walk.test/24
    "100.64.20.0/24",     // l2: ip4
    "100.64.30.1/32",     // l2: mx
    "192.0.2.0/24",       // top: ip4:192.0.2.1/24, truncated
    "198.51.100.10/32",   // top: a
    "203.0.113.0/24",     // top: mx/24
    "2001:db8:1::/48",    // l1: ip6
    "2001:db8:25::1/128", // top: mx, AAAA of the MX host
];

#[test]
fn an_include_chain_with_a_and_mx_is_expanded() {
    let out = walk(&["top.walk.test"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(networks(&out), TOP);
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        text.starts_with("# greymilter spf-walk top.walk.test\n"),
        "{text}"
    );
    // `-ip4:` authorises nothing.
    assert!(stderr(&out).contains("without pass qualifier"));
}

#[test]
fn redirect_is_followed_unless_the_record_has_all() {
    let out = walk(&["redir.walk.test"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        networks(&out),
        ["100.64.20.0/24", "100.64.30.1/32", "192.0.2.200/32"]
    );
    let out = walk(&["allredir.walk.test"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(networks(&out), ["192.0.2.50/32"]);
}

#[test]
fn several_domains_are_merged_sorted_and_deduplicated() {
    let out = walk(&["twice.walk.test", "redir.walk.test", "v6.test"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        networks(&out),
        [
            "100.64.20.0/24",
            "100.64.30.1/32",
            "192.0.2.200/32",
            "2001:db8:1::/48"
        ]
    );
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(text.starts_with("# greymilter spf-walk twice.walk.test redir.walk.test v6.test\n"));
    // The same command twice gives the same bytes: nothing dated.
    assert_eq!(
        out.stdout,
        walk(&["twice.walk.test", "redir.walk.test", "v6.test"]).stdout
    );
}

#[test]
fn exists_ptr_and_macros_are_skipped_with_a_note() {
    let out = walk(&["skip.walk.test"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(networks(&out), ["192.0.2.9/32"]);
    let err = stderr(&out);
    for what in ["exists depends", "ptr depends", "include with a macro"] {
        assert!(err.contains(what), "{what}: {err}");
    }
}

#[test]
fn loops_limits_and_missing_records_give_nothing_and_exit_2() {
    let cases: &[(&str, &str)] = &[
        ("loop.test", "loop: loop.test -> loop.test"),
        (
            "loop1.walk.test",
            "loop: loop1.walk.test -> loop2.walk.test -> loop1.walk.test",
        ),
        ("toomany.test", "more than 10 DNS lookups"),
        // Three includes of a record needing six lookups itself.
        ("deep.walk.test", "more than 10 DNS lookups"),
        ("void.test", "more than 2 lookups found nothing"),
        ("nospf.test", "nospf.test has no SPF record"),
        ("perm.test", "nospf.test has no SPF record"),
        // NXDOMAIN is not "no record": the name itself is wrong.
        ("nx.walk.test", "nx.walk.test does not exist (NXDOMAIN)"),
    ];
    for (domain, why) in cases {
        let out = walk(&[domain]);
        assert_eq!(out.status.code(), Some(2), "{domain}: {}", stderr(&out));
        assert!(networks(&out).is_empty(), "{domain}");
        let err = stderr(&out);
        assert!(err.contains(why), "{domain}: {err}");
        assert!(err.contains("no networks printed"), "{domain}: {err}");
    }
}

#[test]
fn a_failed_domain_leaves_the_others_in_the_file() {
    let out = walk(&["loop.test", "v6.test"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(networks(&out), ["2001:db8:1::/48"]);
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        text.contains("# loop.test: left out, walk failed\n"),
        "{text}"
    );
}

/// `greymilter spf-walk` with `[dns] servers = [server]`.
fn walk_with(server: SocketAddr, timeout: &str, domains: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("greymilter.toml");
    std::fs::write(
        &config,
        format!("[dns]\nservers = [\"{server}\"]\ntimeout = \"{timeout}\"\n"),
    )
    .unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_greymilter"))
        .arg("--config")
        .arg(&config)
        .arg("spf-walk")
        .args(domains)
        .output()
        .unwrap()
}

#[test]
fn a_dead_resolver_exits_2() {
    // A bound UDP socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let out = walk_with(silent.local_addr().unwrap(), "200ms", &["top.walk.test"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("DNS lookup of top.walk.test TXT failed"));
}

#[test]
fn a_refused_dns_port_is_said_so_not_reported_as_a_timeout() {
    // A port nothing listens on: the kernel answers port unreachable.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = walk_with(port, "2s", &["top.walk.test"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{port} refused the query: nothing listens there")),
        "{err}"
    );
    assert!(!err.contains("timed out"), "{err}");
}
