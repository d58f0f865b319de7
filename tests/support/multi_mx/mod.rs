//! The multi-MX retry experiment, shared by `tests/cluster_multi_mx.rs`
//! (which asserts on it) and `examples/multi_mx.rs` (which reports it in
//! BENCHMARKS.md).
//!
//! Legitimate senders whose MTA retries a deferred message at a random one
//! of the MX hosts, each running greymilter. Two kinds of sender, each
//! message from its own sender domain and networks (so no auto-whitelist
//! carries over from one message to the next): a single-IP sender, and a
//! provider that sends each attempt from a random one of six /24s, all
//! published in its SPF record.
//!
//! The daemons are the real ones (`Daemon::start` + `serve`, in process, on
//! loopback TCP); every attempt is a milter session through the real
//! protocol; SPF records come from a real DNS server on loopback and the
//! shared table from a real redis-server. The daemons share a manual clock
//! that jumps from one attempt to the next, so hours of retries take
//! seconds (the clock starts at the real time: Redis expiries are absolute).
//! Retry schedule, Postfix's defaults: after a deferral the message waits
//! its age clamped to 300..4000 s (`minimal_backoff_time`,
//! `maximal_backoff_time`), then up to one queue scan more
//! (`queue_run_delay`, 300 s); six tries in all.
//!
//! The crate that includes this module must also include
//! `cluster_support`, `dns_support` and `support/rng.rs` as `rng`.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use greymilter::cluster::{Cluster, Options, SharedSecret};
use greymilter::config::Config;
use greymilter::daemon::{Daemon, Event, Setup};
use greymilter::greylist::clock::ManualClock;
use greymilter::milter::client::{ClientBuilder, ConnectAddr, Response};
use greymilter::milter::listener::{ListenSpec, Listener, UnixSocketOptions};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use crate::cluster_support::Redis;
use crate::dns_support::{DnsServer, serving};
use crate::rng::Rng;

pub const TRIES: u32 = 6;
const MIN_BACKOFF: u64 = 300;
const MAX_BACKOFF: u64 = 4000;
const QUEUE_RUN: u64 = 300;
/// Messages start at random times over this span.
const SPREAD: u64 = 3600;
/// The /24s a provider sends from.
pub const POOL: u32 = 6;
const RECIPIENT: &str = "<user@example.net>";
const SECRET: &[u8] = b"multi-mx experiment secret 32 b";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Single,
    Pool,
}

/// One way of running the MX hosts.
pub struct Scenario {
    pub name: &'static str,
    pub nodes: usize,
    /// The nodes share one Redis (`[cluster]`).
    pub cluster: bool,
    /// `[greylist] spf = "key"`.
    pub spf_key: bool,
}

pub const SCENARIOS: [Scenario; 5] = [
    Scenario {
        name: "one-mx",
        nodes: 1,
        cluster: false,
        spf_key: false,
    },
    Scenario {
        name: "two-mx",
        nodes: 2,
        cluster: false,
        spf_key: false,
    },
    Scenario {
        name: "two-mx spf=key",
        nodes: 2,
        cluster: false,
        spf_key: true,
    },
    Scenario {
        name: "cluster",
        nodes: 2,
        cluster: true,
        spf_key: false,
    },
    Scenario {
        name: "cluster spf=key",
        nodes: 2,
        cluster: true,
        spf_key: true,
    },
];

/// What one sender kind went through in one scenario.
#[derive(Default, Clone, Copy, Debug)]
pub struct Tally {
    pub messages: u32,
    pub deferrals: u32,
    pub delivered: u32,
    /// Sum of the delivery delays of delivered messages, seconds.
    pub delay_sum: u64,
    /// Replies that were neither a greylisting deferral nor CONTINUE.
    pub other: u32,
}

impl Tally {
    /// Deferrals beyond the one greylisting must give, summed over the
    /// messages (an undelivered message counts all six).
    pub fn extra_deferrals(&self) -> u32 {
        self.deferrals.saturating_sub(self.messages)
    }
    pub fn extra_per_message(&self) -> f64 {
        f64::from(self.extra_deferrals()) / f64::from(self.messages.max(1))
    }
    pub fn undelivered_pct(&self) -> f64 {
        100.0 * f64::from(self.messages - self.delivered) / f64::from(self.messages.max(1))
    }
    pub fn mean_delay_min(&self) -> f64 {
        if self.delivered == 0 {
            return 0.0;
        }
        self.delay_sum as f64 / f64::from(self.delivered) / 60.0
    }
}

/// The cluster counters of the report, summed over the nodes.
#[derive(Default, Clone, Copy, Debug)]
pub struct RedisCounts {
    pub calls: u64,
    pub cached: u64,
    pub fallbacks: u64,
}

#[derive(Debug)]
pub struct Outcome {
    pub single: Tally,
    pub pool: Tally,
    pub redis: RedisCounts,
}

