//! Decisions that wait (the seam for a shared table or DNS): a recipient
//! whose decision takes a while is answered when it is ready; one that
//! never comes is answered CONTINUE at the deadline and the session goes
//! on; while one connection waits, the others are served. Driven by the
//! MTA-side client over in-memory pipes with tokio's paused clock, so the
//! waits are exact and cost no real time.

#[path = "support/milter/mod.rs"]
mod milter_support;

use std::time::Duration;

use greymilter::milter::client::{ClientBuilder, ConnectAddr, MilterClient, Response};
use greymilter::milter::codec::{Command, StrArray};
use greymilter::milter::decision::SessionOptions;
use greymilter::milter::session::{Flow, SessionCore};
use milter_support::{GreyDecider, SLOW_DECISION, Shared, with_session};
use tokio::io::DuplexStream;
use tokio::time::Instant;

type Client = MilterClient<DuplexStream>;

const DEADLINE: Duration = Duration::from_secs(2);

fn options() -> SessionOptions {
    SessionOptions {
        decision_timeout: DEADLINE,
        ..SessionOptions::default()
    }
}

async fn open(c: &mut Client) {
    c.negotiate().await.unwrap();
    let addr = ConnectAddr::Ip("198.51.100.7".parse().unwrap(), 50123);
    assert_eq!(
        c.connect("relay.example.org", &addr).await.unwrap(),
        Response::Continue
    );
    assert_eq!(
        c.mail(&["<a@b.example>"]).await.unwrap(),
        Response::Continue
    );
}

fn is_greylisted(r: &Response) -> bool {
    matches!(r, Response::ReplyCode { code: 451, .. })
}

#[tokio::test(start_paused = true)]
async fn a_slow_decision_is_answered_when_it_is_ready() {
    let seen = Shared::default();
    let (summary, (first, first_took, second)) = with_session(
        GreyDecider::new(&seen),
        &options(),
        ClientBuilder::new(),
        |mut c| async move {
            open(&mut c).await;
            let start = Instant::now();
            let first = c.rcpt(&["<slow@x.example>"]).await.unwrap();
            let first_took = start.elapsed();
            let second = c.rcpt(&["<slow@x.example>"]).await.unwrap();
            c.quit().await.unwrap();
            (first, first_took, second)
        },
    )
    .await;
    assert!(is_greylisted(&first), "{first:?}");
    assert_eq!(first_took, SLOW_DECISION);
    assert_eq!(second, Response::Continue);
    assert_eq!(summary.decisions_expired, 0);
    let events = seen.borrow().events.clone();
    assert_eq!(
        events.iter().filter(|e| e.starts_with("answered")).count(),
        2
    );
    assert!(!events.iter().any(|e| e == "expired"));
}

#[tokio::test(start_paused = true)]
async fn a_decision_that_never_comes_is_answered_continue_at_the_deadline() {
    let seen = Shared::default();
    let (summary, (never, took, after, eom)) = with_session(
        GreyDecider::new(&seen),
        &options(),
        ClientBuilder::new(),
        |mut c| async move {
            open(&mut c).await;
            let start = Instant::now();
            let never = c.rcpt(&["<never@x.example>"]).await.unwrap();
            let took = start.elapsed();
            // The session goes on: the next recipient is decided as usual.
            let after = c.rcpt(&["<c@d.example>"]).await.unwrap();
            let eom = c.eom().await.unwrap();
            c.quit().await.unwrap();
            (never, took, after, eom)
        },
    )
    .await;
    assert_eq!(never, Response::Continue);
    assert_eq!(took, DEADLINE);
    assert!(is_greylisted(&after), "{after:?}");
    assert_eq!(eom.last, Response::Continue);
    assert_eq!(summary.decisions_expired, 1);
    assert!(!summary.protocol_error && !summary.timed_out);
    let events = seen.borrow().events.clone();
    let expired = events.iter().position(|e| e == "expired").unwrap();
    let next = events
        .iter()
        .position(|e| e.starts_with("rcpt <c@d"))
        .unwrap();
    assert!(expired < next, "{events:?}");
}

