//! The allocator advises large blocks MADV_HUGEPAGE (`src/memory.rs`), so
//! the tuple table's arrays are eligible for transparent huge pages and a
//! checkpoint's fork copies far fewer page table entries. The kernel marks
//! an advised range `hg` in its VmFlags, whatever the system's THP setting,
//! so the advice itself is checked here; what it buys is in BENCHMARKS.md.

use greymilter::memory::{THRESHOLD, set_huge_pages};

/// Large blocks (the tuple table) get transparent huge pages, as in the
/// daemon: see `greymilter::memory`.
#[global_allocator]
static ALLOCATOR: greymilter::memory::Allocator = greymilter::memory::Allocator;

/// The VmFlags of the mapping that holds `addr`, from /proc/self/smaps.
fn vm_flags(addr: usize) -> Vec<String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-')
            && let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
        {
            inside = (lo..hi).contains(&addr);
            continue;
        }
        if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
            return flags.split_whitespace().map(str::to_string).collect();
        }
    }
    panic!("no mapping holds {addr:#x}");
}

/// An address in the middle of a fresh block of `bytes`, kept alive by the
/// returned vector.
fn block(bytes: usize) -> (Vec<u64>, usize) {
    let v: Vec<u64> = Vec::with_capacity(bytes / 8);
    let middle = v.as_ptr() as usize + bytes / 2;
    (v, middle)
}

#[test]
fn large_blocks_are_advised_small_ones_and_switched_off_ones_are_not() {
    let (_large, large) = block(64 << 20);
    assert!(vm_flags(large).contains(&"hg".to_string()), "64 MiB block");

    // Growing a vector past the threshold advises the moved block too.
    let mut grown: Vec<u64> = Vec::with_capacity(1024);
    grown.reserve_exact(THRESHOLD * 4 / 8);
    let middle = grown.as_ptr() as usize + THRESHOLD * 2;
    assert!(vm_flags(middle).contains(&"hg".to_string()), "grown block");

    // Below the threshold: left alone (it may share a mapping with others).
    let (_small, small) = block(THRESHOLD / 4);
    assert!(!vm_flags(small).contains(&"hg".to_string()), "1 MiB block");

    set_huge_pages(false);
    let (_off, off) = block(64 << 20);
    set_huge_pages(true);
    assert!(!vm_flags(off).contains(&"hg".to_string()), "advice off");
}

#[test]
fn large_blocks_keep_their_contents_and_alignment_as_they_grow_and_shrink() {
    let words = |bytes: usize| bytes / 8;
    // Small, then across the threshold, then grown mapped to mapped (in
    // place or moved), then shrunk below the threshold again.
    let mut v: Vec<u64> = (0..1000).collect();
    for size in [THRESHOLD, 3 * THRESHOLD, 40 * THRESHOLD] {
        let filled = v.len() as u64;
        v.reserve_exact(words(size) - v.len());
        assert_eq!(
            v.as_ptr() as usize % (2 << 20),
            0,
            "2 MiB-aligned at {size}"
        );
        assert!(
            (0..filled).all(|i| v[i as usize] == i),
            "contents at {size}"
        );
        v.extend(filled..words(size) as u64);
    }
    v.truncate(1000);
    v.shrink_to_fit();
    assert!((0..1000).all(|i| v[i as usize] == i as u64));
    // A zeroed large block is zero.
    let z = vec![0u64; words(2 * THRESHOLD)];
    assert!(z.iter().all(|&w| w == 0));
}

/// The bounds of the mapping that holds `addr`, from /proc/self/maps.
fn mapping_of(addr: usize) -> (usize, usize) {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter_map(|line| {
            let (lo, hi) = line.split_whitespace().next()?.split_once('-')?;
            Some((
                usize::from_str_radix(lo, 16).ok()?,
                usize::from_str_radix(hi, 16).ok()?,
            ))
        })
        .find(|(lo, hi)| (*lo..*hi).contains(&addr))
        .unwrap_or_else(|| panic!("no mapping holds {addr:#x}"))
}

/// A large block is mapped in whole huge pages whatever its size, before
/// and after it grows: no 2 MiB range of it is mapped in part (faulted in
/// 4 KiB pages, such a range would later be collapsed by khugepaged with
/// the memory map locked, stopping the loop: `greymilter::memory`).
#[test]
fn large_blocks_are_mapped_in_whole_huge_pages() {
    const HUGE: usize = 2 << 20;
    let covers = |v: &Vec<u8>| {
        let start = v.as_ptr() as usize;
        let (lo, hi) = mapping_of(start);
        let end = start + v.capacity();
        assert_eq!(start % HUGE, 0, "{start:#x}");
        assert!(
            lo <= start && hi >= end.next_multiple_of(HUGE),
            "{lo:#x}-{hi:#x} for {start:#x}-{end:#x}"
        );
    };
    for bytes in [
        THRESHOLD + 24,
        3 * THRESHOLD + 4096 + 8,
        5 * THRESHOLD / 2 + 1000,
    ] {
        let mut v: Vec<u8> = Vec::with_capacity(bytes);
        covers(&v);
        v.reserve_exact(bytes + HUGE + 12);
        covers(&v);
    }
}
