//! How long `greymilter flush --pending` and `forget --network` take on a
//! large shared state (BENCHMARKS.md): fills a throwaway Redis with N tuple
//! keys (half pending, half whitelisted, 65,536 client networks, written by
//! a server-side loop), then times the walks through the cluster client.
//!
//!   cargo run --example admin_walk -- redis://127.0.0.1:6390/0 1000000

use std::cell::Cell;
use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use greymilter::cluster::{Cluster, Options, SharedSecret};

const FILL: &str = r"
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  local v = ARGV[3]
  if i % 2 == 1 then v = '-' .. v end
  redis.call('SET', string.format('gm{%016x}t%016x', i % 65536, i), v, 'EX', 3600)
end
return 0
";

const LIMIT: Duration = Duration::from_secs(600);

fn main() {
    let mut argv = std::env::args().skip(1);
    let url = argv
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
    let n: u64 = argv.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut sync = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let started = Instant::now();
    let mut from = 0;
    while from < n {
        let to = (from + 100_000).min(n) - 1;
        let _: i64 = redis::cmd("EVAL")
            .arg(FILL)
            .arg(0)
            .arg(from)
            .arg(to)
            .arg(now)
            .query(&mut sync)
            .unwrap_or_else(|e| panic!("fill: {e}"));
        from = to + 1;
    }
    println!("filled {n} keys in {:?}", started.elapsed());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    tokio::task::LocalSet::new().block_on(&rt, async {
        let opts = Options {
            url: url.clone(),
            secret: SharedSecret::from_bytes(b"admin_walk secret")
                .unwrap_or_else(|e| panic!("{e}")),
            timeout: Duration::from_secs(1),
            tls: None,
        };
        let node = Cluster::connect(&opts)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let progress = Cell::new(0);
        let started = Instant::now();
        let s = node
            .flush_pending(LIMIT, &progress)
            .await
            .unwrap_or_else(|e| panic!("flush: {e}"));
        let took = started.elapsed();
        println!(
            "flush --pending: {} of {n} tuples in {took:?} (complete: {}), {:.0} keys walked/s",
            s.tuples,
            s.complete,
            n as f64 / took.as_secs_f64()
        );
        let nets: HashSet<u64> = [7u64].into_iter().collect();
        let started = Instant::now();
        let s = node
            .forget_networks(&nets, now + 3600, LIMIT, &progress)
            .await
            .unwrap_or_else(|e| panic!("forget: {e}"));
        println!(
            "forget one network: {} tuples in {:?} (walk complete: {})",
            s.tuples,
            started.elapsed(),
            s.complete
        );
    });
}
