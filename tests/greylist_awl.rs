//! Client auto-whitelist counting through the engine.

#[path = "support/greylist/mod.rs"]
mod greylist_support;

use std::time::Duration;

use greylist_support::{engine, rcpt};
use greymilter::greylist::settings::{ListAction, ListSpec, Settings};
use greymilter::greylist::{Action, Engine, Reason};

const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

fn settings(after: u32) -> Settings {
    Settings {
        auto_whitelist_after: after,
        ..Settings::default()
    }
}

/// Greylists a fresh tuple `n` from `client` and passes it after the delay.
fn pass_new_tuple(
    e: &mut Engine,
    clock: &greymilter::greylist::clock::ManualClock,
    client: &str,
    n: u32,
) {
    let from = format!("<sender{n}x@example.org>");
    assert_eq!(
        rcpt(e, client, &from, "<rcpt@example.net>").action,
        Action::Greylist
    );
    clock.advance(300);
    assert_eq!(
        rcpt(e, client, &from, "<rcpt@example.net>").reason,
        Reason::Retried
    );
}

#[test]
fn a_network_is_whitelisted_after_n_passes_counted_once_per_hour() {
    let (mut e, clock) = engine(settings(3));
    // Three passes within the same hour count once.
    for n in 0..3 {
        pass_new_tuple(&mut e, &clock, "192.0.2.1", n);
    }
    assert_eq!(
        rcpt(&mut e, "192.0.2.1", "<new@example.org>", "<x@y>").reason,
        Reason::New
    );
    clock.advance(HOUR);
    pass_new_tuple(&mut e, &clock, "192.0.2.2", 10);
    assert_eq!(e.stats().auto_whitelisted, 0);
    clock.advance(HOUR);
    // A whitelisted tuple's use counts as a pass too: the third counted one.
    assert_eq!(
        rcpt(
            &mut e,
            "192.0.2.3",
            "<sender10x@example.org>",
            "<rcpt@example.net>"
        )
        .reason,
        Reason::Whitelisted
    );
    assert_eq!(e.stats().auto_whitelisted, 1);
    // Any sender/recipient from the /24 now passes at once.
    let d = rcpt(
        &mut e,
        "192.0.2.200",
        "<stranger@else.example>",
        "<z@example.net>",
    );
    assert_eq!(
        (d.action, d.reason),
        (Action::Pass, Reason::AutoWhitelisted)
    );
    // Another network is not affected.
    assert_eq!(
        rcpt(
            &mut e,
            "192.0.3.1",
            "<stranger@else.example>",
            "<z@example.net>"
        )
        .reason,
        Reason::New
    );
    assert_eq!(e.stats().auto_whitelist_passes, 1);
}

#[test]
fn the_network_whitelist_slides_and_expires() {
    let (mut e, clock) = engine(settings(1));
    pass_new_tuple(&mut e, &clock, "198.51.100.1", 0);
    let lifetime = 36 * DAY;
    for _ in 0..3 {
        clock.advance(lifetime - 1);
        assert_eq!(
            rcpt(&mut e, "198.51.100.9", "<s@x>", "<r@y>").reason,
            Reason::AutoWhitelisted
        );
    }
    clock.advance(lifetime);
    assert_eq!(
        rcpt(&mut e, "198.51.100.9", "<s@x>", "<r@y>").reason,
        Reason::New
    );
    assert_eq!(e.stats().auto_whitelisted, 0);
}

#[test]
fn off_when_zero_and_skipped_by_forced_greylisting() {
    let (mut e, clock) = engine(settings(0));
    for n in 0..10 {
        pass_new_tuple(&mut e, &clock, "192.0.2.1", n);
        clock.advance(HOUR);
    }
    assert_eq!(
        rcpt(&mut e, "192.0.2.1", "<other@x>", "<r@y>").reason,
        Reason::New
    );
    assert_eq!(e.stats().auto_whitelisted, 0);

    let mut s = settings(1);
    s.lists = ListSpec {
        recipients: vec![(
            "guarded@example.net".to_string(),
            ListAction::Greylist {
                delay: Some(Duration::from_secs(60)),
            },
        )],
        ..ListSpec::default()
    };
    let (mut e, clock) = engine(s);
    pass_new_tuple(&mut e, &clock, "192.0.2.1", 0);
    assert_eq!(
        rcpt(&mut e, "192.0.2.1", "<other@x>", "<r@y>").reason,
        Reason::AutoWhitelisted
    );
    let d = rcpt(&mut e, "192.0.2.1", "<other@x>", "<guarded@example.net>");
    assert_eq!((d.reason, d.remaining), (Reason::New, 60));
}
