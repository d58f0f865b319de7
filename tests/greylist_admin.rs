//! The engine's side of the control socket: `explain` answers what
//! `decide_rcpt` would, recording nothing; live edits keep the statistics
//! identity and survive a save/restore.

#[path = "support/greylist/mod.rs"]
mod greylist_support;

use std::time::Duration;

use greylist_support::{T0, assert_identity, engine, ip, peek, rcpt};
use greymilter::greylist::settings::{ListAction, ListSpec, Mode, Settings};
use greymilter::greylist::{Action, Reason, Request};
use proptest::prelude::*;

const CLIENTS: [&str; 3] = ["192.0.2.1", "192.0.2.200", "2001:db8::1"];
const SENDERS: [&str; 2] = ["<a@example.org>", "<b@list.example>"];
const RCPTS: [&str; 3] = ["<x@example.net>", "<y@example.net>", "<closed@example.net>"];

fn req<'a>(c: &str, s: &'a str, r: &'a str) -> Request<'a> {
    Request {
        client_addr: Some(ip(c)),
        client_name: b"[unverified]",
        sender: s.as_bytes(),
        recipient: r.as_bytes(),
        authenticated: false,
    }
}

fn settings(mode: Mode) -> Settings {
    Settings {
        mode,
        auto_whitelist_after: 2,
        lists: ListSpec {
            recipients: vec![("closed@example.net".into(), ListAction::Reject)],
            sender_domains: vec![(
                "list.example".into(),
                ListAction::Greylist {
                    delay: Some(Duration::from_secs(60)),
                },
            )],
            ..ListSpec::default()
        },
        ..Settings::default()
    }
}

proptest! {
    #[test]
    fn explain_predicts_decide_and_records_nothing(
        learn in any::<bool>(),
        steps in proptest::collection::vec((0usize..3, 0usize..2, 0usize..3, 0u64..4000, any::<bool>()), 1..50)
    ) {
        let (mut e, clock) = engine(settings(if learn { Mode::Learn } else { Mode::Enforce }));
        for (c, s, r, advance, edit) in steps {
            let (c, s, r) = (CLIENTS[c], SENDERS[s], RCPTS[r]);
            let stats = e.stats();
            let generation = e.generation();
            let x = e.explain(&req(c, s, r));
            prop_assert_eq!(e.stats(), stats);
            prop_assert_eq!(e.generation(), generation);
            prop_assert_eq!(x.tuple, peek(&mut e, c, s, r));
            let d = rcpt(&mut e, c, s, r);
            prop_assert_eq!(x.decision, d);
            if edit {
                match advance % 4 {
                    0 => { e.allow_tuple(ip(c), s.as_bytes(), r.as_bytes(), None); }
                    1 => { e.forget_tuple(ip(c), s.as_bytes(), r.as_bytes()); }
                    2 => { e.forget_network(ip(c).into()).unwrap(); }
                    _ => { e.flush_pending(); }
                }
            }
            assert_identity(&e);
            clock.advance(advance);
        }
    }
}

#[test]
fn allow_whitelists_for_the_duration_and_survives_a_restore() {
    let (mut e, clock) = engine(settings(Mode::Enforce));
    let (c, s, r) = ("192.0.2.1", "<a@example.org>", "<x@example.net>");
    let until = e
        .allow_tuple(
            ip(c),
            s.as_bytes(),
            r.as_bytes(),
            Some(Duration::from_secs(3600)),
        )
        .unwrap();
    assert_eq!(until, T0 + 3600);
    let x = e.explain(&req(c, s, r));
    assert_eq!(
        (x.decision.action, x.decision.reason),
        (Action::Pass, Reason::Whitelisted)
    );
    let mut saved = Vec::new();
    e.write_state(&mut saved).unwrap();
    let (mut e2, clock2) = engine(settings(Mode::Enforce));
    e2.restore_state(&saved).unwrap();
    clock2.advance(3599);
    assert_eq!(
        e2.explain(&req(c, s, r)).decision.reason,
        Reason::Whitelisted
    );
    clock2.advance(1);
    assert_eq!(e2.explain(&req(c, s, r)).decision.reason, Reason::New);
    clock.advance(10);
    let st = e.stats();
    assert_eq!((st.allowed, st.tuples), (1, 1));
}

#[test]
fn forget_a_network_removes_its_tuples_only_and_refuses_too_broad_ones() {
    let (mut e, _) = engine(settings(Mode::Enforce));
    for c in CLIENTS {
        rcpt(&mut e, c, "<a@example.org>", "<x@example.net>");
    }
    assert_eq!(e.stats().tuples, 2, "two clients share a /24");
    assert_eq!(
        e.forget_network("192.0.2.0/16".parse().unwrap()).unwrap(),
        (1, 0)
    );
    assert_eq!(e.stats().tuples, 1);
    assert!(e.forget_network("10.0.0.0/7".parse().unwrap()).is_err());
    assert!(e.forget_network("2001:db8::/32".parse().unwrap()).is_err());
    assert_eq!(
        e.forget_network("2001:db8::/64".parse().unwrap()).unwrap(),
        (1, 0)
    );
    assert_identity(&e);
    assert_eq!(e.stats().forgotten, 2);
}
