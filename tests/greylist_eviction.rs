//! Capacity: expire what is due, then evict the oldest pending tuples,
//! then the least recently used whitelisted ones; never wipe.

#[path = "support/greylist/mod.rs"]
mod greylist_support;

use greylist_support::{assert_identity, engine, peek, rcpt};
use greymilter::greylist::settings::Settings;
use greymilter::greylist::{Action, Reason};

const C: &str = "192.0.2.1";
const TO: &str = "<rcpt@example.net>";

fn from(name: &str) -> String {
    format!("<{name}@example.org>")
}

fn small(max: usize) -> Settings {
    Settings {
        max_tuples: max,
        auto_whitelist_after: 0,
        ..Settings::default()
    }
}

#[test]
fn oldest_pending_first_then_least_recently_used_white() {
    let (mut e, clock) = engine(small(4));
    let add = |e: &mut _, who: &str| {
        assert_eq!(rcpt(e, C, &from(who), TO).reason, Reason::New);
    };
    add(&mut e, "a");
    clock.advance(10);
    add(&mut e, "b");
    clock.advance(300);
    assert_eq!(rcpt(&mut e, C, &from("b"), TO).reason, Reason::Retried);
    clock.advance(10);
    add(&mut e, "c");
    clock.advance(10);
    add(&mut e, "d");
    assert_eq!(e.stats().tuples, 4);
    // Full: the oldest pending (a) goes, not the older-but-white b.
    clock.advance(10);
    add(&mut e, "e");
    assert!(peek(&mut e, C, &from("a"), TO).is_none());
    for who in ["b", "c", "d", "e"] {
        assert!(peek(&mut e, C, &from(who), TO).is_some(), "{who}");
    }
    clock.advance(10);
    add(&mut e, "f");
    assert!(peek(&mut e, C, &from("c"), TO).is_none());
    assert_eq!(e.stats().evicted, 2);

    // Pass d, e, f: nothing pending any more. Use b last.
    clock.advance(400);
    for who in ["d", "e", "f", "b"] {
        assert_eq!(
            rcpt(&mut e, C, &from(who), TO).action,
            Action::Pass,
            "{who}"
        );
        clock.advance(1);
    }
    // Full of white tuples: the least recently used one (d) goes.
    add(&mut e, "g");
    assert!(peek(&mut e, C, &from("d"), TO).is_none());
    for who in ["b", "e", "f", "g"] {
        assert!(peek(&mut e, C, &from(who), TO).is_some(), "{who}");
    }
    // Pending again before white: the next insert evicts g.
    add(&mut e, "h");
    assert!(peek(&mut e, C, &from("g"), TO).is_none());
    let s = e.stats();
    assert_eq!((s.tuples, s.evicted, s.whitelisted), (4, 4, 3));
    assert_identity(&e);
}

#[test]
fn due_tuples_are_expired_before_anything_is_evicted() {
    let (mut e, clock) = engine(small(3));
    rcpt(&mut e, C, &from("old"), TO);
    clock.advance(20 * 3600);
    rcpt(&mut e, C, &from("x"), TO);
    rcpt(&mut e, C, &from("y"), TO);
    // "old" is past its retry window (24 h) but the sweep has not run.
    clock.advance(5 * 3600);
    rcpt(&mut e, C, &from("z"), TO);
    let s = e.stats();
    assert_eq!((s.tuples, s.evicted, s.graylist_expired), (3, 0, 1));
    assert!(peek(&mut e, C, &from("x"), TO).is_some());
    assert_identity(&e);
}

#[test]
fn a_lowered_max_is_reached_by_maintenance_without_wiping() {
    let (mut e, _clock) = engine(small(1000));
    for i in 0..1000 {
        rcpt(&mut e, C, &from(&format!("s{i}")), TO);
    }
    let mut s = small(100);
    s.auto_whitelist_after = 0;
    e.set_settings(s);
    let mut calls = 0;
    while e.maintain() {
        calls += 1;
        assert!(calls < 10_000);
    }
    assert!(
        calls > 1,
        "trimming 900 tuples must take several bounded slices"
    );
    let st = e.stats();
    assert_eq!((st.tuples, st.evicted), (100, 900));
    assert_identity(&e);
}
