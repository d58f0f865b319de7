//! What a checkpoint fork costs the parent, with and without transparent
//! huge pages, independent of the engine: allocates and touches a buffer
//! the size of a large table, forks (the child exits at once) three times,
//! then forks a child that lingers and times random one-byte writes in the
//! parent (copy-on-write faults).
//!
//! `cargo run --release --example fork_cost -- [MIB] [huge]`
//! (default 700 MiB, about the resident size of 10M tuples; `huge` first
//! calls madvise(MADV_HUGEPAGE) on the buffer).

use std::time::{Duration, Instant};

use nix::libc;

fn smaps(field: &str) -> String {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// fork(); the child `_exit`s after `linger`. Returns the time the call took
/// in the parent and the child's pid.
fn fork_child(linger: Duration) -> (Duration, libc::pid_t) {
    let started = Instant::now();
    // SAFETY: single-threaded; the child only sleeps and calls _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        fail(&format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        std::thread::sleep(linger);
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) }
    }
    (started.elapsed(), pid)
}

fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waits for our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    if r != pid || status != 0 {
        fail(&format!("child {pid}: waitpid {r}, status {status:#x}"));
    }
}

/// A measurement that did not happen is not a figure: say why and exit 1.
fn fail(what: &str) -> ! {
    eprintln!("fork_cost: {what}");
    std::process::exit(1)
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(700);
    let huge = std::env::args().nth(2).as_deref() == Some("huge");
    let size = mib << 20;
    let mut buffer: Vec<u8> = Vec::with_capacity(size);
    if huge {
        let start = (buffer.as_ptr() as usize + 4095) & !4095;
        let end = (buffer.as_ptr() as usize + size) & !4095;
        // SAFETY: advice on pages of our own allocation; no memory is changed.
        let r =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        if r != 0 {
            fail(&format!(
                "madvise(MADV_HUGEPAGE): {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    let started = Instant::now();
    buffer.resize(size, 1);
    println!(
        "touched {mib} MiB in {:?}; Rss {}, AnonHugePages {}",
        started.elapsed(),
        smaps("Rss:"),
        smaps("AnonHugePages:")
    );
    let mut forks = Vec::new();
    for _ in 0..3 {
        let (took, pid) = fork_child(Duration::ZERO);
        reap(pid);
        println!("fork: {took:?}");
        forks.push(took);
    }
    let (_, pid) = fork_child(Duration::from_secs(2));
    let mut x: usize = 12345;
    let mut worst = Duration::ZERO;
    let started = Instant::now();
    for _ in 0..20_000 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let i = (x >> 20) % size;
        let t = Instant::now();
        buffer[i] = buffer[i].wrapping_add(1);
        worst = worst.max(t.elapsed());
    }
    println!(
        "20000 random writes while a child shares the pages: {:?}, worst {worst:?}",
        started.elapsed()
    );
    reap(pid);
    let median = {
        forks.sort();
        forks[1]
    };
    println!(
        "RESULT mib={mib} huge={huge} forks={} fork_median_us={} worst_write_us={}",
        forks.len(),
        median.as_micros(),
        worst.as_micros()
    );
}
