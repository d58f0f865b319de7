//! Live edits of the table by the administrator (the control socket):
//! whitelist a tuple, forget tuples, flush the pending ones. Counted in
//! their own flows (`allowed`, `forgotten`) so the statistics identity
//! keeps holding.

use super::{Table, Times, secs32};
use crate::greylist::key::{NetKey, TupleKey};

/// What merging an imported entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merged {
    New,
    /// Already stored: times merged (or a whitelisted entry kept).
    Known,
    /// Not stored: the table is full (live entries are never evicted for
    /// an import).
    Full,
}

impl Table {
    /// Whitelists `key` until `until` (unix seconds; later uses slide it as
    /// usual). A pending tuple keeps its first sighting. Returns false when
    /// memory for a new entry could not be reserved.
    pub fn allow(&mut self, key: TupleKey, now: u64, until: u64, lifetime: u32) -> bool {
        let now32 = secs32(now);
        // A white entry passes while `now - last < lifetime`: `last` is in
        // the past for a short allowance, in the future for a long one.
        let last = secs32(until.saturating_sub(u64::from(lifetime)));
        if let Some(t) = self.white.get_mut(&key) {
            t.last = t.last.max(last);
            return true;
        }
        let first_seen = match self.pending.swap_remove(&key) {
            Some(t) => t.first_seen,
            None => {
                if !super::reserve_for_insert(&mut self.white, self.max) {
                    return false;
                }
                self.net_inc(key.net());
                self.flows.allowed += 1;
                now32
            }
        };
        self.white.insert(key, Times { first_seen, last });
        self.flows.high = self.flows.high.max(self.len() as u64);
        true
    }

    /// Merges an imported whitelisted tuple (counted in `allowed`).
    pub fn import_white(&mut self, key: TupleKey, times: Times) -> Merged {
        if let Some(t) = self.white.get_mut(&key) {
            t.first_seen = t.first_seen.min(times.first_seen);
            t.last = t.last.max(times.last);
            return Merged::Known;
        }
        let mut times = times;
        if let Some(p) = self.pending.swap_remove(&key) {
            times.first_seen = times.first_seen.min(p.first_seen);
            self.white.insert(key, times);
            return Merged::Known;
        }
        self.enter_imported(key, times, true)
    }

    /// Merges an imported pending tuple (counted in `allowed`): a stored
    /// pending one keeps the earliest first sighting, a white one is kept.
    pub fn import_pending(&mut self, key: TupleKey, times: Times) -> Merged {
        if self.white.contains_key(&key) {
            return Merged::Known;
        }
        if let Some(t) = self.pending.get_mut(&key) {
            t.first_seen = t.first_seen.min(times.first_seen);
            t.last = t.last.max(times.last);
            return Merged::Known;
        }
        self.enter_imported(key, times, false)
    }

    /// A new imported tuple, unless the table is full (an import never
    /// evicts a live tuple).
    fn enter_imported(&mut self, key: TupleKey, times: Times, white: bool) -> Merged {
        let full = self.len() >= self.max;
        let map = if white {
            &mut self.white
        } else {
            &mut self.pending
        };
        if full || !super::reserve_for_insert(map, self.max) {
            return Merged::Full;
        }
        map.insert(key, times);
        self.net_inc(key.net());
        self.flows.allowed += 1;
        self.flows.high = self.flows.high.max(self.len() as u64);
        Merged::New
    }

    /// Removes `key`; true if it was stored.
    pub fn forget(&mut self, key: &TupleKey) -> bool {
        let found =
            self.white.swap_remove(key).is_some() || self.pending.swap_remove(key).is_some();
        if found {
            self.net_dec(key.net());
            self.flows.forgotten += 1;
        }
        found
    }

    /// Removes every tuple whose network is in `nets` (a full scan: an
    /// administrator's command, not a hot path). Returns how many.
    pub fn forget_networks(
        &mut self,
        nets: &std::collections::HashSet<NetKey, impl std::hash::BuildHasher>,
    ) -> u64 {
        let before = self.len();
        self.pending.retain(|k, _| !nets.contains(&k.net()));
        self.white.retain(|k, _| !nets.contains(&k.net()));
        for n in nets {
            self.networks.swap_remove(n);
        }
        let removed = (before - self.len()) as u64;
        self.flows.forgotten += removed;
        removed
    }

    /// Drops every pending tuple. Returns how many.
    pub fn flush_pending(&mut self) -> u64 {
        let pending = std::mem::take(&mut self.pending);
        for k in pending.keys() {
            self.net_dec(k.net());
        }
        let removed = pending.len() as u64;
        self.flows.forgotten += removed;
        removed
    }
}
