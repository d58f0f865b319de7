//! [`DenseMap`]: the map behind the tuple table, the per-network counts and
//! the auto-whitelist. The subset of `IndexMap` they use (entries in one
//! dense vector, `swap_remove` moves the last entry into the hole, positions
//! usable as cursors), with an index that never rehashes all at once.
//!
//! # Why not `IndexMap` (issue 24)
//!
//! A hash table that doubles rehashes every entry in the call that crosses
//! the threshold: 0.3 s at 3.3M tuples, 0.6–0.8 s at 6.7M, during which the
//! single-threaded daemon serves nobody. Two designs keep every operation
//! bounded: a table split into many fixed sub-tables (each doubling costs
//! 1/n), or one table migrated incrementally into its double (Redis's
//! dict). We chose the second: a split table would cut the big arrays into
//! blocks below the allocator's huge-page threshold (`crate::memory`), and
//! the checkpoint fork would again copy page tables for every 4 KiB page
//! (10–15 ms at 10M tuples instead of ~4). Here the entries stay one vector
//! (grown in steps with `mremap`) and each index is one block.
//!
//! # Representation
//!
//! * `entries`: `Vec<(K, V)>`, the order `iter` and positions follow. No
//!   stored hash: keys are keyed hashes already ([`MapKey::hash64`]).
//! * the index: open addressing with linear probing, one `u64` per slot:
//!   the low 32 bits of the key's hash in the high half (a filter before
//!   the key compare, and enough to re-home a slot without reading the
//!   entry), the entry's position + 1 in the low half; 0 is an empty slot.
//!   Kept at most 3/4 full: 1.33 to 2.67 slots (11 to 21 bytes) per entry.
//!   Deletion shifts the run back (no tombstones).
//!
//! # Incremental growth
//!
//! When an insert would fill the index beyond 3/4, a new index of twice the
//! slots is allocated zeroed (fresh pages from the kernel: nothing is
//! written up front) and becomes the index inserts go to; the old one is
//! kept for look-ups and drained by every later insert, at least
//! [`MIGRATE_STEP`] slots at a time, in slot order. A look-up searches the
//! new index, then the old one. The next growth is due after 3/4 of the old
//! slot count more inserts, by which time the drain (1/32 of that) is long
//! done.
//!
//! The new index is not fresh at that point: it was allocated a little
//! earlier and faulted in page by page (see `room_in_index`: a fresh huge
//! page costs 4–18 ms to fault in on a lazily backed VM, and the first
//! inserts and drain steps after a growth would take several each): by
//! the prefault helper process when one runs (`crate::prefault`, off the
//! loop), else one page per insert. The entries vector likewise keeps a
//! few MiB of room past its entries that the helper faults in ahead, and
//! leaves malloc's heap for a mapping faulted in beforehand (`bigger.rs`).
//!
//! Linear probing makes the drain subtle: a key may sit several slots past
//! its home, so clearing slots in order could cut the probe path of a key
//! not yet moved. So the drain starts just after an empty slot and only
//! stops just after an empty slot (whole probe runs move together); a key
//! whose home the drain has passed is then known to be moved, and a key
//! whose home it has not passed is still on an intact run. Removals from
//! the old index leave a tombstone, not a backward shift, for the same
//! reason; the old index takes no inserts.

use std::alloc::Layout;

use crate::prefault::{self, Asked};

mod bigger;
mod growth;
mod index;
use bigger::Bigger;
use growth::{Draining, PREFAULT_STRIDE, Prepared, RELEASE_CHUNK};
use index::Index;

/// A key that is already a uniform hash (a keyed SipHash output).
pub trait MapKey: Copy + Eq {
    fn hash64(&self) -> u64;
}

/// Old-index slots drained per insert while a growth is under way (at
/// least: a probe run is finished once started).
pub const MIGRATE_STEP: usize = 32;
/// Inserts allowed per page of the next index while it is prepared: the
/// helper takes 4–18 ms per fresh page on a lazily backed VM, the loop
/// inserts up to ~250k tuples per second.
const INSERTS_PER_PAGE: usize = 4096;
/// Room kept in a huge-page entries vector beyond its entries, faulted in
/// ahead by the prefault helper.
const AHEAD_BYTES: usize = 2 * HUGE_PAGE;
const HUGE_PAGE: usize = 2 << 20;
/// Indexes from this size on are prepared: smaller ones come from
/// malloc's warm memory (below the allocator's huge-page threshold).
const PREPARE_FROM: usize = if cfg!(test) {
    4096
} else {
    crate::memory::THRESHOLD
};
/// Most entries a map holds: positions are stored in 32 bits.
pub const MAX_ENTRIES: usize = (1 << 31) - 1;

