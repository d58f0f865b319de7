//! The timing model, as properties over random settings and retry times.
//! Time is a ManualClock: nothing sleeps.

#[path = "support/greylist/mod.rs"]
mod greylist_support;

use std::time::Duration;

use greylist_support::{engine, rcpt};
use greymilter::greylist::settings::Settings;
use greymilter::greylist::{Action, Engine, Reason};
use proptest::prelude::*;

fn settings(delay: u64, window: u64, lifetime: u64) -> Settings {
    Settings {
        delay: Duration::from_secs(delay),
        retry_window: Duration::from_secs(window),
        whitelist_lifetime: Duration::from_secs(lifetime),
        // The client auto-whitelist would pass tuples on its own.
        auto_whitelist_after: 0,
        ..Settings::default()
    }
}

const CLIENT: &str = "192.0.2.10";
const FROM: &str = "<alice@example.org>";
const TO: &str = "<bob@example.net>";

fn attempt(e: &mut Engine) -> greymilter::greylist::Decision {
    rcpt(e, CLIENT, FROM, TO)
}

/// (delay, retry window > delay, whitelist lifetime)
fn timings() -> impl Strategy<Value = (u64, u64, u64)> {
    (1u64..7200, 1u64..200_000, 1u64..(90 * 86_400)).prop_map(|(d, extra, l)| (d, d + extra, l))
}

proptest! {
    #[test]
    fn never_passes_before_the_delay_and_first_seen_never_moves(
        (delay, window, lifetime) in timings(),
        mut offsets in proptest::collection::vec(0u64..1_000_000, 1..20),
    ) {
        let (mut e, clock) = engine(settings(delay, window, lifetime));
        let start = clock.now_secs();
        let first = attempt(&mut e);
        prop_assert_eq!((first.action, first.reason, first.remaining), (Action::Greylist, Reason::New, delay));
        offsets.sort_unstable();
        for off in offsets.into_iter().map(|o| o % delay) {
            clock.set(start + off);
            let d = attempt(&mut e);
            prop_assert_eq!(d.action, Action::Greylist);
            prop_assert_eq!(d.reason, Reason::Early);
            // Remaining is measured from the first attempt, whatever the retries.
            prop_assert_eq!(d.remaining, delay - off);
            prop_assert_eq!(d.delay, off);
        }
        // A steady retrier passes exactly at first_seen + delay.
        clock.set(start + delay);
        let d = attempt(&mut e);
        prop_assert_eq!((d.action, d.reason, d.delay), (Action::Pass, Reason::Retried, delay));
    }

    #[test]
    fn always_passes_inside_the_window(
        (delay, window, lifetime) in timings(),
        early in proptest::collection::vec(0u64..1_000_000, 0..5),
        at in 0u64..1_000_000,
    ) {
        let (mut e, clock) = engine(settings(delay, window, lifetime));
        let start = clock.now_secs();
        attempt(&mut e);
        let mut early: Vec<u64> = early.into_iter().map(|o| o % delay).collect();
        early.sort_unstable();
        for off in early {
            clock.set(start + off);
            attempt(&mut e);
        }
        let at = delay + at % (window - delay);
        clock.set(start + at);
        let d = attempt(&mut e);
        prop_assert_eq!((d.action, d.reason, d.delay, d.remaining), (Action::Pass, Reason::Retried, at, 0));
        // Passed once; every later use inside the lifetime is "whitelisted".
        let d = attempt(&mut e);
        prop_assert_eq!((d.action, d.reason), (Action::Pass, Reason::Whitelisted));
        prop_assert_eq!(e.stats().passed, 1);
    }

    #[test]
    fn an_unretried_tuple_expires_at_the_end_of_the_window(
        (delay, window, lifetime) in timings(),
        late in 0u64..1_000_000,
    ) {
        let (mut e, clock) = engine(settings(delay, window, lifetime));
        let start = clock.now_secs();
        attempt(&mut e);
        clock.set(start + window + late);
        let d = attempt(&mut e);
        prop_assert_eq!((d.action, d.reason, d.remaining), (Action::Greylist, Reason::New, delay));
        let s = e.stats();
        prop_assert_eq!((s.graylisted, s.graylist_expired, s.tuples), (2, 1, 1));
    }

    #[test]
    fn whitelist_expiry_slides_from_the_last_use(
        (delay, window, lifetime) in timings(),
        gaps in proptest::collection::vec(0u64..1_000_000, 1..10),
        final_gap in 0u64..1_000_000,
    ) {
        let (mut e, clock) = engine(settings(delay, window, lifetime));
        let mut now = clock.now_secs();
        attempt(&mut e);
        now += delay;
        clock.set(now);
        prop_assert_eq!(attempt(&mut e).reason, Reason::Retried);
        // Uses spaced by less than the lifetime keep it alive indefinitely,
        // even when their sum is far beyond it.
        for gap in gaps {
            now += gap % lifetime;
            clock.set(now);
            prop_assert_eq!(attempt(&mut e).reason, Reason::Whitelisted);
        }
        // A gap of at least the lifetime since the last use: greylisted anew.
        now += lifetime + final_gap;
        clock.set(now);
        let d = attempt(&mut e);
        prop_assert_eq!((d.action, d.reason), (Action::Greylist, Reason::New));
        prop_assert_eq!(e.stats().whitelist_expired, 1);
    }

    #[test]
    fn tuples_are_independent(
        (delay, window, lifetime) in timings(),
    ) {
        let (mut e, clock) = engine(settings(delay, window, lifetime));
        let start = clock.now_secs();
        attempt(&mut e);
        clock.set(start + delay);
        // Another recipient, another sender, another network: new tuples.
        prop_assert_eq!(rcpt(&mut e, CLIENT, FROM, "<carol@example.net>").reason, Reason::New);
        prop_assert_eq!(rcpt(&mut e, CLIENT, "<dave@example.org>", TO).reason, Reason::New);
        prop_assert_eq!(rcpt(&mut e, "198.51.100.1", FROM, TO).reason, Reason::New);
        // Same /24, case and brackets differences: the same tuple.
        prop_assert_eq!(rcpt(&mut e, "192.0.2.200", "Alice@EXAMPLE.org", "<BOB@example.net>").reason, Reason::Retried);
    }
}

#[test]
fn ipv6_clients_share_their_64() {
    let (mut e, clock) = engine(settings(300, 86_400, 86_400));
    rcpt(&mut e, "2001:db8:1:2::1", FROM, TO);
    clock.advance(300);
    assert_eq!(
        rcpt(&mut e, "2001:db8:1:2:ffff::9", FROM, TO).reason,
        Reason::Retried
    );
    assert_eq!(
        rcpt(&mut e, "2001:db8:1:3::1", FROM, TO).reason,
        Reason::New
    );
    // IPv4-mapped IPv6 is the IPv4 network.
    rcpt(&mut e, "::ffff:203.0.113.5", FROM, TO);
    clock.advance(300);
    assert_eq!(
        rcpt(&mut e, "203.0.113.77", FROM, TO).reason,
        Reason::Retried
    );
}

#[test]
fn a_clock_stepping_back_never_passes_early() {
    let (mut e, clock) = engine(settings(300, 86_400, 86_400));
    attempt(&mut e);
    clock.set(greylist_support::T0 - 1000);
    let d = attempt(&mut e);
    assert_eq!((d.action, d.remaining), (Action::Greylist, 300));
}

trait NowSecs {
    fn now_secs(&self) -> u64;
}
impl NowSecs for greymilter::greylist::clock::ManualClock {
    fn now_secs(&self) -> u64 {
        use greymilter::greylist::clock::Clock;
        self.now()
    }
}
