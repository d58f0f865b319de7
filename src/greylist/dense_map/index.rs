//! One open-addressing index of the map: `u64` slots, linear probing,
//! deletion by backward shift (see the parent module's docs).

use std::alloc::Layout;

use super::{EMPTY, TOMB, entry_of, hash32};

pub(super) struct Index {
    pub(super) slots: Box<[u64]>,
    pub(super) mask: usize,
}

impl Index {
    pub(super) fn none() -> Index {
        Index {
            slots: Box::new([]),
            mask: 0,
        }
    }

    /// `n` (a power of two) empty slots, or `None` if memory is short.
    pub(super) fn with_slots(n: usize) -> Option<Index> {
        let layout = Layout::array::<u64>(n).ok()?;
        if layout.size() == 0 {
            return Some(Index::none());
        }
        // SAFETY: the layout has a non-zero size. Zeroed memory is a valid
        // `[u64]`; the box is freed with the same layout (`Layout::array`).
        let slots = unsafe {
            let p = std::alloc::alloc_zeroed(layout).cast::<u64>();
            if p.is_null() {
                return None;
            }
            Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n))
        };
        Some(Index { slots, mask: n - 1 })
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Positions are masked, so always in range.
    pub(super) fn at(&self, i: usize) -> u64 {
        self.slots.get(i).copied().unwrap_or(EMPTY)
    }

    pub(super) fn set(&mut self, i: usize, slot: u64) {
        if let Some(s) = self.slots.get_mut(i) {
            *s = slot;
        }
    }

    pub(super) fn home(&self, hash: u64) -> usize {
        hash as u32 as usize & self.mask
    }

    /// The slot of the entry `is_it` accepts among those whose hash has the
    /// low 32 bits of `hash`, probing from `from`.
    pub(super) fn find(
        &self,
        hash: u64,
        from: usize,
        mut is_it: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mut at = from;
        loop {
            let s = self.at(at);
            if s == EMPTY {
                return None;
            }
            if s != TOMB && hash32(s) == hash as u32 && is_it(entry_of(s)) {
                return Some(at);
            }
            at = (at + 1) & self.mask;
            if at == from {
                return None;
            }
        }
    }

    /// Stores `slot` in the first empty slot of its run (the index has one).
    pub(super) fn put(&mut self, slot: u64) {
        let mut at = self.home(u64::from(hash32(slot)));
        while self.at(at) != EMPTY {
            at = (at + 1) & self.mask;
        }
        self.set(at, slot);
    }

    /// Empties slot `at`, shifting the rest of its run back so that every
    /// key stays reachable from its home without tombstones.
    pub(super) fn erase(&mut self, mut at: usize) {
        let mut next = (at + 1) & self.mask;
        loop {
            let s = self.at(next);
            if s == EMPTY {
                break;
            }
            let home = self.home(u64::from(hash32(s)));
            // `s` may move to `at` unless its home lies cyclically in (at, next].
            if next.wrapping_sub(home) & self.mask >= next.wrapping_sub(at) & self.mask {
                self.set(at, s);
                at = next;
            }
            next = (next + 1) & self.mask;
        }
        self.set(at, EMPTY);
    }
}
