//! `crate::dns` against real DNS servers on loopback: SPF (every mechanism
//! the test zone exercises), allow/block zones, the name heuristic, and
//! every failure mode (silent, SERVFAIL, garbage, truncated UDP), each of
//! which must end within the budget as "no information".

#[path = "support/dns/mod.rs"]
mod dns_support;

use std::rc::Rc;
use std::time::{Duration, Instant};

use dns_support::{Misbehaviour, authoritative, ip, misbehaving, settings};
use greymilter::dns::{Dns, DnsSettings};
use greymilter::greylist::facts::{ClientFacts, SpfResult};

const BUDGET: Duration = Duration::from_millis(400);
// On top of the budget; a lookup that waited for the resolver's own
// retries would exceed it by seconds.
#[path = "support/slack.rs"]
mod slack;
use slack::SCHEDULING_SLACK;

fn rt() -> tokio::runtime::Runtime {
    dns_support::runtime()
}

async fn spf(dns: &Rc<Dns>, client: &str, helo: &str, sender: &str) -> Option<SpfResult> {
    let out = Rc::clone(dns)
        .spf(ip(client), helo.to_string(), sender.to_string())
        .await;
    out.facts.map(|f| f.result)
}

#[test]
fn spf_mechanisms_against_the_test_zone() {
    rt().block_on(async {
        let server = authoritative().await;
        let dns = Rc::new(Dns::new(settings(server.addr, Duration::from_secs(2))));
        use SpfResult::*;
        let cases: &[(&str, &str, &str, Option<SpfResult>)] = &[
            ("192.0.2.1", "mx.example", "<a@provider.test>", Some(Pass)),
            (
                "198.51.100.200",
                "mx.example",
                "a@Provider.TEST",
                Some(Pass),
            ),
            ("100.64.3.4", "mx.example", "a@provider.test", Some(Pass)),
            ("203.0.113.9", "mx.example", "a@redir.test", Some(Pass)),
            ("10.9.9.9", "mx.example", "a@provider.test", Some(SoftFail)),
            ("10.9.9.9", "mx.example", "a@redir.test", Some(SoftFail)),
            ("2001:db8:1::5", "mx.example", "a@v6.test", Some(Pass)),
            ("2001:db8:9::5", "mx.example", "a@v6.test", Some(Fail)),
            ("192.0.2.7", "mx.example", "a@amech.test", Some(Pass)),
            ("2001:db8:2::7", "mx.example", "a@amech.test", Some(Pass)),
            ("192.0.2.8", "mx.example", "a@amech.test", Some(Fail)),
            ("198.51.100.9", "mx.example", "a@mxmech.test", Some(Pass)),
            ("198.51.100.10", "mx.example", "a@mxmech.test", Some(Fail)),
            ("192.0.2.8", "mx.example", "a@exists.test", Some(Pass)),
            ("192.0.2.9", "mx.example", "a@exists.test", Some(Fail)),
            ("192.0.2.9", "mx.example", "alice@macro.test", Some(Pass)),
            ("192.0.2.9", "mx.example", "bob@macro.test", Some(Fail)),
            ("192.0.2.7", "mx.example", "a@ptr.test", Some(Pass)),
            ("192.0.2.9", "mx.example", "a@ptr.test", Some(Fail)),
            ("192.0.2.1", "mx.example", "a@fail.test", Some(Fail)),
            ("192.0.2.1", "mx.example", "a@soft.test", Some(SoftFail)),
            ("192.0.2.1", "mx.example", "a@neutral.test", Some(Neutral)),
            ("192.0.2.1", "mx.example", "a@perm.test", Some(PermError)),
            ("192.0.2.1", "mx.example", "a@nospf.test", Some(None)),
            ("192.0.2.1", "mx.example", "a@nxdomain.test", Some(None)),
            ("192.0.2.1", "mx.example", "a@toomany.test", Some(PermError)),
            ("192.0.2.1", "mx.example", "a@loop.test", Some(PermError)),
            // The null sender: the HELO name is checked.
            ("192.0.2.1", "helo.test", "<>", Some(Pass)),
            ("10.0.0.1", "helo.test", "", Some(Fail)),
        ];
        for &(client, helo, sender, want) in cases {
            let got = spf(&dns, client, helo, sender).await;
            assert_eq!(got, want, "{client} {helo} {sender}");
        }
        // The authenticated domain is the sender's, lower case.
        let out = Rc::clone(&dns)
            .spf(ip("192.0.2.1"), "x".into(), "<A@Provider.Test>".into())
            .await;
        assert_eq!(out.facts.unwrap().domain, "provider.test");
        // No domain at all: no check.
        assert_eq!(spf(&dns, "192.0.2.1", "", "<>").await, Option::None);
    });
}

