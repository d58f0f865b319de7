//! What the statistics report (SIGUSR1, `greymilter stats`) and a metrics
//! scrape cost the loop at a large table (issue 24): fills an engine with
//! N tuples through `decide_rcpt` (10 % of them whitelisted by a retry),
//! then times `Engine::stats_report` and `metrics::render::render` of the
//! engine's figures, as the daemon builds them, 200 times each.
//!
//! `cargo run --release --example render_cost -- [TUPLES]` (default 1,000,000)

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use greymilter::greylist::clock::ManualClock;
use greymilter::greylist::settings::Settings;
use greymilter::greylist::{Engine, Request};
use greymilter::{MetricsInput, render_metrics};

fn decide(engine: &mut Engine, i: u32) {
    let addr = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + (i / 5) * 256));
    let sender = format!("<s{i}@sender.example>");
    engine.decide_rcpt(&Request {
        client_addr: Some(addr),
        client_name: b"mx.sender.example",
        sender: sender.as_bytes(),
        recipient: b"<r@local.example>",
        authenticated: false,
    });
}

/// Median and worst of `runs` timings of `f`, ms.
fn time(runs: usize, mut f: impl FnMut() -> usize) -> (f64, f64, usize) {
    let mut ms: Vec<f64> = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs {
        let t = Instant::now();
        bytes = std::hint::black_box(f());
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    (ms[runs / 2], ms[runs - 1], bytes)
}

fn main() {
    let tuples: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let clock = ManualClock::new(1_700_000_000);
    let settings = Settings {
        max_tuples: tuples as usize * 2,
        ..Settings::default()
    };
    let mut engine = Engine::new(settings, Box::new(clock.clone()));
    for i in 0..tuples {
        decide(&mut engine, i);
    }
    clock.advance(301);
    for i in (0..tuples).step_by(10) {
        decide(&mut engine, i);
    }
    let (report_med, report_max, report_bytes) = time(200, || engine.stats_report().len());
    let (render_med, render_max, render_bytes) = time(200, || {
        render_metrics(&MetricsInput {
            snapshot: engine.stats(),
            decisions: engine.decision_counts(),
            ..MetricsInput::default()
        })
        .len()
    });
    let s = engine.stats();
    println!(
        "RESULT tuples={} whitelisted={} report_ms_median={report_med:.4} report_ms_max={report_max:.4} report_bytes={report_bytes} render_ms_median={render_med:.4} render_ms_max={render_max:.4} render_bytes={render_bytes}",
        s.tuples, s.whitelisted
    );
}