const EMPTY: u64 = 0;
const TOMB: u64 = u64::MAX;

fn pack(hash: u64, pos: usize) -> u64 {
    (hash << 32) | (pos as u64 + 1)
}
fn hash32(slot: u64) -> u32 {
    (slot >> 32) as u32
}
fn entry_of(slot: u64) -> usize {
    (slot as u32) as usize - 1
}

/// Which index holds a found slot.
#[derive(Clone, Copy)]
enum Where {
    Current(usize),
    Old(usize),
}

/// Pages of the entries vector requested from the prefault helper, ahead
/// of the entries written: those below `to` bytes from the vector's start
/// (an offset: a move with `mremap` keeps the pages and their alignment).
#[derive(Default)]
struct Ahead {
    to: usize,
}

pub struct DenseMap<K, V> {
    entries: Vec<(K, V)>,
    index: Index,
    old: Option<Draining>,
    next: Option<Prepared>,
    ahead: Ahead,
    /// The mapping the entries move into when they outgrow malloc's heap.
    bigger: Option<Bigger<(K, V)>>,
    /// The last `limit` given to [`DenseMap::try_reserve_one`]: no mapping
    /// is prepared for a map that may not reach it.
    limit: usize,
}

impl<K, V> Default for DenseMap<K, V> {
    fn default() -> Self {
        DenseMap {
            entries: Vec::new(),
            index: Index::none(),
            old: None,
            next: None,
            ahead: Ahead::default(),
            bigger: None,
            limit: usize::MAX,
        }
    }
}

impl<K, V> Drop for DenseMap<K, V> {
    /// The prefault helper may be writing into the entries' spare room.
    fn drop(&mut self) {
        let bytes = self.entries.capacity() * std::mem::size_of::<(K, V)>();
        prefault::settle_within(self.entries.as_ptr() as usize, bytes);
    }
}

impl<K, V> std::fmt::Debug for DenseMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenseMap")
            .field("len", &self.entries.len())
            .field("slots", &self.index.len())
            .field("growing", &self.old.is_some())
            .finish()
    }
}

/// Slots for `n` entries at most 3/4 full (a power of two, at least 8).
fn slots_for(n: usize) -> usize {
    (n.saturating_mul(4) / 3 + 1).next_power_of_two().max(8)
}