/// RFC 7208 §4.6.4 allows two void lookups; mail-auth does not count them,
/// so the record's later `ip4` still matches. Pinned here so that a change
/// (in mail-auth or by us) is noticed; the 10-lookup limit still bounds it.
#[test]
fn void_lookups_are_not_limited_by_the_evaluator() {
    rt().block_on(async {
        let server = authoritative().await;
        let dns = Rc::new(Dns::new(settings(server.addr, Duration::from_secs(2))));
        let got = spf(&dns, "192.0.2.1", "mx.example", "a@void.test").await;
        assert_eq!(got, Some(SpfResult::Pass));
    });
}

async fn client(dns: &Rc<Dns>, addr: &str, name: &str) -> ClientFacts {
    let out = Rc::clone(dns)
        .client(ip(addr), name.as_bytes().to_vec())
        .await;
    assert_eq!((out.timeouts, out.errors), (0, 0));
    out.facts.unwrap()
}

#[test]
fn allow_and_block_zones_and_the_name_heuristic() {
    rt().block_on(async {
        let server = authoritative().await;
        let dns = Rc::new(Dns::new(settings(server.addr, Duration::from_secs(2))));
        let f = client(&dns, "192.0.2.10", "mail.example.com").await;
        assert!(
            f.allow_listed && !f.block_listed && !f.suspicious_name,
            "{f:?}"
        );
        // Listed with a code the zone does not accept.
        let f = client(&dns, "192.0.2.11", "mail.example.com").await;
        assert!(!f.allow_listed && !f.block_listed, "{f:?}");
        let f = client(&dns, "192.0.2.20", "[192.0.2.20]").await;
        assert!(f.block_listed && f.suspicious_name, "{f:?}");
        // 127.255.255.254 is "query refused", not a listing.
        let f = client(&dns, "192.0.2.21", "dsl-21.isp.example").await;
        assert!(!f.block_listed && f.suspicious_name, "{f:?}");
        let f = client(&dns, "2001:db8::1", "mail.example.com").await;
        assert_eq!(f, ClientFacts::default());
    });
}

/// Every failure mode: the lookup set ends within the budget, gives no
/// information (never a listing, never an SPF pass), and is counted.
#[test]
fn failing_servers_give_no_information_within_the_budget() {
    rt().block_on(async {
        for kind in [
            Misbehaviour::Silent,
            Misbehaviour::ServFail,
            Misbehaviour::Garbage,
        ] {
            let server = misbehaving(kind).await;
            let dns = Rc::new(Dns::new(settings(server.addr, BUDGET)));
            let t = Instant::now();
            let c = Rc::clone(&dns)
                .client(ip("192.0.2.20"), b"[192.0.2.20]".to_vec())
                .await;
            let s = Rc::clone(&dns)
                .spf(ip("192.0.2.1"), "h".into(), "a@provider.test".into())
                .await;
            let took = t.elapsed();
            assert!(took < 2 * BUDGET + SCHEDULING_SLACK, "{kind:?}: {took:?}");
            let f = c.facts.unwrap();
            assert!(!f.block_listed && !f.allow_listed, "{kind:?}: {f:?}");
            assert!(f.suspicious_name);
            assert!(c.timeouts + c.errors >= 1, "{kind:?}: {c:?}");
            let spf_pass = s
                .facts
                .as_ref()
                .is_some_and(|f| f.result == SpfResult::Pass);
            assert!(!spf_pass, "{kind:?}: {s:?}");
            assert!(s.timeouts + s.errors == 1, "{kind:?}: {s:?}");
        }
    });
}

