//! The timing model (see the table's module docs), written once: the
//! table's `lookup` applies it and [`Timing::judge`] reads it without
//! changing anything (`greymilter check`).

use super::Times;

/// The three durations of the timing model, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub delay: u32,
    pub retry_window: u32,
    pub lifetime: u32,
}

/// What the table says about one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// First sighting (or a stale tuple started over): tempfail.
    New,
    /// Retry before the delay: tempfail with `remaining` seconds.
    Early { waited: u32, remaining: u32 },
    /// Retry inside the window: passes now, whitelisted from now on.
    Retried { waited: u32 },
    /// Already whitelisted: passes.
    Whitelisted,
    /// Memory could not be reserved: not stored, the caller fails open.
    Unstored,
}

impl Timing {
    pub(super) fn pending_expired(&self, t: &Times, now: u32) -> bool {
        now.saturating_sub(t.first_seen) >= self.retry_window
    }

    pub(super) fn white_expired(&self, t: &Times, now: u32) -> bool {
        now.saturating_sub(t.last) >= self.lifetime
    }

    pub(super) fn expired(&self, kind: super::Kind, t: &Times, now: u32) -> bool {
        match kind {
            super::Kind::Pending => self.pending_expired(t, now),
            super::Kind::White => self.white_expired(t, now),
        }
    }

    /// A pending tuple retried after `waited` seconds, with `delay`: `New`
    /// when it went stale (the attempt starts over), `Early` or `Retried`.
    pub(super) fn pending_outcome(&self, waited: u32, delay: u32) -> Outcome {
        if waited >= self.retry_window {
            Outcome::New
        } else if waited < delay {
            Outcome::Early {
                waited,
                remaining: delay - waited,
            }
        } else {
            Outcome::Retried { waited }
        }
    }

    /// What `lookup` would answer at `now` for a tuple stored as `stored`
    /// (times, whitelisted), changing nothing.
    pub fn judge(&self, stored: Option<(Times, bool)>, now: u32, delay: u32) -> Outcome {
        match stored {
            None => Outcome::New,
            Some((t, true)) if self.white_expired(&t, now) => Outcome::New,
            Some((_, true)) => Outcome::Whitelisted,
            Some((t, false)) => self.pending_outcome(now.saturating_sub(t.first_seen), delay),
        }
    }
}
