//! The multi-MX retry experiment of BENCHMARKS.md ("Several MX hosts"):
//! deferrals per legitimate message beyond the one greylisting must give,
//! and messages still undelivered after six tries, when the sending MTA
//! retries at a random one of two MX hosts. The experiment itself (real
//! daemons in process, real DNS and Redis on loopback, a manual clock) is
//! `tests/support/multi_mx`, which `tests/cluster_multi_mx.rs` asserts on.
//!
//! ```text
//! cargo run --release --example multi_mx -- [--messages N] [--seed S] [--timeout-ms MS]
//! ```
//!
//! Scenarios: one MX; two MX hosts with a table each; the same with SPF-keyed
//! tuples; two nodes sharing one Redis (`[cluster]`); both. The cluster
//! scenarios are skipped without `redis-server`.

#[path = "../tests/support/cluster/mod.rs"]
mod cluster_support;
#[path = "../tests/support/dns/mod.rs"]
mod dns_support;
#[path = "../tests/support/multi_mx/mod.rs"]
mod multi_mx_support;
#[path = "../tests/support/rng.rs"]
#[allow(dead_code)]
mod rng;

use std::time::Duration;

use multi_mx_support::{Lab, SCENARIOS, TRIES};

struct Args {
    messages: u32,
    seed: u64,
    timeout_ms: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        messages: 500,
        seed: 1,
        timeout_ms: 50,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: std::num::ParseIntError| format!("{flag} {value:?}: {e}");
        match flag.as_str() {
            "--messages" => a.messages = value.parse().map_err(bad)?,
            "--seed" => a.seed = value.parse().map_err(bad)?,
            "--timeout-ms" => a.timeout_ms = value.parse().map_err(bad)?,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    if a.messages == 0 || a.messages > 65_536 {
        return Err("--messages must be 1..=65536".into());
    }
    Ok(a)
}

fn main() {
    let a = args().unwrap_or_else(|e| {
        eprintln!("multi_mx: {e}");
        std::process::exit(2)
    });
    let failed = cluster_support::run(async {
        let mut lab = Lab::start(a.messages, a.seed, cluster_support::redis_present()).await;
        lab.cluster_timeout = Duration::from_millis(a.timeout_ms);
        println!(
            "multi_mx: {} messages per sender kind, seed {}, MX chosen at random per attempt, \
             {TRIES} tries on Postfix's backoff, delay 300 s, [cluster] timeout {} ms",
            a.messages, a.seed, a.timeout_ms
        );
        println!(
            "{:<16} {:<6} {:>8} {:>16} {:>12} {:>11}   Redis calls/cached/fallbacks",
            "scenario", "sender", "messages", "extra deferrals", "undelivered", "mean delay"
        );
        let mut failed = false;
        for s in &SCENARIOS {
            if s.cluster && !lab.has_redis() {
                println!("{:<16} skipped: no redis-server", s.name);
                continue;
            }
            let out = match lab.run(s).await {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("multi_mx: {}: {e}", s.name);
                    failed = true;
                    continue;
                }
            };
            let r = out.redis;
            for (kind, t) in [("single", out.single), ("pool", out.pool)] {
                println!(
                    "{:<16} {:<6} {:>8} {:>16.3} {:>11.1}% {:>7.1} min   {}/{}/{}",
                    s.name,
                    kind,
                    t.messages,
                    t.extra_per_message(),
                    t.undelivered_pct(),
                    t.mean_delay_min(),
                    r.calls,
                    r.cached,
                    r.fallbacks
                );
                println!(
                    "RESULT scenario={} sender={kind} messages={} deferrals={} delivered={} \
                     extra_per_message={:.4} undelivered_pct={:.2} other={}",
                    s.name.replace(' ', "+"),
                    t.messages,
                    t.deferrals,
                    t.delivered,
                    t.extra_per_message(),
                    t.undelivered_pct(),
                    t.other
                );
                failed |= t.other > 0;
            }
        }
        failed
    });
    if failed {
        std::process::exit(1);
    }
}
