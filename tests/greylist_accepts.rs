//! Accepts before the table, as an admin reads them: a client accept at
//! CONNECT logs what is known (no empty `from=<> to=<>`) and counts as a
//! request and a decision like any other; a runtime allowance is logged
//! apart from a configured entry (`allow:network`); a loopback client
//! (127.0.0.0/8, ::1, and Postfix's client without an IP, which it names
//! 127.0.0.1 in the RCPT macros) is never greylisted, unless a list entry
//! says otherwise.
//!
//! Every test reads the decision log through its own subscriber: tracing
//! caches per-callsite interest globally, so no test here runs without one.

#[path = "support/greylist/mod.rs"]
mod greylist_support;
#[path = "support/log/mod.rs"]
mod log_support;
#[path = "support/milter/mod.rs"]
mod milter_support;

use std::cell::RefCell;
use std::rc::Rc;

use greylist_support::{MapMacros, engine, ip};
use greymilter::greylist::settings::{ListAction, ListSpec, Settings};
use greymilter::greylist::{Action, Engine, Reason, Request};
use greymilter::milter::client::{ClientBuilder, ConnectAddr, Family, Response};
use greymilter::milter::decision::{Client, Decider, SessionOptions, Verdict};
use greymilter::pipeline::{MilterDecider, Pipeline};
use log_support::Captured;
use milter_support::with_session;

fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .without_time()
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

fn decision_lines(c: &Captured) -> Vec<String> {
    c.text()
        .lines()
        .filter(|l| l.contains("action="))
        .map(str::to_string)
        .collect()
}

fn count(e: &Engine, action: &str, reason: &str) -> u64 {
    e.decision_counts()
        .iter()
        .find(|(a, r, _)| a == action && r == reason)
        .map_or(0, |c| c.2)
}

#[test]
fn a_client_accept_logs_what_is_known_and_is_counted() {
    let (log, _guard) = capture();
    let settings = Settings {
        lists: ListSpec {
            clients: vec![("198.51.100.0/24".parse().unwrap(), ListAction::Accept)],
            sender_domains: vec![("partner.example".into(), ListAction::Accept)],
            ..ListSpec::default()
        },
        ..Settings::default()
    };
    let (e, _clock) = engine(settings);
    let e = Rc::new(RefCell::new(e));
    let mut d = MilterDecider::new(&Pipeline::new(Rc::clone(&e)), 1);
    let none = MapMacros::default();
    let client = |addr: &str| Client {
        hostname: b"mx.example.org",
        addr: Some(ip(addr)),
        port: 25,
    };
    assert_eq!(d.connect(&client("198.51.100.7"), &none), Verdict::Accept);
    // A sender accept at MAIL: the sender is known, no recipient yet.
    assert_eq!(d.connect(&client("192.0.2.1"), &none), Verdict::Continue);
    assert_eq!(d.mail(b"<news@partner.example>", &none), Verdict::Accept);

    let lines = decision_lines(&log);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains(
            "action=accept reason=list:clients client=mx.example.org[198.51.100.7] \
             delay=0 remaining=0"
        ),
        "{}",
        lines[0]
    );
    assert!(
        !lines[0].contains(" from=") && !lines[0].contains(" to="),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(
            "reason=list:sender_domains client=mx.example.org[192.0.2.1] \
             from=<news@partner.example> delay=0"
        ),
        "{}",
        lines[1]
    );
    assert!(!lines[1].contains(" to="), "{}", lines[1]);
    // One request and one decision each, in the report and the metrics.
    let e = e.borrow();
    assert_eq!(e.stats().requests, 2);
    assert_eq!(count(&e, "accept", "list:clients"), 1);
    assert_eq!(count(&e, "accept", "list:sender_domains"), 1);
}

