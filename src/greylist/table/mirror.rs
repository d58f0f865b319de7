//! Copying a decision made elsewhere (the shared store of a cluster) into
//! the local table, so that whitelisted tuples can be answered locally and
//! the table can decide as well as possible when the store is unreachable.
//! The flow counters keep their invariant: an entry that was not in the
//! table counts as `graylisted` when it enters.

use super::{Cause, Kind, Outcome, Table, Times, Timing, reserve_for_insert, secs32};
use crate::greylist::key::TupleKey;

impl Table {
    /// Records that `key` is pending since `first_seen` (the store's word).
    pub fn mirror_pending(&mut self, key: TupleKey, first_seen: u64, now: u64, timing: &Timing) {
        let (first, now32) = (secs32(first_seen), secs32(now));
        if let Some(idx) = self.white.get_index_of(&key) {
            // The store forgot it (expired there, or lost in a failover).
            self.remove(Kind::White, idx, Cause::Expired);
        }
        if let Some(t) = self.pending.get_mut(&key) {
            *t = Times {
                first_seen: first,
                last: now32,
            };
            return;
        }
        if self.insert_new(key, now, timing) == Outcome::New
            && let Some(t) = self.pending.get_mut(&key)
        {
            t.first_seen = first;
        }
    }

    /// Records that `key` is whitelisted and was used at `now`.
    pub fn mirror_white(&mut self, key: TupleKey, first_seen: u64, now: u64, timing: &Timing) {
        let now32 = secs32(now);
        if let Some(t) = self.white.get_mut(&key) {
            t.last = t.last.max(now32);
            return;
        }
        let first = match self.pending.get_index_of(&key) {
            Some(idx) => {
                let first = self.pending.get_index(idx).map(|(_, t)| t.first_seen);
                self.pending.swap_remove_index(idx);
                self.net_dec(key.net());
                self.flows.graylisted = self.flows.graylisted.saturating_sub(1);
                first
            }
            None => None,
        }
        .unwrap_or(secs32(first_seen));
        // Enter through the pending side so eviction and the counters apply,
        // then move across as a pass.
        if self.insert_new(key, now, timing) != Outcome::New
            || !reserve_for_insert(&mut self.white, self.max)
        {
            return;
        }
        if let Some(idx) = self.pending.get_index_of(&key) {
            self.pending.swap_remove_index(idx);
            self.white.insert(
                key,
                Times {
                    first_seen: first,
                    last: now32,
                },
            );
            self.flows.passed += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        delay: 300,
        retry_window: 3600,
        lifetime: 86_400,
    };

    #[test]
    fn mirrored_entries_decide_like_local_ones_and_keep_the_invariant() {
        let mut t = Table::new(100);
        let (a, b) = (TupleKey([1, 1]), TupleKey([1, 2]));
        t.mirror_pending(a, 1000, 1010, &T);
        assert_eq!(
            t.get(&a).map(|(x, w)| (x.first_seen, w)),
            Some((1000, false))
        );
        // The local table now passes a retry after the delay on its own.
        assert_eq!(
            t.lookup(a, 1301, T.delay, &T),
            Outcome::Retried { waited: 301 }
        );
        t.mirror_white(b, 900, 2000, &T);
        t.mirror_pending(b, 2100, 2100, &T);
        t.mirror_white(b, 2100, 2500, &T);
        t.mirror_white(b, 2100, 2600, &T);
        assert_eq!(
            t.get(&b).map(|(x, w)| (x.first_seen, x.last, w)),
            Some((2100, 2600, true))
        );
        let f = t.flows();
        assert_eq!(
            t.len() as u64,
            f.restored + f.graylisted - f.graylist_expired - f.whitelist_expired - f.evicted
        );
        assert_eq!(t.networks(), 1);
    }
}
