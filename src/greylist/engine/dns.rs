//! The DNS steps of a RCPT decision, after the static lists (which the
//! administrator wrote, so they win) and before the table:
//!
//! 1. allow zone → pass (`dnswl`);
//! 2. block zone → the table with `block_delay`, keyed by network, no
//!    auto-whitelist (a listed client must not ride on a domain's record);
//! 3. SPF `pass` with `spf = "skip"` → pass (`spf`);
//! 4. `selective` and a client that does not look suspicious → pass;
//! 5. the table, keyed by the SPF domain when SPF passed and
//!    `spf = "key"`, else by the client network.
//!
//! Missing facts (DNS failed or was not asked) skip their step, so the
//! recipient is decided as without DNS.

use super::{Action, Decision, Engine, Reason, secs};
use crate::greylist::facts::{DnsView, SpfMode};

/// Whether a step records (counters, decisions) or only reads (`check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Effect {
    Record,
    Peek,
}

/// What the DNS steps leave to the table (the local one or the shared
/// store): the delay, whether the auto-whitelist is skipped, and the SPF
/// domain that replaces the client network in the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DnsStep<'f> {
    Decided(Decision),
    Table {
        delay: u32,
        forced: bool,
        domain: Option<&'f str>,
    },
}

impl Engine {
    /// Steps 1 to 4 (counted here), and what step 5 needs.
    pub(super) fn dns_step<'f>(&mut self, facts: DnsView<'f>, effect: Effect) -> DnsStep<'f> {
        let policy = &self.settings.dns;
        let mut scratch = super::DnsCounters::default();
        let counters = match effect {
            Effect::Record => &mut self.counters.dns,
            Effect::Peek => &mut scratch,
        };
        let client = facts.client.unwrap_or_default();
        if client.allow_listed {
            counters.dnswl_passed += 1;
            return DnsStep::Decided(Decision::of(Action::Pass, Reason::Dnswl));
        }
        if client.block_listed {
            counters.dnsbl_listed += 1;
            return DnsStep::Table {
                delay: secs(policy.block_delay),
                forced: true,
                domain: None,
            };
        }
        let spf_domain = match policy.spf {
            SpfMode::Off => None,
            SpfMode::Key | SpfMode::Skip => facts.spf_pass_domain(),
        };
        if policy.spf == SpfMode::Skip && spf_domain.is_some() {
            counters.spf_skipped += 1;
            return DnsStep::Decided(Decision::of(Action::Pass, Reason::Spf));
        }
        if policy.selective && facts.client.is_some_and(|c| !c.suspicious_name) {
            return DnsStep::Decided(Decision::of(Action::Pass, Reason::Selective));
        }
        if spf_domain.is_some() {
            counters.spf_keyed += 1;
        }
        DnsStep::Table {
            delay: self.timing.delay,
            forced: false,
            domain: spf_domain,
        }
    }

    /// Lookups that timed out or failed, for `DNS-Timeouts`/`DNS-Errors`.
    pub fn note_dns_failures(&mut self, timeouts: u64, errors: u64) {
        self.counters.dns.dns_timeouts += timeouts;
        self.counters.dns.dns_errors += errors;
    }
}
