//! Measures the engine's resident memory per tuple, the worst maintain()
//! slice, and the time to write a state.
//!
//! `cargo run --release --example engine_memory -- [TUPLES] [NETWORKS]`
//! (defaults: 1,000,000 tuples from 200,000 client /24 networks).
//!
//! Method: VmRSS from /proc/self/status after building an empty engine and
//! again after filling it through `decide_rcpt` (the real path: addresses
//! normalised and hashed), divided by the tuple count. One tuple in five is
//! passed (whitelisted) so both maps hold entries.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use greymilter::greylist::clock::{Clock, ManualClock};
use greymilter::greylist::settings::Settings;
use greymilter::greylist::{Engine, Request};

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn main() {
    let tuples = arg(1, 1_000_000);
    let networks = arg(2, 200_000).max(1);
    let clock = ManualClock::new(1_700_000_000);
    let mut engine = Engine::new(
        Settings {
            max_tuples: tuples.max(1),
            auto_whitelist_after: 0,
            ..Settings::default()
        },
        Box::new(clock.clone()),
    );
    let before = vm_rss_kib();
    let (mut from, mut to) = (String::new(), String::new());
    let started = Instant::now();
    let mut request = |engine: &mut Engine, i: usize| {
        let net = (i * 7919) % networks;
        let addr = std::net::IpAddr::from([
            (10 + (net >> 16) % 200) as u8,
            (net >> 8) as u8,
            net as u8,
            (i % 250 + 1) as u8,
        ]);
        from.clear();
        to.clear();
        let _ = write!(
            from,
            "<newsletter-{}@sender{}.example.com>",
            i % 1000,
            i % 50_000
        );
        let _ = write!(to, "<user{}@example.net>", i);
        engine.decide_rcpt(&Request {
            client_addr: Some(addr),
            client_name: b"[unverified]",
            sender: from.as_bytes(),
            recipient: to.as_bytes(),
            authenticated: false,
        })
    };
    for i in 0..tuples {
        request(&mut engine, i);
    }
    let fill = started.elapsed();
    clock.advance(300);
    for i in (0..tuples).step_by(5) {
        request(&mut engine, i);
    }
    let after = vm_rss_kib();
    let s = engine.stats();
    let bytes = (after.saturating_sub(before)) * 1024;
    println!(
        "tuples={} whitelisted={} networks={} rss_before={before}KiB rss_after={after}KiB",
        s.tuples, s.whitelisted, s.ips
    );
    println!(
        "bytes_per_tuple={:.1}  (fill: {:.0} decisions/s)",
        bytes as f64 / s.tuples.max(1) as f64,
        tuples as f64 / fill.as_secs_f64()
    );

    let mut sink = std::io::sink();
    let t = Instant::now();
    let _ = engine.write_state(&mut sink);
    println!("write_state: {:?}", t.elapsed());

    // Everything pending expires at once: the worst case for maintain().
    clock.advance(86_400);
    let mut times = Vec::new();
    loop {
        let t = Instant::now();
        let more = engine.maintain();
        times.push(t.elapsed());
        if !more {
            break;
        }
    }
    let calls = times.len();
    let total: Duration = times.iter().sum();
    times.sort_unstable();
    let worst = times.last().copied().unwrap_or_default();
    let p99 = times.get(calls * 99 / 100).copied().unwrap_or_default();
    println!(
        "maintain: mean {:?}, p99 {p99:?}",
        total / calls.max(1) as u32
    );
    let s = engine.stats();
    println!(
        "maintain: {calls} calls, worst {worst:?}; expired {} pending, {} left (now {})",
        s.graylist_expired,
        s.tuples,
        clock.now()
    );
}
