//! Allocations on the RCPT path, with the decision log off: a whitelisted
//! recipient (most of the traffic) costs none, from the framed bytes
//! through the session, the policy glue and the engine to the encoded
//! reply; a new or deferred one costs at most TEMPFAIL_ALLOCATIONS. Counted by a global
//! allocator that tallies every allocation of the test's own thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use greymilter::greylist::Engine;
use greymilter::greylist::clock::ManualClock;
use greymilter::greylist::settings::Settings;
use greymilter::milter::codec::{Command, StrArray};
use greymilter::milter::decision::SessionOptions;
use greymilter::milter::session::{Flow, SessionCore};
use greymilter::pipeline::{MilterDecider, Pipeline};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set on the test's own thread: the harness's main thread allocates
    /// now and then while the test runs (its output), and is not counted.
    static COUNTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn count() {
    if COUNTED.with(std::cell::Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to System; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn encode(commands: &[Command<'_>]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for c in commands {
        c.encode(&mut bytes);
    }
    bytes
}

/// Allocations a greylisted recipient (new or deferred) may cost: 3 today,
/// for the tempfail reply. A ceiling, so a new allocation on that path
/// shows here.
const TEMPFAIL_ALLOCATIONS: usize = 3;
/// One-time growths of reused buffers within 1000 recipients (1 seen).
const GROWTHS: usize = 4;

#[test]
fn whitelisted_recipients_cost_no_allocation_and_greylisted_ones_a_bounded_few() {
    COUNTED.with(|c| c.set(true));
    let clock = ManualClock::new(1_800_000_000);
    let settings = Settings::default();
    let delay = settings.delay.as_secs();
    let engine = Rc::new(RefCell::new(Engine::new(settings, Box::new(clock.clone()))));
    let mut core = SessionCore::new(
        MilterDecider::new(&Pipeline::new(Rc::clone(&engine)), 1),
        &SessionOptions::default(),
        1,
        "test",
    );
    let rcpt_raw = b"<bob@example.net>\0";
    let mail_raw = b"<alice@example.org>\0";
    let opening = encode(&[
        Command::OptNeg {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1f_ffff,
        },
        Command::Connect {
            hostname: b"relay.example.org",
            family: greymilter::milter::codec::Family::Inet4,
            port: 25,
            address: b"198.51.100.7",
        },
        Command::Mail(StrArray::new(mail_raw).unwrap()),
    ]);
    let rcpt = encode(&[Command::Rcpt(StrArray::new(rcpt_raw).unwrap())]);
    let mut out = Vec::with_capacity(4096);
    assert_eq!(core.run_bytes(&opening, &mut out), Flow::Continue);
    // First attempt (greylisted), then the retry after the delay: the
    // tuple is whitelisted.
    core.run_bytes(&rcpt, &mut out);
    clock.advance(delay + 1);
    core.run_bytes(&rcpt, &mut out);
    out.clear();

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..1000 {
        assert_eq!(core.run_bytes(&rcpt, &mut out), Flow::Continue);
        out.clear();
    }
    let passes = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(passes, 0, "allocations for 1000 whitelisted recipients");
    // The reply on the wire is CONTINUE.
    core.run_bytes(&rcpt, &mut out);
    assert_eq!(out, b"\x00\x00\x00\x01c");
    out.clear();

    // A deferred retry (the tuple is pending, the delay not over).
    let early = encode(&[Command::Rcpt(
        StrArray::new(b"<carol@example.net>\0").unwrap(),
    )]);
    core.run_bytes(&early, &mut out);
    out.clear();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..1000 {
        assert_eq!(core.run_bytes(&early, &mut out), Flow::Continue);
        out.clear();
    }
    let deferred = ALLOCATIONS.load(Ordering::Relaxed) - before;
    core.run_bytes(&early, &mut out);
    assert!(out.windows(9).any(|w| w == b"451 4.7.1"), "{out:?}");
    out.clear();

    // New tuples: each first attempt is stored in the table.
    let new: Vec<Vec<u8>> = (0..1000)
        .map(|i| {
            let to = format!("<new{i}@example.net>\0");
            encode(&[Command::Rcpt(StrArray::new(to.as_bytes()).unwrap())])
        })
        .collect();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for packet in &new {
        assert_eq!(core.run_bytes(packet, &mut out), Flow::Continue);
        out.clear();
    }
    let fresh = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert!(
        deferred <= 1000 * TEMPFAIL_ALLOCATIONS + GROWTHS
            && fresh <= 1000 * TEMPFAIL_ALLOCATIONS + GROWTHS,
        "allocations for 1000 deferred recipients: {deferred}, for 1000 new ones: {fresh}"
    );
}
