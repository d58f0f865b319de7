//! Client auto-whitelist: networks that keep passing stop being greylisted.
//!
//! Every pass of a tuple from the table (a retry after the delay, or a use
//! of a whitelisted tuple) counts for its client network, at most once per
//! [`COUNT_INTERVAL`]. When the count reaches `auto_whitelist_after`, the
//! whole network is whitelisted for `whitelist_lifetime`, sliding: every
//! recipient it sends refreshes it. A record that has not reached the
//! threshold is forgotten `whitelist_lifetime` after its last counted pass.
//!
//! Records exist only for networks that passed at least once; their number
//! is capped at the table's `max_tuples` (a new network is simply not
//! counted while the cap is reached). Expiry is a sweep in bounded slices
//! like the table's, plus a check on every look-up.

use super::dense_map::DenseMap;
use super::key::NetKey;

/// Passes of one network closer together than this count once.
pub const COUNT_INTERVAL: u32 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AwlRecord {
    /// Counted passes.
    pub passes: u32,
    /// When the last counted pass happened.
    pub last_counted: u32,
    /// Last use as a whitelisted network; 0 while not whitelisted.
    pub last_use: u32,
}

impl AwlRecord {
    fn expired(&self, now: u32, lifetime: u32) -> bool {
        let since = if self.last_use != 0 {
            self.last_use
        } else {
            self.last_counted
        };
        now.saturating_sub(since) >= lifetime
    }
}

#[derive(Debug, Default)]
pub struct AutoWhitelist {
    map: DenseMap<NetKey, AwlRecord>,
    cursor: usize,
    /// Records with `last_use != 0` (a gauge).
    whitelisted: usize,
}

impl AutoWhitelist {
    pub fn from_records(
        records: impl ExactSizeIterator<Item = (NetKey, AwlRecord)>,
    ) -> Result<AutoWhitelist, NetKey> {
        let mut a = AutoWhitelist {
            map: DenseMap::with_capacity(records.len()),
            ..AutoWhitelist::default()
        };
        for (k, r) in records {
            if a.map.insert(k, r).is_some() {
                return Err(k);
            }
            if r.last_use != 0 {
                a.whitelisted += 1;
            }
        }
        Ok(a)
    }

