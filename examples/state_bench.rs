//! Memory and checkpoint benchmark of the engine at a given table size:
//! resident bytes per tuple, the checkpoint write, the main-loop stall of
//! the checkpoint fork, and the restore.
//!
//! ```text
//! cargo run --release --example state_bench -- --tuples 10M [--out FILE]
//! ```
//!
//! 1. Fills an engine from empty through `decide_rcpt` (the real path:
//!    addresses normalised and hashed) with `--tuples` distinct tuples
//!    drawn from the address model in BENCHMARKS.md, paced at
//!    `--fill-rate` decisions per second in 1 ms batches on a
//!    current_thread runtime with a 1 ms ticker running, as in the daemon:
//!    every decision is timed (`fill_worst_ms`, the worst single one: an
//!    index growth shows here) and so is the ticker's lateness
//!    (`fill_lag_max_ms`, which also holds one batch), and the time the
//!    hypervisor gave this VM's CPUs to others meanwhile (`fill_steal_ms`,
//!    `steal` in /proc/stat: a decision that took long without running
//!    shows there). Then retries one in
//!    five after the delay (whitelisted), and times `--decide` new-tuple
//!    decisions on the full table in a tight loop (`decide_per_s`).
//!    Resident memory (VmRSS) before and after.
//! 2. Writes the state with `write_atomically` (temp file, fsync, rename:
//!    what the checkpoint child does) to `--out`, timed in this process.
//! 3. Mimics the daemon's main loop on a current_thread runtime: a 1 ms
//!    ticker measures how late it runs (loop stalls), a task keeps deciding
//!    new tuples at `--rate` per second, and after one second the loop
//!    forks a checkpoint through `Checkpointer::start`, exactly as the
//!    daemon does. Reports the duration of that call (the fork: the parent
//!    copies its page tables), the worst ticker delay and decision time
//!    while the child runs (copy-on-write faults), and the child's time.
//! 4. Drops the engine, reads the file back and restores it into a fresh
//!    engine, timed; resident bytes per restored tuple.
//! 5. Times, on that engine, the worst maintenance slice and the control
//!    socket's walks of the whole table (`forget` of a network, `flush`),
//!    in slices as the daemon runs them: each walk's total and the worst
//!    slice (`walk_slice_max_ms`, what the loop waits for).
//!
//! `--out` defaults to a file in the current directory; keep it on the
//! disk the daemon's state would be on (fsync times differ on tmpfs).

#[path = "support/workload.rs"]
mod workload;

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use greymilter::daemon::{CheckpointOutcome as Outcome, CheckpointStart as Start, Checkpointer};
use greymilter::greylist::clock::{Clock, ManualClock, SystemClock};
use greymilter::greylist::settings::Settings;
use greymilter::greylist::{AdminWalk, Engine, Request, WALK_SLICE};
use greymilter::write_atomically;
use workload::Envelope;

/// Large blocks (the tuple table) get transparent huge pages, as in the
/// daemon: see `greymilter::memory`.
#[global_allocator]
static ALLOCATOR: greymilter::memory::Allocator = greymilter::memory::Allocator;

#[derive(Parser, Debug)]
struct Args {
    /// Tuples to fill (suffixes k and M allowed: 1M, 10M).
    #[arg(long, default_value = "1M", value_parser = count)]
    tuples: usize,
    /// Client /24 (/64) networks the tuples come from [default: one per
    /// five tuples].
    #[arg(long, value_parser = count)]
    networks: Option<usize>,
    /// Where the state file goes.
    #[arg(long, default_value = "state_bench.state")]
    out: PathBuf,
    /// Keep the state file (to start the daemon on it).
    #[arg(long)]
    keep: bool,
    /// Decisions per second while filling; 0: 1000 per timer tick.
    #[arg(long, default_value_t = 250_000)]
    fill_rate: u64,
    /// New-tuple decisions timed on the full table.
    #[arg(long, default_value = "1M", value_parser = count)]
    decide: usize,
    /// New-tuple decisions per second during the fork phase.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Skip the fork phase.
    #[arg(long)]
    no_fork: bool,
    /// Do not advise the table's memory MADV_HUGEPAGE (`[state] huge_pages
    /// = false`), to compare.
    #[arg(long)]
    no_huge_pages: bool,
    /// Fault the table's fresh pages in on the loop, without the prefault
    /// helper process (`greymilter::prefault`), to compare.
    #[arg(long)]
    no_helper: bool,
    /// Before the fork, print each mapping with more than 1 MiB resident
    /// outside huge pages (`/proc/self/smaps`: what fork copies page by
    /// page).
    #[arg(long)]
    smaps: bool,
    /// Print every fill decision slower than this many ms, with the table
    /// size and the page faults it took (to find what stalls).
    #[arg(long)]
    trace_slow_ms: Option<f64>,
}

