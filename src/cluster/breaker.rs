//! The cluster's use of the circuit breaker (`crate::breaker`), and the
//! cluster counters.
//!
//! A dead or frozen Redis must cost each recipient at most one `timeout`,
//! and after a few failures not even that: [`FAILURES_TO_OPEN`] failures in a
//! row open the breaker, every recipient is then decided locally without a
//! call for [`OPEN_FOR`], then one call probes. A probe that works closes the
//! breaker; one that fails opens it again. Opening and closing are each
//! logged once per outage, not per call.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::breaker::{self, Failure, Policy};

pub const FAILURES_TO_OPEN: u32 = 3;
pub const OPEN_FOR: Duration = Duration::from_secs(5);

const POLICY: Policy = Policy {
    trip_after: FAILURES_TO_OPEN,
    first_pause: OPEN_FOR,
    max_pause: OPEN_FOR,
};

/// Whether a recipient may ask Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    Call,
    /// The one call after an open period (a chance to rediscover Redis).
    Probe,
    /// Decide locally (counted as a fallback).
    Local,
}

/// What happened to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    Ok,
    Timeout,
    Error,
}

/// Counters for the report (since start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterCounters {
    /// Calls that got a reply.
    pub round_trips: u64,
    /// Recipients answered from the local cache without a call.
    pub answered_locally: u64,
    /// Recipients decided locally because Redis could not be asked or did
    /// not answer (timeouts + errors + breaker open).
    pub fallbacks: u64,
    pub timeouts: u64,
    pub errors: u64,
    pub breaker_openings: u64,
    /// Junk found at a greymilter key (treated as absent).
    pub junk: u64,
    /// Settings keys that differ from the cluster's, at the last check.
    pub settings_differ: u64,
    /// 1 while this host refuses Redis for its schema version.
    pub schema_refused: u64,
    /// Time spent with the breaker not closed, finished outages only plus
    /// the current one when read through [`Breaker::counters`].
    pub local_mode: Duration,
}

#[derive(Debug)]
pub struct Breaker {
    core: breaker::Breaker,
    /// When the current outage began (breaker opened).
    outage_since: Option<Instant>,
    counters: ClusterCounters,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            core: breaker::Breaker::new(POLICY),
            outage_since: None,
            counters: ClusterCounters::default(),
        }
    }
}

impl Breaker {
    /// Whether a call may be made now.
    pub fn allow(&mut self, now: Instant) -> Allow {
        match self.core.allow(now) {
            breaker::Allow::Call => Allow::Call,
            breaker::Allow::Probe => Allow::Probe,
            breaker::Allow::Skip => {
                self.counters.fallbacks += 1;
                Allow::Local
            }
        }
    }

    pub fn note_cached(&mut self) {
        self.counters.answered_locally += 1;
    }

    /// A recipient decided locally without asking (the node is disabled).
    pub fn note_fallback(&mut self) {
        self.counters.fallbacks += 1;
    }

    pub fn note_schema_refused(&mut self) {
        self.counters.schema_refused = 1;
    }

    pub fn note_settings_differ(&mut self, keys: usize) {
        self.counters.settings_differ = keys as u64;
    }

    pub fn note_junk(&mut self) {
        self.counters.junk += 1;
    }

    /// Records the result of a call that [`Breaker::allow`] let through.
    pub fn record(&mut self, result: CallResult, now: Instant) {
        match result {
            CallResult::Ok => {
                self.counters.round_trips += 1;
                self.core.success();
                if let Some(since) = self.outage_since.take() {
                    let lasted = now.saturating_duration_since(since);
                    self.counters.local_mode += lasted;
                    info!(
                        "redis answers again: back to shared decisions after {} ms in local mode",
                        lasted.as_millis()
                    );
                }
                return;
            }
            CallResult::Timeout => self.counters.timeouts += 1,
            CallResult::Error => self.counters.errors += 1,
        }
        self.counters.fallbacks += 1;
        // A failed probe, or a late failure of a call made before the
        // breaker opened, keeps it open quietly.
        if self.core.failure(now) == Failure::Opened {
            self.counters.breaker_openings += 1;
            self.outage_since = Some(now);
            warn!(
                "redis failed {FAILURES_TO_OPEN} calls in a row ({}): deciding locally, \
                 probing every {} s",
                match result {
                    CallResult::Timeout => "last one timed out",
                    _ => "last one an error",
                },
                OPEN_FOR.as_secs()
            );
        }
    }

    /// Whether the breaker is closed (shared decisions).
    #[cfg(test)]
    pub fn is_closed(&self) -> bool {
        self.core.is_closed()
    }

    /// The counters, with the current outage counted up to `now`.
    pub fn counters(&self, now: Instant) -> ClusterCounters {
        let mut c = self.counters;
        if let Some(since) = self.outage_since {
            c.local_mode += now.saturating_duration_since(since);
        }
        c
    }
}

impl ClusterCounters {
    /// The report lines, appended after the engine's (`Label  value`).
    pub fn report(&self, out: &mut String) {
        use std::fmt::Write as _;
        let lines: [(&str, u64); 10] = [
            ("Redis-Calls", self.round_trips),
            ("Redis-Cached", self.answered_locally),
            ("Redis-Fallbacks", self.fallbacks),
            ("Redis-Timeouts", self.timeouts),
            ("Redis-Errors", self.errors),
            ("Redis-Breaker", self.breaker_openings),
            ("Redis-Junk", self.junk),
            ("Redis-Local-Secs", self.local_mode.as_secs()),
            ("Redis-Drift-Keys", self.settings_differ),
            ("Redis-Schema-Bad", self.schema_refused),
        ];
        for (label, value) in lines {
            let _ = writeln!(out, "{label:<18} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_probes_and_closes() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..FAILURES_TO_OPEN {
            assert_eq!(b.allow(t0), Allow::Call);
            b.record(CallResult::Timeout, t0);
        }
        assert_eq!(b.allow(t0), Allow::Local);
        assert_eq!(b.allow(t0 + OPEN_FOR / 2), Allow::Local);
        // The probe, and nobody else while it is in flight.
        assert_eq!(b.allow(t0 + OPEN_FOR), Allow::Probe);
        assert_eq!(b.allow(t0 + OPEN_FOR), Allow::Local);
        b.record(CallResult::Error, t0 + OPEN_FOR);
        assert_eq!(
            b.allow(t0 + OPEN_FOR + Duration::from_secs(1)),
            Allow::Local
        );
        assert_eq!(b.allow(t0 + OPEN_FOR * 2), Allow::Probe);
        b.record(CallResult::Ok, t0 + OPEN_FOR * 2);
        assert!(b.is_closed());
        let c = b.counters(t0 + OPEN_FOR * 3);
        assert_eq!(c.breaker_openings, 1);
        assert_eq!(c.timeouts, 3);
        assert_eq!(c.errors, 1);
        assert_eq!(c.round_trips, 1);
        assert_eq!(c.fallbacks, 4 + 4);
        assert_eq!(c.local_mode, OPEN_FOR * 2);
    }

    #[test]
    fn a_success_resets_the_failure_run() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..10 {
            b.record(CallResult::Error, t0);
            b.record(CallResult::Ok, t0);
        }
        assert!(b.is_closed());
        assert_eq!(b.counters(t0).breaker_openings, 0);
        let mut s = String::new();
        b.counters(t0).report(&mut s);
        assert!(s.contains("Redis-Errors"), "{s}");
    }
}
