//! A milter-protocol load generator: plays Postfix against any milter and
//! measures sessions/s, RCPT decisions/s, RCPT latency percentiles, errors,
//! and (given the milter's pid) the milter's CPU time per decision.
//!
//! ```text
//! cargo run --release --example milter_load -- --target inet:127.0.0.1:10030 \
//!     --connections 64 --duration 10s --txns 1 --rcpts 1 \
//!     --mix new=60,early=10,pass=25,list=5 --milter-pid PID
//! ```
//!
//! It runs on one thread (a current_thread runtime): on a 2-core machine
//! one core is left to the milter. Each of `--connections` tasks opens a
//! milter connection, runs `--txns` transactions of `--rcpts` recipients on
//! it the way Postfix does (see `session.rs`), quits, and starts over.
//!
//! Categories (`--mix`, shares of connections): `new` tuples are unique;
//! `early` and `pass` come from pools of `--pool` prepared connections. The
//! pools are prepared before the timed run: every pool connection is played
//! once (a greylister stores the tuples), then, after `--prep-wait`, the
//! `pass` pool once more, so its tuples become whitelisted. This needs a
//! milter whose delay for recipients in `--pass-domain` is shorter than
//! `--prep-wait` (greymilter: a `recipient_domains` greylist entry with its
//! own delay, see BENCHMARKS.md) and whose delay for other recipients is
//! longer than the run. `list` recipients are in `--list-domain`, which the
//! milter should accept by a static list. The report says what the milter
//! actually answered per category.

#[path = "../support/workload.rs"]
mod workload;

mod plan;
mod report;
mod session;

use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use greymilter::milter::client::ClientBuilder;
use greymilter::milter::listener::ListenSpec;

use plan::{Category, ConnPlan, Mix, Planner, Shape};
use report::{CpuFigures, Recorder, cpu_time, rss_kib};
use session::{Conversation, Pacer, Scratch};
use workload::Rng;

#[derive(Parser, Debug)]
#[command(about = "Milter load generator (plays Postfix against any milter)")]
struct Args {
    /// The milter: inet:HOST:PORT, inet:PORT@HOST, unix:/path, …
    #[arg(long)]
    target: String,
    /// Concurrent milter connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Length of the measured run.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Stop after this many measured sessions instead of after --duration.
    #[arg(long)]
    sessions: Option<u64>,
    /// Load before the measurement starts (not recorded).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Transactions per milter connection (1: Postfix with one message per
    /// SMTP connection).
    #[arg(long, default_value_t = 1)]
    txns: usize,
    /// Recipients per transaction.
    #[arg(long, default_value_t = 1)]
    rcpts: usize,
    /// Shares of connections per category.
    #[arg(long, default_value = "new=60,early=10,pass=25,list=5")]
    mix: Mix,
    /// Prepared connections in each of the pass and early pools.
    #[arg(long, default_value_t = 5000)]
    pool: usize,
    /// Wait between the two preparation rounds of the pass pool.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    prep_wait: Duration,
    /// Recipient domain of the pass pool.
    #[arg(long, default_value = "pass.test")]
    pass_domain: String,
    /// Recipient domain of list hits.
    #[arg(long, default_value = "list.test")]
    list_domain: String,
    /// Pace RCPT commands to this many per second (0: as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// The milter's pid: report its CPU time and RSS.
    #[arg(long)]
    milter_pid: Option<u32>,
    /// Send a signal to --milter-pid this long into the measurement
    /// (e.g. USR2: a greymilter checkpoint).
    #[arg(long, value_parser = humantime::parse_duration)]
    signal_at: Option<Duration>,
    /// The signal for --signal-at.
    #[arg(long, default_value = "SIGUSR2")]
    signal: String,
    /// Client /24 (and /64) networks addresses are drawn from.
    #[arg(long, default_value_t = 65_536)]
    networks: u64,
    /// Senders of this many SPF domains `d<k>.bench`, each from a network
    /// its SPF record authorises (serve them with the `spf_zone_server`
    /// example). 0: no SPF domains.
    #[arg(long, default_value_t = 0)]
    spf_domains: u64,
    /// Seed of the random streams [default: from the clock].
    #[arg(long)]
    seed: Option<u64>,
    /// ABORTs after each transaction (Postfix sends two).
    #[arg(long, default_value_t = 2)]
    aborts: usize,
    /// Print RCPTs and the worst RCPT latency of every second.
    #[arg(long)]
    timeline: bool,
    /// Write like Sendmail: MACRO and command in two writes, Nagle on (the
    /// milter must force its ACKs out, or every step waits ~40 ms).
    #[arg(long)]
    sendmail_writes: bool,
    /// Longest wait for one reply.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// A shell command run just before the measurement starts (after the
    /// preparation and the warm-up), e.g. `callgrind_control -z PID`. The
    /// generator waits for it: no new request is sent meanwhile.
    #[arg(long)]
    on_measure_start: Option<String>,
    /// A shell command run just after the measurement ends, before the
    /// connections drain, e.g. `callgrind_control -d PID`.
    #[arg(long)]
    on_measure_end: Option<String>,
}

