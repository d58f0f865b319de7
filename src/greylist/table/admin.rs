//! Live edits of the table by the administrator (the control socket):
//! whitelist a tuple, forget tuples, flush the pending ones. Counted in
//! their own flows (`allowed`, `forgotten`) so the statistics identity
//! keeps holding.

use std::collections::HashSet;
use std::hash::BuildHasher;

use super::{Cause, Kind, Table, Times, secs32};
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

    /// Removes every tuple whose network is in `nets`, at once. Returns
    /// how many. The daemon walks in slices instead ([`Table::walk_step`]).
    pub fn forget_networks(&mut self, nets: &HashSet<NetKey, impl BuildHasher>) -> u64 {
        let mut walk = Walk::new(WalkKind::Forget, secs32(u64::MAX));
        while !self.walk_step(&mut walk, usize::MAX, |k| nets.contains(&k.net())) {}
        walk.removed
    }

    /// Drops every pending tuple, at once. Returns how many.
    pub fn flush_pending(&mut self) -> u64 {
        let mut walk = Walk::new(WalkKind::Flush, secs32(u64::MAX));
        while !self.walk_step(&mut walk, usize::MAX, |_| true) {}
        walk.removed
    }

    /// One slice of a walk: examines at most `budget` entries, removes
    /// those `doomed` accepts that were first seen at or before the walk's
    /// start. True when the walk is over.
    ///
    /// Each map is walked from its end down, so the table may change
    /// between slices: an entry added meanwhile lands above the cursor (or
    /// is moved into the examined hole by a removal) and is left alone; a
    /// removal elsewhere moves an unexamined entry to a lower position,
    /// still ahead. A forget walks the pending map first: a tuple that
    /// passes meanwhile is then found in the white one. Tuples first seen
    /// after the walk started are never removed, even if moved ahead of
    /// the cursor by a removal.
    pub fn walk_step(
        &mut self,
        walk: &mut Walk,
        budget: usize,
        mut doomed: impl FnMut(&TupleKey) -> bool,
    ) -> bool {
        let mut used = 0;
        while used < budget {
            let (kind, cursor) = match (walk.kind, &mut walk.pending_at, &mut walk.white_at) {
                (_, Some(at), _) => (Kind::Pending, at),
                (WalkKind::Forget, None, Some(at)) => (Kind::White, at),
                (WalkKind::Forget, None, at @ None) if !walk.white_started => {
                    walk.white_started = true;
                    *at = Some(self.white.len());
                    continue;
                }
                _ => return true,
            };
            let len = self.map(kind).len();
            let i = (*cursor).min(len);
            if i == 0 {
                match kind {
                    Kind::Pending => walk.pending_at = None,
                    Kind::White => walk.white_at = None,
                }
                continue;
            }
            let i = i - 1;
            *cursor = i;
            used += 1;
            let Some((k, t)) = self.map(kind).get_index(i) else {
                continue;
            };
            if t.first_seen <= walk.started && doomed(k) {
                self.remove(kind, i, Cause::Forgotten);
                walk.removed += 1;
            }
        }
        false
    }
}

/// Which entries a [`Walk`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkKind {
    /// Pending tuples (the caller's filter says which).
    Flush,
    /// Pending and whitelisted tuples (the caller's filter says which).
    Forget,
}

/// A walk of the table by the control socket, done in slices.
#[derive(Debug, Clone)]
pub struct Walk {
    kind: WalkKind,
    /// Unix seconds: entries first seen later are kept.
    started: u32,
    pending_at: Option<usize>,
    white_at: Option<usize>,
    white_started: bool,
    /// Tuples removed so far.
    pub removed: u64,
}

impl Walk {
    /// A walk of entries first seen at or before `started`.
    pub fn new(kind: WalkKind, started: u32) -> Walk {
        Walk {
            kind,
            started,
            pending_at: Some(usize::MAX),
            white_at: None,
            white_started: false,
            removed: 0,
        }
    }
}
