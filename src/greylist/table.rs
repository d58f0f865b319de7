//! The tuple table: pending (not yet passed) and whitelisted tuples.
//!
//! # Representation and memory
//!
//! Two [`DenseMap<TupleKey, Times>`](DenseMap)s, `pending` and `white`:
//! entries in one dense vector of 24 bytes each (key 16, `Times` 8; no
//! stored hash, the key is a keyed hash already, see `key.rs`), grown in
//! steps of 1/8 (24 to 27 bytes per tuple), and an index of 8-byte slots
//! kept at most 3/4 full (11 to 21 bytes per tuple). The per-network tuple
//! counts are a `DenseMap<NetKey, u32>` (12-byte entries + slots, per
//! *network*, usually far fewer than tuples). Expected: **~35 to ~50
//! bytes per tuple** plus the network map.
//!
//! Measured with `cargo run --release --example state_bench` (VmRSS
//! before and after filling through `decide_rcpt`, one tuple in five
//! whitelisted, one network per five tuples): see BENCHMARKS.md.
//!
//! No operation rehashes the table: an index that must grow is drained
//! into its double by the following inserts, a bounded number of slots
//! each (see `dense_map.rs`). Expiry and eviction work in bounded windows.
//!
//! # Timing model (times are unix seconds as `u32`: good until 2106)
//!
//! * new tuple: `first_seen = now`, tempfail with `delay`;
//! * `now - first_seen < delay`: tempfail with the remaining time
//!   (`first_seen` never moves);
//! * `delay <= now - first_seen < retry_window`: pass, move to `white`;
//! * `now - first_seen >= retry_window`: stale, counted as expired, and the
//!   attempt starts over as a new tuple;
//! * white: passes while `now - last_use < whitelist_lifetime`, and each
//!   pass sets `last_use = now` (sliding).
//!
//! # Expiry and eviction
//!
//! Removing from the middle of a `DenseMap` in O(1) (`swap_remove`) moves
//! its last entry into the hole, so insertion order does not survive and a
//! front-to-back "oldest first" scan is not available. Instead:
//!
//! * **Expiry** is a sweep: a pass over both maps starts at most every
//!   [`SWEEP_PERIOD`] seconds and advances a cursor by a bounded number of
//!   entries per call (`sweep`), removing what is due. Look-ups also treat a
//!   due entry as expired, so a late sweep is never visible in a decision.
//!   An entry moved behind the cursor by a removal during a pass is seen in
//!   the next pass.
//! * **Eviction** (table full): a window of [`EVICT_WINDOW`] entries of each
//!   map, continuing round-robin where the last window ended, is examined.
//!   An expired entry in either window is removed first (as expired); else
//!   the pending entry with the oldest `first_seen` in the window is
//!   evicted; only when no tuple is pending is the whitelisted entry with
//!   the oldest `last_use` in the window evicted. Pending-before-white is
//!   exact; "oldest" is exact within a window (and so for tables of at most
//!   [`EVICT_WINDOW`] entries), approximate beyond. The table is never wiped.

use std::time::Duration;

use tracing::warn;

use super::dense_map::DenseMap;
use super::key::{NetKey, TupleKey};
use crate::ratelimit::LogLimiter;

mod admin;
#[cfg(test)]
mod growth_tests;
mod mirror;
mod timing;
#[cfg(test)]
mod walk_tests;

pub use admin::{Merged, Walk, WalkKind};
pub use timing::{Outcome, Timing};

/// First-seen and last-use (white) or last-attempt (pending) times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    pub first_seen: u32,
    pub last: u32,
}

/// Inflows and outflows of the table since start (or since a restore).
/// `len() == restored + graylisted + allowed − graylist_expired −
/// whitelist_expired − evicted − forgotten` always.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flows {
    pub restored: u64,
    pub graylisted: u64,
    pub graylist_expired: u64,
    pub whitelist_expired: u64,
    pub evicted: u64,
    /// Tuples that passed after their delay (moved to white).
    pub passed: u64,
    /// High-water mark of `len()`.
    pub high: u64,
    /// Tuples whitelisted by the administrator that were not stored.
    pub allowed: u64,
    /// Tuples removed by the administrator (forget, flush).
    pub forgotten: u64,
}

/// Seconds between the starts of two expiry passes.
pub const SWEEP_PERIOD: u64 = 60;
/// Entries examined per map when looking for something to evict.
pub const EVICT_WINDOW: usize = 64;

static EVICT_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(60));

type Map = DenseMap<TupleKey, Times>;