/// What the worker tasks share.
struct Shared {
    conversation: Conversation,
    recorder: Recorder,
    pacer: Pacer,
    mix: Mix,
    planner: std::cell::RefCell<Planner>,
    pass_pool: Rc<Vec<ConnPlan>>,
    early_pool: Rc<Vec<ConnPlan>>,
    stop: std::cell::Cell<bool>,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let spec: ListenSpec = args.target.parse()?;
    if args.connections == 0 || args.txns == 0 || args.rcpts == 0 {
        return Err("--connections, --txns and --rcpts must be at least 1".to_string());
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, run(args, spec, seed))
}

async fn run(args: Args, spec: ListenSpec, seed: u64) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let shape = Shape {
        txns: args.txns,
        rcpts: args.rcpts,
        networks: args.networks,
        pass_domain: args.pass_domain.clone(),
        list_domain: args.list_domain.clone(),
        spf_domains: args.spf_domains,
    };
    let mut planner = Planner::new(shape, seed & 0xffff_ffff);
    let size = |c| if args.mix.share(c) > 0 { args.pool } else { 0 };
    let pass_pool = planner.pool(&mut rng, Category::Pass, size(Category::Pass));
    let early_pool = planner.pool(&mut rng, Category::Early, size(Category::Early));
    let shared = Rc::new(Shared {
        conversation: Conversation {
            spec: spec.clone(),
            builder: ClientBuilder::new().timeout(args.timeout),
            aborts: args.aborts,
            sendmail_writes: args.sendmail_writes,
        },
        recorder: Recorder::new(),
        pacer: Pacer::new(0.0),
        mix: args.mix,
        planner: std::cell::RefCell::new(planner),
        pass_pool,
        early_pool,
        stop: std::cell::Cell::new(false),
    });

    prepare(&shared, &args).await?;

    let shared = Rc::new(Shared {
        pacer: Pacer::new(args.rate),
        ..Rc::try_unwrap(shared).map_err(|_| "preparation tasks still running".to_string())?
    });
    let mut workers = tokio::task::JoinSet::new();
    for i in 0..args.connections {
        let shared = Rc::clone(&shared);
        let seed = seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        workers.spawn_local(async move { worker(&shared, Rng::new(seed)).await });
    }
    tokio::time::sleep(args.warmup).await;

    run_hook("--on-measure-start", args.on_measure_start.as_deref())?;
    let pid = args.milter_pid.map(|p| p.to_string());
    let milter_before = pid.as_deref().and_then(cpu_time);
    let self_before = cpu_time("self").unwrap_or_default();
    shared.recorder.set_measuring(true);
    let started = Instant::now();
    if let (Some(at), Some(p)) = (args.signal_at, args.milter_pid) {
        let signal: nix::sys::signal::Signal = args
            .signal
            .parse()
            .map_err(|_| format!("--signal {}: unknown signal", args.signal))?;
        tokio::task::spawn_local(async move {
            tokio::time::sleep(at).await;
            let pid = nix::unistd::Pid::from_raw(p as i32);
            if let Err(e) = nix::sys::signal::kill(pid, signal) {
                eprintln!("cannot send {signal} to {p}: {e}");
            }
        });
    }
    match args.sessions {
        Some(n) => {
            let base = shared.recorder.all_sessions.get();
            while shared.recorder.all_sessions.get() - base < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        None => tokio::time::sleep(args.duration).await,
    }
    let secs = started.elapsed().as_secs_f64();
    shared.recorder.set_measuring(false);
    run_hook("--on-measure-end", args.on_measure_end.as_deref())?;
    let cpu = CpuFigures {
        milter: milter_before.and_then(|b| Some(cpu_time(pid.as_deref()?)?.saturating_sub(b))),
        generator: cpu_time("self")
            .unwrap_or_default()
            .saturating_sub(self_before),
        milter_rss_kib: pid.as_deref().map_or(0, rss_kib),
    };
    shared.stop.set(true);
    let drained = tokio::time::timeout(args.timeout, async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        eprintln!("some connections did not finish within {:?}", args.timeout);
    }
    let header = format!(
        "target {spec}  connections {}  txns/conn {}  rcpts/txn {}  mix {}  rate {}",
        args.connections,
        args.txns,
        args.rcpts,
        args.mix,
        if args.rate > 0.0 {
            format!("{:.0} RCPT/s", args.rate)
        } else {
            "unpaced".to_string()
        }
    );
    if args.timeline {
        for (s, second) in shared.recorder.timeline().iter().enumerate() {
            println!(
                "t={s:>3}s  rcpt {:>7}  max {:>8.2} ms",
                second.rcpts,
                second.max_ns as f64 / 1e6
            );
        }
    }
    print!("{}", shared.recorder.report(&header, secs, &cpu));
    Ok(())
}

