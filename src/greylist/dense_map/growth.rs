//! The two indexes beside the current one during a growth: the next one
//! while its pages are faulted in ahead of the growth, and the previous one
//! while it is drained into the current one (see the parent module).

use super::{EMPTY, Index};
use crate::prefault::{self, Asked};

/// Bytes of the next index touched per insert while it is prepared: one
/// transparent huge page (see [`super::DenseMap::room_in_index`]).
pub(super) const PREFAULT_STRIDE: usize = if cfg!(test) { 4096 } else { 2 << 20 };

/// Slots per piece of a drained index given back to the kernel at once:
/// one huge page (an index is 2 MiB-aligned), so that no huge page is
/// split, which khugepaged would later collapse again with our memory map
/// locked (see `crate::memory::map_len`).
pub(super) const RELEASE_CHUNK: usize = if cfg!(test) { 1024 } else { 1 << 18 };

/// The previous index while it is drained into the current one.
pub(super) struct Draining {
    pub(super) index: Index,
    /// The drain began at this slot (just after an empty one)...
    pub(super) start: usize,
    /// ...and has emptied this many slots from there (wrapping).
    pub(super) done: usize,
    /// Chunks (counted from slot 0, without wrapping) below this one are
    /// released or hold `start`.
    pub(super) released: usize,
}

impl Draining {
    /// Gives the kernel back the pages of chunks the drain has passed, so
    /// that freeing the index at the end unmaps nothing resident: freeing
    /// 128 MB of 4 KiB pages at once is a pause of tens of ms. A released
    /// page reads as zeros, which is what a drained slot holds (`EMPTY`).
    pub(super) fn release_drained(&mut self) {
        let n = self.index.len();
        if n < 2 * RELEASE_CHUNK {
            return;
        }
        let reached = self.start + self.done;
        while (self.released + 1) * RELEASE_CHUNK <= reached {
            let first = self.released * RELEASE_CHUNK;
            self.released += 1;
            if first < self.start {
                continue;
            }
            let first = first % n;
            if let Some(chunk) = self.index.slots.get(first..first + RELEASE_CHUNK) {
                dont_need(chunk);
            }
        }
    }

    /// Whether keys whose home is `home` have all been moved.
    pub(super) fn passed(&self, home: usize) -> bool {
        home.wrapping_sub(self.start) & self.index.mask < self.done
    }

    pub(super) fn find(&self, hash: u64, is_it: impl FnMut(usize) -> bool) -> Option<usize> {
        let home = self.index.home(hash);
        if self.passed(home) {
            return None;
        }
        self.index.find(hash, home, is_it)
    }
}

/// The next index while its pages are faulted in, one per insert.
pub(super) struct Prepared {
    pub(super) index: Index,
    /// Slots from 0 below this one have been touched or handed to the
    /// prefault helper.
    pub(super) touched: usize,
}

impl Prepared {
    /// Has one more page of the next index faulted in: by the prefault
    /// helper if one runs (off the loop), else by writing one slot per
    /// [`PREFAULT_STRIDE`] bytes here. Nothing while the helper is busy.
    pub(super) fn touch_one(&mut self) {
        let stride = PREFAULT_STRIDE / std::mem::size_of::<u64>();
        let Some(slot) = self.index.slots.get_mut(self.touched) else {
            return;
        };
        match prefault::request(std::ptr::from_mut(slot) as usize) {
            Asked::Yes => self.touched += stride,
            Asked::Busy => {}
            Asked::NoHelper => {
                // Volatile: a store of the value fresh memory already
                // holds must still happen, it is the fault we want taken
                // now.
                // SAFETY: `slot` is a valid, exclusive reference.
                unsafe { std::ptr::write_volatile(slot, EMPTY) };
                self.touched += stride;
            }
        }
    }

    /// The index, once the helper no longer writes into it.
    pub(super) fn into_index(mut self) -> Index {
        self.settle();
        std::mem::replace(&mut self.index, Index::none())
    }

    fn settle(&self) {
        let bytes = std::mem::size_of_val(&*self.index.slots);
        prefault::settle_within(self.index.slots.as_ptr() as usize, bytes);
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        self.settle();
    }
}

/// `MADV_DONTNEED` on the whole pages inside `slots`.
fn dont_need(slots: &[u64]) {
    const PAGE: usize = 4096;
    let from = (slots.as_ptr() as usize).next_multiple_of(PAGE);
    let to = (slots.as_ptr() as usize + std::mem::size_of_val(slots)) / PAGE * PAGE;
    if to > from {
        // SAFETY: the range lies inside `slots`, memory this map owns and
        // no one else reads; afterwards it reads as zeros (`EMPTY`), which
        // every slot in it already holds. A failure changes nothing.
        unsafe {
            nix::libc::madvise(
                from as *mut nix::libc::c_void,
                to - from,
                nix::libc::MADV_DONTNEED,
            );
        }
    }
}
