//! Hostile load against the real binary: a transaction
//! with 50,000 recipients, and more connections than `max_connections`.
//! Same frame and checks as hostile_clients.rs (support/hostile.rs).

mod support;

use std::time::{Duration, Instant};

use greymilter::milter::client::{ConnectAddr, Response};
use greymilter::milter::codec::{Command, StrArray};
use support::healthy::{Client, is_greylisted, negotiated, open};
use support::hostile::{Expect, Hostile, quit};

const RECIPIENTS: usize = 50_000;
/// RCPT packets written before their replies are read (the daemon answers
/// in order; this only saves round trips).
const WINDOW: usize = 500;
/// Table memory per tuple, generously (the engine's own measurement is
/// under 100 bytes; maps grow by doubling).
const BYTES_PER_TUPLE: u64 = 128;

async fn connect_client(c: &mut Client, last_octet: usize) {
    let ip = format!("203.0.113.{last_octet}").parse().unwrap();
    let r = c.connect("mx.load.example", &ConnectAddr::Ip(ip, 25)).await;
    assert_eq!(r.unwrap(), Response::Continue);
}

/// Reaction: tolerate. One transaction with 50,000 distinct recipients:
/// every one is answered, in order, with 451 (a new tuple each); the
/// session keeps nothing per recipient, so memory grows only by the table
/// (50,000 tuples), and no warn line is written.
#[test]
fn fifty_thousand_recipients_in_one_transaction_are_all_answered() {
    let mut h = Hostile::start("");
    h.allow_memory_kib(RECIPIENTS as u64 * BYTES_PER_TUPLE / 1024);
    let started = Instant::now();
    h.runtime.block_on(async {
        let mut c = negotiated(h.addr()).await;
        connect_client(&mut c, 1).await;
        assert_eq!(
            c.mail(&["<bulk@load.example>"]).await.unwrap(),
            Response::Continue
        );
        let mut answered = 0;
        let mut batch = Vec::new();
        while answered < RECIPIENTS {
            let n = WINDOW.min(RECIPIENTS - answered);
            batch.clear();
            for i in answered..answered + n {
                let raw = format!("<u{i}@load.example>\0");
                Command::Rcpt(StrArray::new(raw.as_bytes()).unwrap()).encode(&mut batch);
            }
            c.write_raw(&batch).await.unwrap();
            for i in answered..answered + n {
                let r = c.read_response().await.unwrap();
                assert!(is_greylisted(&r), "recipient {i}: {r:?}");
            }
            answered += n;
        }
        let eom = c.eom().await.unwrap();
        assert_eq!(eom.last, Response::Continue);
        quit(c).await;
    });
    eprintln!(
        "{RECIPIENTS} recipients answered in {:?}",
        started.elapsed()
    );
    let done = h.finish(Expect {
        warn: None,
        sessions: 1,
        protocol_errors: 0..=0,
        timeouts: 0,
    });
    assert_eq!(
        done.report.num("Deferred"),
        RECIPIENTS as u64 + 2 * done.outcome.sessions
    );
}

/// Sends OPTNEG and checks no answer comes within `wait`: the connection
/// sits in the kernel's backlog, not accepted (nor refused).
async fn is_waiting(c: &mut Client, wait: Duration) {
    let offer = Command::OptNeg {
        version: 6,
        actions: 0x1ff,
        protocol: 0x1f_ffff,
    };
    c.send(&offer).await.unwrap();
    let answered = tokio::time::timeout(wait, c.read_response()).await;
    assert!(
        answered.is_err(),
        "served beyond max_connections: {answered:?}"
    );
}

/// One greylist transaction on a held connection; QUIT_NC-free: the
/// connection stays open for the next one.
async fn transaction(c: &mut Client, tag: &str) {
    assert_eq!(
        c.mail(&["<held@load.example>"]).await.unwrap(),
        Response::Continue
    );
    let r = c.rcpt(&[&format!("<{tag}@load.example>")]).await.unwrap();
    assert!(is_greylisted(&r), "{tag}: {r:?}");
    c.abort().await.unwrap();
}

/// Reaction: the connections beyond `max_connections` (4) wait in the
/// backlog, neither refused nor served, while the 4 sessions in flight keep
/// being served; each waiting one is served as soon as a session ends. One
/// warn line ("max_connections reached", rate-limited) however often the
/// limit is hit. The healthy client beside it stalls in the backlog too,
/// and must still get every reply right.
#[test]
fn connections_beyond_max_connections_wait_and_are_served_in_turn() {
    let h = Hostile::start("[milter]\nlisten = \"inet:0@127.0.0.1\"\nmax_connections = 4\n");
    h.runtime.block_on(async {
        let addr = h.addr();
        let mut held = Vec::new();
        for i in 0..4 {
            let mut c = negotiated(addr).await;
            connect_client(&mut c, i + 1).await;
            held.push(c);
        }
        let mut waiting = Vec::new();
        for _ in 0..3 {
            let mut c = open(addr).await;
            is_waiting(&mut c, Duration::from_millis(300)).await;
            waiting.push(c);
        }
        for (i, c) in held.iter_mut().enumerate() {
            transaction(c, &format!("held{i}")).await;
        }
        // Each session that ends lets exactly the next waiting one in.
        for (round, mut next) in waiting.into_iter().enumerate() {
            quit(held.remove(0)).await;
            let Response::OptNeg(n) = next.read_response().await.unwrap() else {
                panic!("waiting connection {round}: OPTNEG not answered");
            };
            assert_eq!(n.version, 6);
            connect_client(&mut next, 10 + round).await;
            transaction(&mut next, &format!("waited{round}")).await;
            held.push(next);
            // Still full: a new connection waits again.
            let mut more = open(addr).await;
            is_waiting(&mut more, Duration::from_millis(100)).await;
            drop(more);
        }
        for c in held {
            quit(c).await;
        }
    });
    h.finish(Expect {
        warn: Some("max_connections reached"),
        sessions: 4 + 3 + 3,
        protocol_errors: 0..=0,
        timeouts: 0,
    });
}
