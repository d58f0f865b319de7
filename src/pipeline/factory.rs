//! [`MilterFactory`]: makes a [`MilterDecider`] per milter connection,
//! hands the session its options, and counts how sessions ended.

use std::cell::Cell;
use std::time::Duration;

use super::milter::MilterDecider;
use super::transaction::Pipeline;
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

pub struct MilterFactory {
    pipeline: Pipeline,
    timeouts: Cell<Timeouts>,
    counters: SessionCounters,
}

impl MilterFactory {
    pub fn new(pipeline: Pipeline, timeouts: Timeouts) -> Self {
        MilterFactory {
            pipeline,
            timeouts: Cell::new(timeouts),
            counters: SessionCounters::default(),
        }
    }

    /// The pipeline behind the milter, for the other front ends.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    pub fn set_timeouts(&self, timeouts: Timeouts) {
        self.timeouts.set(timeouts);
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts.get()
    }

    pub fn counters(&self) -> &SessionCounters {
        &self.counters
    }
}

impl DeciderFactory for MilterFactory {
    type Decider = MilterDecider;

    fn new_decider(&self, conn_id: u64) -> MilterDecider {
        MilterDecider::new(&self.pipeline, conn_id)
    }

    fn options(&self) -> SessionOptions {
        let add_header = self.pipeline.adds_header();
        let t = self.timeouts.get();
        let dns = self.pipeline.dns();
        SessionOptions {
            idle_timeout: t.idle,
            add_header,
            decision_timeout: t.decision,
            // Nothing at CONNECT or MAIL needs the MTA to wait: the only
            // verdicts there are accepts, which hold as CONTINUE at RCPT.
            conversation: Conversation::Lean,
            // SPF checks the HELO name for the null sender.
            helo: dns.as_ref().is_some_and(|d| d.wants_spf()),
            // DNS lookups start at CONNECT and MAIL; without them the
            // envelope can wait for RCPT, and the MTA skips both events.
            envelope_events: dns.is_some(),
        }
    }

    fn session_ended(&self, summary: &SessionSummary) {
        self.counters.record(summary);
    }
}
