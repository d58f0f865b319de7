//! What the control socket asks of the engine: a read-only `explain` (what
//! would happen to a recipient now, and why) and the administrator's live
//! edits. Plain data in and out; the socket lives in `crate::control`.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::dns::Effect;
use super::pipeline::{Classified, TableOutcome, TableQuery, Via};
use super::{Decision, Engine, Request, TupleInfo};
use crate::greylist::envelope_address::{base_form, sender_form};
use crate::greylist::facts::DnsView;
use crate::greylist::key::{NetKey, Network, TupleKey};
use crate::greylist::lists::ListHit;
use crate::greylist::table::{Walk, WalkKind, secs32};

/// Client networks one `forget` may cover (a /8 of /24s, a /48 of /64s).
pub const MAX_FORGET_NETWORKS: u64 = 1 << 16;

/// A `forget` of networks or a `flush` under way, walked in slices so the
/// loop keeps serving (issue 24).
#[derive(Debug, Clone)]
pub struct AdminWalk {
    table: Walk,
    nets: Option<HashSet<NetKey>>,
}

/// Tuples a control-socket walk examines per slice: a flush slice of 8192
/// took up to 2.5 ms at 3M tuples on a busy machine (state_bench).
pub const WALK_SLICE: usize = 4096;

/// The answer to "what would happen now", computed without recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Explanation {
    pub decision: Decision,
    /// The static (or runtime-allowed) list entry that decided or sent the
    /// recipient to the table.
    pub list: Option<ListHit>,
    pub tuple: Option<TupleInfo>,
    pub auto_whitelisted: bool,
}

/// `check` half way: decided by a rule, or the table must say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Explaining {
    Done(Explanation),
    Table(TableQuery, Option<ListHit>),
}

/// Which table answers `check`'s question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableView {
    /// A lone node's table.
    Local,
    /// A cluster node: its cache of whitelisted tuples, then the store's
    /// record (`None`: the store could not be read, this node's table).
    Cluster(Option<SharedView>),
}

/// The shared store's record of a recipient, for [`Engine::explain_table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedView {
    pub tuple: Option<TupleInfo>,
    pub auto_whitelisted: bool,
}

impl Engine {
    /// The network and tuple key of a recipient, with buffers of our own so
    /// `explain` can take `&self`.
    pub(super) fn key_of(
        &self,
        addr: IpAddr,
        sender: &[u8],
        recipient: &[u8],
    ) -> (Network, TupleKey) {
        let (mut s, mut r) = (Vec::new(), Vec::new());
        sender_form(sender, self.settings.normalize_sender, &mut s);
        base_form(recipient, &mut r);
        let net = Network::of(addr, self.settings.ipv4_prefix, self.settings.ipv6_prefix);
        (net, self.secret.tuple_key(&net, &s, &r))
    }

    /// The key a recipient's tuple has (the shared store's too).
    pub fn tuple_key_of(&self, addr: IpAddr, sender: &[u8], recipient: &[u8]) -> TupleKey {
        self.key_of(addr, sender, recipient).1
    }

    /// The net keys (as the shared store names them) of the client
    /// networks `net` covers; bounded like [`Engine::forget_network`].
    pub fn net_keys_of(&self, net: IpNet) -> Result<HashSet<u64>, String> {
        Ok(self.net_keys(net)?.iter().map(NetKey::as_u64).collect())
    }

    /// What [`Engine::decide_rcpt`] would answer now, in the same order,
    /// changing nothing (no counter, no tuple, no refresh).
    pub fn explain(&mut self, req: &Request<'_>) -> Explanation {
        match self.explain_start(req, DnsView::default()) {
            Explaining::Done(x) => x,
            Explaining::Table(q, list) => self.explain_table(&q, list, TableView::Local),
        }
    }

    /// `check`, first step: classified with what DNS found, read-only.
    pub fn explain_start(&mut self, req: &Request<'_>, facts: DnsView<'_>) -> Explaining {
        let (classified, list) = self.classify_as(req, facts, Effect::Peek);
        let decision = match classified {
            Classified::Table(q) => return Explaining::Table(q, list),
            Classified::Decided(d) => d,
        };
        // What the table holds all the same, keyed by network.
        let (tuple, auto_whitelisted) = match req.client_addr {
            Some(addr) => {
                let (net, key) = self.key_of(addr, req.sender, req.recipient);
                let net_key = self.secret.net_key(&net);
                let awl = self.settings.auto_whitelist_after > 0
                    && self.awl.is_whitelisted(
                        net_key,
                        secs32(self.clock.now()),
                        self.timing.lifetime,
                    );
                (self.tuple_info(&key), awl)
            }
            None => (None, false),
        };
        Explaining::Done(Explanation {
            decision,
            list,
            tuple,
            auto_whitelisted,
        })
    }

    /// `check`, second step: the table's answer as `view` gives it,
    /// read-only.
    pub fn explain_table(
        &mut self,
        q: &TableQuery,
        list: Option<ListHit>,
        view: TableView,
    ) -> Explanation {
        let (shared, cached) = match view {
            TableView::Local => (None, false),
            // As the daemon: this node's cache first, then the store's
            // record (or this node's table, when the store is unreachable).
            TableView::Cluster(shared) => (shared, self.cached(q)),
        };
        let (tuple, awl) = match shared {
            Some(v) if !cached => (v.tuple, v.auto_whitelisted),
            _ => (
                self.tuple_info(&q.key),
                self.awl
                    .is_whitelisted(q.key.net(), secs32(q.now), self.timing.lifetime),
            ),
        };
        let outcome = if cached {
            TableOutcome::Whitelisted
        } else {
            self.peek_table(q, shared)
        };
        Explanation {
            decision: self.settle(q, outcome, Via::Peek),
            list,
            tuple,
            auto_whitelisted: self.settings.auto_whitelist_after > 0 && awl,
        }
    }