#[tokio::test(start_paused = true)]
async fn while_a_recipient_waits_nothing_else_is_read_and_replies_stay_in_order() {
    let seen = Shared::default();
    let (_, replies) = with_session(
        GreyDecider::new(&seen),
        &options(),
        ClientBuilder::new(),
        |mut c| async move {
            open(&mut c).await;
            // Two RCPTs in one write: the second must wait for the first.
            let mut both = Vec::new();
            Command::Rcpt(StrArray::new(b"<slow@x.example>\0").unwrap()).encode(&mut both);
            Command::Rcpt(StrArray::new(b"<c@d.example>\0").unwrap()).encode(&mut both);
            c.write_raw(&both).await.unwrap();
            let first = c.read_response().await.unwrap();
            let second = c.read_response().await.unwrap();
            c.quit().await.unwrap();
            (first, second)
        },
    )
    .await;
    assert!(is_greylisted(&replies.0) && is_greylisted(&replies.1));
    let events = seen.borrow().events.clone();
    let answered = events
        .iter()
        .position(|e| e.starts_with("answered"))
        .unwrap();
    let second = events
        .iter()
        .position(|e| e.starts_with("rcpt <c@d"))
        .unwrap();
    assert!(answered < second, "read on while waiting: {events:?}");
}

#[tokio::test(start_paused = true)]
async fn other_connections_are_served_while_one_waits() {
    let seen = Shared::default();
    let options = options();
    let waiting = with_session(
        GreyDecider::new(&seen),
        &options,
        ClientBuilder::new(),
        |mut c| async move {
            open(&mut c).await;
            let r = c.rcpt(&["<never@x.example>"]).await.unwrap();
            c.quit().await.unwrap();
            r
        },
    );
    let other = with_session(
        GreyDecider::new(&seen),
        &options,
        ClientBuilder::new(),
        |mut c| async move {
            // Let the first session reach its wait before starting.
            tokio::task::yield_now().await;
            let start = Instant::now();
            open(&mut c).await;
            let r = c.rcpt(&["<busy@x.example>"]).await.unwrap();
            let eom = c.eom().await.unwrap();
            c.quit().await.unwrap();
            (r, eom, start.elapsed())
        },
    );
    let ((_, waited), (_, (r, eom, took))) = tokio::join!(waiting, other);
    assert_eq!(waited, Response::Continue);
    assert!(is_greylisted(&r), "{r:?}");
    assert_eq!(eom.last, Response::Continue);
    assert_eq!(
        took,
        Duration::ZERO,
        "served only after the other's deadline"
    );
}

/// Without I/O (fuzzers, benches), a waiting decision is polled once: a
/// ready one is answered, one that is not is answered CONTINUE at once.
#[test]
fn the_io_free_core_answers_a_waiting_recipient_without_blocking() {
    let seen = Shared::default();
    let mut core = SessionCore::new(GreyDecider::new(&seen), &options(), 1, "t");
    let mut input = Vec::new();
    Command::OptNeg {
        version: 6,
        actions: 0x1ff,
        protocol: 0,
    }
    .encode(&mut input);
    Command::Connect {
        hostname: b"h",
        family: greymilter::milter::codec::Family::Inet4,
        port: 1,
        address: b"192.0.2.1",
    }
    .encode(&mut input);
    Command::Mail(StrArray::new(b"<a@b>\0").unwrap()).encode(&mut input);
    Command::Rcpt(StrArray::new(b"<never@x>\0").unwrap()).encode(&mut input);
    let mut out = Vec::new();
    assert_eq!(core.run_bytes(&input, &mut out), Flow::Continue);
    assert_eq!(
        seen.borrow().events.last().map(String::as_str),
        Some("expired")
    );
    // OPTNEG reply, then CONTINUE for CONNECT, MAIL and the waiting RCPT.
    assert!(out.ends_with(&[0, 0, 0, 1, b'c', 0, 0, 0, 1, b'c', 0, 0, 0, 1, b'c']));
}
