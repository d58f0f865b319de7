//! The frame of every hostile-client test: a daemon of its own, the healthy
//! client beside it, the hostile rounds, then the checks every hostile input
//! must pass (alive, no panic, healthy sessions all right, bounded memory,
//! rate-limited warn lines, the reaction counted in the statistics).

use std::future::Future;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Daemon;
use super::healthy::{Client, Healthy, Outcome, Plan};
use super::watch::{
    LATER_LABELS, Report, assert_alive, fetch_report, proc_status, rss_kib, warn_lines,
};

/// Hostile connections per test; all run at once, so a per-packet log line
/// or a per-connection leak would show.
pub const ROUNDS: usize = 40;

/// How far the daemon's peak resident memory may rise above what it used
/// before the hostile rounds. A session buffers at most one packet (64 KiB),
/// so ROUNDS connections at once need 2.5 MiB; the rest is allocator slack.
pub const PEAK_GROWTH_KIB: u64 = 8 * 1024;
/// How far it may stay above it once the hostile connections are gone (the
/// allocator keeps some freed buffers; a leak per connection would not fit).
pub const KEPT_GROWTH_KIB: u64 = 4 * 1024;

/// The session warn lines share one limiter: one line per this interval.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// What a hostile input must cause.
#[derive(Debug, Clone)]
pub struct Expect {
    /// Text of the one warn line the input must produce (alternatives
    /// separated by `|`, none of them empty), or `None`: the input is legal
    /// (if odd) and produces no warn line at all.
    pub warn: Option<&'static str>,
    /// Hostile sessions (all of them end before the checks).
    pub sessions: u64,
    /// Of those, how many the daemon closed for a protocol error.
    pub protocol_errors: RangeInclusive<u64>,
    /// Of those, how many it closed for idleness.
    pub timeouts: u64,
}

impl Expect {
    /// Every round is closed for a protocol error, with this warn line.
    pub fn closed(warn: &'static str) -> Expect {
        Expect {
            warn: Some(warn),
            sessions: ROUNDS as u64,
            protocol_errors: ROUNDS as u64..=ROUNDS as u64,
            timeouts: 0,
        }
    }

    /// Every round is served to its QUIT, with this warn line (or none).
    pub fn tolerated(warn: Option<&'static str>) -> Expect {
        Expect {
            warn,
            sessions: ROUNDS as u64,
            protocol_errors: 0..=0,
            timeouts: 0,
        }
    }
}

pub struct Hostile {
    pub dir: TempDir,
    pub daemon: Daemon,
    pub runtime: tokio::runtime::Runtime,
    healthy: Option<Healthy>,
    stats: PathBuf,
    rss_before: u64,
    /// Memory the test expects on top of the bounds (a table it fills).
    allowance_kib: u64,
    mark: usize,
    started: Instant,
}

