//! The engine's DNS steps (plain data in, no resolver): SPF-keyed tuples,
//! SPF skip, allow and block zones, selective greylisting, the counters,
//! and that missing facts decide as without DNS.

#[path = "support/dns/mod.rs"]
mod dns_support;
#[path = "support/greylist/mod.rs"]
mod greylist_support;

use dns_support::PROVIDER_POOL as POOL;
use greylist_support::{engine, ip};
use greymilter::greylist::facts::{ClientFacts, DnsFacts, DnsPolicy, SpfFacts, SpfMode, SpfResult};
use greymilter::greylist::settings::Settings;
use greymilter::greylist::{Action, Decision, Engine, Reason, Request};

fn settings(spf: SpfMode) -> Settings {
    Settings {
        auto_whitelist_after: 0,
        dns: DnsPolicy {
            spf,
            ..DnsPolicy::default()
        },
        ..Settings::default()
    }
}

fn spf(result: SpfResult, domain: &str) -> DnsFacts {
    DnsFacts {
        client: None,
        spf: Some(SpfFacts {
            result,
            domain: domain.to_string(),
        }),
    }
}

fn rcpt(e: &mut Engine, client: &str, name: &str, from: &str, facts: &DnsFacts) -> Decision {
    e.decide_rcpt_with(
        &Request {
            client_addr: Some(ip(client)),
            client_name: name.as_bytes(),
            sender: from.as_bytes(),
            recipient: b"<user@our.example>",
            authenticated: false,
        },
        facts,
    )
}

#[test]
fn key_mode_a_provider_retrying_from_six_networks_is_deferred_once() {
    let (mut e, clock) = engine(settings(SpfMode::Key));
    let pass = spf(SpfResult::Pass, "provider.test");
    let from = "<bounce-123@provider.test>";
    let first = rcpt(&mut e, POOL[0], "out1.provider.test", from, &pass);
    assert_eq!(
        (first.action, first.reason),
        (Action::Greylist, Reason::New)
    );
    clock.advance(301);
    for (i, client) in POOL.iter().enumerate().skip(1) {
        let d = rcpt(&mut e, client, "out.provider.test", from, &pass);
        assert_eq!(d.action, Action::Pass, "retry {i} from {client}: {d:?}");
    }
    assert_eq!(e.stats().deferred, 1);
    assert_eq!(e.dns_counters().spf_keyed, 6);

    // Spammers on the same networks, other (or no) SPF domains: greylisted.
    for (i, client) in POOL.iter().enumerate() {
        let facts = match i % 3 {
            0 => spf(SpfResult::Pass, "spammer.example"),
            1 => spf(SpfResult::SoftFail, "provider.test"),
            _ => DnsFacts::default(),
        };
        let d = rcpt(&mut e, client, "[x]", "<x@spammer.example>", &facts);
        assert_eq!(d.action, Action::Greylist, "{client} {facts:?}");
    }
}

#[test]
fn off_mode_and_failed_spf_key_by_network_as_before() {
    for (mode, facts) in [
        (SpfMode::Off, spf(SpfResult::Pass, "provider.test")),
        (SpfMode::Key, spf(SpfResult::TempError, "provider.test")),
        (SpfMode::Key, DnsFacts::default()),
    ] {
        let (mut e, clock) = engine(settings(mode));
        let from = "<a@provider.test>";
        assert_eq!(
            rcpt(&mut e, POOL[0], "n", from, &facts).action,
            Action::Greylist
        );
        clock.advance(301);
        // Another /24: a new tuple.
        let d = rcpt(&mut e, POOL[1], "n", from, &facts);
        assert_eq!(
            (d.action, d.reason),
            (Action::Greylist, Reason::New),
            "{mode:?}"
        );
        // Same /24: passes.
        assert_eq!(
            rcpt(&mut e, POOL[0], "n", from, &facts).action,
            Action::Pass
        );
        assert_eq!(e.dns_counters().spf_keyed, 0);
    }
}