/// Runs a measurement hook through `sh -c`, blocking the (only) thread on
/// purpose: no worker sends a request while it runs, so what the hook
/// brackets (e.g. callgrind's counters) is the measured phase, up to the
/// replies already in flight.
fn run_hook(flag: &str, cmd: Option<&str>) -> Result<(), String> {
    let Some(cmd) = cmd else { return Ok(()) };
    let status = std::process::Command::new("sh")
        .args(["-c", cmd])
        .status()
        .map_err(|e| format!("{flag} {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{flag} {cmd:?}: {status}"))
    }
}

/// One of the concurrent connections, over and over until told to stop.
async fn worker(shared: &Shared, mut rng: Rng) {
    let mut scratch = Scratch::default();
    let mut fresh;
    while !shared.stop.get() {
        let category = shared.mix.pick(&mut rng);
        let plan = match category {
            Category::Pass => pick(&shared.pass_pool, &mut rng),
            Category::Early => pick(&shared.early_pool, &mut rng),
            Category::New | Category::List => None,
        };
        let plan = match plan {
            Some(p) => p,
            None => {
                fresh = shared.planner.borrow_mut().plan(&mut rng, category);
                &fresh
            }
        };
        connection(shared, plan, &mut scratch).await;
    }
}

fn pick<'a>(pool: &'a [ConnPlan], rng: &mut Rng) -> Option<&'a ConnPlan> {
    pool.get((rng.next_u64() % pool.len().max(1) as u64) as usize)
}

async fn connection(shared: &Shared, plan: &ConnPlan, scratch: &mut Scratch) {
    let result = shared
        .conversation
        .run(plan, scratch, &shared.pacer, &shared.recorder)
        .await;
    if let Err(e) = result {
        shared.recorder.error(&e);
        // A refused connection must not turn into a busy loop.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Plays every connection of `pool` once, `connections` at a time.
async fn play_pool(shared: &Rc<Shared>, pool: &Rc<Vec<ConnPlan>>, connections: usize) {
    let next = Rc::new(std::cell::Cell::new(0usize));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections.min(pool.len()) {
        let (shared, pool, next) = (Rc::clone(shared), Rc::clone(pool), Rc::clone(&next));
        tasks.spawn_local(async move {
            let mut scratch = Scratch::default();
            loop {
                let i = next.get();
                let Some(plan) = pool.get(i) else { break };
                next.set(i + 1);
                connection(&shared, plan, &mut scratch).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// The preparation rounds (see the module docs).
async fn prepare(shared: &Rc<Shared>, args: &Args) -> Result<(), String> {
    if shared.pass_pool.is_empty() && shared.early_pool.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    play_pool(shared, &shared.pass_pool, args.connections).await;
    let pass_played = Instant::now();
    play_pool(shared, &shared.early_pool, args.connections).await;
    if !shared.pass_pool.is_empty() {
        tokio::time::sleep(args.prep_wait.saturating_sub(pass_played.elapsed())).await;
        let before = *shared.recorder.all_rcpts.borrow();
        play_pool(shared, &shared.pass_pool, args.connections).await;
        let after = *shared.recorder.all_rcpts.borrow();
        let total: u64 = after.iter().zip(before).map(|(a, b)| a - b).sum();
        let passed = after[0] - before[0];
        if passed < total {
            eprintln!(
                "warning: {} of {total} pass-pool recipients were not passed in the second round; \
                 is the milter's delay for {} shorter than --prep-wait ({:?})?",
                total - passed,
                args.pass_domain,
                args.prep_wait
            );
        }
    }
    eprintln!(
        "prepared {} pass and {} early connections in {:.1} s",
        shared.pass_pool.len(),
        shared.early_pool.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