impl Hostile {
    /// A daemon with `delay = "2s"`, a stats file and `extra` config
    /// (TOML appended), the healthy client already running beside it.
    pub fn start(extra: &str) -> Hostile {
        let dir = tempfile::tempdir().unwrap();
        let config =
            format!("[greylist]\ndelay = \"2s\"\n[stats]\nfile = \"{{dir}}/stats\"\n{extra}");
        let daemon = Daemon::start_in(dir.path(), &config);
        assert_ne!(daemon.port, 0, "{}", daemon.log_text());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let healthy = Healthy::start(daemon.milter_addr(), Plan::beside());
        let stats = dir.path().join("stats");
        let rss_before = rss_kib(&daemon);
        let mark = daemon.log_len();
        Hostile {
            dir,
            daemon,
            runtime,
            healthy: Some(healthy),
            stats,
            rss_before,
            allowance_kib: 0,
            mark,
            started: Instant::now(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.daemon.milter_addr()
    }

    /// Raises both memory bounds by `kib` (for a table the test fills on
    /// purpose).
    pub fn allow_memory_kib(&mut self, kib: u64) {
        self.allowance_kib = kib;
    }

    /// Runs `round(addr, i)` for i in 0..ROUNDS, all at once.
    pub fn rounds<F, Fut>(&self, round: F)
    where
        F: Fn(SocketAddr, usize) -> Fut,
        Fut: Future<Output = ()>,
    {
        let addr = self.addr();
        self.runtime.block_on(futures_util::future::join_all(
            (0..ROUNDS).map(|i| round(addr, i)),
        ));
    }

    /// Runs the common checks; returns what a test may check further.
    pub fn finish(mut self, expect: Expect) -> Finished {
        let outcome = self.healthy.take().expect("healthy client").finish();
        let log = self.daemon.log_text();
        outcome.assert_all_served(&log);
        assert_alive(&mut self.daemon);

        let before_report = self.daemon.log_len();
        let report = fetch_report(&self.daemon, &self.stats);
        // The report's last line in the log: the daemon writes the file
        // first and logs after, and its info lines are batched. Once this is
        // in the log, so is every decision line of the rounds, for the test
        // to read from `Finished::daemon`.
        let last = LATER_LABELS[LATER_LABELS.len() - 1];
        self.daemon
            .wait_for_log_after(before_report, |l| l.contains(last));
        assert_eq!(
            report.num("Sessions"),
            expect.sessions + outcome.sessions,
            "sessions counted (hostile {} + healthy {}):\n{}",
            expect.sessions,
            outcome.sessions,
            report.text
        );
        assert!(
            expect
                .protocol_errors
                .contains(&report.num("Protocol-Errors")),
            "expected {:?} protocol errors:\n{}",
            expect.protocol_errors,
            report.text
        );
        assert_eq!(report.num("Timeouts"), expect.timeouts, "{}", report.text);

        let warns = warn_lines(&self.daemon, self.mark, "");
        match expect.warn {
            None => assert!(
                warns.is_empty(),
                "no warn line expected:\n{}",
                warns.join("\n")
            ),
            Some(text) => {
                assert!(
                    text.split('|').all(|t| !t.is_empty()),
                    "an empty warn text matches any line: {text:?}"
                );
                let allowed =
                    1 + (self.started.elapsed().as_secs() / WARN_INTERVAL.as_secs()) as usize;
                assert!(
                    !warns.is_empty()
                        && warns.len() <= allowed
                        && warns.iter().all(|l| text.split('|').any(|t| l.contains(t))),
                    "expected 1 (at most {allowed}) warn line with {text:?} for {} hostile sessions, got:\n{}",
                    expect.sessions,
                    warns.join("\n")
                );
            }
        }

        let pid = self.daemon.pid().as_raw();
        let peak = proc_status(pid, "VmHWM");
        let now = rss_kib(&self.daemon);
        eprintln!(
            "daemon memory: {} KiB before, peak {} KiB, {} KiB after",
            self.rss_before, peak, now
        );
        assert!(
            peak.saturating_sub(self.rss_before) < PEAK_GROWTH_KIB + self.allowance_kib,
            "peak memory grew from {} KiB to {peak} KiB",
            self.rss_before
        );
        assert!(
            now.saturating_sub(self.rss_before) < KEPT_GROWTH_KIB + self.allowance_kib,
            "memory grew from {} KiB to {now} KiB",
            self.rss_before
        );
        Finished {
            report,
            outcome,
            daemon: self.daemon,
            _dir: self.dir,
        }
    }
}

/// A hostile test after the common checks; the daemon still runs.
pub struct Finished {
    pub report: Report,
    pub outcome: Outcome,
    pub daemon: Daemon,
    /// Dropped last: the daemon's log lives there.
    _dir: TempDir,
}

/// One packet: big-endian length (command byte included), command, payload.
pub fn packet(cmd: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.extend_from_slice(&(payload.len() as u32 + 1).to_be_bytes());
    out.push(cmd);
    out.extend_from_slice(payload);
    out
}

/// Asserts the daemon closes the connection without sending anything.
pub async fn assert_closed(c: &mut Client, what: &str) {
    match c.closed().await {
        Ok(true) => {}
        other => panic!("{what}: expected the daemon to close the connection, got {other:?}"),
    }
}

/// Ends our side (EOF) and reads whatever the daemon still sends until it
/// closes too. Returns the bytes it sent.
pub async fn eof_and_drain(c: Client) -> Vec<u8> {
    let mut stream = c.into_inner();
    stream.shutdown().await.expect("shutdown");
    let mut got = Vec::new();
    tokio::time::timeout(super::healthy::REPLY_TIMEOUT, stream.read_to_end(&mut got))
        .await
        .expect("the daemon kept the connection open after our EOF")
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::ConnectionReset {
                Ok(0)
            } else {
                Err(e)
            }
        })
        .expect("read");
    got
}

/// QUIT, then the daemon closes.
pub async fn quit(mut c: Client) {
    c.quit().await.expect("QUIT");
    assert_closed(&mut c, "after QUIT").await;
}
