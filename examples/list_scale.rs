//! List files at scale: load time, memory per entry, and decisions per
//! second with large lists against empty ones.
//!
//! `cargo run --release --example list_scale -- [CIDRS] [NAMES] [DECISIONS] [ROUNDS]`
//! (defaults: 100,000 CIDR lines, 10,000 name lines, 1,000,000 decisions
//! per round, 5 interleaved rounds; the best round of each case counts).
//!
//! Each configuration is a list file written to a temp directory, read by
//! the real loader (`greymilter::lists::load`, as `Config::load` does) and
//! compiled by the engine. Decisions go through `Engine::decide_rcpt` (the
//! whole RCPT path: lists, then the tuple table) for a fixed population of
//! 100,000 tuples cycled, whose clients are not listed, so every decision
//! pays the full list look-up (a miss in every list) and then the table.
//! The large lists are also loaded and compiled paced as a daemon reload
//! is (`reload_slice_max_ms`: the longest stretch between two pauses, the
//! loop's longest wait, and `reload_slice_cpu_max_ms`, the most CPU time
//! one slice took; `SLICE_TRACE=1` prints every slice over 2 ms).
//! Memory is counted by a wrapping global allocator: bytes live after
//! loading (the parsed entries, which the config and the engine's settings
//! hold) and after compiling (the look-up structures).
//!
//! Runtime allowances (`greymilter allow network=… | sender-domain=…`):
//! `allow_one_ms` and `allow_max_ms` are what a change costs the loop with
//! 1 and with `MAX_ALLOWS` allowances in force (compiled apart from the
//! lists, then swapped in); `relist_ms` is what it cost when allowances
//! were merged into the lists (the case's lists compiled again, in one
//! step). The `+10k-allowed` case decides with `MAX_ALLOWS` allowances in
//! force, none matching the population.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use greymilter::control::MAX_ALLOWS;
use greymilter::greylist::clock::ManualClock;
use greymilter::greylist::lists::{Allowed, Lists};
use greymilter::greylist::settings::ListSpec;
use greymilter::greylist::settings::{ListAction, Settings};
use greymilter::greylist::{Engine, Request};
use greymilter::lists::{Kind, Source, load, load_paced};
use greymilter::pace::{BUDGET, Pacer, run_now};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// xorshift: the same lists and population on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A list file: `cidrs` networks (/16 to /32 in 64.0.0.0/2 and a tenth
/// IPv6), `names` host names and domains, `regexes` postgrey-like
/// expressions.
fn list_text(cidrs: usize, names: usize, regexes: usize) -> String {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut text = String::with_capacity(cidrs * 20 + names * 30);
    for i in 0..cidrs {
        let r = rng.next();
        if i % 10 == 9 {
            let p = 32 + (r % 33) as u32;
            // Host bits cleared: a network with bits past its prefix is refused.
            let bits = (0x2001_0db8u128 << 96) | (u128::from(r >> 32) << 64);
            let net = bits & (u128::MAX << (128 - p));
            let _ = writeln!(text, "{}/{p}", std::net::Ipv6Addr::from(net));
        } else {
            let p = 16 + (r % 17) as u32;
            let a = (0x4000_0000 | (r as u32 & 0x3fff_ffff)) & (u32::MAX << (32 - p));
            let _ = writeln!(text, "{}/{p}", std::net::Ipv4Addr::from(a));
        }
    }
    for i in 0..names {
        let dot = if i % 2 == 0 { "." } else { "" };
        let _ = writeln!(text, "{dot}mta{i}.sender{}.example", i % 997);
    }
    for i in 0..regexes {
        let _ = writeln!(
            text,
            "/^(mail|smtp|mx)[0-9]*\\.pool{i}\\.example\\.(com|net)$/"
        );
    }
    text
}

struct Population {
    addrs: Vec<IpAddr>,
    names: Vec<String>,
    senders: Vec<String>,
    recipients: Vec<String>,
}

fn population(n: usize) -> Population {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut p = Population {
        addrs: Vec::new(),
        names: Vec::new(),
        senders: Vec::new(),
        recipients: Vec::new(),
    };
    for i in 0..n {
        let r = rng.next();
        // 192.0.0.0/2 and above: outside every listed IPv4 network.
        p.addrs.push(IpAddr::from(
            (0xc000_0000 | (r as u32 & 0x3fff_ffff)).to_be_bytes(),
        ));
        p.names
            .push(format!("host{}.client{}.isp.test", i, r % 5000));
        p.senders
            .push(format!("<user{}@sender{}.test>", i % 7000, i % 300));
        p.recipients.push(format!("<rcpt{}@ours.test>", i % 2000));
    }
    p
}