#[derive(Debug, Default)]
struct Sweep {
    active: bool,
    started: u64,
    pending_at: usize,
    white_at: usize,
}

#[derive(Debug, Default)]
pub struct Table {
    pending: Map,
    white: Map,
    /// Tuples per client network (pending + white).
    networks: DenseMap<NetKey, u32>,
    max: usize,
    flows: Flows,
    sweep: Sweep,
    evict_pending_at: usize,
    evict_white_at: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pending,
    White,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Expired,
    Evicted,
    /// By the administrator (forget, flush).
    Forgotten,
}

impl Table {
    pub fn new(max: usize) -> Table {
        Table {
            max: max.max(1),
            ..Table::default()
        }
    }

    /// Rebuilds a table from saved entries. Fails on a key that appears
    /// twice (a corrupt state). Entries beyond `max` are evicted at once.
    pub fn restore(
        max: usize,
        pending: impl ExactSizeIterator<Item = (TupleKey, Times)>,
        white: impl ExactSizeIterator<Item = (TupleKey, Times)>,
        now: u64,
        timing: &Timing,
    ) -> Result<Table, TupleKey> {
        let mut t = Table::new(max);
        t.pending = Map::with_capacity(pending.len());
        t.white = Map::with_capacity(white.len());
        for (k, v) in pending {
            if t.pending.insert(k, v).is_some() {
                return Err(k);
            }
            t.net_inc(k.net());
        }
        for (k, v) in white {
            if t.pending.contains_key(&k) || t.white.insert(k, v).is_some() {
                return Err(k);
            }
            t.net_inc(k.net());
        }
        let n = t.len() as u64;
        t.flows.restored = n;
        t.flows.high = n;
        while t.len() > t.max {
            t.make_room(now, timing);
        }
        Ok(t)
    }

