//! How late the main loop wakes up (issue 24). Every session, the
//! checkpoint fork and the admin's requests share one thread: anything that
//! holds it holds every MTA connection. A task sleeps [`PERIOD`] at a time
//! and records how much later than asked it woke; that is the longest any
//! ready task could have waited at that moment. A stall shorter than the
//! period is seen with a probability of its length over the period.
//!
//! Exported as the histogram `greymilter_event_loop_lag_seconds` and the
//! `Loop-Lag-Max` line of the statistics report (the worst since start).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

/// How often the ticker wakes.
pub const PERIOD: Duration = Duration::from_millis(10);

/// Upper bounds of the histogram's buckets, seconds; 5 ms is the daemon's
/// target for the longest pause.
pub const BOUNDS: [f64; 10] = [
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0,
];

/// The lags recorded since start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoopLag {
    /// Per bucket of [`BOUNDS`], then the lags beyond the last bound.
    counts: [u64; BOUNDS.len() + 1],
    sum: f64,
    max: Duration,
}

impl LoopLag {
    pub fn record(&mut self, lag: Duration) {
        let secs = lag.as_secs_f64();
        let bucket = BOUNDS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BOUNDS.len());
        if let Some(c) = self.counts.get_mut(bucket) {
            *c += 1;
        }
        self.sum += secs;
        self.max = self.max.max(lag);
    }

    /// The worst lag since start.
    #[cfg(test)]
    pub fn max(&self) -> Duration {
        self.max
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum
    }

    /// `(upper bound, count in that bucket)`, the last bound `f64::INFINITY`
    /// (`+Inf` in the exposition).
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        BOUNDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts)
            .collect()
    }

    /// `Loop-Lag-Max` in the report: milliseconds, one decimal.
    pub fn report_value(&self) -> String {
        format!("{:.1} ms", self.max.as_secs_f64() * 1e3)
    }
}

/// The ticker: runs until its task is dropped. Must run on the loop it
/// measures (`spawn_local`).
pub async fn watch(lag: Rc<RefCell<LoopLag>>) {
    let mut due = Instant::now() + PERIOD;
    loop {
        sleep_until(due).await;
        let now = Instant::now();
        lag.borrow_mut().record(now.saturating_duration_since(due));
        due = now + PERIOD;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lags_fall_in_their_buckets_and_the_max_is_kept() {
        let mut l = LoopLag::default();
        for ms in [0, 1, 4, 6, 30, 3000] {
            l.record(Duration::from_millis(ms));
        }
        let b = l.buckets();
        assert_eq!(b.len(), BOUNDS.len() + 1);
        let count_at = |bound: f64| b.iter().find(|(x, _)| *x == bound).map(|(_, n)| *n);
        assert_eq!(count_at(0.000_5), Some(1));
        assert_eq!(count_at(0.001), Some(1));
        assert_eq!(count_at(0.005), Some(1));
        assert_eq!(count_at(0.01), Some(1));
        assert_eq!(count_at(0.05), Some(1));
        assert_eq!(count_at(f64::INFINITY), Some(1));
        assert_eq!(l.count(), 6);
        assert_eq!(l.max(), Duration::from_secs(3));
        assert_eq!(l.report_value(), "3000.0 ms");
        assert!((l.sum_seconds() - 3.041).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn the_ticker_sees_a_blocked_loop() {
        let lag = Rc::new(RefCell::new(LoopLag::default()));
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let task = tokio::task::spawn_local(watch(lag.clone()));
                tokio::time::sleep(PERIOD * 3).await;
                assert!(lag.borrow().count() >= 2);
                assert_eq!(lag.borrow().max(), Duration::ZERO);
                // Hold the thread past the ticker's deadline (the clock is
                // paused: advancing it is what a blocking call looks like).
                tokio::time::advance(Duration::from_millis(40)).await;
                tokio::time::sleep(PERIOD).await;
                assert!(lag.borrow().max() >= Duration::from_millis(30));
                task.abort();
            })
            .await;
    }
}
