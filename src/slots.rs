//! Bounded concurrency for the small administrative listeners (control
//! socket, metrics): a connection beyond the limit is closed at once, and
//! a failing `accept` (out of descriptors) is logged rate-limited and
//! retried after a pause instead of spinning.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use crate::ratelimit::LogLimiter;

/// Connection slots shared by one listener's tasks.
#[derive(Debug, Clone)]
pub struct Slots {
    used: Rc<Cell<usize>>,
    max: usize,
}

/// A taken slot, given back when dropped (the connection task ends).
#[derive(Debug)]
pub struct Slot(Rc<Cell<usize>>);

impl Slots {
    pub fn new(max: usize) -> Slots {
        Slots {
            used: Rc::new(Cell::new(0)),
            max,
        }
    }

    /// A slot, or `None` when all are in use.
    pub fn take(&self) -> Option<Slot> {
        if self.used.get() >= self.max {
            return None;
        }
        self.used.set(self.used.get() + 1);
        Some(Slot(Rc::clone(&self.used)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// After a failed `accept`: a rate-limited warning, then a short pause.
pub async fn accept_failed(what: &str, error: &std::io::Error, log: &LogLimiter) {
    if let Some(n) = log.allow() {
        tracing::warn!("{what}: accept failed: {error} ({n} more suppressed)");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_given_back() {
        let s = Slots::new(2);
        let a = s.take();
        let b = s.take();
        assert!(a.is_some() && b.is_some() && s.take().is_none());
        drop(a);
        assert!(s.take().is_some());
    }
}