    pub fn len(&self) -> usize {
        self.pending.len() + self.white.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn whitelisted(&self) -> usize {
        self.white.len()
    }
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
    /// Distinct client networks with at least one tuple.
    pub fn networks(&self) -> usize {
        self.networks.len()
    }
    pub fn flows(&self) -> Flows {
        self.flows
    }
    pub fn max(&self) -> usize {
        self.max
    }
    pub fn set_max(&mut self, max: usize) {
        self.max = max.max(1);
    }
    pub fn pending_entries(&self) -> impl ExactSizeIterator<Item = (&TupleKey, &Times)> {
        self.pending.iter()
    }
    pub fn white_entries(&self) -> impl ExactSizeIterator<Item = (&TupleKey, &Times)> {
        self.white.iter()
    }
    /// The stored times of a tuple and whether it is whitelisted.
    pub fn get(&self, key: &TupleKey) -> Option<(Times, bool)> {
        if let Some(t) = self.white.get(key) {
            return Some((*t, true));
        }
        self.pending.get(key).map(|t| (*t, false))
    }

    /// Decides one attempt of `key` at `now` with `delay` (the configured
    /// one or a list entry's).
    pub fn lookup(&mut self, key: TupleKey, now: u64, delay: u32, timing: &Timing) -> Outcome {
        let now32 = secs32(now);
        self.pending.prefetch(&key);
        self.networks.prefetch(&key.net());
        if let Some(idx) = self.white.get_index_of(&key) {
            if let Some((_, t)) = self.white.get_index_mut(idx)
                && !timing.white_expired(t, now32)
            {
                t.last = t.last.max(now32);
                return Outcome::Whitelisted;
            }
            self.remove(Kind::White, idx, Cause::Expired);
            return self.insert_new(key, now, timing);
        }
        if let Some(idx) = self.pending.get_index_of(&key) {
            let Some((_, t)) = self.pending.get_index_mut(idx) else {
                return Outcome::Unstored;
            };
            let waited = now32.saturating_sub(t.first_seen);
            let waited = match timing.pending_outcome(waited, delay) {
                Outcome::Retried { waited } => waited,
                Outcome::Early { waited, remaining } => {
                    t.last = now32;
                    return Outcome::Early { waited, remaining };
                }
                _ => {
                    // Stale: expired, and this attempt is a new tuple in place.
                    *t = Times {
                        first_seen: now32,
                        last: now32,
                    };
                    self.flows.graylist_expired += 1;
                    self.flows.graylisted += 1;
                    return Outcome::New;
                }
            };
            let first_seen = t.first_seen;
            if !reserve_for_insert(&mut self.white, self.max) {
                // Passes anyway (fail open); stays pending for next time.
                return Outcome::Retried { waited };
            }
            self.pending.swap_remove_index(idx);
            // Not in `white`: looked up above.
            self.white.insert_absent(
                key,
                Times {
                    first_seen,
                    last: now32,
                },
            );
            self.flows.passed += 1;
            return Outcome::Retried { waited };
        }
        self.insert_new(key, now, timing)
    }

    fn insert_new(&mut self, key: TupleKey, now: u64, timing: &Timing) -> Outcome {
        let mut evicted = 0u64;
        while self.len() >= self.max {
            if self.make_room(now, timing) == Some(Cause::Evicted) {
                evicted += 1;
            }
        }
        if !reserve_for_insert(&mut self.pending, self.max) {
            return Outcome::Unstored;
        }
        let now32 = secs32(now);
        // Every caller has found `key` in neither map.
        self.pending.insert_absent(
            key,
            Times {
                first_seen: now32,
                last: now32,
            },
        );
        self.net_inc(key.net());
        self.flows.graylisted += 1;
        self.flows.high = self.flows.high.max(self.len() as u64);
        if evicted > 0 {
            self.warn_evicted(evicted);
        }
        Outcome::New
    }

    fn warn_evicted(&self, n: u64) {
        if let Some(held_back) = EVICT_LOG.allow() {
            warn!(
                "tuple table full (max_tuples={}): evicted {n} tuple(s), {} in all since start \
                 ({held_back} similar messages suppressed); raise max_tuples if this persists",
                self.max, self.flows.evicted
            );
        }
    }

    /// Frees one slot: an expired entry of either eviction window, else the
    /// oldest pending entry of the window, else the least recently used
    /// white entry of the window. `None` only when the table is empty.
    fn make_room(&mut self, now: u64, timing: &Timing) -> Option<Cause> {
        let now32 = secs32(now);
        let p = scan_window(
            &self.pending,
            &mut self.evict_pending_at,
            |t| timing.pending_expired(t, now32),
            |t| t.first_seen,
        );
        if let Some((i, true)) = p {
            self.remove(Kind::Pending, i, Cause::Expired);
            return Some(Cause::Expired);
        }
        let w = scan_window(
            &self.white,
            &mut self.evict_white_at,
            |t| timing.white_expired(t, now32),
            |t| t.last,
        );
        if let Some((i, true)) = w {
            self.remove(Kind::White, i, Cause::Expired);
            return Some(Cause::Expired);
        }
        if let Some((i, _)) = p {
            self.remove(Kind::Pending, i, Cause::Evicted);
            return Some(Cause::Evicted);
        }
        let (i, _) = w?;
        self.remove(Kind::White, i, Cause::Evicted);
        Some(Cause::Evicted)
    }

    /// Brings the table back under `max` after it was lowered, at most
    /// `budget / EVICT_WINDOW` removals. Returns the work done.
    pub fn trim(&mut self, now: u64, timing: &Timing, budget: usize) -> usize {
        let mut used = 0;
        let mut evicted = 0;
        while self.len() > self.max && used < budget {
            if self.make_room(now, timing) == Some(Cause::Evicted) {
                evicted += 1;
            }
            used += 2 * EVICT_WINDOW;
        }
        if evicted > 0 {
            self.warn_evicted(evicted);
        }
        used
    }

    /// One slice of the expiry sweep: examines at most `budget` entries.
    /// Returns the entries examined and whether the current pass goes on.
    pub fn sweep(&mut self, now: u64, timing: &Timing, budget: usize) -> (usize, bool) {
        if !self.sweep.active {
            if now < self.sweep.started.saturating_add(SWEEP_PERIOD) && self.sweep.started != 0 {
                return (0, false);
            }
            self.sweep = Sweep {
                active: true,
                started: now.max(1),
                pending_at: 0,
                white_at: 0,
            };
        }
        let now32 = secs32(now);
        let mut used = 0;
        for kind in [Kind::Pending, Kind::White] {
            while used < budget {
                let i = self.sweep_cursor(kind);
                let Some((_, t)) = self.map(kind).get_index(i) else {
                    break;
                };
                if timing.expired(kind, t, now32) {
                    self.remove(kind, i, Cause::Expired);
                } else {
                    *self.sweep_cursor_mut(kind) += 1;
                }
                used += 1;
            }
        }
        let done =
            self.sweep.pending_at >= self.pending.len() && self.sweep.white_at >= self.white.len();
        if done {
            self.sweep.active = false;
        }
        (used, !done)
    }

    fn map(&self, kind: Kind) -> &Map {
        match kind {
            Kind::Pending => &self.pending,
            Kind::White => &self.white,
        }
    }

    fn sweep_cursor(&self, kind: Kind) -> usize {
        match kind {
            Kind::Pending => self.sweep.pending_at,
            Kind::White => self.sweep.white_at,
        }
    }

    fn sweep_cursor_mut(&mut self, kind: Kind) -> &mut usize {
        match kind {
            Kind::Pending => &mut self.sweep.pending_at,
            Kind::White => &mut self.sweep.white_at,
        }
    }

    fn remove(&mut self, kind: Kind, i: usize, cause: Cause) {
        let map = match kind {
            Kind::Pending => &mut self.pending,
            Kind::White => &mut self.white,
        };
        let Some((k, _)) = map.swap_remove_index(i) else {
            return;
        };
        self.net_dec(k.net());
        let counter = match (kind, cause) {
            (_, Cause::Evicted) => &mut self.flows.evicted,
            (_, Cause::Forgotten) => &mut self.flows.forgotten,
            (Kind::Pending, Cause::Expired) => &mut self.flows.graylist_expired,
            (Kind::White, Cause::Expired) => &mut self.flows.whitelist_expired,
        };
        *counter += 1;
    }

    fn net_inc(&mut self, net: NetKey) {
        if let Some(c) = self.networks.get_or_insert_with(net, || 0) {
            *c += 1;
        }
    }

    fn net_dec(&mut self, net: NetKey) {
        if let Some(c) = self.networks.get_mut(&net) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.networks.swap_remove(&net);
            }
        }
    }
}

