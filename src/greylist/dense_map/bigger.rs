//! The entries vector's move out of malloc's heap into a huge-page mapping
//! of its own (blocks from `crate::memory::THRESHOLD` on). A plain
//! reallocation would copy the entries into fresh pages and take their
//! faults in one call: two fresh 2 MiB pages, 5–13 ms on a lazily backed VM
//! (BENCHMARKS.md, issue 24). So the mapping is allocated a little before
//! the move is due and faulted in a page per insert, by the prefault helper
//! when one runs, as the next index is (`growth.rs`); the move then copies
//! into resident pages.

use super::growth::PREFAULT_STRIDE;
use crate::prefault::{self, Asked};

/// The mapping the entries move into, while its pages are faulted in.
pub(super) struct Bigger<T> {
    vec: Vec<T>,
    /// Bytes from the start touched or handed to the prefault helper.
    touched: usize,
}

impl<T> Bigger<T> {
    /// An empty vector with room for `capacity` entries; `None` without
    /// the memory.
    pub(super) fn new(capacity: usize) -> Option<Bigger<T>> {
        let mut vec = Vec::new();
        vec.try_reserve_exact(capacity).ok()?;
        Some(Bigger { vec, touched: 0 })
    }

    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.vec.capacity()
    }

    fn bytes(&self) -> usize {
        self.vec.capacity() * std::mem::size_of::<T>()
    }

    /// The pages wholly inside the block: the partial last one is left
    /// to the vector's growth, which faults it in whole (`fault_ahead`).
    fn whole_pages(&self) -> usize {
        self.bytes() / PREFAULT_STRIDE * PREFAULT_STRIDE
    }

    /// Every page faulted in: touched here, or by the helper, which is
    /// done (a move now never waits for it).
    pub(super) fn ready(&self) -> bool {
        self.touched >= self.whole_pages() && prefault::idle()
    }

    /// Has one more page faulted in: by the helper if one runs, else by
    /// writing a byte here. Nothing while the helper is busy.
    pub(super) fn touch_one(&mut self) {
        if self.touched >= self.whole_pages() {
            return;
        }
        // Inside the block (a whole page of it), which holds no entry.
        let at = self
            .vec
            .as_mut_ptr()
            .cast::<u8>()
            .wrapping_add(self.touched);
        match prefault::request(at as usize) {
            Asked::Yes => self.touched += PREFAULT_STRIDE,
            Asked::Busy => {}
            Asked::NoHelper => {
                // SAFETY: `at` lies in the vector's spare room, memory it
                // owns and nothing reads; volatile so that the fault is
                // taken now.
                unsafe { std::ptr::write_volatile(at, 0) };
                self.touched += PREFAULT_STRIDE;
            }
        }
    }

    /// Moves `entries` into the mapping (which `entries` then is); the old
    /// block goes back to malloc. Returns the bytes of it faulted in.
    pub(super) fn take(mut self, entries: &mut Vec<T>) -> usize {
        self.settle();
        self.vec.append(entries);
        std::mem::swap(&mut self.vec, entries);
        self.touched
    }

    fn settle(&self) {
        prefault::settle_within(self.vec.as_ptr() as usize, self.bytes());
    }
}

impl<T> Drop for Bigger<T> {
    /// The helper may be writing into the block.
    fn drop(&mut self) {
        self.settle();
    }
}
