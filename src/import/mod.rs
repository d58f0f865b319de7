//! `greymilter import`: another greylister's state carried over, so that
//! the correspondents it had whitelisted are not delayed again.
//!
//! * [`db_dump`]: Berkeley DB's `db_dump` text (postgrey's databases).
//! * [`postgrey`]: postgrey's tuple and client databases.
//! * [`milter_greylist`]: milter-greylist's text dump.
//! * [`keyed`]: the entries under greymilter's keys (its client prefixes,
//!   its sender normalisation, its secret), expired ones left out.
//! * [`into_state`]: merged into the state file of a stopped daemon.
//!
//! Readers never fail on one entry: an entry greymilter cannot key is
//! counted under its reason. Only an unreadable file or a format newer
//! than the reader knows stops an import.

use std::collections::BTreeMap;
use std::net::IpAddr;

pub mod cli;
pub mod db_dump;
pub mod into_state;
pub mod keyed;
pub mod milter_greylist;
pub mod postgrey;

/// When a tuple was seen, in the source's terms (unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Not passed yet: first attempt and last attempt.
    Pending { first_seen: u64, last: u64 },
    /// Not passed yet; a retry passes from `ready_at` (milter-greylist).
    PendingUntil { ready_at: u64 },
    /// Passed; last use.
    White { first_seen: u64, last_use: u64 },
    /// Passed; whitelisted until `expires` (milter-greylist).
    WhiteUntil { expires: u64 },
}

/// A tuple as the source stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TupleEntry {
    /// The client address or network address the source keyed on.
    pub client: IpAddr,
    /// The prefix length the source masked the address to (32 or 128: a
    /// host).
    pub prefix: u8,
    /// As the source stored them: raw (milter-greylist) or already
    /// lower-cased and normalised its way (postgrey).
    pub sender: Vec<u8>,
    pub recipient: Vec<u8>,
    pub when: When,
}

/// A client the source auto-whitelists or counts passes for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetEntry {
    pub client: IpAddr,
    pub prefix: u8,
    pub passes: u32,
    /// Last counted pass.
    pub last: u64,
}

/// What the readers found.
#[derive(Debug, Default)]
pub struct Read {
    /// Records read (entries and unkeyable ones).
    pub records: u64,
    pub tuples: Vec<TupleEntry>,
    pub networks: Vec<NetEntry>,
    /// Entries left out, by reason.
    pub skipped: BTreeMap<&'static str, u64>,
}

impl Read {
    pub fn unkeyable(&mut self, reason: &'static str) {
        *self.skipped.entry(reason).or_default() += 1;
    }

    #[cfg(test)]
    pub fn unkeyable_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}
