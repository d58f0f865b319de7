//! The prefault helper (`greymilter::prefault`, issue 24) with the
//! daemon's allocator: a page it is asked for is faulted in and reads zero,
//! nothing else is written, and a table filled while it faults the
//! table's next pages loses and duplicates no tuple.
//!
//! One test in its own binary: the helper is process-wide state and its
//! protocol assumes one thread, as in the daemon.

use std::net::{IpAddr, Ipv4Addr};

use greymilter::greylist::clock::ManualClock;
use greymilter::greylist::settings::Settings;
use greymilter::greylist::{Engine, Request};
use greymilter::prefault::{self, Asked};

#[global_allocator]
static ALLOCATOR: greymilter::memory::Allocator = greymilter::memory::Allocator;

const HUGE: usize = 2 << 20;

fn resident(addr: usize) -> bool {
    let page = addr / 4096 * 4096;
    let mut vec = [0u8; 1];
    // SAFETY: one page of our own mapping, one result byte.
    let r = unsafe { nix::libc::mincore(page as *mut _, 4096, vec.as_mut_ptr()) };
    r == 0 && vec[0] & 1 == 1
}

fn decide(engine: &mut Engine, i: u32) {
    let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i / 5 * 256 + i % 5));
    let sender = format!("<s{i}@sender.example>");
    engine.decide_rcpt(&Request {
        client_addr: Some(addr),
        client_name: b"[unverified]",
        sender: sender.as_bytes(),
        recipient: b"<postmaster@example.org>",
        authenticated: false,
    });
}

#[test]
fn helper_faults_only_the_asked_byte_and_the_table_stays_whole() {
    greymilter::memory::set_huge_pages(true);
    prefault::start(|| true).expect("fork the prefault helper");
    assert!(prefault::running());

    // A mapped block (over the allocator's threshold), data in its first
    // page, the helper asked for its third page.
    let layout = std::alloc::Layout::from_size_align(4 * HUGE, 8).unwrap();
    // SAFETY: a non-zero layout; freed below with the same layout.
    let block = unsafe { std::alloc::alloc(layout) };
    assert!(!block.is_null());
    let base = block as usize;
    // SAFETY: the first 2 MiB of the block are ours.
    unsafe { std::ptr::write_bytes(block, 0xab, HUGE) };
    let target = base + 2 * HUGE + 100;
    assert!(!resident(target), "fresh memory should not be resident yet");
    assert_eq!(prefault::request(target), Asked::Yes);
    prefault::settle_within(base, 4 * HUGE);
    assert!(prefault::idle());
    assert!(resident(target), "the helper faulted the page in");
    // SAFETY: reads inside the block.
    let (asked, data) = unsafe {
        (
            *(target as *const u8),
            std::slice::from_raw_parts(block, HUGE),
        )
    };
    assert_eq!(asked, 0);
    assert!(
        data.iter().all(|&b| b == 0xab),
        "the helper wrote elsewhere"
    );
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(block, layout) };

    // A table filled through its index growths and entry-vector steps
    // while the helper faults their next pages: every tuple is found on
    // the second pass (a byte written into an entry would lose its key).
    const N: u32 = 400_000;
    let before = prefault::requests();
    let mut engine = Engine::new(
        Settings {
            max_tuples: 2 * N as usize,
            ..Settings::default()
        },
        Box::new(ManualClock::new(1_800_000_000)),
    );
    for i in 0..N {
        decide(&mut engine, i);
    }
    for i in 0..N {
        decide(&mut engine, i);
    }
    let stats = engine.stats();
    assert_eq!(stats.tuples, u64::from(N));
    assert_eq!(stats.graylisted, u64::from(N));
    assert_eq!(stats.deferred, 2 * u64::from(N));
    assert!(
        prefault::requests() > before,
        "the table's growth asked the helper for pages"
    );
    assert!(prefault::running(), "the helper is still serving");
    prefault::stop();
    assert!(!prefault::running());
}