fn count(s: &str) -> Result<usize, String> {
    let s = s.replace('_', "");
    let (digits, factor) = match s.strip_suffix(['M', 'm']) {
        Some(d) => (d, 1_000_000),
        None => match s.strip_suffix(['k', 'K']) {
            Some(d) => (d, 1_000),
            None => (s.as_str(), 1),
        },
    };
    digits
        .parse::<usize>()
        .map(|n| n * factor)
        .map_err(|_| format!("{s:?} is not a count"))
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time this thread ran: a slow call that ran far less than it took
/// was descheduled (by the host, under `chrt -f`), not working.
fn cpu_time() -> Duration {
    let mut t = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the struct it is given.
    unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// This process's (minor, major) page faults so far.
fn page_faults() -> (i64, i64) {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: nix::libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { nix::libc::getrusage(nix::libc::RUSAGE_SELF, &mut u) };
    (u.ru_minflt, u.ru_majflt)
}

/// CPU time the hypervisor took from this machine (all CPUs), ms: the
/// `steal` column of /proc/stat, in ticks of 10 ms (USER_HZ = 100).
fn steal_ms() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .next()
        .and_then(|cpu| cpu.split_ascii_whitespace().nth(8))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |ticks| ticks * 10)
}

/// Anonymous memory in transparent huge pages, KiB.
fn anon_huge_kib() -> u64 {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Decides numbered tuples of the population, reusing one envelope.
struct Filler {
    networks: u64,
    envelope: Envelope,
}

impl Filler {
    fn new(networks: u64) -> Filler {
        Filler {
            networks,
            envelope: Envelope::numbered(0, networks),
        }
    }

    fn decide(&mut self, engine: &mut Engine, i: u64) {
        self.envelope.renumber(i, self.networks);
        let e = &self.envelope;
        engine.decide_rcpt(&Request {
            client_addr: Some(e.addr),
            client_name: e.name.as_bytes(),
            sender: e.sender.as_bytes(),
            recipient: e.recipient.as_bytes(),
            authenticated: false,
        });
    }
}

fn settings(tuples: usize) -> Settings {
    Settings {
        // Room for the tuples added after the fill: no eviction.
        max_tuples: tuples * 2 + 3_000_000,
        ..Settings::default()
    }
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    greymilter::memory::set_huge_pages(!args.no_huge_pages);
    // As the daemon: forked while the process is small.
    if !args.no_huge_pages && !args.no_helper {
        greymilter::prefault::start(|| true).map_err(|e| format!("prefault helper: {e}"))?;
    }
    // A manual clock just behind real time, so the restored tuples are
    // neither expired nor in the future for a daemon started on the file.
    let clock = ManualClock::new(SystemClock.now() - 400);
    let rss_empty = vm_rss_kib();
    let mut engine = Engine::new(settings(args.tuples), Box::new(clock.clone()));
    let mut filler = Filler::new(args.networks.unwrap_or(args.tuples / 5).max(1) as u64);
    let steal_before = steal_ms();
    let filled = fill_phase(
        &mut engine,
        &mut filler,
        args.tuples as u64,
        args.fill_rate,
        args.trace_slow_ms,
    )?;
    let fill = filled.elapsed;
    let fill_steal = steal_ms().saturating_sub(steal_before);
    clock.advance(301);
    for i in (0..args.tuples as u64).step_by(5) {
        filler.decide(&mut engine, i);
    }
    // Steady state on the full table (beyond the fork phase's numbers).
    let started = Instant::now();
    let first = args.tuples as u64 * 4;
    for i in first..first + args.decide as u64 {
        filler.decide(&mut engine, i);
    }
    let decide_per_s = args.decide as f64 / started.elapsed().as_secs_f64();
    println!(
        "fill: worst single decision {:.2} ms, ticker at worst {:.2} ms late; then {decide_per_s:.0} new-tuple decisions/s on the full table",
        filled.worst_decide.as_secs_f64() * 1e3,
        filled.worst_tick.as_secs_f64() * 1e3
    );
    let rss_full = vm_rss_kib();
    let huge_full = anon_huge_kib();
    let s = engine.stats();
    let per_tuple = |kib: u64| kib as f64 * 1024.0 / s.tuples.max(1) as f64;
    println!(
        "filled {} tuples ({} whitelisted, {} networks) in {:.1} s = {:.0} new-tuple decisions/s (paced)",
        s.tuples,
        s.whitelisted,
        s.ips,
        fill.as_secs_f64(),
        args.tuples as f64 / fill.as_secs_f64()
    );
    println!(
        "RSS {rss_empty} KiB empty, {rss_full} KiB full: {:.1} bytes per tuple (grown by inserts)",
        per_tuple(rss_full.saturating_sub(rss_empty))
    );

    let started = Instant::now();
    write_atomically(&args.out, true, |w| engine.write_state(w)).map_err(|e| e.to_string())?;
    let write = started.elapsed();
    let size = std::fs::metadata(&args.out).map_or(0, |m| m.len());
    println!(
        "write_state + fsync + rename: {} ms for {} MB",
        write.as_millis(),
        size / 1_000_000
    );

    let fork = if args.no_fork {
        None
    } else {
        Some(fork_phase(engine, &args, &mut filler)?)
    };
    // `engine` has been moved into the fork phase and dropped there.

    let rss_before = vm_rss_kib();
    let started = Instant::now();
    let bytes = std::fs::read(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let read = started.elapsed();
    let mut fresh = Engine::new(settings(args.tuples), Box::new(SystemClock));
    let restored = fresh.restore_state(&bytes).map_err(|e| e.to_string())?;
    let restore = started.elapsed();
    drop(bytes);
    let rss_restored = vm_rss_kib();
    let restored_tuples = restored.pending + restored.whitelisted;
    println!(
        "restore: {} ms (read {} ms) for {restored_tuples} tuples; RSS {:.1} bytes per restored tuple",
        restore.as_millis(),
        read.as_millis(),
        rss_restored.saturating_sub(rss_before) as f64 * 1024.0 / restored_tuples.max(1) as f64
    );
    let walks = admin_walks(
        &mut fresh,
        args.trace_slow_ms
            .map(|ms| Duration::from_secs_f64(ms / 1e3)),
    );
    let f = fork.unwrap_or_default();
    println!(
        "RESULT tuples={} huge_pages={} anon_huge_mib={} grown_bytes_per_tuple={:.1} restored_bytes_per_tuple={:.1} fill_per_s={:.0} fill_worst_ms={:.2} fill_lag_max_ms={:.2} fill_steal_ms={} decide_per_s={:.0} write_ms={} fork_call_ms={:.2} loop_stall_max_ms={:.2} decide_max_ms={:.2} child_ms={} restore_ms={} maintain_max_ms={:.2} forget_network_ms={:.2} flush_pending_ms={:.2} walk_slice_max_ms={:.2} prefault_requests={} prefault_stopped={}",
        s.tuples,
        !args.no_huge_pages,
        huge_full / 1024,
        per_tuple(rss_full.saturating_sub(rss_empty)),
        rss_restored.saturating_sub(rss_before) as f64 * 1024.0 / restored_tuples.max(1) as f64,
        args.tuples as f64 / fill.as_secs_f64(),
        filled.worst_decide.as_secs_f64() * 1e3,
        filled.worst_tick.as_secs_f64() * 1e3,
        fill_steal,
        decide_per_s,
        write.as_millis(),
        f.fork_call.as_secs_f64() * 1e3,
        f.worst_tick.as_secs_f64() * 1e3,
        f.worst_decide.as_secs_f64() * 1e3,
        f.child.as_millis(),
        restore.as_millis(),
        walks[0].as_secs_f64() * 1e3,
        walks[1].as_secs_f64() * 1e3,
        walks[2].as_secs_f64() * 1e3,
        walks[3].as_secs_f64() * 1e3,
        greymilter::prefault::requests(),
        greymilter::prefault::stopped()
    );
    if !args.keep {
        let _ = std::fs::remove_file(&args.out);
    }
    Ok(())
}

/// Step 5, on the restored engine: the worst of 2,000 maintenance slices
/// (an expiry pass under way), then the control socket's table walks:
/// `forget` of a /16 and `flush`.
fn admin_walks(engine: &mut Engine, trace_slow: Option<Duration>) -> [Duration; 4] {
    let mut worst = Duration::ZERO;
    for _ in 0..2000 {
        let t = Instant::now();
        engine.maintain();
        worst = worst.max(t.elapsed());
    }
    // Each walk as the daemon runs it: slices of WALK_SLICE tuples.
    let mut slice_max = Duration::ZERO;
    let mut sliced = |engine: &mut Engine, mut walk: AdminWalk| {
        let t = Instant::now();
        loop {
            let faults = page_faults();
            let cpu = cpu_time();
            let s = Instant::now();
            let done = engine.walk_step(&mut walk, WALK_SLICE);
            let took = s.elapsed();
            slice_max = slice_max.max(took);
            if trace_slow.is_some_and(|t| took > t) {
                let (after, ran) = (page_faults(), cpu_time() - cpu);
                println!(
                    "slow walk slice: {:.2} ms (ran {:.2} ms) at {} tuples, {} minor faults",
                    took.as_secs_f64() * 1e3,
                    ran.as_secs_f64() * 1e3,
                    engine.stats().tuples,
                    after.0 - faults.0
                );
            }
            if let Some(done) = done {
                return (done, t.elapsed());
            }
        }
    };
    let net = "10.1.0.0/16".parse().map_err(|e| format!("{e}"));
    let (forgot, forget) = match net.and_then(|n| engine.forget_network_walk(n)) {
        Ok(walk) => {
            let (done, took) = sliced(engine, walk);
            (Ok(done), took)
        }
        Err(e) => (Err(e), Duration::ZERO),
    };
    let walk = engine.flush_walk();
    let ((flushed, _), flush) = sliced(engine, walk);
    println!(
        "walks: maintenance slice at worst {:.2} ms; forget 10.1.0.0/16 {:.2} ms ({forgot:?}); flush {:.2} ms ({flushed} pending); worst walk slice ({WALK_SLICE} tuples) {:.2} ms",
        worst.as_secs_f64() * 1e3,
        forget.as_secs_f64() * 1e3,
        flush.as_secs_f64() * 1e3,
        slice_max.as_secs_f64() * 1e3
    );
    [worst, forget, flush, slice_max]
}

struct FillFigures {
    elapsed: Duration,
    worst_decide: Duration,
    worst_tick: Duration,
}

/// Step 1: the fill, paced, with the loop ticker (see the module docs).
fn fill_phase(
    engine: &mut Engine,
    filler: &mut Filler,
    tuples: u64,
    rate: u64,
    trace_slow_ms: Option<f64>,
) -> Result<FillFigures, String> {
    let slow = trace_slow_ms.map(|ms| Duration::from_secs_f64(ms / 1e3));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())?;
    let done = Cell::new(false);
    let worst_tick = Cell::new(Duration::ZERO);
    let mut worst_decide = Duration::ZERO;
    let started = Instant::now();
    runtime.block_on(async {
        let ticker = async {
            let mut last = Instant::now();
            while !done.get() {
                tokio::time::sleep(Duration::from_millis(1)).await;
                let late = last.elapsed().saturating_sub(Duration::from_millis(1));
                worst_tick.set(worst_tick.get().max(late));
                last = Instant::now();
            }
        };
        let fill = async {
            let per_batch = if rate == 0 {
                1000
            } else {
                (rate / 1000).max(1)
            };
            let mut i = 0;
            let mut batch = 0u32;
            while i < tuples {
                for _ in 0..per_batch.min(tuples - i) {
                    let (faults, cpu) = if slow.is_some() {
                        (page_faults(), cpu_time())
                    } else {
                        ((0, 0), Duration::ZERO)
                    };
                    let t = Instant::now();
                    filler.decide(engine, i);
                    let took = t.elapsed();
                    worst_decide = worst_decide.max(took);
                    if slow.is_some_and(|s| took > s) {
                        let (after, ran) = (page_faults(), cpu_time() - cpu);
                        println!(
                            "slow decision: {:.2} ms (ran {:.2} ms) at {} tuples, {} minor / {} major faults",
                            took.as_secs_f64() * 1e3,
                            ran.as_secs_f64() * 1e3,
                            engine.stats().tuples,
                            after.0 - faults.0,
                            after.1 - faults.1
                        );
                    }
                    i += 1;
                }
                batch += 1;
                // Behind the pace (or unpaced), still sleep to the next
                // timer tick: `yield_now` would let the runtime poll its
                // timers only every 61 polls, and the ticker would report
                // that as lag.
                let next = started + Duration::from_millis(u64::from(batch));
                let soon = Instant::now() + Duration::from_micros(1);
                tokio::time::sleep_until(next.max(soon).into()).await;
            }
            done.set(true);
        };
        tokio::join!(ticker, fill);
    });
    Ok(FillFigures {
        elapsed: started.elapsed(),
        worst_decide,
        worst_tick: worst_tick.get(),
    })
}

#[derive(Debug, Default)]
struct ForkFigures {
    fork_call: Duration,
    worst_tick: Duration,
    worst_decide: Duration,
    child: Duration,
}

/// The daemon's loop in miniature (see the module docs, step 3).
/// Prints the mappings with more than 1 MiB resident in 4 KiB pages.
fn print_small_page_mappings() {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let (mut head, mut rss, mut total) = (String::new(), 0u64, 0u64);
    let mut flush = |head: &str, rss: u64, huge: u64| {
        let small = rss.saturating_sub(huge);
        total += small;
        if small > 1024 {
            println!("SMAPS small_kib={small:>8} rss_kib={rss:>8} huge_kib={huge:>8} {head}");
        }
    };
    for line in smaps.lines() {
        let kib = |l: &str| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if line.starts_with("Rss:") {
            rss = kib(line);
        } else if line.starts_with("AnonHugePages:") {
            flush(&head, rss, kib(line));
        } else if line.split_whitespace().next().is_some_and(|range| {
            range.contains('-') && range.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        }) {
            head = line.to_string();
        }
    }
    println!("SMAPS total_small_kib={total}");
}

fn fork_phase(engine: Engine, args: &Args, filler: &mut Filler) -> Result<ForkFigures, String> {
    if args.smaps {
        print_small_page_mappings();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    let engine = Rc::new(RefCell::new(engine));
    let done = Rc::new(Cell::new(false));
    let worst_tick = Rc::new(Cell::new(Duration::ZERO));
    let worst_decide = Rc::new(Cell::new(Duration::ZERO));
    let forked = Rc::new(Cell::new(false));
    let figures = local.block_on(&runtime, async {
        // The stall detector: a 1 ms tick that should never be late.
        let ticker = {
            let (done, worst, forked) = (done.clone(), worst_tick.clone(), forked.clone());
            tokio::task::spawn_local(async move {
                let mut last = Instant::now();
                while !done.get() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let late = last.elapsed().saturating_sub(Duration::from_millis(1));
                    if forked.get() {
                        worst.set(worst.get().max(late));
                    }
                    last = Instant::now();
                }
            })
        };
        // Load: new tuples at a steady rate, in 1 ms batches.
        let load = {
            let (done, worst, forked, engine) = (
                done.clone(),
                worst_decide.clone(),
                forked.clone(),
                engine.clone(),
            );
            let per_ms = (args.rate / 1000).max(1);
            let mut next = args.tuples as u64 * 2;
            let mut filler = Filler::new(filler.networks);
            tokio::task::spawn_local(async move {
                while !done.get() {
                    for _ in 0..per_ms {
                        let t = Instant::now();
                        filler.decide(&mut engine.borrow_mut(), next);
                        next += 1;
                        if forked.get() {
                            worst.set(worst.get().max(t.elapsed()));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut cp = Checkpointer::new(args.out.clone());
        let generation = engine.borrow().generation();
        let started = Instant::now();
        let start = {
            let e = engine.borrow();
            cp.start(generation, true, |w| e.write_state(w))
        };
        let fork_call = started.elapsed();
        forked.set(true);
        if !matches!(start, Start::Forked(_)) {
            done.set(true);
            return Err(format!("the checkpoint did not fork: {start:?}"));
        }
        let child = loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            match cp.reap() {
                Some(Outcome::Written { duration }) => break duration,
                Some(Outcome::Failed { reason, .. }) => {
                    done.set(true);
                    return Err(format!("the checkpoint child failed: {reason}"));
                }
                None => {}
            }
        };
        done.set(true);
        let _ = ticker.await;
        let _ = load.await;
        Ok(ForkFigures {
            fork_call,
            worst_tick: worst_tick.get(),
            worst_decide: worst_decide.get(),
            child,
        })
    })?;
    println!(
        "checkpoint fork: the fork call took {:.2} ms; while the child ran, the 1 ms ticker was at worst {:.2} ms late and the slowest decision took {:.2} ms; the child wrote in {} ms",
        figures.fork_call.as_secs_f64() * 1e3,
        figures.worst_tick.as_secs_f64() * 1e3,
        figures.worst_decide.as_secs_f64() * 1e3,
        figures.child.as_millis()
    );
    drop(engine);
    Ok(figures)
}