    /// Networks whitelisted now (expired ones not yet swept included).
    pub fn whitelisted(&self) -> usize {
        self.whitelisted
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    pub fn records(&self) -> impl ExactSizeIterator<Item = (&NetKey, &AwlRecord)> {
        self.map.iter()
    }

    /// Whether `net` is whitelisted at `now`, changing nothing.
    pub fn is_whitelisted(&self, net: NetKey, now: u32, lifetime: u32) -> bool {
        self.map
            .get(&net)
            .is_some_and(|r| r.last_use != 0 && !r.expired(now, lifetime))
    }

    /// Drops the record of `net` (an administrator's `forget`).
    pub fn forget(&mut self, net: NetKey) -> bool {
        match self.map.get_index_of(&net) {
            Some(idx) => {
                self.remove(idx);
                true
            }
            None => false,
        }
    }

    /// Whether `net` is whitelisted at `now`; refreshes it if so.
    pub fn check(&mut self, net: NetKey, now: u32, lifetime: u32) -> bool {
        let Some(idx) = self.map.get_index_of(&net) else {
            return false;
        };
        let Some((_, r)) = self.map.get_index_mut(idx) else {
            return false;
        };
        if r.expired(now, lifetime) {
            self.remove(idx);
            return false;
        }
        if r.last_use == 0 {
            return false;
        }
        r.last_use = r.last_use.max(now);
        true
    }

    /// Counts a pass of `net`. Returns true when this pass whitelisted it.
    pub fn note_pass(
        &mut self,
        net: NetKey,
        now: u32,
        after: u32,
        lifetime: u32,
        cap: usize,
    ) -> bool {
        if after == 0 {
            return false;
        }
        if let Some(idx) = self.map.get_index_of(&net)
            && self
                .map
                .get_index(idx)
                .is_some_and(|(_, r)| r.expired(now, lifetime))
        {
            self.remove(idx);
        }
        if !self.map.contains_key(&net) && self.map.len() >= cap {
            return false;
        }
        let Some(r) = self.map.get_or_insert_with(net, AwlRecord::default) else {
            return false;
        };
        if r.passes > 0 && now.saturating_sub(r.last_counted) < COUNT_INTERVAL {
            return false;
        }
        r.passes = r.passes.saturating_add(1);
        r.last_counted = now;
        if r.passes >= after && r.last_use == 0 {
            r.last_use = now.max(1);
            self.whitelisted += 1;
            return true;
        }
        false
    }

    /// Merges an imported record (the larger count, the later times); a
    /// new network is not stored while `cap` records exist.
    pub fn import(
        &mut self,
        net: NetKey,
        rec: AwlRecord,
        cap: usize,
    ) -> crate::greylist::table::Merged {
        use crate::greylist::table::Merged;
        let known = self.map.contains_key(&net);
        if !known && self.map.len() >= cap {
            return Merged::Full;
        }
        let Some(r) = self.map.get_or_insert_with(net, AwlRecord::default) else {
            return Merged::Full;
        };
        let was_white = r.last_use != 0;
        r.passes = r.passes.max(rec.passes);
        r.last_counted = r.last_counted.max(rec.last_counted);
        r.last_use = r.last_use.max(rec.last_use);
        if !was_white && r.last_use != 0 {
            self.whitelisted += 1;
        }
        if known { Merged::Known } else { Merged::New }
    }

    /// One slice of the expiry sweep (the cursor wraps around); examines at
    /// most `budget` records and returns how many it examined.
    pub fn sweep(&mut self, now: u32, lifetime: u32, budget: usize) -> usize {
        let mut used = 0;
        while used < budget && !self.map.is_empty() {
            if self.cursor >= self.map.len() {
                self.cursor = 0;
                // One full lap per call at most.
                if used > 0 {
                    break;
                }
            }
            let expired = self
                .map
                .get_index(self.cursor)
                .is_some_and(|(_, r)| r.expired(now, lifetime));
            if expired {
                self.remove(self.cursor);
            } else {
                self.cursor += 1;
            }
            used += 1;
        }
        used
    }

    fn remove(&mut self, idx: usize) {
        if let Some((_, r)) = self.map.swap_remove_index(idx)
            && r.last_use != 0
        {
            self.whitelisted = self.whitelisted.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u32 = 86_400;

    #[test]
    fn counts_once_per_hour_then_whitelists_and_slides() {
        let mut a = AutoWhitelist::default();
        let n = NetKey::from_u64(7);
        let mut now = 1_000_000;
        // Five passes inside one hour count once.
        for _ in 0..5 {
            assert!(!a.note_pass(n, now, 3, 36 * DAY, 100));
            now += 60;
        }
        assert!(!a.check(n, now, 36 * DAY));
        now += COUNT_INTERVAL;
        assert!(!a.note_pass(n, now, 3, 36 * DAY, 100));
        now += COUNT_INTERVAL;
        assert!(a.note_pass(n, now, 3, 36 * DAY, 100));
        assert_eq!(a.whitelisted(), 1);
        // Sliding: used every 30 days, it stays.
        for _ in 0..5 {
            now += 30 * DAY;
            assert!(a.check(n, now, 36 * DAY));
        }
        now += 36 * DAY;
        assert!(!a.check(n, now, 36 * DAY));
        assert_eq!(a.whitelisted(), 0);
        assert!(a.is_empty());
    }

    #[test]
    fn off_and_capped() {
        let mut a = AutoWhitelist::default();
        assert!(!a.note_pass(NetKey::from_u64(1), 10, 0, DAY, 100));
        assert!(a.is_empty());
        a.note_pass(NetKey::from_u64(1), 10, 5, DAY, 1);
        a.note_pass(NetKey::from_u64(2), 10, 5, DAY, 1);
        assert_eq!(a.len(), 1);
        assert_eq!(a.sweep(10 + DAY, DAY, 10), 1);
        assert!(a.is_empty());
    }
}