/// The DNS server (and Redis, for the cluster scenarios) the scenarios
/// share; each scenario starts its own daemons.
pub struct Lab {
    pub messages: u32,
    pub seed: u64,
    /// `[cluster] timeout`.
    pub cluster_timeout: Duration,
    dns: DnsServer,
    redis: Option<Redis>,
}

impl Lab {
    /// Serves the SPF records of `messages` messages of each kind; starts
    /// a redis-server when `with_redis`.
    pub async fn start(messages: u32, seed: u64, with_redis: bool) -> Lab {
        let zone = zone(messages);
        Lab {
            messages,
            seed,
            cluster_timeout: Duration::from_millis(50),
            dns: serving(&[(&zone, "test.")]).await,
            redis: with_redis.then(|| Redis::start(&["--maxmemory-policy", "volatile-ttl"])),
        }
    }

    pub fn has_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// Every message of both kinds through the scenario's daemons, started
    /// for it on an empty Redis and stopped after.
    pub async fn run(&self, s: &Scenario) -> Result<Outcome, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let mut config = String::from("[greylist]\n");
        if s.spf_key {
            let _ = write!(
                config,
                "spf = \"key\"\n[dns]\nservers = [\"{}\"]\ntimeout = \"2s\"\n",
                self.dns.addr
            );
        }
        let cluster = if s.cluster {
            let redis = self.redis.as_ref().ok_or("no redis-server")?;
            let _ = redis::cmd("FLUSHALL").query::<()>(&mut redis.conn());
            let key = dir.path().join("cluster.key");
            std::fs::write(&key, SECRET).map_err(|e| format!("{}: {e}", key.display()))?;
            let timeout = self.cluster_timeout.as_millis();
            let _ = write!(
                config,
                "[milter]\ndecision_timeout = \"{}ms\"\n[cluster]\nredis = \"{}\"\n\
                 secret_file = \"{}\"\ntimeout = \"{timeout}ms\"\n",
                (timeout * 4).max(5000),
                redis.url(),
                key.display(),
            );
            Some(Options {
                url: redis.url(),
                secret: SharedSecret::from_bytes(SECRET)?,
                timeout: self.cluster_timeout,
                tls: None,
            })
        } else {
            None
        };
        let base = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let clock = ManualClock::new(base);
        let mut nodes = Vec::new();
        for i in 0..s.nodes {
            nodes.push(Node::start(dir.path(), i, &config, &clock, cluster.as_ref()).await?);
        }
        let mut rng = Rng::new(self.seed);
        let result = simulate(&nodes, &clock, base, self.messages, &mut rng).await;
        let mut redis = RedisCounts::default();
        for n in &nodes {
            let report = n.report().await;
            redis.calls += report_value(&report, "Redis-Calls");
            redis.cached += report_value(&report, "Redis-Cached");
            redis.fallbacks += report_value(&report, "Redis-Fallbacks");
        }
        for n in nodes {
            n.stop().await;
        }
        let [single, pool] = result?;
        Ok(Outcome {
            single,
            pool,
            redis,
        })
    }
}

/// The client network of message `k` (single) or of its pool member `j`.
fn network(kind: Kind, k: u32, j: u32) -> [u8; 3] {
    let (hi, lo) = ((k >> 8) as u8, k as u8);
    match kind {
        Kind::Single => [10, hi, lo],
        Kind::Pool => [20 + j as u8, hi, lo],
    }
}

fn sender(kind: Kind, k: u32) -> String {
    match kind {
        Kind::Single => format!("<alice@s{k}.single.test>"),
        Kind::Pool => format!("<bob@p{k}.pool.test>"),
    }
}

/// `test.`: an SPF record per sender domain, naming exactly its networks.
fn zone(messages: u32) -> String {
    let mut z = String::from(
        "$TTL 86400\n@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 3600\n\
         @ IN NS ns.test.\nns IN A 127.0.0.1\n",
    );
    for k in 0..messages {
        let [a, b, c] = network(Kind::Single, k, 0);
        let _ = writeln!(z, "s{k}.single IN TXT \"v=spf1 ip4:{a}.{b}.{c}.1 -all\"");
        let mut pool = String::new();
        for j in 0..POOL {
            let [a, b, c] = network(Kind::Pool, k, j);
            let _ = write!(pool, " ip4:{a}.{b}.{c}.0/24");
        }
        let _ = writeln!(z, "p{k}.pool IN TXT \"v=spf1{pool} -all\"");
    }
    z
}

/// One MX host: a daemon in this thread's `LocalSet`.
struct Node {
    spec: ListenSpec,
    events: UnboundedSender<Event>,
    done: tokio::task::JoinHandle<()>,
    stats: PathBuf,
}

