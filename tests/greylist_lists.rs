//! Static lists: longest prefix, v4/v6, name suffixes, exact beats domain,
//! per-entry delay, and the order of the lists.

#[path = "support/greylist/mod.rs"]
mod greylist_support;

use std::time::Duration;

use greylist_support::{engine, ip, rcpt};
use greymilter::greylist::lists::{ListName, Lists};
use greymilter::greylist::settings::{ListAction, ListSpec, Settings};
use greymilter::greylist::{Action, Reason, Request};

const A: ListAction = ListAction::Accept;
const R: ListAction = ListAction::Reject;
const G: ListAction = ListAction::Greylist { delay: None };

fn g(secs: u64) -> ListAction {
    ListAction::Greylist {
        delay: Some(Duration::from_secs(secs)),
    }
}

fn nets(v: &[(&str, ListAction)]) -> Vec<(ipnet::IpNet, ListAction)> {
    v.iter().map(|(n, a)| (n.parse().unwrap(), *a)).collect()
}

fn strs(v: &[(&str, ListAction)]) -> Vec<(String, ListAction)> {
    v.iter().map(|(n, a)| (n.to_string(), *a)).collect()
}

#[test]
fn longest_prefix_wins_v4_and_v6() {
    let spec = ListSpec {
        clients: nets(&[
            ("10.0.0.0/8", A),
            ("10.1.0.0/16", G),
            ("10.1.2.3/32", R),
            ("0.0.0.0/0", G),
            ("2001:db8::/32", A),
            ("2001:db8:bad::/48", R),
            ("::ffff:192.0.2.0/120", R),
        ]),
        ..ListSpec::default()
    };
    let l = Lists::compile(&spec, true);
    assert_eq!(l.client(ip("10.9.9.9")), Some(A));
    assert_eq!(l.client(ip("10.1.9.9")), Some(G));
    assert_eq!(l.client(ip("10.1.2.3")), Some(R));
    assert_eq!(l.client(ip("11.0.0.1")), Some(G));
    assert_eq!(l.client(ip("2001:db8:1::1")), Some(A));
    assert_eq!(l.client(ip("2001:db8:bad:1::1")), Some(R));
    assert_eq!(l.client(ip("2001:db9::1")), None);
    // An IPv4-mapped entry is an IPv4 entry; a mapped client is IPv4.
    assert_eq!(l.client(ip("192.0.2.7")), Some(R));
    assert_eq!(l.client(ip("::ffff:10.1.2.3")), Some(R));
    // Host bits in an entry are ignored.
    let l = Lists::compile(
        &ListSpec {
            clients: nets(&[("198.51.100.77/24", A)]),
            ..ListSpec::default()
        },
        true,
    );
    assert_eq!(l.client(ip("198.51.100.1")), Some(A));
}

#[test]
fn client_names_exact_and_suffix() {
    let spec = ListSpec {
        client_names: strs(&[
            ("mx.example.com", A),
            (".example.com", R),
            (".bad.example.com", G),
            ("Upper.Example.NET.", A),
        ]),
        ..ListSpec::default()
    };
    let l = Lists::compile(&spec, true);
    assert_eq!(l.client_name(b"mx.example.com"), Some(A));
    assert_eq!(l.client_name(b"MX.Example.com."), Some(A));
    assert_eq!(l.client_name(b"other.example.com"), Some(R));
    // `.suffix` is the subdomains, not the domain itself.
    assert_eq!(l.client_name(b"example.com"), None);
    // The longest suffix wins.
    assert_eq!(l.client_name(b"a.bad.example.com"), Some(G));
    assert_eq!(l.client_name(b"upper.example.net"), Some(A));
    assert_eq!(l.client_name(b"notexample.com"), None);
    // Postfix's `[ip]` for an unverified client never matches.
    assert_eq!(l.client_name(b"[192.0.2.1]"), None);
    assert_eq!(l.client_name(b""), None);
    assert_eq!(l.client_name(&[0xff, b'.', 0xfe]), None);
}

#[test]
fn exact_address_beats_its_domain_and_domains_cover_subdomains() {
    let spec = ListSpec {
        senders: strs(&[("<Boss@Example.org>", G), ("news@lists.example", A)]),
        sender_domains: strs(&[("example.org", A), ("spam.example", R)]),
        recipients: strs(&[("abuse@example.net", A)]),
        recipient_domains: strs(&[("example.net", G), ("deep.sub.example.net", R)]),
        ..ListSpec::default()
    };
    let l = Lists::compile(&spec, true);
    assert_eq!(
        l.lookup_sender(b"boss@example.org"),
        Some((ListName::Senders, G))
    );
    assert_eq!(
        l.lookup_sender(b"other@example.org"),
        Some((ListName::SenderDomains, A))
    );
    assert_eq!(
        l.lookup_sender(b"x@mail.example.org"),
        Some((ListName::SenderDomains, A))
    );
    assert_eq!(l.lookup_sender(b"x@notexample.org"), None);
    assert_eq!(
        l.lookup_sender(b"x@a.spam.example"),
        Some((ListName::SenderDomains, R))
    );
    assert_eq!(l.lookup_sender(b""), None);
    assert_eq!(
        l.lookup_recipient(b"abuse@example.net"),
        Some((ListName::Recipients, A))
    );
    assert_eq!(
        l.lookup_recipient(b"x@example.net"),
        Some((ListName::RecipientDomains, G))
    );
    assert_eq!(
        l.lookup_recipient(b"x@a.deep.sub.example.net"),
        Some((ListName::RecipientDomains, R))
    );
}

