//! What the load generator measures: counters, latency histograms, a
//! per-second timeline, protocol errors, and CPU time from /proc.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::plan::{CATEGORIES, Category};

/// How a step was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Continue,
    Accept,
    Tempfail,
    Reject,
}

const REPLIES: [Reply; 4] = [
    Reply::Continue,
    Reply::Accept,
    Reply::Tempfail,
    Reply::Reject,
];

impl Reply {
    fn index(self) -> usize {
        match self {
            Reply::Continue => 0,
            Reply::Accept => 1,
            Reply::Tempfail => 2,
            Reply::Reject => 3,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Reply::Continue => "continue",
            Reply::Accept => "accept",
            Reply::Tempfail => "tempfail",
            Reply::Reject => "reject",
        }
    }
}

/// Highest latency the histograms hold (longer ones are clamped).
const MAX_LATENCY_NS: u64 = 60_000_000_000;
const ERRORS_KEPT: usize = 5;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).unwrap_or_else(|_| Histogram::new(3).unwrap())
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_LATENCY_NS)
}

/// One second of the timeline.
#[derive(Debug, Clone, Copy, Default)]
pub struct Second {
    pub rcpts: u64,
    pub max_ns: u64,
}

/// Everything recorded while `measuring` is on. Single-threaded: Cells.
pub struct Recorder {
    measuring: Cell<bool>,
    since: Cell<Instant>,
    sessions: Cell<u64>,
    transactions: Cell<u64>,
    eoms: Cell<u64>,
    /// [category][reply]
    rcpts: RefCell<[[u64; 4]; 4]>,
    rcpt_latency: RefCell<Histogram<u64>>,
    connect_latency: RefCell<Histogram<u64>>,
    session_latency: RefCell<Histogram<u64>>,
    timeline: RefCell<Vec<Second>>,
    errors: Cell<u64>,
    first_errors: RefCell<Vec<String>>,
    qid: Cell<u64>,
    /// Counted even when not measuring (preparation rounds, `--sessions`).
    pub all_sessions: Cell<u64>,
    pub all_rcpts: RefCell<[u64; 4]>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            measuring: Cell::new(false),
            since: Cell::new(Instant::now()),
            sessions: Cell::new(0),
            transactions: Cell::new(0),
            eoms: Cell::new(0),
            rcpts: RefCell::new([[0; 4]; 4]),
            rcpt_latency: RefCell::new(histogram()),
            connect_latency: RefCell::new(histogram()),
            session_latency: RefCell::new(histogram()),
            timeline: RefCell::new(Vec::new()),
            errors: Cell::new(0),
            first_errors: RefCell::new(Vec::new()),
            qid: Cell::new(0x1000_0000),
            all_sessions: Cell::new(0),
            all_rcpts: RefCell::new([0; 4]),
        }
    }

    /// Starts (or stops) recording; starting clears nothing, so call it once.
    pub fn set_measuring(&self, on: bool) {
        if on {
            self.since.set(Instant::now());
        }
        self.measuring.set(on);
    }

    fn on(&self) -> bool {
        self.measuring.get()
    }

    pub fn next_qid(&self) -> u64 {
        self.qid.set(self.qid.get() + 1);
        self.qid.get()
    }

    pub fn connected(&self, took: Duration) {
        if self.on() {
            let _ = self.connect_latency.borrow_mut().record(nanos(took));
        }
    }

    pub fn session_done(&self, took: Duration) {
        self.all_sessions.set(self.all_sessions.get() + 1);
        if self.on() {
            self.sessions.set(self.sessions.get() + 1);
            let _ = self.session_latency.borrow_mut().record(nanos(took));
        }
    }

    pub fn transaction_done(&self) {
        if self.on() {
            self.transactions.set(self.transactions.get() + 1);
        }
    }

    pub fn eom(&self) {
        if self.on() {
            self.eoms.set(self.eoms.get() + 1);
        }
    }

    pub fn rcpt(&self, category: Category, reply: Reply, took: Duration) {
        self.all_rcpts.borrow_mut()[reply.index()] += 1;
        if !self.on() {
            return;
        }
        self.rcpts.borrow_mut()[category.index()][reply.index()] += 1;
        let ns = nanos(took);
        let _ = self.rcpt_latency.borrow_mut().record(ns);
        let second = self.since.get().elapsed().as_secs() as usize;
        let mut timeline = self.timeline.borrow_mut();
        if timeline.len() <= second {
            timeline.resize(second + 1, Second::default());
        }
        let s = &mut timeline[second];
        s.rcpts += 1;
        s.max_ns = s.max_ns.max(ns);
    }

    pub fn error(&self, e: &std::io::Error) {
        if !self.on() {
            return;
        }
        self.errors.set(self.errors.get() + 1);
        let mut first = self.first_errors.borrow_mut();
        if first.len() < ERRORS_KEPT {
            first.push(e.to_string());
        }
    }

    pub fn timeline(&self) -> Vec<Second> {
        self.timeline.borrow().clone()
    }

    /// The summary, and one `RESULT key=value …` line for scripts.
    pub fn report(&self, header: &str, secs: f64, cpu: &CpuFigures) -> String {
        let rcpts = self.rcpts.borrow();
        let total_rcpts: u64 = rcpts.iter().flatten().sum();
        let per_s = |n: u64| n as f64 / secs.max(1e-9);
        let h = self.rcpt_latency.borrow();
        let c = self.connect_latency.borrow();
        let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let mut out = String::new();
        let _ = writeln!(out, "{header}");
        let _ = writeln!(
            out,
            "measured {secs:.2} s: {} sessions ({:.0}/s), {} transactions ({:.0}/s), {} RCPT decisions ({:.0}/s), {} EOM",
            self.sessions.get(),
            per_s(self.sessions.get()),
            self.transactions.get(),
            per_s(self.transactions.get()),
            total_rcpts,
            per_s(total_rcpts),
            self.eoms.get()
        );
        let _ = writeln!(
            out,
            "RCPT latency µs: p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}",
            us(&h, 0.5),
            us(&h, 0.9),
            us(&h, 0.99),
            us(&h, 0.999),
            h.max() as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "connect+OPTNEG latency µs: p50 {:.0}  p99 {:.0}  max {:.0}",
            us(&c, 0.5),
            us(&c, 0.99),
            c.max() as f64 / 1000.0
        );
        for cat in CATEGORIES {
            let row = rcpts[cat.index()];
            if row.iter().sum::<u64>() == 0 {
                continue;
            }
            let mut line = format!("  {:>5}:", cat.name());
            for r in REPLIES {
                let _ = write!(line, " {} {}", r.name(), row[r.index()]);
            }
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out, "protocol/I-O errors: {}", self.errors.get());
        for e in self.first_errors.borrow().iter() {
            let _ = writeln!(out, "  error: {e}");
        }
        if let Some(milter) = cpu.milter {
            let _ = writeln!(
                out,
                "milter CPU {:.2} s = {:.2} µs per RCPT decision ({:.0} % of one core); RSS {} KiB",
                milter.as_secs_f64(),
                milter.as_secs_f64() * 1e6 / total_rcpts.max(1) as f64,
                milter.as_secs_f64() * 100.0 / secs.max(1e-9),
                cpu.milter_rss_kib
            );
        }
        let _ = writeln!(
            out,
            "load generator CPU {:.2} s ({:.0} % of one core)",
            cpu.generator.as_secs_f64(),
            cpu.generator.as_secs_f64() * 100.0 / secs.max(1e-9)
        );
        let by_reply: Vec<String> = REPLIES
            .iter()
            .map(|r| {
                let n: u64 = rcpts.iter().map(|row| row[r.index()]).sum();
                format!("{}={n}", r.name())
            })
            .collect();
        let _ = writeln!(
            out,
            "RESULT secs={secs:.2} sessions_s={:.0} txns_s={:.0} rcpt_s={:.0} p50_us={:.0} p90_us={:.0} p99_us={:.0} max_us={:.0} conn_p99_us={:.0} errors={} milter_cpu_s={} cpu_us_per_rcpt={} gen_cpu_s={:.2} milter_rss_kib={} {}",
            per_s(self.sessions.get()),
            per_s(self.transactions.get()),
            per_s(total_rcpts),
            us(&h, 0.5),
            us(&h, 0.9),
            us(&h, 0.99),
            h.max() as f64 / 1000.0,
            us(&c, 0.99),
            self.errors.get(),
            cpu.milter
                .map_or_else(|| "-".to_string(), |d| format!("{:.2}", d.as_secs_f64())),
            cpu.milter.map_or_else(
                || "-".to_string(),
                |d| format!("{:.2}", d.as_secs_f64() * 1e6 / total_rcpts.max(1) as f64)
            ),
            cpu.generator.as_secs_f64(),
            cpu.milter_rss_kib,
            by_reply.join(" ")
        );
        out
    }
}

/// CPU time used by the milter and by this process over the measurement.
#[derive(Debug, Default)]
pub struct CpuFigures {
    pub milter: Option<Duration>,
    pub generator: Duration,
    pub milter_rss_kib: u64,
}

/// utime + stime of a process from /proc/PID/stat (clock ticks of 1/100 s,
/// Linux's USER_HZ).
pub fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the line; `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

pub fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
