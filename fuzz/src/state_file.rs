//! The state-file loader (`Engine::restore_state`, `greylist::state`).
//!
//! Input: a state file image. It is loaded as is (which mostly exercises
//! the checksum) and again with its last 8 bytes replaced by the right
//! checksum, so that mutations reach the parser behind it. Each image is
//! loaded into an engine with room for it and into one with
//! `max_tuples = 3` (eviction while restoring).
//!
//! Checked: a refused image leaves the engine as it was; an accepted one
//! respects `max_tuples`, writes back the same records (byte for byte when
//! nothing was evicted; only the reserved word, `written_at` and the
//! checksum may differ), and
//! what is written loads again to the same image.

use std::hash::Hasher;

use std::net::{IpAddr, Ipv4Addr};

use greymilter::greylist::clock::ManualClock;
use greymilter::greylist::settings::Settings;
use greymilter::greylist::state;
use greymilter::greylist::{Engine, Request};
use siphasher::sip::SipHasher13;

use crate::START;
use crate::session::check_flows;

const CHECKSUM_LEN: usize = 8;
/// Fields that are not read back as they were (see the layout in
/// `greylist/state.rs`): the reserved word (ignored when reading, written as
/// 0) and `written_at`.
const RESERVED: std::ops::Range<usize> = 12..16;
const WRITTEN_AT: std::ops::Range<usize> = 32..40;

pub fn check(data: &[u8]) {
    load(data);
    if data.len() >= CHECKSUM_LEN {
        load(&with_checksum(&data[..data.len() - CHECKSUM_LEN]));
    }
}

/// `body` followed by its state-file checksum.
pub fn with_checksum(body: &[u8]) -> Vec<u8> {
    let mut h = SipHasher13::new_with_keys(0, 0);
    h.write(body);
    let mut image = body.to_vec();
    image.extend_from_slice(&h.finish().to_le_bytes());
    image
}

fn engine(max_tuples: usize) -> (Engine, ManualClock) {
    let settings = Settings {
        max_tuples,
        auto_whitelist_after: 1,
        ..Settings::default()
    };
    let clock = ManualClock::new(START);
    (Engine::new(settings, Box::new(clock.clone())), clock)
}

fn image(engine: &Engine) -> Vec<u8> {
    let mut out = Vec::new();
    match engine.write_state(&mut out) {
        Ok(()) => out,
        Err(e) => panic!("writing a state to memory failed: {e}"),
    }
}

fn load(bytes: &[u8]) {
    for max_tuples in [1_000_000, 3] {
        let (mut e, _) = engine(max_tuples);
        let before = image(&e);
        let generation = e.generation();
        let summary = match e.restore_state(bytes) {
            Ok(summary) => summary,
            Err(_) => {
                assert_eq!(image(&e), before, "a refused state changed the engine");
                assert_eq!(e.generation(), generation);
                continue;
            }
        };
        let table = e.table();
        assert!(table.len() <= max_tuples, "{} tuples restored", table.len());
        assert_eq!(summary.pending, table.pending());
        assert_eq!(summary.whitelisted, table.whitelisted());
        assert_eq!(summary.auto_whitelist_records, e.auto_whitelist().len());
        let written = image(&e);
        let parsed =
            state::parse(bytes).unwrap_or_else(|err| panic!("restored, yet does not parse: {err}"));
        let loaded = parsed.pending().len() + parsed.white().len();
        assert_eq!(parsed.awl().len(), summary.auto_whitelist_records);
        if loaded <= max_tuples {
            assert_eq!(table.len(), loaded);
            assert_eq!(
                written.len(),
                bytes.len(),
                "restored state writes back another size"
            );
            let body = written.len() - CHECKSUM_LEN;
            assert_eq!(written[..RESERVED.start], bytes[..RESERVED.start]);
            assert_eq!(
                written[RESERVED.end..WRITTEN_AT.start],
                bytes[RESERVED.end..WRITTEN_AT.start]
            );
            assert_eq!(written[WRITTEN_AT.end..body], bytes[WRITTEN_AT.end..body]);
        } else {
            // Over the limit: expired entries go first, then evictions.
            assert_eq!(table.len(), max_tuples, "removed more than needed");
            assert!(summary.evicted <= (loaded - max_tuples) as u64);
        }
        let (mut again, clock) = engine(max_tuples);
        let second = again
            .restore_state(&written)
            .unwrap_or_else(|err| panic!("a written state does not load: {err}"));
        assert_eq!(second.evicted, 0);
        assert_eq!(
            (
                second.pending,
                second.whitelisted,
                second.auto_whitelist_records
            ),
            (
                summary.pending,
                summary.whitelisted,
                summary.auto_whitelist_records
            )
        );
        assert_eq!(
            image(&again),
            written,
            "write → restore → write is not stable"
        );
        run_on(&mut again, &clock, parsed.written_at, max_tuples);
    }
}

/// Uses a restored engine at the time the file says it was written and far
/// beyond: housekeeping, a decision, the statistics report.
fn run_on(e: &mut Engine, clock: &ManualClock, written_at: u64, max_tuples: usize) {
    for now in [written_at, written_at.saturating_add(1 << 32), u64::MAX] {
        clock.set(now);
        // Sweeps are bounded slices; a small table needs a few calls.
        for _ in 0..64 {
            if !e.maintain() {
                break;
            }
        }
        e.decide_rcpt(&Request {
            client_addr: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
            client_name: b"[192.0.2.1]",
            sender: b"<a@example.org>",
            recipient: b"<b@example.net>",
            authenticated: false,
        });
        assert!(e.table().len() <= max_tuples);
        check_flows(e);
        let _ = e.stats_report();
    }
}
