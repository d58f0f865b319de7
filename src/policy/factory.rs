//! [`PolicyFactory`]: makes a [`PolicyDecider`] per milter connection,
//! hands the session its options, and counts how sessions ended.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use super::decider::PolicyDecider;
use crate::cluster::Cluster;
use crate::dns::Dns;
use crate::greylist::Engine;
use crate::greylist::stats::push_line;
use crate::milter::decision::{Conversation, DeciderFactory, SessionOptions, SessionSummary};

/// How milter sessions ended, since start. Kept here, not in the engine:
/// sessions are a protocol matter, decisions are the engine's.
#[derive(Debug, Default)]
pub struct SessionCounters {
    sessions: Cell<u64>,
    protocol_errors: Cell<u64>,
    timeouts: Cell<u64>,
    decisions_expired: Cell<u64>,
}

fn bump(c: &Cell<u64>, by: u64) {
    c.set(c.get().saturating_add(by));
}

impl SessionCounters {
    pub fn record(&self, summary: &SessionSummary) {
        bump(&self.sessions, 1);
        bump(&self.protocol_errors, u64::from(summary.protocol_error));
        bump(&self.timeouts, u64::from(summary.timed_out));
        bump(&self.decisions_expired, summary.decisions_expired);
    }

    /// `Sessions`, `Protocol-Errors`, `Timeouts`: the report lines that
    /// follow the engine's.
    pub fn push_report(&self, out: &mut String) {
        push_line(out, "Sessions", &self.sessions.get());
        push_line(out, "Protocol-Errors", &self.protocol_errors.get());
        push_line(out, "Timeouts", &self.timeouts.get());
    }

    /// Sessions ended, by a protocol error, by the idle timeout.
    pub fn ended(&self) -> (u64, u64, u64) {
        (
            self.sessions.get(),
            self.protocol_errors.get(),
            self.timeouts.get(),
        )
    }

    /// Recipients answered CONTINUE because their decision waited past
    /// `decision_timeout`. Reported after every older line.
    pub fn decisions_expired(&self) -> u64 {
        self.decisions_expired.get()
    }
}

/// Timeouts read by each new session, so that a reload applies to the
/// sessions that start after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub idle: Duration,
    pub decision: Duration,
}

impl Default for Timeouts {
    /// The configuration's defaults.
    fn default() -> Timeouts {
        let options = SessionOptions::default();
        Timeouts {
            idle: options.idle_timeout,
            decision: options.decision_timeout,
        }
    }
}

pub struct PolicyFactory {
    engine: Rc<RefCell<Engine>>,
    cluster: Option<Cluster>,
    timeouts: Cell<Timeouts>,
    counters: SessionCounters,
    /// The DNS checks in force, shared with every decider: a reload
    /// swaps them for the next CONNECT or MAIL of every session.
    dns: CurrentDns,
}

/// `None`: no DNS checks.
pub type CurrentDns = Rc<RefCell<Option<Rc<Dns>>>>;

impl PolicyFactory {
    pub fn new(engine: Rc<RefCell<Engine>>, timeouts: Timeouts) -> Self {
        PolicyFactory {
            engine,
            cluster: None,
            timeouts: Cell::new(timeouts),
            counters: SessionCounters::default(),
            dns: Rc::new(RefCell::new(None)),
        }
    }

    /// `None`: no DNS checks. Sessions in progress take them at their
    /// next CONNECT or MAIL (lookups already started finish as they were).
    pub fn set_dns(&self, dns: Option<Rc<Dns>>) {
        *self.dns.borrow_mut() = dns;
    }

    pub fn dns(&self) -> Option<Rc<Dns>> {
        self.dns.borrow().clone()
    }

    /// Decides through the shared state in Redis (`[cluster]`).
    pub fn with_cluster(mut self, cluster: Cluster) -> Self {
        self.cluster = Some(cluster);
        self
    }

    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    pub fn set_timeouts(&self, timeouts: Timeouts) {
        self.timeouts.set(timeouts);
    }

    pub fn counters(&self) -> &SessionCounters {
        &self.counters
    }
}

impl DeciderFactory for PolicyFactory {
    type Decider = PolicyDecider;

    fn new_decider(&self, conn_id: u64) -> PolicyDecider {
        PolicyDecider::new(Rc::clone(&self.engine), conn_id)
            .with_cluster(self.cluster.clone())
            .with_dns(Rc::clone(&self.dns))
    }

    fn options(&self) -> SessionOptions {
        let add_header = self
            .engine
            .try_borrow()
            .map(|e| e.settings().header)
            .unwrap_or(false);
        let t = self.timeouts.get();
        SessionOptions {
            idle_timeout: t.idle,
            add_header,
            decision_timeout: t.decision,
            // Nothing at CONNECT or MAIL needs the MTA to wait: the only
            // verdicts there are accepts, which hold as CONTINUE at RCPT.
            conversation: Conversation::Lean,
            // SPF checks the HELO name for the null sender.
            helo: self.dns.borrow().as_ref().is_some_and(|d| d.wants_spf()),
            // DNS lookups start at CONNECT and MAIL; without them the
            // envelope can wait for RCPT, and the MTA skips both events.
            envelope_events: self.dns.borrow().is_some(),
        }
    }

    fn session_ended(&self, summary: &SessionSummary) {
        self.counters.record(summary);
    }
}
