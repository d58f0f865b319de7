//! Learning mode (`[greylist] mode = "learn"`): the table evolves exactly
//! as in enforce mode, but every deferral becomes a pass marked
//! `would-greylist`, counted on its own report line.

#[path = "support/greylist/mod.rs"]
mod greylist_support;

use greylist_support::{MapMacros, engine, peek, rcpt};
use greymilter::greylist::Action;
use greymilter::greylist::settings::{Mode, Settings};
use greymilter::milter::decision::{Client, Decider, DeciderFactory, Verdict};
use greymilter::pipeline::{MilterFactory, Pipeline, Timeouts};
use proptest::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;

fn settings(mode: Mode) -> Settings {
    Settings {
        mode,
        auto_whitelist_after: 2,
        ..Settings::default()
    }
}

const CLIENTS: [&str; 3] = ["192.0.2.1", "198.51.100.9", "2001:db8::1"];
const SENDERS: [&str; 2] = ["<a@example.org>", "<b@example.org>"];
const RCPTS: [&str; 2] = ["<x@example.net>", "<y@example.net>"];

proptest! {
    /// Same traffic, same clock: the same tuples with the same times, the
    /// same decisions except greylist ↔ would-greylist, and the counts
    /// moved from Deferred to Would-Greylist.
    #[test]
    fn learn_records_exactly_as_enforce(
        steps in proptest::collection::vec((0usize..3, 0usize..2, 0usize..2, 0u64..2000), 1..60)
    ) {
        let (mut enforce, ce) = engine(settings(Mode::Enforce));
        let (mut learn, cl) = engine(settings(Mode::Learn));
        for (c, s, r, advance) in steps {
            let (c, s, r) = (CLIENTS[c], SENDERS[s], RCPTS[r]);
            let de = rcpt(&mut enforce, c, s, r);
            let dl = rcpt(&mut learn, c, s, r);
            let expected = match de.action {
                Action::Greylist => Action::WouldGreylist,
                a => a,
            };
            prop_assert_eq!(dl.action, expected);
            prop_assert_eq!((dl.reason, dl.delay, dl.remaining), (de.reason, de.delay, de.remaining));
            prop_assert_eq!(peek(&mut learn, c, s, r), peek(&mut enforce, c, s, r));
            ce.advance(advance);
            cl.advance(advance);
        }
        let (se, sl) = (enforce.stats(), learn.stats());
        prop_assert_eq!(sl.would_greylist, se.deferred);
        prop_assert_eq!((sl.deferred, se.would_greylist), (0, 0));
        prop_assert_eq!(
            (sl.tuples, sl.graylisted, sl.passed, sl.whitelisted, sl.auto_whitelisted),
            (se.tuples, se.graylisted, se.passed, se.whitelisted, se.auto_whitelisted)
        );
    }
}

#[test]
fn learn_answers_continue_logs_would_greylist_and_adds_no_header() {
    let (e, clock) = engine(settings(Mode::Learn));
    let e = Rc::new(RefCell::new(e));
    let f = MilterFactory::new(Pipeline::new(Rc::clone(&e)), Timeouts::default());
    let none = MapMacros::default();
    let mut d = f.new_decider(1);
    let client = Client {
        hostname: b"mx.sender.example",
        addr: Some("192.0.2.1".parse().unwrap()),
        port: 25,
    };
    assert_eq!(d.connect(&client, &none), Verdict::Continue);
    d.mail(b"<alice@sender.example>", &none);
    assert_eq!(
        d.rcpt(b"<bob@example.net>", &none).now().unwrap(),
        Verdict::Continue
    );
    assert_eq!(d.eom(&none), None);
    d.end_transaction();
    // After the delay the tuple passes as "retried" (it was recorded), but
    // the message was never delayed: no X-Greylist header.
    clock.advance(400);
    d.mail(b"<alice@sender.example>", &none);
    assert_eq!(
        d.rcpt(b"<bob@example.net>", &none).now().unwrap(),
        Verdict::Continue
    );
    assert_eq!(d.eom(&none), None);
    let s = e.borrow().stats();
    assert_eq!((s.would_greylist, s.deferred, s.passed), (1, 0, 1));
    let mut later = String::new();
    s.push_later(&mut later);
    assert!(later.starts_with("Would-Greylist     1\n"), "{later}");
}

#[test]
fn learn_still_rejects_listed_recipients() {
    use greymilter::greylist::settings::{ListAction, ListSpec};
    let (mut e, _) = engine(Settings {
        lists: ListSpec {
            recipients: vec![("closed@example.net".into(), ListAction::Reject)],
            ..ListSpec::default()
        },
        ..settings(Mode::Learn)
    });
    let d = rcpt(
        &mut e,
        "192.0.2.1",
        "<a@example.org>",
        "<closed@example.net>",
    );
    assert_eq!(d.action, Action::Reject);
}
