//! What a list entry says: a leaf, so that the settings and the compiled
//! lists (`patterns.rs`, `ranges.rs`, `lists.rs`) all use it without
//! using each other.

use std::time::Duration;

/// What a static list entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListAction {
    /// No greylisting.
    Accept,
    /// 550 5.7.1 with the configured reject text.
    Reject,
    /// Greylist even if a broader entry accepts, optionally with its own delay.
    Greylist { delay: Option<Duration> },
    /// An accept given at run time (`greymilter allow --network`,
    /// `--sender-domain`), logged apart from a configured one.
    Allow,
}

impl ListAction {
    /// No greylisting: a configured accept or a runtime allowance.
    pub fn accepts(self) -> bool {
        matches!(self, ListAction::Accept | ListAction::Allow)
    }
}
