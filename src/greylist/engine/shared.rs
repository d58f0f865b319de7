//! Plain-data steps for a cluster node (`crate::cluster` does the network
//! part): the lists decide as always; a tuple whitelisted and confirmed by
//! the shared store recently is answered from the local table; anything
//! else is one question to the store, whose answer is applied here and
//! mirrored into the local table, which also decides when the store cannot
//! be asked ([`Engine::decide_fallback`]).

use std::net::IpAddr;

use tracing::info;

use super::dns::DnsStep;
use super::{Action, Decision, Engine, Reason, Request, TableQuery};
use crate::greylist::facts::DnsView;
use crate::greylist::key::{Network, Secret, TupleKey};
use crate::greylist::table::secs32;

/// A locally whitelisted tuple confirmed by the store less than this long
/// ago is answered without asking: at most one call per whitelisted tuple
/// per period, and a tuple removed from the store (expired elsewhere) is
/// noticed within it.
pub const CACHE_FRESH: u32 = 600;

/// What the store decided (the engine's view of the cluster script reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedOutcome {
    New { remaining: u32 },
    Early { waited: u32, remaining: u32 },
    Retried { waited: u32 },
    Whitelisted,
    AutoWhitelisted,
}

/// One recipient to ask the store about; owns its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedQuery {
    pub key: TupleKey,
    pub addr: IpAddr,
    pub now: u64,
    pub delay: u32,
    pub retry_window: u32,
    pub lifetime: u32,
    /// 0 = the auto-whitelist is off.
    pub auto_whitelist_after: u32,
    /// A `greylist` list entry: the auto-whitelist is skipped.
    pub forced: bool,
    /// This node's own record of the tuple, unexpired (0: none): merged
    /// into the store when the store has none (after an outage, or after
    /// the store lost data).
    pub local_first_seen: u32,
    pub local_white: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedStep {
    /// A rule decided (lists, authentication, no address).
    Decided(Decision),
    /// Answered from the local table's whitelisted tuples.
    Cached(Decision),
    Ask(SharedQuery),
}

impl Engine {
    /// Replaces the hashing secret with the cluster's (after a restore too:
    /// a saved state carries the secret it was written with).
    pub fn set_secret(&mut self, secret: Secret) {
        if self.secret != secret {
            self.secret = secret;
            self.generation += 1;
        }
    }

    /// An administrator changed the shared state (a `forget` at any
    /// node): every whitelisted tuple is asked about once more.
    pub fn distrust_cache(&mut self) {
        self.shared_fresh_after = secs32(self.clock.now());
    }

    /// RCPT in cluster mode, first step, without DNS.
    pub fn rcpt_shared(&mut self, req: &Request<'_>) -> SharedStep {
        self.rcpt_shared_with(req, DnsView::default())
    }

    /// RCPT in cluster mode, first step: the lists, then the DNS steps as
    /// on a lone node (`engine/dns.rs`), then the local cache; the shared
    /// key follows the SPF domain as the local one does.
    pub fn rcpt_shared_with(&mut self, req: &Request<'_>, facts: DnsView<'_>) -> SharedStep {
        let (addr, delay, forced, domain) = match self.classify_rcpt(req) {
            Ok(d) => return SharedStep::Decided(self.counted(d)),
            Err(q) if q.forced => (q.addr, q.delay, true, None),
            Err(q) => match self.dns_step(facts) {
                DnsStep::Decided(d) => return SharedStep::Decided(self.counted(d)),
                DnsStep::Table {
                    delay,
                    forced,
                    domain,
                } => (q.addr, delay, forced, domain),
            },
        };
        let q = TableQuery {
            addr,
            delay,
            forced,
        };
        let s = &self.settings;
        let net = match domain {
            Some(d) => Network::of_domain(d),
            None => Network::of(q.addr, s.ipv4_prefix, s.ipv6_prefix),
        };
        let key = self
            .secret
            .tuple_key(&net, &self.sender_buf, &self.recipient_buf);
        let now = self.clock.now();
        let now32 = secs32(now);
        let local = self.table.get(&key);
        if let Some((t, true)) = local
            && now32.saturating_sub(t.last) < CACHE_FRESH.min(self.timing.lifetime)
            && t.last > self.shared_fresh_after
        {
            let d = Decision::of(Action::Pass, Reason::Whitelisted);
            return SharedStep::Cached(self.counted(d));
        }
        let (local_first_seen, local_white) = match local {
            Some((t, true)) if now32.saturating_sub(t.last) < self.timing.lifetime => {
                (t.first_seen.max(1), true)
            }
            Some((t, false)) if now32.saturating_sub(t.first_seen) < self.timing.retry_window => {
                (t.first_seen.max(1), false)
            }
            _ => (0, false),
        };
        SharedStep::Ask(SharedQuery {
            key,
            addr: q.addr,
            now,
            delay: q.delay,
            retry_window: self.timing.retry_window,
            lifetime: self.timing.lifetime,
            auto_whitelist_after: s.auto_whitelist_after,
            forced: q.forced,
            local_first_seen,
            local_white,
        })
    }

