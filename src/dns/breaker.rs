//! A circuit breaker for the resolver: after a run of failed lookups
//! (timeouts, unreachable server) lookups are not even tried for a while,
//! so a dead resolver does not make every decision wait for the timeout.
//! After the pause one lookup set is let through as a probe; success
//! closes the breaker, failure doubles the pause (up to a cap).

use std::time::{Duration, Instant};

/// Consecutive failed lookup sets that open the breaker.
const TRIP_AFTER: u32 = 3;
const FIRST_PAUSE: Duration = Duration::from_secs(5);
const MAX_PAUSE: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct Breaker {
    failures: u32,
    pause: Duration,
    open_until: Option<Instant>,
    probing: bool,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            failures: 0,
            pause: FIRST_PAUSE,
            open_until: None,
            probing: false,
        }
    }
}

impl Breaker {
    /// Whether a lookup may go out now.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.open_until {
            None => true,
            Some(until) if now >= until && !self.probing => {
                self.probing = true;
                true
            }
            Some(_) => false,
        }
    }

    pub fn success(&mut self) {
        *self = Breaker::default();
    }

    /// Returns true when this failure opened (or re-opened) the breaker.
    pub fn failure(&mut self, now: Instant) -> bool {
        if self.probing {
            self.probing = false;
            self.pause = (self.pause * 2).min(MAX_PAUSE);
            self.open_until = Some(now + self.pause);
            return true;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= TRIP_AFTER && self.open_until.is_none() {
            self.open_until = Some(now + self.pause);
            return true;
        }
        false
    }

    pub fn is_open(&self) -> bool {
        self.open_until.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_probes_and_recovers() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        assert!(b.allow(t0));
        assert!(!b.failure(t0));
        assert!(!b.failure(t0));
        assert!(b.failure(t0));
        assert!(!b.allow(t0));
        assert!(!b.allow(t0 + Duration::from_secs(4)));
        // One probe after the pause, not two.
        assert!(b.allow(t0 + FIRST_PAUSE));
        assert!(!b.allow(t0 + FIRST_PAUSE));
        assert!(b.failure(t0 + FIRST_PAUSE));
        let t1 = t0 + FIRST_PAUSE + FIRST_PAUSE * 2;
        assert!(!b.allow(t1 - Duration::from_millis(1)));
        assert!(b.allow(t1));
        b.success();
        assert!(!b.is_open());
        assert!(b.allow(t1));
    }
}