/// Unix seconds as stored: saturating at 2106.
pub fn secs32(now: u64) -> u32 {
    u32::try_from(now).unwrap_or(u32::MAX)
}

/// Makes room for one more entry (see [`DenseMap::try_reserve_one`]).
fn reserve_for_insert(map: &mut Map, limit: usize) -> bool {
    map.try_reserve_one(limit)
}

/// Examines up to [`EVICT_WINDOW`] entries from `*cursor` (wrapping) and
/// moves the cursor past them. Returns the first expired entry found, or
/// else the one with the smallest `age`, with whether it is expired.
fn scan_window(
    map: &Map,
    cursor: &mut usize,
    expired: impl Fn(&Times) -> bool,
    age: impl Fn(&Times) -> u32,
) -> Option<(usize, bool)> {
    let len = map.len();
    if len == 0 {
        return None;
    }
    let start = if *cursor >= len { 0 } else { *cursor };
    let n = EVICT_WINDOW.min(len);
    let mut best: Option<(usize, u32)> = None;
    for step in 0..n {
        let i = (start + step) % len;
        let Some((_, t)) = map.get_index(i) else {
            continue;
        };
        if expired(t) {
            *cursor = i;
            return Some((i, true));
        }
        if best.is_none_or(|(_, a)| age(t) < a) {
            best = Some((i, age(t)));
        }
    }
    *cursor = (start + n) % len;
    best.map(|(i, _)| (i, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        delay: 300,
        retry_window: 86_400,
        lifetime: 36 * 86_400,
    };

    fn key(i: u64) -> TupleKey {
        TupleKey([i % 3, i.wrapping_mul(0x9e37_79b9_7f4a_7c15)])
    }

    #[test]
    fn entries_grow_in_steps_not_doublings() {
        let mut t = Table::new(1_000_000);
        for i in 0..100_000 {
            t.lookup(key(i), 1_000, 300, &T);
        }
        let cap = t.pending.capacity();
        assert!(cap >= 100_000);
        assert!(cap <= 100_000 + 100_000 / 8 + 1024, "capacity {cap}");
        assert_eq!(t.networks(), 3);
    }

    #[test]
    fn sweep_expires_in_slices_and_paces_passes() {
        let mut t = Table::new(1000);
        for i in 0..100 {
            t.lookup(key(i), 1_000, 300, &T);
        }
        let later = 1_000 + u64::from(T.retry_window);
        let (used, more) = t.sweep(later, &T, 40);
        assert_eq!((used, more), (40, true));
        assert_eq!(t.len(), 60);
        let (_, more) = t.sweep(later, &T, 1000);
        assert!(!more);
        assert!(t.is_empty());
        assert_eq!(t.networks(), 0);
        // The next pass waits for SWEEP_PERIOD.
        assert_eq!(t.sweep(later + 1, &T, 1000), (0, false));
        assert_eq!(t.flows().graylist_expired, 100);
    }
}