#[test]
fn sender_entries_match_normalised_variants() {
    let spec = ListSpec {
        senders: strs(&[("news@lists.example", A)]),
        ..ListSpec::default()
    };
    let (mut e, _) = engine(Settings {
        lists: spec.clone(),
        ..Settings::default()
    });
    for from in [
        "<news@lists.example>",
        "<prvs=1234abcdef=news@lists.example>",
        "<news+42@lists.example>",
        "<NEWS@Lists.Example>",
    ] {
        let d = rcpt(&mut e, "192.0.2.1", from, "<u@example.net>");
        assert_eq!(
            (d.action, d.reason),
            (Action::Accept, Reason::List(ListName::Senders)),
            "{from}"
        );
    }
    // Without sender normalisation only the case and brackets are folded.
    let (mut e, _) = engine(Settings {
        lists: spec,
        normalize_sender: false,
        ..Settings::default()
    });
    assert_eq!(
        rcpt(&mut e, "192.0.2.1", "<NEWS@lists.example>", "<u@x>").action,
        Action::Accept
    );
    assert_eq!(
        rcpt(&mut e, "192.0.2.1", "<news+42@lists.example>", "<u@x>").action,
        Action::Greylist
    );
}

#[test]
fn first_list_in_the_order_decides() {
    let spec = ListSpec {
        clients: nets(&[("192.0.2.0/24", G), ("198.51.100.0/24", R)]),
        client_names: strs(&[(".trusted.example", A)]),
        senders: strs(&[("vip@example.org", A)]),
        sender_domains: strs(&[("spam.example", R)]),
        recipients: strs(&[("postmaster@example.net", A)]),
        recipient_domains: strs(&[("example.net", R)]),
        ..ListSpec::default()
    };
    let (mut e, _) = engine(Settings {
        lists: spec,
        auto_whitelist_after: 0,
        ..Settings::default()
    });
    let mut decide = |client: &str, name: &str, from: &str, to: &str| {
        let d = e.decide_rcpt(&Request {
            client_addr: Some(ip(client)),
            client_name: name.as_bytes(),
            sender: from.as_bytes(),
            recipient: to.as_bytes(),
            authenticated: false,
        });
        (d.action, d.reason)
    };
    // The client IP greylist entry beats every later accept.
    assert_eq!(
        decide(
            "192.0.2.1",
            "mx.trusted.example",
            "<vip@example.org>",
            "<postmaster@example.net>"
        ),
        (Action::Greylist, Reason::New)
    );
    // Client name before sender lists.
    assert_eq!(
        decide(
            "203.0.113.1",
            "mx.trusted.example",
            "<x@spam.example>",
            "<a@example.net>"
        ),
        (Action::Accept, Reason::List(ListName::ClientNames))
    );
    // Sender before recipient domain.
    assert_eq!(
        decide(
            "203.0.113.1",
            "[203.0.113.1]",
            "<vip@example.org>",
            "<a@example.net>"
        ),
        (Action::Accept, Reason::List(ListName::Senders))
    );
    // Sender domain reject before recipient accept.
    assert_eq!(
        decide(
            "203.0.113.1",
            "[203.0.113.1]",
            "<x@spam.example>",
            "<postmaster@example.net>"
        ),
        (Action::Reject, Reason::List(ListName::SenderDomains))
    );
    // Recipient exact before recipient domain.
    assert_eq!(
        decide(
            "203.0.113.1",
            "[203.0.113.1]",
            "<x@example.org>",
            "<postmaster@example.net>"
        ),
        (Action::Accept, Reason::List(ListName::Recipients))
    );
    assert_eq!(
        decide(
            "203.0.113.1",
            "[203.0.113.1]",
            "<x@example.org>",
            "<a@example.net>"
        ),
        (Action::Reject, Reason::List(ListName::RecipientDomains))
    );
    assert_eq!(
        decide(
            "198.51.100.9",
            "[198.51.100.9]",
            "<vip@example.org>",
            "<a@x>"
        ),
        (Action::Reject, Reason::List(ListName::Clients))
    );
    // Nothing matches: the tuple table.
    assert_eq!(
        decide(
            "203.0.113.1",
            "[203.0.113.1]",
            "<x@example.org>",
            "<a@elsewhere.example>"
        ),
        (Action::Greylist, Reason::New)
    );
    let s = e.stats();
    assert_eq!(
        (s.accepted_by_list, s.rejected_by_list, s.requests),
        (3, 3, 8)
    );
}

#[test]
fn per_entry_delay_applies() {
    let spec = ListSpec {
        clients: nets(&[("192.0.2.0/24", g(60)), ("198.51.100.0/24", g(3600))]),
        ..ListSpec::default()
    };
    let (mut e, clock) = engine(Settings {
        lists: spec,
        ..Settings::default()
    });
    let d = rcpt(&mut e, "192.0.2.1", "<a@x>", "<b@y>");
    assert_eq!((d.action, d.remaining), (Action::Greylist, 60));
    let d = rcpt(&mut e, "198.51.100.1", "<a@x>", "<b@y>");
    assert_eq!((d.action, d.remaining), (Action::Greylist, 3600));
    // Unlisted: the configured delay.
    let d = rcpt(&mut e, "203.0.113.1", "<a@x>", "<b@y>");
    assert_eq!((d.action, d.remaining), (Action::Greylist, 300));
    clock.advance(60);
    assert_eq!(
        rcpt(&mut e, "192.0.2.1", "<a@x>", "<b@y>").reason,
        Reason::Retried
    );
    let d = rcpt(&mut e, "198.51.100.1", "<a@x>", "<b@y>");
    assert_eq!((d.reason, d.remaining), (Reason::Early, 3540));
}
