//! The daemon's allocator: the system allocator, plus transparent huge
//! pages for large blocks (issue 15). Installed by the binary
//! (`src/main.rs`) and by the benchmarks that measure it, not by the
//! library, so a tool may bring its own (e.g. a counting allocator).
//!
//! A checkpoint forks the daemon, and fork copies the page tables of every
//! mapped page: at 10M tuples that is ~600 MB of table in 4 KiB pages,
//! 10–15 ms during which the parent serves nobody. The same memory in
//! 2 MiB pages has 512 times fewer entries to copy.
//!
//! So every block of at least [`THRESHOLD`] (in practice the tuple table's
//! arrays, the network counts, large list files) is mapped by us, not by
//! malloc: 2 MiB-aligned and advised `MADV_HUGEPAGE` before its first
//! touch. It grows with `mremap` in place or onto another 2 MiB-aligned
//! address, because a move to a different alignment would split every
//! huge page (glibc's realloc of a large block does exactly that). Small
//! blocks stay with the system allocator: huge pages would only waste
//! memory there.
//!
//! The advice only takes effect when the kernel's transparent huge pages
//! are `always` or `madvise` (`/sys/kernel/mm/transparent_hugepage/enabled`);
//! with `never` the daemon runs as before. `[state] huge_pages = false`
//! switches the advice off. A copy-on-write fault in the parent while a
//! checkpoint child lives splits the huge page and copies 4 KiB, as with
//! small pages (Linux ≥ 5.8).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::libc;

/// Blocks from this size on are advised.
pub const THRESHOLD: usize = 4 << 20;
const HUGE_PAGE: usize = 2 << 20;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the advice on or off for blocks allocated from now on.
pub fn set_huge_pages(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn huge_pages() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The system allocator for small blocks, aligned huge-page mappings for
/// large ones.
pub struct Allocator;

/// Whether a block of this layout is one of our mappings: decided by the
/// layout alone, so that `dealloc` and `realloc` agree with `alloc`.
fn mapped(size: usize, align: usize) -> bool {
    size >= THRESHOLD && align <= HUGE_PAGE
}

// SAFETY: small blocks go to `System` unchanged. Large blocks are private
// anonymous mappings of at least `size` bytes, 2 MiB-aligned (which
// satisfies every alignment `mapped` admits), zero-filled by the kernel,
// and returned to the kernel only by `dealloc`/`realloc` with the layout
// they were made for.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if mapped(layout.size(), layout.align()) {
            return map(layout.size());
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if mapped(layout.size(), layout.align()) {
            // Fresh anonymous memory is zero: nothing to touch.
            return map(layout.size());
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if mapped(layout.size(), layout.align()) {
            unmap(block, map_len(layout.size()));
            return;
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(block, layout) }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        match (mapped(layout.size(), align), mapped(new_size, align)) {
            (true, true) => remap(block, layout.size(), new_size),
            (false, false) => {
                // SAFETY: forwarded with the caller's guarantees.
                unsafe { System.realloc(block, layout, new_size) }
            }
            (from_mapped, _) => {
                // Crossing the threshold: a new block, a copy, the old one freed.
                // SAFETY: `new_size` is non-zero and the alignment is the
                // caller's valid one.
                let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, align) };
                // SAFETY: as for `alloc`.
                let moved = unsafe { self.alloc(new_layout) };
                if moved.is_null() {
                    return moved;
                }
                // SAFETY: both blocks are live, distinct, and at least the
                // copied length long.
                unsafe {
                    std::ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                    if from_mapped {
                        unmap(block, map_len(layout.size()));
                    } else {
                        System.dealloc(block, layout);
                    }
                }
                moved
            }
        }
    }
}

/// A mapping's length: whole huge pages. A partly mapped 2 MiB range is
/// faulted in 4 KiB pages; once a growth maps the rest, khugepaged
/// collapses it into a huge page with our memory map locked for writing,
/// which stops every fault of the loop for 5–8 ms on a lazily backed VM
/// (BENCHMARKS.md, issue 24). The slack is address space only.
fn map_len(size: usize) -> usize {
    size.next_multiple_of(HUGE_PAGE)
}

/// A fresh 2 MiB-aligned mapping of `size` bytes (rounded up to huge
/// pages), advised; null if the kernel refuses.
fn map(size: usize) -> *mut u8 {
    let len = map_len(size);
    let Some(reserve) = len.checked_add(HUGE_PAGE) else {
        return std::ptr::null_mut();
    };
    // SAFETY: a new private anonymous mapping; no existing memory is named.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            reserve,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    let raw = raw as usize;
    let start = raw.next_multiple_of(HUGE_PAGE);
    // Give back what lies before and after the aligned block.
    unmap(raw as *mut u8, start - raw);
    unmap((start + len) as *mut u8, raw + reserve - (start + len));
    advise(start, len);
    start as *mut u8
}

/// Grows or shrinks a mapping made by [`map`], keeping its 2 MiB alignment.
fn remap(block: *mut u8, old_size: usize, new_size: usize) -> *mut u8 {
    let (old_len, new_len) = (map_len(old_size), map_len(new_size));
    // The prefault helper must not write into a block that moves.
    crate::prefault::settle_within(block as usize, old_len);
    if new_len <= old_len {
        unmap(block.wrapping_add(new_len), old_len - new_len);
        return block;
    }
    // SAFETY: `block` is our mapping of `old_len` bytes; without MAYMOVE
    // the kernel only grows it where the address space is free.
    let grown = unsafe { libc::mremap(block.cast(), old_len, new_len, 0) };
    if grown != libc::MAP_FAILED {
        advise(block as usize, new_len);
        return block;
    }
    // Move onto a fresh aligned mapping: MREMAP_FIXED replaces it, and the
    // page tables (huge ones included) move without copying the data.
    let target = map(new_size);
    if target.is_null() {
        return target;
    }
    // SAFETY: `block` is our mapping of `old_len` bytes, `target` our fresh
    // one of `new_len`; the kernel replaces `target` with `block`'s pages.
    let moved = unsafe {
        libc::mremap(
            block.cast(),
            old_len,
            new_len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            target.cast::<libc::c_void>(),
        )
    };
    if moved == libc::MAP_FAILED {
        unmap(target, new_len);
        return std::ptr::null_mut();
    }
    advise(target as usize, new_len);
    target
}

fn unmap(start: *mut u8, len: usize) {
    if len == 0 {
        return;
    }
    // Nor into memory given back.
    crate::prefault::settle_within(start as usize, len);
    // SAFETY: only called on page-aligned ranges of our own mappings that
    // nothing refers to any more.
    unsafe {
        libc::munmap(start.cast(), len);
    }
}

/// Advises a mapping `MADV_HUGEPAGE`, when switched on. Ignores failure:
/// the advice is an optimisation.
fn advise(start: usize, len: usize) {
    if !huge_pages() {
        return;
    }
    // SAFETY: a page-aligned range of our own mapping; MADV_HUGEPAGE
    // changes no memory contents.
    unsafe {
        libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
}
