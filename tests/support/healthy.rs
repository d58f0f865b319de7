//! The well-behaved MTA that runs beside every hostile, fault and storm
//! test: full greylist conversations, every reply checked.
//!
//! Each session connects from a network of its own (a /64 of 2001:db8::/32
//! per lane and session number), so no network is ever auto-whitelisted and
//! a new recipient must always get 451. A tuple first tried more than the
//! delay ago is retried from its own network and must pass.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use greymilter::milter::client::{ClientBuilder, ClientIo, ConnectAddr, MilterClient, Response};
use greymilter::milter::codec::proto;
use greymilter::milter::listener::ListenSpec;

pub type Client = MilterClient<Box<dyn ClientIo>>;

/// Longest wait for one reply; a daemon that takes longer has failed.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP milter connection to `addr`, not negotiated yet.
pub async fn open(addr: SocketAddr) -> Client {
    ClientBuilder::new()
        .timeout(REPLY_TIMEOUT)
        .connect(&ListenSpec::Tcp(addr))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the milter at {addr}: {e}"))
}

/// A connection that has done OPTNEG: v6, everything offered but skipping
/// CONNECT and MAIL, so that the CONNECT and MAIL packets a test writes are
/// events the daemon takes (the healthy client offers everything).
pub async fn negotiated(addr: SocketAddr) -> Client {
    let mut c = ClientBuilder::new()
        .protocol(proto::ALL & !(proto::NOCONNECT | proto::NOMAIL))
        .timeout(REPLY_TIMEOUT)
        .connect(&ListenSpec::Tcp(addr))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the milter at {addr}: {e}"));
    c.negotiate().await.expect("OPTNEG answered");
    c
}

/// True for the greylisting tempfail: `451 4.7.1 …`.
pub fn is_greylisted(r: &Response) -> bool {
    matches!(r, Response::ReplyCode { code: 451, text, .. } if text.starts_with("4.7.1 "))
}

/// How the healthy client runs.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The daemon's `[greylist] delay`.
    pub delay: Duration,
    /// Concurrent conversations.
    pub lanes: u16,
    /// Pause between two sessions of one lane (zero: continuous load).
    pub pause: Duration,
}

impl Plan {
    /// One lane, a session every 20 ms, for a daemon with `delay = "2s"`.
    /// (The daemon keeps whole seconds: with a 1 s delay an immediate retry
    /// that straddles a second boundary would rightly pass.)
    pub fn beside() -> Plan {
        Plan {
            delay: Duration::from_secs(2),
            lanes: 1,
            pause: Duration::from_millis(20),
        }
    }
}

/// What the healthy client saw.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Sessions in which every reply was right.
    pub sessions: u64,
    /// Retries after the delay that passed.
    pub passes: u64,
    /// One line per session that went wrong: what was expected, what came.
    pub failures: Vec<String>,
    /// The longest wait for a RCPT reply.
    pub slowest_rcpt: Duration,
}

impl Outcome {
    /// Panics unless every session went right and at least one retry passed.
    pub fn assert_all_served(&self, log: &str) {
        assert!(
            self.failures.is_empty(),
            "{} healthy sessions failed (of {}):\n{}\nlog tail:\n{}",
            self.failures.len(),
            self.sessions + self.failures.len() as u64,
            self.failures.join("\n"),
            tail(log, 40)
        );
        assert!(self.sessions > 0, "no healthy session completed");
        assert!(self.passes > 0, "no healthy retry passed");
    }

