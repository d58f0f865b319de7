//! What the control socket asks of the engine: a read-only `explain` (what
//! would happen to a recipient now, and why) and the administrator's live
//! edits. Plain data in and out; the socket lives in `crate::control`.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::{Action, Decision, Engine, Reason, Request, TupleInfo};
use crate::greylist::envelope_address::{base_form, sender_form};
use crate::greylist::key::{NetKey, Network, TupleKey};
use crate::greylist::lists::ListHit;
use crate::greylist::settings::{ListAction, Mode};
use crate::greylist::table::secs32;

/// Client networks one `forget` may cover (a /8 of /24s, a /48 of /64s).
pub const MAX_FORGET_NETWORKS: u64 = 1 << 16;

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

/// The shared store's record of a recipient, for [`Engine::explain_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedView {
    pub tuple: Option<TupleInfo>,
    pub auto_whitelisted: bool,
}

impl Engine {
    /// The network and tuple key of a recipient, with buffers of our own so
    /// `explain` can take `&self`.
    fn key_of(&self, addr: IpAddr, sender: &[u8], recipient: &[u8]) -> (Network, TupleKey) {
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
    pub fn explain(&self, req: &Request<'_>) -> Explanation {
        self.explain_with(req, None)
    }

    /// [`Engine::explain`] with the tuple and the auto-whitelist as the
    /// shared store holds them (a cluster node's `check`).
    pub fn explain_with(&self, req: &Request<'_>, shared: Option<SharedView>) -> Explanation {
        let mut out = Explanation {
            decision: Decision::of(Action::Accept, Reason::Local),
            list: None,
            tuple: None,
            auto_whitelisted: false,
        };
        let Some(addr) = req.client_addr else {
            return out;
        };
        let (net, key) = self.key_of(addr, req.sender, req.recipient);
        let now = self.clock.now();
        let now32 = secs32(now);
        out.tuple = self.table.get(&key).map(|(t, whitelisted)| TupleInfo {
            first_seen: u64::from(t.first_seen),
            last: u64::from(t.last),
            whitelisted,
        });
        let net_key = self.secret.net_key(&net);
        out.auto_whitelisted = self.settings.auto_whitelist_after > 0
            && self
                .awl
                .is_whitelisted(net_key, now32, self.timing.lifetime);
        if let Some(v) = shared {
            out.tuple = v.tuple;
            out.auto_whitelisted = self.settings.auto_whitelist_after > 0 && v.auto_whitelisted;
        }
        if req.authenticated && self.settings.skip_authenticated {
            out.decision = Decision::of(Action::Accept, Reason::Authenticated);
            return out;
        }
        let (mut s, mut r) = (Vec::new(), Vec::new());
        sender_form(req.sender, self.settings.normalize_sender, &mut s);
        base_form(req.recipient, &mut r);
        out.list = self
            .lists
            .lookup_client(addr, req.client_name)
            .or_else(|| self.lists.lookup_sender(&s))
            .or_else(|| self.lists.lookup_recipient(&r));
        let (delay, forced) = match out.list {
            Some((list, ListAction::Accept)) => {
                out.decision = Decision::of(Action::Accept, Reason::List(list));
                return out;
            }
            Some((list, ListAction::Reject)) => {
                out.decision = Decision::of(Action::Reject, Reason::List(list));
                return out;
            }
            Some((_, ListAction::Greylist { delay })) => (
                delay.map_or(self.timing.delay, |d| {
                    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
                }),
                true,
            ),
            None => (self.timing.delay, false),
        };
        out.decision = if out.auto_whitelisted && !forced {
            Decision::of(Action::Pass, Reason::AutoWhitelisted)
        } else {
            self.table_verdict(out.tuple, now32, delay)
        };
        if out.decision.action == Action::Greylist && self.settings.mode == Mode::Learn {
            out.decision.action = Action::WouldGreylist;
        }
        out
    }

    /// The table's answer for a stored (or absent) tuple, as `lookup` gives it.
    fn table_verdict(&self, tuple: Option<TupleInfo>, now32: u32, delay: u32) -> Decision {
        let new = Decision {
            action: Action::Greylist,
            reason: Reason::New,
            delay: 0,
            remaining: u64::from(delay),
        };
        let Some(t) = tuple else {
            return new;
        };
        let (first, last) = (secs32(t.first_seen), secs32(t.last));
        if t.whitelisted {
            return if now32.saturating_sub(last) >= self.timing.lifetime {
                new
            } else {
                Decision::of(Action::Pass, Reason::Whitelisted)
            };
        }
        let waited = now32.saturating_sub(first);
        if waited >= self.timing.retry_window {
            new
        } else if waited < delay {
            Decision {
                action: Action::Greylist,
                reason: Reason::Early,
                delay: u64::from(waited),
                remaining: u64::from(delay - waited),
            }
        } else {
            Decision {
                action: Action::Pass,
                reason: Reason::Retried,
                delay: u64::from(waited),
                remaining: 0,
            }
        }
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
    /// (at the configured prefix lengths) that `net` covers. Returns the
    /// tuples and records removed.
    pub fn forget_network(&mut self, net: IpNet) -> Result<(u64, u64), String> {
        let keys = self.net_keys(net)?;
        let tuples = self.table.forget_networks(&keys);
        let records = keys.iter().filter(|k| self.awl.forget(**k)).count() as u64;
        self.generation += 1;
        Ok((tuples, records))
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

    /// Drops every pending tuple. Returns how many.
    pub fn flush_pending(&mut self) -> u64 {
        self.generation += 1;
        self.table.flush_pending()
    }
}
