//! Redis-side figures for `[cluster]` (BENCHMARKS.md): fills a Redis with N
//! first attempts through the cluster client (C concurrent calls on one
//! connection, like a daemon), then reports calls/s, call latency
//! percentiles and Redis' `used_memory` per tuple; with `--kill-pid PID`
//! it instead measures the worst call latency while that Redis is killed
//! (run it against a throwaway redis-server).
//!
//!   cargo run --release --example cluster_bench -- redis://127.0.0.1:6390/0 1000000 64

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use greymilter::cluster::{Args, Cluster, Options, SharedSecret};
use greymilter::greylist::key::TupleKey;

fn used_memory(url: &str) -> u64 {
    let Ok(client) = redis::Client::open(url) else {
        return 0;
    };
    let Ok(mut c) = client.get_connection() else {
        return 0;
    };
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query(&mut c)
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let url = argv
        .get(1)
        .cloned()
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
    let n: u64 = argv.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let conc: usize = argv.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    let timeout_ms: u64 = argv.get(4).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let before = used_memory(&url);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    let args = Args {
        now,
        delay: 300,
        retry_window: 4 * 3600,
        lifetime: 36 * 86_400,
        auto_whitelist_after: 5,
        forced: false,
        hint: 0,
        hint_white: false,
    };
    let local = tokio::task::LocalSet::new();
    let (lat, failed, elapsed) = local.block_on(&rt, async {
        let opts = Options {
            url: url.clone(),
            secret: SharedSecret::from_bytes(b"benchmark secret, 32 bytes long.")
                .unwrap_or_else(|e| panic!("{e}")),
            timeout: Duration::from_millis(timeout_ms),
            tls: None,
        };
        let node = Cluster::connect(&opts)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        // Networks of 4 tuples each, keys as the engine makes them.
        let calls = futures_util::stream::iter(0..n).map(|i| {
            let node = node.clone();
            async move {
                let key = TupleKey([
                    i / 4 * 0x9e37_79b9_7f4a_7c15,
                    i.wrapping_mul(0xbf58_476d_1ce4_e5b9),
                ]);
                let t = Instant::now();
                let ok = match node.decide(&key, args) {
                    Some(call) => call.await.is_some(),
                    None => false,
                };
                (t.elapsed(), ok)
            }
        });
        let results: Vec<(Duration, bool)> = calls.buffer_unordered(conc).collect().await;
        let elapsed = started.elapsed();
        let failed = results.iter().filter(|(_, ok)| !ok).count();
        let mut lat: Vec<Duration> = results.into_iter().map(|(d, _)| d).collect();
        lat.sort();
        (lat, failed, elapsed)
    });
    let after = used_memory(&url);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "calls {n}, concurrency {conc}, failed {failed}, {:.0} calls/s",
        n as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency ms: p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
        pct(0.5),
        pct(0.99),
        pct(0.999),
        lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
    println!(
        "redis used_memory: {before} -> {after} bytes, {:.1} bytes per pending tuple",
        after.saturating_sub(before) as f64 / n as f64
    );
}
