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

use std::net::IpAddr;

use super::{Action, Decision, Engine, Reason, secs};
use crate::greylist::facts::{DnsFacts, SpfMode};

impl Engine {
    pub(super) fn decide_unlisted(&mut self, addr: IpAddr, facts: &DnsFacts) -> Decision {
        let policy = &self.settings.dns;
        let client = facts.client.unwrap_or_default();
        if client.allow_listed {
            self.counters.dns.dnswl_passed += 1;
            return Decision::of(Action::Pass, Reason::Dnswl);
        }
        if client.block_listed {
            self.counters.dns.dnsbl_listed += 1;
            let delay = secs(policy.block_delay);
            return self.decide_by_table(addr, delay, true, None);
        }
        let spf_domain = match policy.spf {
            SpfMode::Off => None,
            SpfMode::Key | SpfMode::Skip => facts.spf_pass_domain(),
        };
        if policy.spf == SpfMode::Skip && spf_domain.is_some() {
            self.counters.dns.spf_skipped += 1;
            return Decision::of(Action::Pass, Reason::Spf);
        }
        if policy.selective && facts.client.is_some_and(|c| !c.suspicious_name) {
            return Decision::of(Action::Pass, Reason::Selective);
        }
        let delay = self.timing.delay;
        match spf_domain {
            Some(domain) => {
                self.counters.dns.spf_keyed += 1;
                self.decide_by_table(addr, delay, false, Some(domain))
            }
            None => self.decide_by_table(addr, delay, false, None),
        }
    }

    /// Lookups that timed out or failed, for `DNS-Timeouts`/`DNS-Errors`.
    pub fn note_dns_failures(&mut self, timeouts: u64, errors: u64) {
        self.counters.dns.dns_timeouts += timeouts;
        self.counters.dns.dns_errors += errors;
    }
}