#[test]
fn truncated_udp_answers_are_fetched_over_tcp() {
    rt().block_on(async {
        let server = misbehaving(Misbehaviour::Truncating).await;
        let dns = Rc::new(Dns::new(settings(server.addr, Duration::from_secs(2))));
        let f = client(&dns, "192.0.2.10", "mail.example.com").await;
        assert!(f.allow_listed, "{f:?}");
        let got = spf(&dns, "100.64.2.1", "h", "a@provider.test").await;
        assert_eq!(got, Some(SpfResult::Pass));
    });
}

/// After a few failed lookup sets the breaker stops asking: later sets
/// end at once without a query (nothing counted), while the healthy
/// resolver beside it keeps serving.
#[test]
fn a_dead_resolver_is_skipped_and_a_healthy_one_beside_it_serves() {
    rt().block_on(async {
        let dead = misbehaving(Misbehaviour::Silent).await;
        let good = authoritative().await;
        let dead = Rc::new(Dns::new(settings(dead.addr, BUDGET)));
        let good = Rc::new(Dns::new(settings(good.addr, Duration::from_secs(2))));
        for _ in 0..3 {
            let (d, g) = tokio::join!(
                Rc::clone(&dead).spf(ip("192.0.2.1"), "h".into(), "a@provider.test".into()),
                spf(&good, "192.0.2.1", "h", "a@provider.test"),
            );
            assert_eq!(d.timeouts, 1);
            assert_eq!(g, Some(SpfResult::Pass));
        }
        let t = Instant::now();
        let d = Rc::clone(&dead)
            .spf(ip("192.0.2.1"), "h".into(), "a@provider.test".into())
            .await;
        assert_eq!((d.facts, d.timeouts, d.errors), (None, 0, 0));
        let c = Rc::clone(&dead)
            .client(ip("192.0.2.20"), b"mail.example.com".to_vec())
            .await;
        assert_eq!((c.timeouts, c.errors), (0, 0));
        assert!(t.elapsed() < BUDGET + SCHEDULING_SLACK, "{:?}", t.elapsed());
    });
}

#[test]
fn no_resolver_configuration_means_no_information_at_once() {
    rt().block_on(async {
        // An empty `servers` list reads resolv.conf; one that names no
        // nameserver (and one that does not exist) leaves DNS without a
        // resolver, whatever the host's own /etc/resolv.conf says.
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("resolv.conf");
        std::fs::write(&empty, "search example.com\noptions ndots:1\n").unwrap();
        let missing = dir.path().join("absent.conf");
        for path in [&empty, &missing] {
            let dns = Rc::new(Dns::with_resolv_conf(
                DnsSettings {
                    spf: true,
                    block_zones: vec!["bl.test".parse().unwrap()],
                    servers: Vec::new(),
                    ..DnsSettings::default()
                },
                path,
            ));
            assert!(!dns.resolves(), "{} gave a resolver", path.display());
            // No information, no query sent: nothing counted as a timeout
            // or an error.
            let c = Rc::clone(&dns)
                .client(ip("192.0.2.20"), b"mail.example.com".to_vec())
                .await;
            assert_eq!((c.timeouts, c.errors), (0, 0));
            assert!(!c.facts.unwrap().block_listed);
            let s = Rc::clone(&dns)
                .spf(ip("192.0.2.20"), "h".into(), "a@provider.test".into())
                .await;
            assert_eq!((s.facts, s.timeouts, s.errors), (None, 0, 0));
        }
        // The same settings with a resolv.conf naming a nameserver do build
        // a resolver: the path above is the missing configuration, not the
        // settings.
        let named = dir.path().join("named.conf");
        std::fs::write(&named, "nameserver 127.0.0.1\n").unwrap();
        let dns = Dns::with_resolv_conf(
            DnsSettings {
                servers: Vec::new(),
                ..DnsSettings::default()
            },
            &named,
        );
        assert!(dns.resolves());
    });
}