    /// The store's answer to `q`: counted, mirrored, turned into a decision.
    pub fn apply_shared(
        &mut self,
        q: &SharedQuery,
        outcome: SharedOutcome,
        network_became_whitelisted: bool,
    ) -> Decision {
        self.generation += 1;
        let (now, timing) = (q.now, self.timing);
        let decision = match outcome {
            SharedOutcome::New { remaining } => {
                self.table.mirror_pending(q.key, now, now, &timing);
                Decision {
                    action: Action::Greylist,
                    reason: Reason::New,
                    delay: 0,
                    remaining: u64::from(remaining),
                }
            }
            SharedOutcome::Early { waited, remaining } => {
                let first = now.saturating_sub(u64::from(waited));
                self.table.mirror_pending(q.key, first, now, &timing);
                Decision {
                    action: Action::Greylist,
                    reason: Reason::Early,
                    delay: u64::from(waited),
                    remaining: u64::from(remaining),
                }
            }
            SharedOutcome::Retried { waited } => {
                let first = now.saturating_sub(u64::from(waited));
                self.table.mirror_white(q.key, first, now, &timing);
                Decision {
                    action: Action::Pass,
                    reason: Reason::Retried,
                    delay: u64::from(waited),
                    remaining: 0,
                }
            }
            SharedOutcome::Whitelisted => {
                self.table.mirror_white(q.key, now, now, &timing);
                Decision::of(Action::Pass, Reason::Whitelisted)
            }
            SharedOutcome::AutoWhitelisted => {
                self.counters.auto_whitelist_passes += 1;
                Decision::of(Action::Pass, Reason::AutoWhitelisted)
            }
        };
        let decision = match decision.action {
            Action::Greylist if self.settings.mode == crate::greylist::settings::Mode::Learn => {
                self.counters.would_greylist += 1;
                Decision {
                    action: Action::WouldGreylist,
                    ..decision
                }
            }
            Action::Greylist => {
                self.counters.deferred += 1;
                decision
            }
            _ => decision,
        };
        if network_became_whitelisted {
            info!(
                "client network of {} auto-whitelisted after {} passes (shared)",
                q.addr, self.settings.auto_whitelist_after
            );
        }
        self.counted(decision)
    }