    fn tuple_info(&self, key: &TupleKey) -> Option<TupleInfo> {
        self.table.get(key).map(|(t, whitelisted)| TupleInfo {
            first_seen: u64::from(t.first_seen),
            last: u64::from(t.last),
            whitelisted,
        })
    }

    /// Whitelists a tuple for `duration` (the whitelist lifetime if none).
    /// Returns when the allowance ends, or `None` when it could not be
    /// stored (out of memory).
    pub fn allow_tuple(
        &mut self,
        addr: IpAddr,
        sender: &[u8],
        recipient: &[u8],
        duration: Option<Duration>,
    ) -> Option<u64> {
        let (_, key) = self.key_of(addr, sender, recipient);
        let now = self.clock.now();
        let until =
            now.saturating_add(duration.map_or(u64::from(self.timing.lifetime), |d| d.as_secs()));
        self.generation += 1;
        self.table
            .allow(key, now, until, self.timing.lifetime)
            .then_some(until)
    }

    /// Removes one tuple; true if it was stored.
    pub fn forget_tuple(&mut self, addr: IpAddr, sender: &[u8], recipient: &[u8]) -> bool {
        let (_, key) = self.key_of(addr, sender, recipient);
        self.generation += 1;
        self.table.forget(&key)
    }

    /// Removes every tuple and auto-whitelist record of the client networks
    /// (at the configured prefix lengths) that `net` covers, at once.
    /// Returns the tuples and records removed. The daemon walks in slices
    /// ([`Engine::forget_network_walk`]).
    pub fn forget_network(&mut self, net: IpNet) -> Result<(u64, u64), String> {
        let mut walk = self.forget_network_walk(net)?;
        loop {
            if let Some(done) = self.walk_step(&mut walk, usize::MAX) {
                return Ok(done);
            }
        }
    }

    /// A walk removing what [`Engine::forget_network`] removes, in slices
    /// of [`Engine::walk_step`]; tuples first seen after this call stay.
    pub fn forget_network_walk(&self, net: IpNet) -> Result<AdminWalk, String> {
        Ok(AdminWalk {
            table: Walk::new(WalkKind::Forget, secs32(self.now())),
            nets: Some(self.net_keys(net)?),
        })
    }

    /// A walk dropping every pending tuple first seen before this call.
    pub fn flush_walk(&self) -> AdminWalk {
        AdminWalk {
            table: Walk::new(WalkKind::Flush, secs32(self.now())),
            nets: None,
        }
    }

    /// Examines at most `budget` tuples of `walk`. When it is over, returns
    /// the tuples removed and (a forget) the auto-whitelist records.
    pub fn walk_step(&mut self, walk: &mut AdminWalk, budget: usize) -> Option<(u64, u64)> {
        self.generation += 1;
        let done = match &walk.nets {
            Some(nets) => self
                .table
                .walk_step(&mut walk.table, budget, |k| nets.contains(&k.net())),
            None => self.table.walk_step(&mut walk.table, budget, |_| true),
        };
        if !done {
            return None;
        }
        let records = walk.nets.as_ref().map_or(0, |nets| {
            nets.iter().filter(|k| self.awl.forget(**k)).count() as u64
        });
        Some((walk.table.removed, records))
    }

    /// The keys of the configured-prefix networks inside `net`.
    fn net_keys(&self, net: IpNet) -> Result<HashSet<NetKey>, String> {
        let (bits, prefix) = match net {
            IpNet::V4(_) => (32u8, self.settings.ipv4_prefix.min(32)),
            IpNet::V6(_) => (128u8, self.settings.ipv6_prefix.min(128)),
        };
        let spread = u32::from(prefix.saturating_sub(net.prefix_len()));
        let count = 1u64.checked_shl(spread).unwrap_or(u64::MAX);
        if count > MAX_FORGET_NETWORKS {
            return Err(format!(
                "{net} covers {} /{prefix} client networks; at most {MAX_FORGET_NETWORKS} at once",
                if spread >= 64 {
                    "2^".to_string() + &spread.to_string()
                } else {
                    count.to_string()
                }
            ));
        }
        let step_shift = u32::from(bits - prefix);
        let (p4, p6) = (self.settings.ipv4_prefix, self.settings.ipv6_prefix);
        let keys = (0..count)
            .map(|i| {
                let addr = match net {
                    IpNet::V4(n) => IpAddr::from(std::net::Ipv4Addr::from(
                        u32::from(n.network())
                            .wrapping_add((i as u32).checked_shl(step_shift).unwrap_or(0)),
                    )),
                    IpNet::V6(n) => IpAddr::from(std::net::Ipv6Addr::from(
                        u128::from(n.network())
                            .wrapping_add(u128::from(i).checked_shl(step_shift).unwrap_or(0)),
                    )),
                };
                self.secret.net_key(&Network::of(addr, p4, p6))
            })
            .collect();
        Ok(keys)
    }

    /// Drops every pending tuple, at once. Returns how many.
    pub fn flush_pending(&mut self) -> u64 {
        let mut walk = self.flush_walk();
        loop {
            if let Some((tuples, _)) = self.walk_step(&mut walk, usize::MAX) {
                return tuples;
            }
        }
    }
}
