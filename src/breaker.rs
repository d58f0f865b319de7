//! The circuit breaker shared by the Redis client and the resolver: after
//! a run of failures a dependency is not even asked for a pause, so a dead
//! one does not make every decision wait for its timeout; then one call
//! probes. A probe that works closes the breaker; one that fails opens it
//! again, for a pause that grows (doubling, up to a cap) if the policy
//! says so. Pure state: the callers count and log.

use std::time::{Duration, Instant};

/// When to open and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failures in a row that open the breaker.
    pub trip_after: u32,
    pub first_pause: Duration,
    /// The pause doubles after each failed probe up to this (equal to
    /// `first_pause`: a fixed pause).
    pub max_pause: Duration,
}

/// Whether a call may be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    Call,
    /// The one call after a pause.
    Probe,
    /// Do without the dependency.
    Skip,
}

/// What a failure did to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Still closed: the run of failures is not long enough yet.
    Counted,
    /// This failure opened a closed breaker (an outage begins).
    Opened,
    /// A failed probe (or a late failure): open again.
    Reopened,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A probe is in flight; everything else is skipped.
    Probing,
}

#[derive(Debug, Clone)]
pub struct Breaker {
    policy: Policy,
    state: State,
    pause: Duration,
}

impl Breaker {
    pub fn new(policy: Policy) -> Breaker {
        Breaker {
            policy,
            state: State::Closed { failures: 0 },
            pause: policy.first_pause,
        }
    }

    /// Whether a call may be made now.
    pub fn allow(&mut self, now: Instant) -> Allow {
        match self.state {
            State::Closed { .. } => Allow::Call,
            State::Open { until } if now >= until => {
                self.state = State::Probing;
                Allow::Probe
            }
            State::Open { .. } | State::Probing => Allow::Skip,
        }
    }

    /// A call worked. Returns true when that ended an outage.
    pub fn success(&mut self) -> bool {
        let was_open = !self.is_closed();
        self.state = State::Closed { failures: 0 };
        self.pause = self.policy.first_pause;
        was_open
    }

    pub fn failure(&mut self, now: Instant) -> Failure {
        match self.state {
            State::Closed { failures } if failures.saturating_add(1) < self.policy.trip_after => {
                self.state = State::Closed {
                    failures: failures + 1,
                };
                Failure::Counted
            }
            State::Closed { .. } => {
                self.state = State::Open {
                    until: now + self.pause,
                };
                Failure::Opened
            }
            State::Probing => {
                self.pause = (self.pause * 2).min(self.policy.max_pause);
                self.state = State::Open {
                    until: now + self.pause,
                };
                Failure::Reopened
            }
            // A late failure of a call made before the breaker opened.
            State::Open { .. } => {
                self.state = State::Open {
                    until: now + self.pause,
                };
                Failure::Reopened
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        trip_after: 3,
        first_pause: Duration::from_secs(5),
        max_pause: Duration::from_secs(300),
    };

    #[test]
    fn trips_probes_grows_and_recovers() {
        let t0 = Instant::now();
        let mut b = Breaker::new(P);
        assert_eq!(b.allow(t0), Allow::Call);
        assert_eq!(b.failure(t0), Failure::Counted);
        assert_eq!(b.failure(t0), Failure::Counted);
        assert_eq!(b.failure(t0), Failure::Opened);
        assert_eq!(b.allow(t0 + Duration::from_secs(4)), Allow::Skip);
        // One probe after the pause, not two.
        assert_eq!(b.allow(t0 + P.first_pause), Allow::Probe);
        assert_eq!(b.allow(t0 + P.first_pause), Allow::Skip);
        assert_eq!(b.failure(t0 + P.first_pause), Failure::Reopened);
        let t1 = t0 + P.first_pause * 3;
        assert_eq!(b.allow(t1 - Duration::from_millis(1)), Allow::Skip);
        assert_eq!(b.allow(t1), Allow::Probe);
        assert!(b.success());
        assert!(b.is_closed());
        assert!(!b.success());
        // After recovery the pause starts small again.
        for _ in 0..3 {
            b.failure(t1);
        }
        assert_eq!(b.allow(t1 + P.first_pause), Allow::Probe);
    }

    #[test]
    fn a_fixed_pause_does_not_grow() {
        let t0 = Instant::now();
        let mut b = Breaker::new(Policy {
            max_pause: P.first_pause,
            ..P
        });
        for _ in 0..3 {
            b.failure(t0);
        }
        assert_eq!(b.allow(t0 + P.first_pause), Allow::Probe);
        b.failure(t0 + P.first_pause);
        assert_eq!(b.allow(t0 + P.first_pause * 2), Allow::Probe);
    }
}
