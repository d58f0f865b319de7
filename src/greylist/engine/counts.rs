//! Decisions counted by action and reason, for the metrics. A handful of
//! (action, reason) pairs exist, so the map stays tiny.

use super::{Decision, Engine};

impl Engine {
    /// Counts a RCPT decision, however it was made (here, or from the
    /// shared store of a cluster in `engine/shared.rs`).
    pub(super) fn counted(&mut self, d: Decision) -> Decision {
        let n = self.decisions.entry((d.action, d.reason)).or_insert(0);
        *n = n.saturating_add(1);
        d
    }

    /// `(action, reason, count)` as the decision log spells them, sorted.
    pub fn decision_counts(&self) -> Vec<(String, String, u64)> {
        let mut out: Vec<(String, String, u64)> = self
            .decisions
            .iter()
            .map(|(&(action, reason), &n)| {
                let mut r = String::new();
                reason.write_to(&mut r);
                (action.as_str().to_string(), r, n)
            })
            .collect();
        out.sort();
        out
    }
}
