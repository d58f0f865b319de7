//! The state file: round trip, and every kind of bad input refused without
//! panicking and without touching the engine.

#[path = "support/greylist/mod.rs"]
mod greylist_support;

use greylist_support::{assert_identity, engine, peek, rcpt};
use greymilter::greylist::clock::ManualClock;
use greymilter::greylist::settings::Settings;
use greymilter::greylist::state::{MAGIC, VERSION};
use greymilter::greylist::{Engine, Reason, StateError};
use proptest::prelude::*;

fn populated() -> (Engine, ManualClock, Vec<u8>) {
    let (mut e, clock) = engine(Settings {
        auto_whitelist_after: 1,
        ..Settings::default()
    });
    rcpt(&mut e, "192.0.2.1", "<a@x.example>", "<r@y.example>");
    rcpt(&mut e, "2001:db8::1", "<b@x.example>", "<r@y.example>");
    clock.advance(400);
    rcpt(&mut e, "192.0.2.1", "<a@x.example>", "<r@y.example>");
    rcpt(&mut e, "198.51.100.1", "<c@x.example>", "<r@y.example>");
    let mut buf = Vec::new();
    e.write_state(&mut buf).unwrap();
    (e, clock, buf)
}

#[test]
fn round_trip_keeps_tuples_times_and_network_whitelist() {
    let (mut old, _clock, buf) = populated();
    assert_eq!(&buf[..8], MAGIC);
    // 40 header + 3 counts + 3 tuples + 1 network record + checksum
    assert_eq!(buf.len(), 40 + 24 + 3 * 24 + 20 + 8);
    let (mut e, clock2) = engine(Settings {
        auto_whitelist_after: 1,
        ..Settings::default()
    });
    clock2.set(greylist_support::T0 + 400);
    let summary = e.restore_state(&buf).unwrap();
    assert_eq!(
        (
            summary.pending,
            summary.whitelisted,
            summary.auto_whitelist_records
        ),
        (2, 1, 1)
    );
    for (c, s) in [
        ("192.0.2.1", "<a@x.example>"),
        ("2001:db8::1", "<b@x.example>"),
        ("198.51.100.1", "<c@x.example>"),
    ] {
        assert_eq!(
            peek(&mut e, c, s, "<r@y.example>"),
            peek(&mut old, c, s, "<r@y.example>"),
            "{c}"
        );
    }
    let s = e.stats();
    assert_eq!(
        (
            s.tuples,
            s.restored,
            s.whitelisted,
            s.auto_whitelisted,
            s.ips
        ),
        (3, 3, 1, 1, 3)
    );
    assert_identity(&e);
    // The saved secret makes old keys match: b passes after its delay,
    // measured from the original first attempt; 192.0.2.0/24 is whitelisted.
    assert_eq!(
        rcpt(&mut e, "2001:db8::1", "<b@x.example>", "<r@y.example>").reason,
        Reason::Retried
    );
    assert_eq!(
        rcpt(&mut e, "192.0.2.99", "<new@x.example>", "<r@y.example>").reason,
        Reason::AutoWhitelisted
    );
    // Writing again: the same three tuples, and b's network (which just
    // passed, auto_whitelist_after = 1) now has a record too.
    let mut again = Vec::new();
    e.write_state(&mut again).unwrap();
    assert_eq!(again.len(), buf.len() + 20);
}

#[test]
fn restore_beyond_max_tuples_evicts_instead_of_failing() {
    let (_, _, buf) = populated();
    let (mut e, _) = engine(Settings {
        max_tuples: 2,
        ..Settings::default()
    });
    let summary = e.restore_state(&buf).unwrap();
    assert_eq!(summary.evicted, 1);
    assert_eq!(e.stats().tuples, 2);
    assert_identity(&e);
}

fn refused(bytes: &[u8]) -> StateError {
    let (mut e, _) = engine(Settings::default());
    rcpt(&mut e, "203.0.113.1", "<keep@x.example>", "<r@y.example>");
    let before = (
        e.stats(),
        e.generation(),
        peek(&mut e, "203.0.113.1", "<keep@x.example>", "<r@y.example>"),
    );
    let err = e.restore_state(bytes).unwrap_err();
    let after = (
        e.stats(),
        e.generation(),
        peek(&mut e, "203.0.113.1", "<keep@x.example>", "<r@y.example>"),
    );
    assert_eq!(
        before, after,
        "a refused state must leave the engine unchanged"
    );
    assert!(!err.to_string().is_empty());
    err
}

fn reseal(mut body: Vec<u8>) -> Vec<u8> {
    use std::hash::Hasher;
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0, 0);
    h.write(&body);
    body.extend_from_slice(&h.finish().to_le_bytes());
    body
}

#[test]
fn bad_states_are_refused_cleanly() {
    let (_, _, buf) = populated();
    // Every truncation.
    for len in 0..buf.len() {
        refused(&buf[..len]);
    }
    // Every single-byte corruption.
    for i in 0..buf.len() {
        let mut b = buf.clone();
        b[i] ^= 0x40;
        refused(&b);
    }
    let mut b = buf.clone();
    b[..8].copy_from_slice(b"NOTGREY!");
    assert_eq!(refused(&b), StateError::BadMagic);
    // A future version, even with a valid checksum, is refused by name.
    let mut b = buf[..buf.len() - 8].to_vec();
    b[8..12].copy_from_slice(&(VERSION + 1).to_le_bytes());
    let err = refused(&reseal(b));
    assert_eq!(err, StateError::UnsupportedVersion(VERSION + 1));
    assert!(err.to_string().contains("newer"));
    // A huge count with a valid checksum must not allocate or read past.
    let mut b = buf[..buf.len() - 8].to_vec();
    b[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(refused(&reseal(b)), StateError::Truncated(_)));
    // Trailing bytes.
    let mut b = buf[..buf.len() - 8].to_vec();
    b.push(0);
    assert!(matches!(refused(&reseal(b)), StateError::TrailingBytes(1)));
    // A tuple twice.
    let mut b = buf[..48].to_vec();
    b[40..48].copy_from_slice(&2u64.to_le_bytes());
    b.extend_from_slice(&buf[48..72]);
    b.extend_from_slice(&buf[48..72]);
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    assert_eq!(refused(&reseal(b)), StateError::Duplicate("tuple"));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let (mut e, _) = engine(Settings::default());
        let _ = e.restore_state(&bytes);
    }

    #[test]
    fn arbitrary_bodies_with_valid_framing_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&body);
        let (mut e, _) = engine(Settings::default());
        if let Ok(_summary) = e.restore_state(&reseal(b)) {
            assert_identity(&e);
        }
    }
}