struct Case {
    label: &'static str,
    load_ms: f64,
    compile_ms: f64,
    /// Reading the file alone (the paced reload reads it in one go).
    read_ms: f64,
    /// The reload's load and compile paced as in the daemon: the longest
    /// stretch between two pauses, and how many pauses.
    slice_max_ms: f64,
    slice_cpu_max_ms: f64,
    slices: usize,
    entries: usize,
    parsed_bytes: isize,
    compiled_bytes: isize,
    lists: Lists,
    engine: Engine,
    allow_one_ms: f64,
    allow_max_ms: f64,
    relist_ms: f64,
    /// Best of the rounds.
    per_second: f64,
    lookup_ns: f64,
}

/// `n` allowances, half networks (in 10.0.0.0/8: no list entry and no
/// client of the population is there), half sender domains.
fn allowances(n: usize) -> Allowed {
    let nets = (0..n.div_ceil(2)).map(|i| {
        let a = 0x0a00_0000 | ((i as u32 & 0xffff) << 8);
        ipnet::IpNet::new(IpAddr::from(a.to_be_bytes()), 24).expect("a /24")
    });
    let domains: Vec<String> = (0..n / 2).map(|i| format!("allowed{i}.example")).collect();
    Allowed::new(nets, domains.iter().map(String::as_str))
}

/// Milliseconds `f` took.
fn timed(f: impl FnOnce()) -> f64 {
    let started = Instant::now();
    f();
    started.elapsed().as_secs_f64() * 1e3
}

