//! Rate limiting for log lines that hostile input could trigger at will.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Lets one event through per interval and counts the ones it held back.
/// Usable from a `static`; the daemon is single-threaded, the atomics only
/// make the type `Sync`.
pub struct LogLimiter {
    interval_ms: u64,
    /// Milliseconds since [`epoch`] of the last event let through, plus one
    /// (0 = never).
    last: AtomicU64,
    suppressed: AtomicU64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl LogLimiter {
    pub const fn new(interval: Duration) -> LogLimiter {
        LogLimiter {
            interval_ms: interval.as_millis() as u64,
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when the caller may log now; `n` events were held back since
    /// the last one let through. `None`: stay quiet.
    pub fn allow(&self) -> Option<u64> {
        let now = epoch().elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last == 0 || now.saturating_sub(last) >= self.interval_ms {
            self.last.store(now, Ordering::Relaxed);
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_one_through_then_counts() {
        let l = LogLimiter::new(Duration::from_secs(3600));
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
        let l0 = LogLimiter::new(Duration::ZERO);
        assert_eq!(l0.allow(), Some(0));
        assert_eq!(l0.allow(), Some(0));
    }
}
