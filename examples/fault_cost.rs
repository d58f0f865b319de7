//! What a fresh page costs to fault in, by the ways the daemon could ask
//! for memory (issue 24). Each mode maps `MIB` fresh MiB (2 MiB-aligned)
//! and times each step, with `/proc/vmstat` deltas (huge-page faults,
//! compaction stalls, collapses):
//!
//! ```text
//! cargo run --release --example fault_cost -- huge 128      # MADV_HUGEPAGE, one touch per 2 MiB
//! cargo run --release --example fault_cost -- small 128     # no advice, one touch per 4 KiB
//! cargo run --release --example fault_cost -- collapse 128  # 4 KiB pages, then MADV_COLLAPSE per 2 MiB
//! cargo run --release --example fault_cost -- reuse 128     # huge, unmapped, mapped and faulted again
//! cargo run --release --example fault_cost -- helper 128    # huge, faulted by a helper process
//! ```
//!
//! Run modes a few seconds apart: memory freed by one run is reused by the
//! next (on a VM with free page reporting, memory freed for more than ~2 s
//! is given back to the host and is fresh again).

use std::time::Instant;

use nix::libc;

const HUGE: usize = 2 << 20;
const PAGE: usize = 4096;

fn map(len: usize, huge: bool) -> *mut u8 {
    // SAFETY: a new private anonymous mapping.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len + HUGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(raw, libc::MAP_FAILED, "mmap");
    let start = (raw as usize).next_multiple_of(HUGE);
    let advice = if huge {
        libc::MADV_HUGEPAGE
    } else {
        libc::MADV_NOHUGEPAGE
    };
    // SAFETY: inside the mapping just made.
    unsafe { libc::madvise(start as *mut _, len, advice) };
    start as *mut u8
}

fn unmap(p: *mut u8, len: usize) {
    // SAFETY: a range of our own mapping, no longer used.
    unsafe { libc::munmap(p.cast(), len) };
}

fn touch(p: *mut u8, at: usize) -> f64 {
    let t = Instant::now();
    // SAFETY: `at` lies inside the mapping `p` starts.
    unsafe { std::ptr::write_volatile(p.add(at), 1) };
    t.elapsed().as_secs_f64() * 1e3
}

fn report(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    println!(
        "{what:<40} n={n:>6} median={:.4} p90={:.4} max={:.4} sum={:.1} ms",
        ms[n / 2],
        ms[n * 9 / 10],
        ms[n - 1],
        ms.iter().sum::<f64>()
    );
}

const COUNTERS: [&str; 5] = [
    "thp_fault_alloc",
    "thp_fault_fallback",
    "compact_stall",
    "thp_collapse_alloc",
    "pgfault",
];

fn vmstat() -> Vec<i64> {
    let text = std::fs::read_to_string("/proc/vmstat").unwrap_or_default();
    COUNTERS
        .iter()
        .map(|k| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or(-1)
        })
        .collect()
}

fn huge_faults(len: usize) -> Vec<f64> {
    let p = map(len, true);
    let ms = (0..len / HUGE).map(|i| touch(p, i * HUGE)).collect();
    unmap(p, len);
    ms
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("huge", String::as_str);
    let len = args
        .get(2)
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(128)
        << 20;
    let before = vmstat();
    match mode {
        "huge" => report("fresh huge page, per 2 MiB", huge_faults(len)),
        "reuse" => {
            report("fresh huge page, per 2 MiB", huge_faults(len));
            report("huge page just freed, per 2 MiB", huge_faults(len));
        }
        "small" | "collapse" => {
            let p = map(len, false);
            let ms = (0..len / PAGE).map(|i| touch(p, i * PAGE)).collect();
            report("fresh 4 KiB page", ms);
            if mode == "collapse" {
                // SAFETY: inside our mapping.
                unsafe { libc::madvise(p.cast(), len, libc::MADV_HUGEPAGE) };
                let ms = (0..len / HUGE)
                    .map(|i| {
                        let t = Instant::now();
                        // SAFETY: inside our mapping.
                        unsafe { libc::madvise(p.add(i * HUGE).cast(), HUGE, libc::MADV_COLLAPSE) };
                        t.elapsed().as_secs_f64() * 1e3
                    })
                    .collect();
                report("MADV_COLLAPSE of 4 KiB pages, per 2 MiB", ms);
            }
            unmap(p, len);
        }
        "helper" => {
            greymilter::prefault::start(|| true).expect("fork the helper");
            let p = map(len, true);
            let t = Instant::now();
            let mut ms = Vec::new();
            for i in 0..len / HUGE {
                let at = p as usize + i * HUGE;
                assert_eq!(
                    greymilter::prefault::request(at),
                    greymilter::prefault::Asked::Yes
                );
                // The loop's side: polling for the answer, never faulting.
                let poll = Instant::now();
                while !greymilter::prefault::idle() {
                    std::hint::spin_loop();
                }
                ms.push(poll.elapsed().as_secs_f64() * 1e3);
            }
            println!(
                "helper faulted {} MiB in {:.1} ms",
                len >> 20,
                t.elapsed().as_secs_f64() * 1e3
            );
            report("helper, per 2 MiB (waited for)", ms);
            report(
                "then the loop's first touch, per 2 MiB",
                (0..len / HUGE).map(|i| touch(p, i * HUGE + PAGE)).collect(),
            );
            unmap(p, len);
        }
        other => {
            eprintln!("unknown mode {other}: huge, small, collapse, reuse, helper");
            std::process::exit(2);
        }
    }
    let after = vmstat();
    let deltas: Vec<String> = COUNTERS
        .iter()
        .zip(before.iter().zip(after))
        .map(|(k, (b, a))| format!("{k}+{}", a - b))
        .collect();
    println!("vmstat {}", deltas.join(" "));
}