fn build(label: &'static str, text: &str, pop: &Population, allowed: usize) -> Case {
    let dir = std::env::temp_dir().join(format!("greymilter-list-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(label);
    std::fs::write(&path, text).expect("write list");
    let source = Source {
        path: path.clone(),
        kind: Kind::Clients,
        action: ListAction::Accept,
        optional: false,
    };
    let before = live();
    let started = Instant::now();
    let (spec, summary) = load(std::slice::from_ref(&source), u64::MAX).expect("the list loads");
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let parsed_bytes = live() - before;
    let before = live();
    let started = Instant::now();
    let lists = Lists::compile(&spec, true);
    let compile_ms = started.elapsed().as_secs_f64() * 1e3;
    let compiled_bytes = live() - before;
    let started = Instant::now();
    let read_bytes = std::fs::read(&path).expect("read list").len();
    let read_ms = started.elapsed().as_secs_f64() * 1e3;
    std::hint::black_box(read_bytes);
    let (slice_max_ms, slice_cpu_max_ms, slices) = paced(&source, spec.clone());
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir(&dir);
    let clock = ManualClock::new(1_700_000_000);
    let mut settings = Settings {
        auto_whitelist_after: 0,
        ..Settings::default()
    };
    settings.lists = spec;
    let mut engine = Engine::new(settings.clone(), Box::new(clock));
    // What an allowance change costs the loop: the allowances compiled and
    // swapped in; before, the case's lists compiled again.
    let allow_one_ms = timed(|| engine.set_allowed(allowances(1)));
    let allow_max_ms = timed(|| engine.set_allowed(allowances(MAX_ALLOWS)));
    let relist_ms = timed(|| engine.set_settings(settings));
    engine.set_allowed(allowances(allowed));
    let mut lists = lists;
    lists.set_allowed(allowances(allowed));
    // Warm-up: every tuple of the population is in the table.
    decide(&mut engine, pop, pop.addrs.len());
    Case {
        label,
        load_ms,
        compile_ms,
        read_ms,
        slice_max_ms,
        slice_cpu_max_ms,
        slices,
        entries: summary.entries,
        parsed_bytes,
        compiled_bytes,
        lists,
        engine,
        allow_one_ms,
        allow_max_ms,
        relist_ms,
        per_second: 0.0,
        lookup_ns: f64::MAX,
    }
}

/// Loads and compiles `source` as a daemon reload does (`load_paced`,
/// `compile_paced`, a pause once `pace::BUDGET` has passed and between
/// phases); the pauses return at once and time the slice before them.
fn paced(source: &Source, spec: ListSpec) -> (f64, f64, usize) {
    let mark = Cell::new((Instant::now(), cpu_ms()));
    let worst = Cell::new((0.0f64, 0.0f64));
    let n = Cell::new(0usize);
    let mut pacer = Pacer::timed(BUDGET, || {
        let (now, cpu) = (Instant::now(), cpu_ms());
        let ms = (now - mark.get().0).as_secs_f64() * 1e3;
        let cpu_slice = cpu - mark.get().1;
        n.set(n.get() + 1);
        if std::env::var_os("SLICE_TRACE").is_some() && ms > 2.0 {
            eprintln!(
                "slice {} {ms:.2} ms ({cpu_slice:.2} ms on the CPU)",
                n.get()
            );
        }
        let (w, c) = worst.get();
        worst.set((w.max(ms), c.max(cpu_slice)));
        mark.set((now, cpu));
        std::future::ready(())
    });
    mark.set((Instant::now(), cpu_ms()));
    run_now(async {
        let loaded = load_paced(std::slice::from_ref(source), u64::MAX, &mut pacer).await;
        std::hint::black_box(loaded.expect("the list loads"));
        pacer.pause().await;
        std::hint::black_box(Lists::compile_paced(&spec, true, &mut pacer).await);
        pacer.pause().await;
    });
    let slices = pacer.pauses();
    drop(pacer);
    let (wall, cpu) = worst.get();
    (wall, cpu, slices)
}

/// This thread's CPU time, ms: a slice's wall time minus what other
/// processes took of the CPU meanwhile (the machine is shared).
fn cpu_ms() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(0.0, |t| t.tv_sec() as f64 * 1e3 + t.tv_nsec() as f64 / 1e6)
}

fn decide(engine: &mut Engine, pop: &Population, n: usize) {
    for i in 0..n {
        let k = i % pop.addrs.len();
        let (Some(a), Some(name), Some(s), Some(r)) = (
            pop.addrs.get(k),
            pop.names.get(k),
            pop.senders.get(k),
            pop.recipients.get(k),
        ) else {
            continue;
        };
        let d = engine.decide_rcpt(&Request {
            client_addr: Some(*a),
            client_name: name.as_bytes(),
            sender: s.as_bytes(),
            recipient: r.as_bytes(),
            authenticated: false,
        });
        std::hint::black_box(d);
    }
}

/// One timed round of a case: the look-up alone (client IP then client
/// name, all misses), then whole decisions.
fn round(case: &mut Case, pop: &Population, decisions: usize) {
    let started = Instant::now();
    let mut hits = 0usize;
    for i in 0..decisions {
        let k = i % pop.addrs.len();
        if let (Some(a), Some(n)) = (pop.addrs.get(k), pop.names.get(k))
            && case.lists.lookup_client(*a, n.as_bytes()).is_some()
        {
            hits += 1;
        }
    }
    let ns = started.elapsed().as_secs_f64() * 1e9 / decisions as f64;
    assert_eq!(hits, 0, "the population is outside the lists");
    case.lookup_ns = case.lookup_ns.min(ns);
    let started = Instant::now();
    decide(&mut case.engine, pop, decisions);
    let rate = decisions as f64 / started.elapsed().as_secs_f64();
    case.per_second = case.per_second.max(rate);
}

fn main() {
    let cidrs = arg(1, 100_000);
    let names = arg(2, 10_000);
    let decisions = arg(3, 1_000_000).max(1);
    let rounds = arg(4, 5).max(1);
    let pop = population(100_000.min(decisions));
    let mut cases = vec![
        build("empty", &list_text(0, 0, 0), &pop, 0),
        build("ten", &list_text(10, 10, 0), &pop, 0),
        build("large", &list_text(cidrs, names, 0), &pop, 0),
        build("large+34re", &list_text(cidrs, names, 34), &pop, 0),
        build(
            "large+10k-allowed",
            &list_text(cidrs, names, 0),
            &pop,
            MAX_ALLOWS,
        ),
    ];
    // Interleaved rounds, best of each: the machine is shared, and a
    // neighbour's burst should not land on one case only.
    for _ in 0..rounds {
        for case in &mut cases {
            round(case, &pop, decisions);
        }
    }
    let base = cases.first().map_or(1.0, |c| c.per_second);
    for m in &cases {
        let per_entry = |b: isize| {
            if m.entries == 0 {
                0.0
            } else {
                b as f64 / m.entries as f64
            }
        };
        println!(
            "RESULT list={} entries={} load_ms={:.1} compile_ms={:.1} read_ms={:.2} \
             reload_slice_max_ms={:.2} reload_slice_cpu_max_ms={:.2} reload_slices={} \
             parsed_bytes_per_entry={:.1} compiled_bytes_per_entry={:.1} \
             allow_one_ms={:.3} allow_max_ms={:.2} relist_ms={:.1} \
             lookup_ns={:.1} decisions_per_s={:.0} vs_empty={:.3}",
            m.label,
            m.entries,
            m.load_ms,
            m.compile_ms,
            m.read_ms,
            m.slice_max_ms,
            m.slice_cpu_max_ms,
            m.slices,
            per_entry(m.parsed_bytes),
            per_entry(m.compiled_bytes),
            m.allow_one_ms,
            m.allow_max_ms,
            m.relist_ms,
            m.lookup_ns,
            m.per_second,
            m.per_second / base,
        );
    }
}