impl<K: MapKey, V> DenseMap<K, V> {
    /// Room for `n` entries without growing (a restore).
    pub fn with_capacity(n: usize) -> Self {
        let n = n.min(MAX_ENTRIES);
        DenseMap {
            entries: Vec::with_capacity(n),
            index: Index::with_slots(slots_for(n))
                .unwrap_or_else(|| std::alloc::handle_alloc_error(slots_layout(n))),
            old: None,
            next: None,
            ahead: Ahead::default(),
            bigger: None,
            limit: usize::MAX,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Entries the vector holds without reallocating.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }
    /// Whether a growth of the index is being drained.
    #[cfg(test)]
    pub fn growing(&self) -> bool {
        self.old.is_some()
    }

    /// Asks the CPU to load the index line `key`'s search starts at, so
    /// that the cache misses of several maps overlap (a new tuple misses
    /// in `white`, then in `pending`, then finds its network).
    #[inline]
    pub fn prefetch(&self, key: &K) {
        let home = self.index.home(key.hash64());
        if let Some(slot) = self.index.slots.get(home) {
            prefetch_line(slot);
        }
    }

    fn locate(&self, key: &K) -> Option<Where> {
        let hash = key.hash64();
        let is_it = |i: usize| self.entries.get(i).is_some_and(|(k, _)| k == key);
        if let Some(at) = self.index.find(hash, self.index.home(hash), is_it) {
            return Some(Where::Current(at));
        }
        self.old
            .as_ref()
            .and_then(|o| o.find(hash, is_it))
            .map(Where::Old)
    }

    fn slot(&self, at: Where) -> u64 {
        match (at, &self.old) {
            (Where::Current(i), _) => self.index.at(i),
            (Where::Old(i), Some(o)) => o.index.at(i),
            (Where::Old(_), None) => EMPTY,
        }
    }

    pub fn get_index_of(&self, key: &K) -> Option<usize> {
        self.locate(key).map(|at| entry_of(self.slot(at)))
    }
    pub fn contains_key(&self, key: &K) -> bool {
        self.locate(key).is_some()
    }
    pub fn get(&self, key: &K) -> Option<&V> {
        let i = self.get_index_of(key)?;
        self.entries.get(i).map(|(_, v)| v)
    }
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let i = self.get_index_of(key)?;
        self.entries.get_mut(i).map(|(_, v)| v)
    }
    pub fn get_index(&self, i: usize) -> Option<(&K, &V)> {
        self.entries.get(i).map(|(k, v)| (k, v))
    }
    pub fn get_index_mut(&mut self, i: usize) -> Option<(&K, &mut V)> {
        self.entries.get_mut(i).map(|(k, v)| (&*k, v))
    }
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }
    #[cfg(test)]
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Room for one more entry: the vector grown by 1/8 of its length (at
    /// least 16, never beyond `limit`) instead of doubled, and the index
    /// grown if due. False if memory could not be had; nothing is lost.
    ///
    /// A vector in huge pages keeps [`AHEAD_BYTES`] of room beyond its
    /// entries, so the prefault helper can fault its next pages in before
    /// they are written (`fault_ahead`); it grows early only while the
    /// helper is idle (`mremap` would wait for it, see `crate::prefault`).
    pub fn try_reserve_one(&mut self, limit: usize) -> bool {
        let len = self.entries.len();
        if len >= MAX_ENTRIES {
            return false;
        }
        let cap = self.entries.capacity();
        let size = std::mem::size_of::<(K, V)>().max(1);
        let look = if cap * size >= crate::memory::THRESHOLD && prefault::running() {
            AHEAD_BYTES / size
        } else {
            0
        };
        if len == cap || (len + look >= cap && cap < limit && prefault::idle()) {
            let step = (len / 8)
                .max(16)
                .max(2 * look)
                .min(limit.saturating_sub(len))
                .max(1);
            let spare = cap - len;
            // The helper may be writing past the entries: the block may move.
            prefault::settle_within(self.entries.as_ptr() as usize, cap * size);
            // Out of malloc's heap only where this growth would leave it.
            let crosses = (cap + step) * size >= crate::memory::THRESHOLD;
            let moved = len == cap && crosses && self.move_to_bigger();
            if !moved
                && self.entries.try_reserve_exact(spare + step).is_err()
                && self.entries.try_reserve_exact(spare + 1).is_err()
                && len == cap
            {
                return false;
            }
        }
        self.limit = limit;
        self.room_in_index()
    }

    /// From half the allocator's huge-page threshold on, while the entries
    /// are still in malloc's heap: the mapping they move into is allocated
    /// and faulted in a page per insert (see `bigger.rs`). Dropped once
    /// the entries are in a mapping (moved there, or grown past it).
    fn prepare_bigger(&mut self) {
        let size = std::mem::size_of::<(K, V)>().max(1);
        let bytes = self.entries.capacity() * size;
        if bytes < crate::memory::THRESHOLD / 2 {
            return;
        }
        if bytes >= crate::memory::THRESHOLD {
            self.bigger = None;
            return;
        }
        if self.bigger.is_none() {
            let room = crate::memory::THRESHOLD.div_ceil(size);
            if room <= self.limit {
                self.bigger = Bigger::new(room.max(self.entries.capacity() + 1));
            }
        }
        if let Some(bigger) = &mut self.bigger {
            bigger.touch_one();
        }
    }

    /// The full entries moved into the prepared mapping, if it is ready;
    /// false if not (the vector then grows as usual).
    fn move_to_bigger(&mut self) -> bool {
        match self.bigger.take_if(|b| b.ready()) {
            Some(bigger) => {
                self.ahead.to = bigger.take(&mut self.entries);
                true
            }
            None => false,
        }
    }

    /// Has the prefault helper fault in the vector's next page before an
    /// entry is written there, and waits for it (rarely: it is asked
    /// [`AHEAD_BYTES`] ahead) if the entry about to be written is the byte
    /// it is writing.
    fn fault_ahead(&mut self) {
        let size = std::mem::size_of::<(K, V)>();
        let base = self.entries.as_ptr() as usize;
        let front = base + (self.entries.len() + 1) * size;
        prefault::settle_within(front - size, size);
        let end = base + self.entries.capacity() * size;
        if end - base < crate::memory::THRESHOLD {
            return;
        }
        if self.ahead.to < front - base {
            // Only pages wholly past the entries: the helper writes a byte.
            // (At the first mapping, or when the helper fell behind.)
            self.ahead.to = (front - base).next_multiple_of(HUGE_PAGE);
        }
        let next = base + self.ahead.to;
        if next + HUGE_PAGE <= end
            && next < front + AHEAD_BYTES
            && prefault::request(next) == Asked::Yes
        {
            self.ahead.to += HUGE_PAGE;
        }
    }

    /// Starts a growth if one more entry would fill the index beyond 3/4,
    /// and prepares the next index before that.
    ///
    /// A fresh index's first touches are page faults, each a zeroed 2 MiB
    /// huge page: 0.1–0.3 ms on a bare machine, up to ~7 ms in a VM whose
    /// host hands memory out lazily (BENCHMARKS.md, issue 24). The drain
    /// and the inserts right after a growth would take several in one
    /// call. So the next index is allocated a little before it is due and
    /// faulted in one page per insert (`Prepared`); at the growth its
    /// pages are resident and no call takes more than one such fault.
    fn room_in_index(&mut self) -> bool {
        let len = self.entries.len();
        if (len + 1) * 4 <= self.index.len() * 3 {
            return true;
        }
        // A drain outruns the next growth (see the module docs); finish
        // one anyway rather than ever hold two.
        while self.old.as_ref().is_some_and(|o| o.done < o.index.len()) {
            self.drain(usize::MAX);
        }
        self.old = None;
        let wanted = slots_for(len + 1).max(self.index.len() * 2);
        let prepared = self
            .next
            .take()
            .filter(|p| p.index.len() >= wanted)
            .map(Prepared::into_index);
        let Some(new) = prepared.or_else(|| Index::with_slots(wanted)) else {
            // Still correct while one slot is empty, only slower.
            return len + 1 < self.index.len();
        };
        let old = std::mem::replace(&mut self.index, new);
        if self.entries.is_empty() || old.slots.is_empty() {
            return true;
        }
        let start = old.slots.iter().position(|&s| s == EMPTY).unwrap_or(0) + 1;
        let start = start & old.mask;
        self.old = Some(Draining {
            released: start.div_ceil(RELEASE_CHUNK),
            start,
            index: old,
            done: 0,
        });
        true
    }

    /// Allocates the next index when the inserts left before the growth
    /// are [`INSERTS_PER_PAGE`] per page of it (plus a margin), then has
    /// one page of it faulted in per call (one call per insert).
    fn prepare_next(&mut self) {
        let len = self.entries.len();
        if let Some(p) = &mut self.next {
            p.touch_one();
            return;
        }
        let slots = self.index.len() * 2;
        let bytes = slots * std::mem::size_of::<u64>();
        if self.old.is_some() || bytes < PREPARE_FROM {
            return;
        }
        let left = (self.index.len() * 3 / 4).saturating_sub(len + 1);
        if left > INSERTS_PER_PAGE * bytes.div_ceil(PREFAULT_STRIDE) + MIGRATE_STEP {
            return;
        }
        // A new mapping takes the memory map's lock the helper may hold.
        if !prefault::idle() {
            return;
        }
        // No memory now: the growth tries again.
        if let Some(index) = Index::with_slots(slots) {
            self.next = Some(Prepared { index, touched: 0 });
        }
    }

    /// Moves at least `min` slots of the old index (whole runs) into the
    /// current one; drops the old index when it is empty.
    fn drain(&mut self, min: usize) {
        let Some(o) = &mut self.old else {
            return;
        };
        let n = o.index.len();
        let mut moved = 0;
        while o.done < n {
            let at = (o.start + o.done) & o.index.mask;
            let s = o.index.at(at);
            o.index.set(at, EMPTY);
            o.done += 1;
            moved += 1;
            if s == EMPTY {
                if moved >= min {
                    break;
                }
            } else if s != TOMB {
                self.index.put(s);
            }
        }
        o.release_drained();
        // Unmapping takes the memory map's lock the prefault helper may
        // hold: a drained index waits (it finds nothing) until it is idle.
        if o.done >= n && prefault::idle() {
            self.old = None;
        }
    }

    /// Inserts or replaces; returns the value replaced. Call
    /// [`DenseMap::try_reserve_one`] first where memory failure must not
    /// abort (as `Vec::push` would).
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some(i) = self.get_index_of(&key) {
            return self
                .entries
                .get_mut(i)
                .map(|(_, v)| std::mem::replace(v, value));
        }
        self.insert_absent(key, value);
        None
    }

    /// Inserts `key`, which the caller has just looked up and not found
    /// (saves a second probe on the hot path; a present key would be
    /// stored twice).
    pub fn insert_absent(&mut self, key: K, value: V) {
        debug_assert!(!self.contains_key(&key));
        // Done already where the caller reserved; for the others (the
        // network counts) the vector grows in steps and early too, so the
        // helper faults its pages ahead. A vector that cannot grow fails
        // in `push` below, as before.
        let _ = self.try_reserve_one(self.limit);
        if !self.room_in_index() {
            std::alloc::handle_alloc_error(slots_layout(self.entries.len() * 2));
        }
        self.drain(MIGRATE_STEP);
        self.prepare_next();
        self.prepare_bigger();
        let pos = self.entries.len();
        self.fault_ahead();
        self.entries.push((key, value));
        self.index.put(pack(key.hash64(), pos));
    }

    /// The value of `key`, inserted with `make` if absent (`None` only if
    /// the map is at [`MAX_ENTRIES`]).
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> Option<&mut V> {
        let i = match self.get_index_of(&key) {
            Some(i) => i,
            None if self.entries.len() < MAX_ENTRIES => {
                self.insert_absent(key, make());
                self.entries.len() - 1
            }
            None => return None,
        };
        self.entries.get_mut(i).map(|(_, v)| v)
    }

    /// Removes the entry at position `i`; the last entry takes its place.
    pub fn swap_remove_index(&mut self, i: usize) -> Option<(K, V)> {
        let key = self.entries.get(i)?.0;
        let at = self.locate(&key)?;
        self.clear_slot(at);
        let last = self.entries.len() - 1;
        if i != last
            && let Some(&(moved, _)) = self.entries.get(last)
        {
            let hash = moved.hash64();
            let is_last = |e: usize| e == last;
            let at = match self.index.find(hash, self.index.home(hash), is_last) {
                Some(at) => Some(Where::Current(at)),
                None => self
                    .old
                    .as_ref()
                    .and_then(|o| o.find(hash, is_last))
                    .map(Where::Old),
            };
            match at {
                Some(Where::Current(a)) => self.index.set(a, pack(hash, i)),
                Some(Where::Old(a)) => {
                    if let Some(o) = &mut self.old {
                        o.index.set(a, pack(hash, i));
                    }
                }
                None => {}
            }
        }
        Some(self.entries.swap_remove(i))
    }

    fn clear_slot(&mut self, at: Where) {
        match at {
            Where::Current(a) => self.index.erase(a),
            Where::Old(a) => {
                if let Some(o) = &mut self.old {
                    o.index.set(a, TOMB);
                }
            }
        }
    }

    pub fn swap_remove(&mut self, key: &K) -> Option<V> {
        let i = self.get_index_of(key)?;
        self.swap_remove_index(i).map(|(_, v)| v)
    }

    /// Keeps the entries `keep` accepts (order as `swap_remove` leaves it).
    /// The table walks in slices instead (`Table::walk_step`).
    #[cfg(test)]
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let mut i = 0;
        while let Some((k, v)) = self.entries.get_mut(i) {
            if keep(k, v) {
                i += 1;
            } else {
                self.swap_remove_index(i);
            }
        }
    }
}

#[inline]
fn prefetch_line(at: &u64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing the program sees and
    // cannot fault; SSE is part of the x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(at).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

fn slots_layout(n: usize) -> Layout {
    Layout::array::<u64>(slots_for(n)).unwrap_or(Layout::new::<u64>())
}

#[cfg(test)]
mod tests;
