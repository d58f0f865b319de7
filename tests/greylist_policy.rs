//! The engine driven through the milter decision interface: multi-recipient
//! transactions with mixed verdicts, CONNECT/MAIL accepts and the
//! X-Greylist header. (The decision log line: greylist_log.rs.)

#[path = "support/greylist/mod.rs"]
mod greylist_support;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use greylist_support::{MapMacros, engine, ip};
use greymilter::greylist::Engine;
use greymilter::greylist::clock::ManualClock;
use greymilter::greylist::settings::{ListAction, ListSpec, Settings};
use greymilter::milter::decision::{Client, Decider, DeciderFactory, SessionSummary, Verdict};
use greymilter::pipeline::{MilterFactory, Pipeline, Timeouts};

fn factory(settings: Settings) -> (MilterFactory, Rc<RefCell<Engine>>, ManualClock) {
    let (e, clock) = engine(settings);
    let e = Rc::new(RefCell::new(e));
    (
        MilterFactory::new(Pipeline::new(Rc::clone(&e)), Timeouts::default()),
        e,
        clock,
    )
}

fn connect(d: &mut impl Decider, addr: &str, name: &str) -> Verdict {
    let addr = ip(addr);
    d.connect(
        &Client {
            hostname: name.as_bytes(),
            addr: Some(addr),
            port: 25,
        },
        &MapMacros::default(),
    )
}

fn tempfail_text(v: &Verdict) -> String {
    match v {
        Verdict::Tempfail(r) => r.as_str().to_string(),
        other => panic!("expected a tempfail, got {other:?}"),
    }
}

fn lists() -> ListSpec {
    ListSpec {
        recipients: vec![
            ("postmaster@example.net".into(), ListAction::Accept),
            ("closed@example.net".into(), ListAction::Reject),
        ],
        ..ListSpec::default()
    }
}

#[test]
fn multi_recipient_transactions_decide_each_recipient_on_its_own() {
    let (f, e, clock) = factory(Settings {
        lists: lists(),
        auto_whitelist_after: 0,
        ..Settings::default()
    });
    let none = MapMacros::default();
    let mut d = f.new_decider(1);
    assert_eq!(
        connect(&mut d, "192.0.2.1", "mx.sender.example"),
        Verdict::Continue
    );
    assert_eq!(d.mail(b"<alice@sender.example>", &none), Verdict::Continue);
    let v = d.rcpt(b"<bob@example.net>", &none).now().unwrap();
    assert_eq!(
        tempfail_text(&v),
        "451 4.7.1 Greylisted, please try again in 300 seconds"
    );
    // A listed recipient in the same transaction passes: Continue, not Accept.
    assert_eq!(
        d.rcpt(b"<postmaster@example.net>", &none).now().unwrap(),
        Verdict::Continue
    );
    match d.rcpt(b"<closed@example.net>", &none).now().unwrap() {
        Verdict::Reject(r) => assert_eq!(r.as_str(), "550 5.7.1 Message refused"),
        other => panic!("expected a reject, got {other:?}"),
    }
    let v = d.rcpt(b"<carol@example.net>", &none).now().unwrap();
    assert!(matches!(v, Verdict::Tempfail(_)));
    // Only postmaster got through: no header (nothing passed after a delay).
    assert_eq!(d.eom(&none), None);
    d.end_transaction();

    // The client retries two minutes later: still early, with the remaining time.
    clock.advance(120);
    d.mail(b"<alice@sender.example>", &none);
    assert_eq!(
        tempfail_text(&d.rcpt(b"<bob@example.net>", &none).now().unwrap()),
        "451 4.7.1 Greylisted, please try again in 180 seconds"
    );
    d.end_transaction();

    // After the delay: bob and carol pass, a new recipient is greylisted,
    // and the message gets the header with the longest delay.
    clock.advance(200);
    d.mail(b"<Alice@Sender.Example>", &none);
    assert_eq!(
        d.rcpt(b"<bob@example.net>", &none).now().unwrap(),
        Verdict::Continue
    );
    assert!(matches!(
        d.rcpt(b"<dave@example.net>", &none).now().unwrap(),
        Verdict::Tempfail(_)
    ));
    assert_eq!(
        d.rcpt(b"<CAROL@example.net>", &none).now().unwrap(),
        Verdict::Continue
    );
    let h = d.eom(&none).expect("X-Greylist header");
    assert_eq!(h.name, "X-Greylist");
    assert!(
        h.value.starts_with(&format!(
            "delayed 320 seconds by greymilter-{}; ",
            env!("CARGO_PKG_VERSION")
        )),
        "{}",
        h.value
    );
    assert!(h.value.ends_with(" +0000"), "{}", h.value);
    d.end_transaction();

    // Already whitelisted next time: passes, but no header.
    d.mail(b"<alice@sender.example>", &none);
    assert_eq!(
        d.rcpt(b"<bob@example.net>", &none).now().unwrap(),
        Verdict::Continue
    );
    assert_eq!(d.eom(&none), None);

    let s = e.borrow().stats();
    assert_eq!(
        (s.requests, s.accepted_by_list, s.rejected_by_list, s.passed),
        (9, 1, 1, 2)
    );
}

