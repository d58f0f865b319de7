//! Cost of `spf = "key"` against `off`, per transaction, on the daemon's
//! kind of runtime (current_thread), with a real authoritative DNS server
//! on loopback (hickory-server, on a thread of its own so that its CPU is
//! not counted).
//!
//! ```text
//! cargo run --release --example dns_bench -- --transactions 20000
//! ```
//!
//! Three runs over the same transactions (a sender of `provider.test` from
//! one of its six SPF-authorised /24s, one recipient):
//! * `off`: the engine's RCPT decision only (what the daemon does today);
//! * `key-warm`: the SPF lookup set (answers in the resolver's cache) plus
//!   the decision keyed by the domain;
//! * `key-cold`: the same with the resolver's cache off, so every check
//!   queries the server (two TXT lookups for provider.test).
//!
//! Printed per run: transactions/s, CPU of this (the milter's) thread per
//! transaction, and p50/p99 of the SPF lookup set. Figures in BENCHMARKS.md.

#[path = "../tests/support/dns/mod.rs"]
mod dns_support;

use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use greymilter::dns::{Dns, DnsSettings};
use greymilter::greylist::clock::SystemClock;
use greymilter::greylist::facts::{DnsFacts, DnsPolicy, SpfMode};
use greymilter::greylist::settings::Settings;
use greymilter::greylist::{Engine, Request};
use hdrhistogram::Histogram;

#[derive(Parser, Debug)]
struct Args {
    /// Transactions per run.
    #[arg(long, default_value_t = 20_000)]
    transactions: u64,
    /// Transactions of the cold run (each queries the server).
    #[arg(long, default_value_t = 2_000)]
    cold_transactions: u64,
}

/// CPU time of this thread (the main thread: its tid is the pid).
fn thread_cpu() -> Duration {
    let pid = std::process::id();
    let stat = std::fs::read_to_string(format!("/proc/self/task/{pid}/stat")).unwrap_or_default();
    let rest = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 2..))
        .unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn engine(spf: SpfMode) -> Engine {
    let settings = Settings {
        dns: DnsPolicy {
            spf,
            ..DnsPolicy::default()
        },
        ..Settings::default()
    };
    Engine::new(settings, Box::new(SystemClock))
}

struct Run {
    name: &'static str,
    n: u64,
    wall: Duration,
    cpu: Duration,
    lookup: Histogram<u64>,
}

impl Run {
    fn print(&self) {
        let per = |d: Duration| d.as_secs_f64() * 1e6 / self.n as f64;
        println!(
            "RESULT run={} transactions={} per_sec={:.0} cpu_us_per_txn={:.1} spf_p50_us={} spf_p99_us={}",
            self.name,
            self.n,
            self.n as f64 / self.wall.as_secs_f64(),
            per(self.cpu),
            self.lookup.value_at_quantile(0.5),
            self.lookup.value_at_quantile(0.99),
        );
    }
}

async fn run(name: &'static str, n: u64, dns: Option<Rc<Dns>>, mode: SpfMode) -> Run {
    let mut e = engine(mode);
    let mut lookup = Histogram::<u64>::new(3).unwrap();
    let cpu0 = thread_cpu();
    let t0 = Instant::now();
    for i in 0..n {
        let client = dns_support::PROVIDER_POOL[(i % 6) as usize];
        let addr = dns_support::ip(client);
        let sender = format!("<bounce-{i}@provider.test>");
        let facts = match &dns {
            Some(dns) => {
                let t = Instant::now();
                let out = Rc::clone(dns)
                    .spf(addr, "out.provider.test".into(), sender.clone())
                    .await;
                let _ = lookup.record(t.elapsed().as_micros() as u64);
                DnsFacts {
                    client: None,
                    spf: out.facts,
                }
            }
            None => DnsFacts::default(),
        };
        let rcpt = format!("<user{}@our.example>", i % 1000);
        let d = e.decide_rcpt_with(
            &Request {
                client_addr: Some(addr),
                client_name: b"out.provider.test",
                sender: sender.as_bytes(),
                recipient: rcpt.as_bytes(),
                authenticated: false,
            },
            &facts,
        );
        std::hint::black_box(d);
    }
    Run {
        name,
        n,
        wall: t0.elapsed(),
        cpu: thread_cpu().saturating_sub(cpu0),
        lookup,
    }
}

fn main() {
    let args = Args::parse();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = dns_support::runtime();
        rt.block_on(async move {
            let server = dns_support::authoritative().await;
            tx.send(server.addr).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let server = rx.recv().unwrap();
    let rt = dns_support::runtime();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let settings = |cache_size| DnsSettings {
            servers: vec![server],
            timeout: Duration::from_secs(2),
            cache_size,
            spf: true,
            ..DnsSettings::default()
        };
        let warm = Rc::new(Dns::new(settings(4096)));
        let cold = Rc::new(Dns::new(settings(0)));
        // Fill the warm cache.
        let _ = Rc::clone(&warm)
            .spf(
                dns_support::ip("192.0.2.1"),
                "h".into(),
                "a@provider.test".into(),
            )
            .await;
        run("off", args.transactions, None, SpfMode::Off)
            .await
            .print();
        run("key-warm", args.transactions, Some(warm), SpfMode::Key)
            .await
            .print();
        run("key-cold", args.cold_transactions, Some(cold), SpfMode::Key)
            .await
            .print();
    });
}