#[test]
fn a_runtime_allowance_is_logged_apart_from_a_configured_entry() {
    let (log, _guard) = capture();
    let settings = Settings {
        lists: ListSpec {
            clients: vec![
                ("198.51.100.0/24".parse().unwrap(), ListAction::Accept),
                ("203.0.113.0/24".parse().unwrap(), ListAction::Allow),
            ],
            sender_domains: vec![("partner.example".into(), ListAction::Allow)],
            ..ListSpec::default()
        },
        ..Settings::default()
    };
    let (mut e, _clock) = engine(settings);
    let req = |client: &str, from: &'static str| Request {
        client_addr: Some(ip(client)),
        client_name: b"[unverified]",
        sender: from.as_bytes(),
        recipient: b"<bob@example.net>",
        authenticated: false,
    };
    let reason = |e: &mut Engine, r: &Request<'_>| {
        let mut s = String::new();
        e.decide_rcpt(r).reason.write_to(&mut s);
        s
    };
    assert_eq!(
        reason(&mut e, &req("198.51.100.7", "<a@b.example>")),
        "list:clients"
    );
    assert_eq!(
        reason(&mut e, &req("203.0.113.7", "<a@b.example>")),
        "allow:network"
    );
    assert_eq!(
        reason(&mut e, &req("192.0.2.1", "<news@partner.example>")),
        "allow:sender-domain"
    );
    assert_eq!(count(&e, "accept", "allow:network"), 1);
    drop(log);
}

#[test]
fn loopback_clients_are_not_greylisted_unless_a_list_says_so() {
    let (_log, _guard) = capture();
    let rcpt = |e: &mut Engine, client: &str, to: &'static str| {
        e.decide_rcpt(&Request {
            client_addr: Some(ip(client)),
            client_name: b"localhost",
            sender: b"<www@example.org>",
            recipient: to.as_bytes(),
            authenticated: false,
        })
    };
    let (mut e, _clock) = engine(Settings::default());
    for client in ["127.0.0.1", "127.45.6.7", "::1"] {
        let d = rcpt(&mut e, client, "<bob@example.net>");
        assert_eq!(
            (d.action, d.reason),
            (Action::Accept, Reason::Loopback),
            "{client}"
        );
    }
    assert_eq!(e.stats().tuples, 0);
    assert_eq!(count(&e, "accept", "loopback"), 3);
    // Not loopback: greylisted as ever.
    let d = rcpt(&mut e, "128.0.0.1", "<bob@example.net>");
    assert_eq!(d.reason, Reason::New);

    // An explicit entry decides for a loopback client.
    let settings = Settings {
        lists: ListSpec {
            clients: vec![(
                "127.0.0.0/8".parse().unwrap(),
                ListAction::Greylist { delay: None },
            )],
            recipients: vec![("closed@example.net".into(), ListAction::Reject)],
            ..ListSpec::default()
        },
        ..Settings::default()
    };
    let (mut e, _clock) = engine(settings);
    assert_eq!(
        rcpt(&mut e, "127.0.0.1", "<bob@example.net>").reason,
        Reason::New
    );
    assert_eq!(
        rcpt(&mut e, "::1", "<closed@example.net>").action,
        Action::Reject
    );
}

/// Postfix's smtpd client on a non-IP socket: CONNECT (family U) is
/// skipped in the lean conversation and `{client_addr}` says 127.0.0.1.
#[tokio::test(start_paused = true)]
async fn a_postfix_client_without_an_ip_is_not_greylisted() {
    let (log, _guard) = capture();
    let (e, _clock) = engine(Settings::default());
    let pipeline = Pipeline::new(Rc::new(RefCell::new(e)));
    let options = SessionOptions {
        envelope_events: false,
        ..SessionOptions::default()
    };
    let decider = MilterDecider::new(&pipeline, 1);
    let (_, reply) = with_session(
        decider,
        &options,
        ClientBuilder::new(),
        |mut c| async move {
            c.negotiate().await.unwrap();
            let local = ConnectAddr::Raw {
                family: Family::Unknown,
                port: 0,
                address: "127.0.0.1".into(),
            };
            c.connect("localhost", &local).await.unwrap();
            c.mail(&["<www@example.org>"]).await.unwrap();
            let reply = c.rcpt(&["<bob@example.net>"]).await.unwrap();
            c.quit().await.unwrap();
            reply
        },
    )
    .await;
    assert_eq!(reply, Response::Continue);
    let lines = decision_lines(&log);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("action=accept reason=loopback")
                && l.contains("[127.0.0.1]")
                && l.contains("proto=milter")),
        "{lines:?}"
    );
    assert_eq!(pipeline.engine().borrow().stats().tuples, 0);
}