#[test]
fn header_can_be_turned_off() {
    let (f, _, clock) = factory(Settings {
        header: false,
        ..Settings::default()
    });
    assert!(!f.options().add_header);
    let none = MapMacros::default();
    let mut d = f.new_decider(1);
    connect(&mut d, "192.0.2.1", "[192.0.2.1]");
    d.mail(b"<a@x.example>", &none);
    d.rcpt(b"<b@y.example>", &none).now().unwrap();
    clock.advance(300);
    d.mail(b"<a@x.example>", &none);
    assert_eq!(
        d.rcpt(b"<b@y.example>", &none).now().unwrap(),
        Verdict::Continue
    );
    assert_eq!(d.eom(&none), None);
}

#[test]
fn accepts_happen_only_at_connect_and_mail() {
    let (f, e, _) = factory(Settings {
        lists: ListSpec {
            clients: vec![("10.0.0.0/8".parse().unwrap(), ListAction::Accept)],
            client_names: vec![(".bad.example".into(), ListAction::Reject)],
            sender_domains: vec![("partner.example".into(), ListAction::Accept)],
            ..ListSpec::default()
        },
        ..Settings::default()
    });
    let none = MapMacros::default();
    assert!(f.options().add_header);
    assert_eq!(f.options().idle_timeout, Duration::from_secs(600));

    let mut d = f.new_decider(1);
    assert_eq!(connect(&mut d, "10.1.2.3", "[10.1.2.3]"), Verdict::Accept);
    // No usable address (local or unknown family).
    let local = d.connect(
        &Client {
            hostname: b"localhost",
            addr: None,
            port: 0,
        },
        &none,
    );
    assert_eq!(local, Verdict::Accept);

    let mut d = f.new_decider(2);
    assert_eq!(
        connect(&mut d, "192.0.2.1", "[192.0.2.1]"),
        Verdict::Continue
    );
    assert_eq!(d.mail(b"<x@mail.partner.example>", &none), Verdict::Accept);
    let auth = MapMacros::with(&[("auth_authen", "alice")]);
    assert_eq!(d.mail(b"<x@anywhere.example>", &auth), Verdict::Accept);
    let empty_auth = MapMacros::with(&[("auth_authen", "")]);
    assert_eq!(
        d.mail(b"<x@anywhere.example>", &empty_auth),
        Verdict::Continue
    );

    // A client-name reject is given per recipient at RCPT, not at CONNECT;
    // an authenticated transaction is not affected by it.
    let mut d = f.new_decider(3);
    assert_eq!(
        connect(&mut d, "203.0.113.5", "mx.bad.example"),
        Verdict::Continue
    );
    assert_eq!(d.mail(b"<x@partner.example>", &none), Verdict::Continue);
    assert!(matches!(
        d.rcpt(b"<a@example.net>", &none).now().unwrap(),
        Verdict::Reject(_)
    ));
    assert!(matches!(
        d.rcpt(b"<b@example.net>", &none).now().unwrap(),
        Verdict::Reject(_)
    ));
    assert_eq!(d.mail(b"<x@y.example>", &auth), Verdict::Accept);

    f.session_ended(&SessionSummary {
        protocol_error: true,
        ..SessionSummary::default()
    });
    let s = e.borrow().stats();
    assert_eq!(
        (s.accepted_by_list, s.authenticated, s.rejected_by_list),
        (2, 2, 2)
    );
    // Every decision logged is a request: the two recipients, and the five
    // accepts at CONNECT (a list, no address) and MAIL (a sender, twice
    // authenticated).
    assert_eq!(s.requests, 7);
    let mut sessions = String::new();
    f.counters().push_report(&mut sessions);
    assert_eq!(
        sessions,
        "Sessions           1\nProtocol-Errors    1\nTimeouts           0\n"
    );
}