    /// The store could not be asked or did not answer in time: the local
    /// table decides, as without a cluster.
    pub fn decide_fallback(&mut self, q: &SharedQuery) -> Decision {
        let d = self.decide_tuple(q.addr, q.key, q.delay, q.forced);
        self.counted(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::greylist::clock::ManualClock;
    use crate::greylist::settings::Settings;

    fn req<'a>(from: &'a [u8], to: &'a [u8]) -> Request<'a> {
        Request {
            client_addr: Some(IpAddr::from([192, 0, 2, 1])),
            client_name: b"[192.0.2.1]",
            sender: from,
            recipient: to,
            authenticated: false,
        }
    }

    fn ask(e: &mut Engine, r: &Request<'_>) -> SharedQuery {
        match e.rcpt_shared(r) {
            SharedStep::Ask(q) => q,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn answers_are_mirrored_and_whitelisted_tuples_cached() {
        let clock = ManualClock::new(1_000_000);
        let mut e = Engine::new(Settings::default(), Box::new(clock.clone()));
        e.set_secret(Secret { k0: 1, k1: 2 });
        let r = req(b"<a@example.org>", b"<b@example.net>");
        let q = ask(&mut e, &r);
        assert_eq!(q.now, 1_000_000);
        let d = e.apply_shared(&q, SharedOutcome::New { remaining: 300 }, false);
        assert_eq!(
            (d.action, d.reason, d.remaining),
            (Action::Greylist, Reason::New, 300)
        );
        // Another recipient overwrites the engine's buffers meanwhile; the
        // fallback still decides the query's own tuple, from the mirror.
        clock.advance(400);
        let q = ask(&mut e, &r);
        let _ = ask(&mut e, &req(b"<x@example.org>", b"<y@example.net>"));
        let d = e.decide_fallback(&q);
        assert_eq!(
            (d.action, d.reason, d.delay),
            (Action::Pass, Reason::Retried, 400)
        );
        // Confirmed whitelisted by the store: answered locally for a while.
        let d = e.apply_shared(&q, SharedOutcome::Whitelisted, false);
        assert_eq!(d.reason, Reason::Whitelisted);
        clock.advance(u64::from(CACHE_FRESH) - 1);
        assert!(matches!(e.rcpt_shared(&r), SharedStep::Cached(_)));
        clock.advance(1);
        assert!(matches!(e.rcpt_shared(&r), SharedStep::Ask(_)));
        assert_eq!(e.stats().deferred, 1);
        // Confirmed again, then distrusted: asked again at once.
        let q = ask(&mut e, &r);
        e.apply_shared(&q, SharedOutcome::Whitelisted, false);
        assert!(matches!(e.rcpt_shared(&r), SharedStep::Cached(_)));
        e.distrust_cache();
        assert!(matches!(e.rcpt_shared(&r), SharedStep::Ask(_)));
        // Every decision is counted for the metrics, however it was made:
        // from the store, the fallback, the cache; asking is no decision.
        let counts = e.decision_counts();
        let count = |action: &str, reason: &str| {
            counts
                .iter()
                .find(|(a, r, _)| a == action && r == reason)
                .map_or(0, |c| c.2)
        };
        assert_eq!(count("greylist", "new"), 1, "{counts:?}");
        assert_eq!(count("pass", "retried"), 1, "{counts:?}");
        assert_eq!(count("pass", "whitelisted"), 4, "{counts:?}");
        assert_eq!(counts.len(), 3, "{counts:?}");
    }

    #[test]
    fn dns_steps_come_before_the_store_and_spf_keys_by_domain() {
        use crate::greylist::facts::{ClientFacts, DnsFacts, SpfFacts, SpfMode, SpfResult};
        let mut settings = Settings::default();
        settings.dns.spf = SpfMode::Key;
        let mut e = Engine::new(settings, Box::new(ManualClock::new(1_000_000)));
        let listed = DnsFacts {
            client: Some(ClientFacts {
                allow_listed: true,
                ..ClientFacts::default()
            }),
            spf: None,
        };
        let r = req(b"<a@provider.test>", b"<b@example.net>");
        assert!(matches!(
            e.rcpt_shared_with(&r, listed.view()),
            SharedStep::Decided(d) if d.reason == Reason::Dnswl
        ));
        let pass = DnsFacts {
            client: None,
            spf: Some(SpfFacts {
                result: SpfResult::Pass,
                domain: "provider.test".into(),
            }),
        };
        let keyed =
            |e: &mut Engine, r: &Request<'_>, f: &DnsFacts| match e.rcpt_shared_with(r, f.view()) {
                SharedStep::Ask(q) => q.key,
                other => panic!("{other:?}"),
            };
        let other_net = Request {
            client_addr: Some(IpAddr::from([198, 51, 100, 2])),
            ..r
        };
        let by_domain = keyed(&mut e, &r, &pass);
        assert_eq!(by_domain, keyed(&mut e, &other_net, &pass));
        assert_ne!(by_domain, keyed(&mut e, &r, &DnsFacts::default()));
        assert_eq!(e.dns_counters().spf_keyed, 2);
    }
}