#[test]
fn skip_mode_passes_spf_pass_only() {
    let (mut e, _) = engine(settings(SpfMode::Skip));
    let d = rcpt(
        &mut e,
        POOL[0],
        "n",
        "<a@p.test>",
        &spf(SpfResult::Pass, "p.test"),
    );
    assert_eq!((d.action, d.reason), (Action::Pass, Reason::Spf));
    let d = rcpt(
        &mut e,
        POOL[0],
        "n",
        "<a@p.test>",
        &spf(SpfResult::Neutral, "p.test"),
    );
    assert_eq!(d.action, Action::Greylist);
    assert_eq!(e.dns_counters().spf_skipped, 1);
}

#[test]
fn allow_zone_passes_block_zone_waits_longer_and_lists_win() {
    let mut s = settings(SpfMode::Skip);
    s.dns.block_delay = std::time::Duration::from_secs(1800);
    s.lists.clients = vec![(
        "192.0.2.0/24".parse().unwrap(),
        greymilter::greylist::settings::ListAction::Reject,
    )];
    let (mut e, clock) = engine(s);
    let allow = DnsFacts {
        client: Some(ClientFacts {
            allow_listed: true,
            ..ClientFacts::default()
        }),
        spf: None,
    };
    let d = rcpt(&mut e, "198.51.100.1", "n", "<a@x.test>", &allow);
    assert_eq!((d.action, d.reason), (Action::Pass, Reason::Dnswl));
    // A static list beats the zones.
    assert_eq!(
        rcpt(&mut e, "192.0.2.1", "n", "<a@x.test>", &allow).action,
        Action::Reject
    );

    // Block zone: greylisted with block_delay, even when SPF passes.
    let mut block = spf(SpfResult::Pass, "x.test");
    block.client = Some(ClientFacts {
        block_listed: true,
        ..ClientFacts::default()
    });
    let d = rcpt(&mut e, "203.0.113.1", "n", "<a@x.test>", &block);
    assert_eq!((d.action, d.remaining), (Action::Greylist, 1800));
    clock.advance(301);
    assert_eq!(
        rcpt(&mut e, "203.0.113.1", "n", "<a@x.test>", &block).action,
        Action::Greylist
    );
    clock.advance(1500);
    assert_eq!(
        rcpt(&mut e, "203.0.113.1", "n", "<a@x.test>", &block).action,
        Action::Pass
    );
    let st = e.dns_counters();
    assert_eq!((st.dnswl_passed, st.dnsbl_listed), (1, 3));
}

#[test]
fn selective_greylists_only_suspicious_clients() {
    let mut s = settings(SpfMode::Off);
    s.dns.selective = true;
    let (mut e, _) = engine(s);
    let fine = DnsFacts {
        client: Some(ClientFacts::default()),
        spf: None,
    };
    let suspicious = DnsFacts {
        client: Some(ClientFacts {
            suspicious_name: true,
            ..ClientFacts::default()
        }),
        spf: None,
    };
    let d = rcpt(&mut e, "198.51.100.1", "mail.x.test", "<a@x.test>", &fine);
    assert_eq!((d.action, d.reason), (Action::Pass, Reason::Selective));
    let d = rcpt(
        &mut e,
        "198.51.100.1",
        "[198.51.100.1]",
        "<a@x.test>",
        &suspicious,
    );
    assert_eq!(d.action, Action::Greylist);
    // No client facts at all: decided as without DNS.
    let d = rcpt(
        &mut e,
        "198.51.100.2",
        "mail.x.test",
        "<a@x.test>",
        &DnsFacts::default(),
    );
    assert_eq!(d.action, Action::Greylist);
}

#[test]
fn failures_are_counted_and_reported() {
    let (mut e, _) = engine(settings(SpfMode::Key));
    e.note_dns_failures(2, 3);
    let mut r = String::new();
    e.dns_counters().push_report(&mut r);
    let tail: Vec<&str> = r.lines().rev().take(6).collect();
    assert!(
        tail[0].starts_with("DNS-Errors") && tail[0].ends_with(" 3"),
        "{r}"
    );
    assert!(
        tail[1].starts_with("DNS-Timeouts") && tail[1].ends_with(" 2"),
        "{r}"
    );
    assert!(tail[5].starts_with("SPF-Keyed"), "{r}");
}
