//! What the engine hands out about itself: the statistics snapshot and
//! report, and the whole state written for a checkpoint or read back.

use super::{DnsCounters, Engine, RestoreSummary, Snapshot, StateError, Table, state};
use crate::greylist::awl::AutoWhitelist;

impl Engine {
    pub fn stats(&self) -> Snapshot {
        let f = self.table.flows();
        let c = &self.counters;
        Snapshot {
            start: self.start,
            now: self.clock.now(),
            ips: self.table.networks() as u64,
            requests: c.requests,
            requests_cu: self.interval.last,
            tuples: self.table.len() as u64,
            graylisted: f.graylisted,
            whitelisted: self.table.whitelisted() as u64,
            graylist_expired: f.graylist_expired,
            whitelist_expired: f.whitelist_expired,
            requests_cu_max: self.interval.max,
            requests_cu_ave: self.interval.average(),
            passed: f.passed,
            deferred: c.deferred,
            accepted_by_list: c.accepted_by_list,
            rejected_by_list: c.rejected_by_list,
            authenticated: c.authenticated,
            auto_whitelisted: self.awl.whitelisted() as u64,
            auto_whitelist_passes: c.auto_whitelist_passes,
            evicted: f.evicted,
            tuples_high: f.high,
            restored: f.restored,
            would_greylist: c.would_greylist,
            allowed: f.allowed,
            forgotten: f.forgotten,
        }
    }

    /// The DNS counters (reported by the daemon after the older lines).
    pub fn dns_counters(&self) -> DnsCounters {
        self.counters.dns
    }

    /// The statistics report, one `Label  value` per line.
    pub fn stats_report(&self) -> String {
        self.stats().report()
    }

    /// Writes the whole state (format in `state.rs`).
    pub fn write_state(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        state::write(
            out,
            self.secret,
            self.clock.now(),
            self.table.pending_entries(),
            self.table.white_entries(),
            self.awl.records(),
        )
    }

    /// Replaces the table, auto-whitelist and hashing secret with a saved
    /// state. All or nothing: on error the engine is unchanged. The
    /// table's flow counters restart (`Restored` = tuples loaded).
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<RestoreSummary, StateError> {
        let parsed = state::parse(bytes)?;
        let now = self.clock.now();
        let table = Table::restore(
            self.settings.max_tuples,
            parsed.pending(),
            parsed.white(),
            now,
            &self.timing,
        )
        .map_err(|_| StateError::Duplicate("tuple"))?;
        let awl = AutoWhitelist::from_records(parsed.awl())
            .map_err(|_| StateError::Duplicate("network"))?;
        let summary = RestoreSummary {
            pending: table.pending(),
            whitelisted: table.whitelisted(),
            auto_whitelist_records: awl.len(),
            evicted: table.flows().evicted,
            written_at: parsed.written_at,
        };
        self.table = table;
        self.awl = awl;
        self.secret = parsed.secret;
        self.generation += 1;
        Ok(summary)
    }
}