impl Node {
    async fn start(
        dir: &Path,
        index: usize,
        config_text: &str,
        clock: &ManualClock,
        cluster: Option<&Options>,
    ) -> Result<Node, String> {
        let path = dir.join(format!("node{index}.toml"));
        let stats = dir.join(format!("node{index}.stats"));
        let text = format!("{config_text}[stats]\nfile = \"{}\"\n", stats.display());
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        let config = Config::load(&path).map_err(|e| e.to_string())?;
        let listener = Listener::bind(
            &ListenSpec::Tcp((Ipv4Addr::LOCALHOST, 0).into()),
            &UnixSocketOptions::default(),
        )
        .map_err(|e| format!("bind: {e}"))?;
        let port = listener.tcp_port().ok_or("no TCP port")?;
        let setup = Setup {
            config_path: Some(path),
            logging: None,
            identity: None,
            clock: Box::new(clock.clone()),
        };
        let mut daemon = Daemon::start(config, setup)?;
        if let Some(opts) = cluster {
            daemon = daemon.with_cluster(Cluster::connect(opts).await?, opts.secret.secret);
        }
        let (events, rx) = unbounded_channel();
        let done = tokio::task::spawn_local(daemon.serve(listener, rx));
        Ok(Node {
            spec: ListenSpec::Tcp((Ipv4Addr::LOCALHOST, port).into()),
            events,
            done,
            stats,
        })
    }

    /// The statistics report, as SIGUSR1 writes it (empty if it does not
    /// come within 10 s).
    async fn report(&self) -> String {
        let _ = std::fs::remove_file(&self.stats);
        let _ = self.events.send(Event::Stats);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(text) = std::fs::read_to_string(&self.stats) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        String::new()
    }

    async fn stop(self) {
        let _ = self.events.send(Event::Shutdown);
        let _ = self.done.await;
    }

    /// One delivery attempt: a milter session up to the RCPT reply.
    async fn attempt(&self, ip: Ipv4Addr, from: &str) -> Result<Response, String> {
        let io = |e: std::io::Error| format!("milter session with {}: {e}", self.spec);
        let mut c = ClientBuilder::new().connect(&self.spec).await.map_err(io)?;
        c.negotiate().await.map_err(io)?;
        c.connect("unknown", &ConnectAddr::Ip(IpAddr::V4(ip), 40_000))
            .await
            .map_err(io)?;
        c.mail(&[from]).await.map_err(io)?;
        let reply = c.rcpt(&[RECIPIENT]).await.map_err(io)?;
        c.abort().await.map_err(io)?;
        c.quit().await.map_err(io)?;
        Ok(reply)
    }
}

fn is_deferral(r: &Response) -> bool {
    matches!(r, Response::ReplyCode { code: 451, text, .. } if text.starts_with("4.7.1 "))
}

/// A delivery attempt waiting in the queue, ordered by time.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: u64,
    kind: u8,
    message: u32,
    tries: u32,
    arrived: u64,
}

/// Runs every message of both kinds through `nodes`, in time order; the
/// tallies of the single-IP and the pool senders.
async fn simulate(
    nodes: &[Node],
    clock: &ManualClock,
    base: u64,
    messages: u32,
    rng: &mut Rng,
) -> Result<[Tally; 2], String> {
    let mut queue = BinaryHeap::new();
    for message in 0..messages {
        for kind in [0, 1] {
            let arrived = rng.below(SPREAD);
            queue.push(Reverse(Due {
                at: arrived,
                kind,
                message,
                tries: 0,
                arrived,
            }));
        }
    }
    let mut tally = [Tally::default(); 2];
    while let Some(Reverse(due)) = queue.pop() {
        let kind = if due.kind == 0 {
            Kind::Single
        } else {
            Kind::Pool
        };
        clock.set(base + due.at);
        let node = &nodes[rng.below(nodes.len() as u64) as usize];
        let (member, host) = match kind {
            Kind::Single => (0, 1),
            Kind::Pool => (rng.below(u64::from(POOL)) as u32, 1 + rng.below(250) as u8),
        };
        let [a, b, c] = network(kind, due.message, member);
        let reply = node
            .attempt(Ipv4Addr::new(a, b, c, host), &sender(kind, due.message))
            .await?;
        let t = &mut tally[usize::from(due.kind)];
        if due.tries == 0 {
            t.messages += 1;
        }
        let tries = due.tries + 1;
        if matches!(reply, Response::Continue) {
            t.delivered += 1;
            t.delay_sum += due.at - due.arrived;
        } else if is_deferral(&reply) {
            t.deferrals += 1;
            if tries < TRIES {
                let age = due.at - due.arrived;
                let wait = age.clamp(MIN_BACKOFF, MAX_BACKOFF) + rng.below(QUEUE_RUN + 1);
                queue.push(Reverse(Due {
                    at: due.at + wait,
                    tries,
                    ..due
                }));
            }
        } else {
            t.other += 1;
            eprintln!("multi-mx: unexpected RCPT reply {reply:?}");
        }
    }
    Ok(tally)
}

fn report_value(report: &str, label: &str) -> u64 {
    report
        .lines()
        .find_map(|l| l.strip_prefix(label)?.strip_prefix("  "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