    /// Panics if a RCPT reply took longer than `bound`.
    pub fn assert_rcpt_answered_within(&self, bound: Duration) {
        assert!(
            self.slowest_rcpt <= bound,
            "a RCPT reply took {:?}, more than {bound:?}",
            self.slowest_rcpt
        );
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The healthy client, running on a thread of its own (with its own
/// current-thread runtime) until [`Healthy::finish`].
pub struct Healthy {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Outcome>>,
}

impl Healthy {
    pub fn start(addr: SocketAddr, plan: Plan) -> Healthy {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let lanes = (0..plan.lanes).map(|lane| run_lane(addr, plan, lane, &flag));
            let outcomes = runtime.block_on(futures_util::future::join_all(lanes));
            outcomes.into_iter().fold(Outcome::default(), |mut all, o| {
                all.sessions += o.sessions;
                all.passes += o.passes;
                all.failures.extend(o.failures);
                all.slowest_rcpt = all.slowest_rcpt.max(o.slowest_rcpt);
                all
            })
        });
        Healthy {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops after every lane has seen a retry pass (so at least `delay`
    /// after the start) and returns what was seen.
    pub fn finish(mut self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .expect("running")
            .join()
            .expect("healthy client thread")
    }
}

impl Drop for Healthy {
    fn drop(&mut self) {
        // A test that panics before finish(): stop the thread, ignore it.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Client address of session `n` of `lane`: its own /64.
pub fn network(lane: u16, n: u32) -> IpAddr {
    let high = (u16::from(lane as u8) << 8) | ((n >> 16) as u16 & 0xff);
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x0db8, high, n as u16, 0, 0, 0, 0x25))
}

/// A tuple waiting for its retry.
#[derive(Debug, Clone)]
struct Waiting {
    first_try: Instant,
    net: u32,
    rcpt: String,
}

/// Margin over the delay before a retry, for the daemon's whole-second clock.
const RETRY_MARGIN: Duration = Duration::from_millis(150);

async fn run_lane(addr: SocketAddr, plan: Plan, lane: u16, stop: &AtomicBool) -> Outcome {
    let mut out = Outcome::default();
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    let mut n: u32 = 0;
    // Guards against a lane that can never finish (a daemon that never lets a retry pass).
    let mut stopping_since: Option<Instant> = None;
    loop {
        let due = waiting
            .front()
            .is_some_and(|w| w.first_try.elapsed() >= plan.delay + RETRY_MARGIN);
        if stop.load(Ordering::Relaxed) {
            let since = *stopping_since.get_or_insert_with(Instant::now);
            if out.passes > 0 || since.elapsed() > plan.delay * 4 + REPLY_TIMEOUT {
                break;
            }
        }
        let retry = if due { waiting.pop_front() } else { None };
        n = n.wrapping_add(1);
        let fresh = format!("<r{n}@healthy.example>");
        let net = retry.as_ref().map_or(n, |w| w.net);
        let slowest = &mut out.slowest_rcpt;
        match session(addr, network(lane, net), retry.as_ref(), &fresh, slowest).await {
            Ok(answered) => {
                out.sessions += 1;
                if retry.is_some() {
                    out.passes += 1;
                } else {
                    waiting.push_back(Waiting {
                        first_try: answered,
                        net: n,
                        rcpt: fresh,
                    });
                }
            }
            Err(e) => out.failures.push(format!("lane {lane} session {n}: {e}")),
        }
        if !plan.pause.is_zero() {
            tokio::time::sleep(plan.pause).await;
        }
    }
    out
}

fn expect(
    step: &str,
    got: std::io::Result<Response>,
    ok: fn(&Response) -> bool,
) -> Result<(), String> {
    match got {
        Ok(r) if ok(&r) => Ok(()),
        Ok(r) => Err(format!("{step}: unexpected reply {r:?}")),
        Err(e) => Err(format!("{step}: {e}")),
    }
}

fn is_continue(r: &Response) -> bool {
    *r == Response::Continue
}

/// One SMTP connection as Postfix would run it: a new tuple must get 451
/// twice (first try, early retry); a due retry must pass. Returns when the
/// new tuple's first try was answered: the daemon saw it no later.
async fn session(
    addr: SocketAddr,
    client: IpAddr,
    retry: Option<&Waiting>,
    fresh: &str,
    slowest_rcpt: &mut Duration,
) -> Result<Instant, String> {
    let mut c = ClientBuilder::new()
        .timeout(REPLY_TIMEOUT)
        .connect(&ListenSpec::Tcp(addr))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    match c.negotiate().await {
        Ok(n) if n.version == 6 => {}
        other => return Err(format!("OPTNEG: {other:?}")),
    }
    expect(
        "CONNECT",
        c.connect("mx.healthy.example", &ConnectAddr::Ip(client, 25))
            .await,
        is_continue,
    )?;
    expect(
        "MAIL",
        c.mail(&["<probe@healthy.example>"]).await,
        is_continue,
    )?;
    let mut timed_rcpt = async |rcpt: &str| {
        let asked = Instant::now();
        let reply = c.rcpt(&[rcpt]).await;
        *slowest_rcpt = (*slowest_rcpt).max(asked.elapsed());
        reply
    };
    if let Some(w) = retry {
        expect(
            "RCPT (retry after the delay)",
            timed_rcpt(&w.rcpt).await,
            is_continue,
        )?;
    }
    expect("RCPT (new tuple)", timed_rcpt(fresh).await, is_greylisted)?;
    let answered = Instant::now();
    expect("RCPT (early retry)", timed_rcpt(fresh).await, is_greylisted)?;
    match c.eom().await {
        Ok(r) if r.last == Response::Continue => {}
        other => return Err(format!("EOM: {other:?}")),
    }
    c.quit().await.map_err(|e| format!("QUIT: {e}"))?;
    match c.closed().await {
        Ok(true) => Ok(answered),
        other => Err(format!("close after QUIT: {other:?}")),
    }
}
