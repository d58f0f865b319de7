//! Decisions counted by action and reason, for the metrics. A handful of
//! (action, reason) pairs exist, so the map stays tiny.

use super::{Decision, DnsFacts, DnsView, Engine, Request};

impl Engine {
    /// RCPT: decides one recipient, in the documented order, without DNS.
    pub fn decide_rcpt(&mut self, req: &Request<'_>) -> Decision {
        self.decide_rcpt_with(req, &DnsFacts::default())
    }

    /// RCPT with what DNS found: the static lists first, then the DNS
    /// facts (see `engine/dns.rs`), then the table.
    pub fn decide_rcpt_with(&mut self, req: &Request<'_>, facts: &DnsFacts) -> Decision {
        self.decide_rcpt_seen(req, facts.view())
    }

    /// [`Engine::decide_rcpt_with`] with the facts borrowed.
    pub fn decide_rcpt_seen(&mut self, req: &Request<'_>, facts: DnsView<'_>) -> Decision {
        let d = self.decide_with(req, facts);
        self.counted(d)
    }

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
