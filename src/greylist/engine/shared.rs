//! Plain-data steps for a cluster node (`crate::cluster` does the network
//! part): the lists decide as always; a tuple whitelisted and confirmed by
//! the shared store recently is answered from the local table; anything
//! else is one question to the store, whose answer is applied here and
//! mirrored into the local table, which also decides when the store cannot
//! be asked ([`Engine::decide_locally`]).

use super::pipeline::{Classified, TableOutcome, TableQuery, Via};
use super::{Decision, Engine, Request};
use crate::greylist::facts::DnsView;
use crate::greylist::key::Secret;
use crate::greylist::table::{Timing, secs32};

/// A locally whitelisted tuple confirmed by the store less than this long
/// ago is answered without asking: at most one call per whitelisted tuple
/// per period, and a tuple removed from the store (expired elsewhere) is
/// noticed within it.
pub const CACHE_FRESH: u32 = 600;

/// One recipient to ask the store about; owns its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedQuery {
    pub query: TableQuery,
    pub timing: Timing,
    /// 0 = the auto-whitelist is off.
    pub auto_whitelist_after: u32,
    /// This node's own record of the tuple, unexpired (0: none): merged
    /// into the store when the store has none (after an outage, or after
    /// the store lost data).
    pub local_first_seen: u32,
    pub local_white: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedStep {
    /// A rule decided (lists, authentication, no address, DNS).
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

    /// Whether this node answers `q` itself: a whitelisted tuple the store
    /// confirmed recently.
    pub fn cached(&self, q: &TableQuery) -> bool {
        let now32 = secs32(q.now);
        matches!(self.table.get(&q.key), Some((t, true))
            if now32.saturating_sub(t.last) < CACHE_FRESH.min(self.timing.lifetime)
                && t.last > self.shared_fresh_after)
    }

    /// RCPT in cluster mode, first step, without DNS.
    pub fn rcpt_shared(&mut self, req: &Request<'_>) -> SharedStep {
        self.rcpt_shared_with(req, DnsView::default())
    }

    /// RCPT in cluster mode, first step: classified as on a lone node,
    /// then the local cache of whitelisted tuples, else the question for
    /// the store (whose answer goes to [`Engine::settle`]).
    pub fn rcpt_shared_with(&mut self, req: &Request<'_>, facts: DnsView<'_>) -> SharedStep {
        let q = match self.classify_seen(req, facts) {
            Classified::Decided(d) => return SharedStep::Decided(d),
            Classified::Table(q) => q,
        };
        if self.cached(&q) {
            let d = self.settle(&q, TableOutcome::Whitelisted, Via::Cached);
            return SharedStep::Cached(d);
        }
        let now32 = secs32(q.now);
        let local = self.table.get(&q.key);
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
            query: q,
            timing: self.timing,
            auto_whitelist_after: self.settings.auto_whitelist_after,
            local_first_seen,
            local_white,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::greylist::clock::ManualClock;
    use crate::greylist::settings::Settings;
    use crate::greylist::{Action, Reason};
    use std::net::IpAddr;

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

    fn redis(e: &mut Engine, q: &SharedQuery, o: TableOutcome) -> Decision {
        let via = Via::Redis {
            network_became_whitelisted: false,
        };
        e.settle(&q.query, o, via)
    }

    #[test]
    fn answers_are_mirrored_and_whitelisted_tuples_cached() {
        let clock = ManualClock::new(1_000_000);
        let mut e = Engine::new(Settings::default(), Box::new(clock.clone()));
        e.set_secret(Secret { k0: 1, k1: 2 });
        let r = req(b"<a@example.org>", b"<b@example.net>");
        let q = ask(&mut e, &r);
        assert_eq!(q.query.now, 1_000_000);
        let d = redis(&mut e, &q, TableOutcome::New { remaining: 300 });
        assert_eq!(
            (d.action, d.reason, d.remaining),
            (Action::Greylist, Reason::New, 300)
        );
        // Another recipient overwrites the engine's buffers meanwhile; the
        // fallback still decides the query's own tuple, from the mirror.
        clock.advance(400);
        let q = ask(&mut e, &r);
        let _ = ask(&mut e, &req(b"<x@example.org>", b"<y@example.net>"));
        let d = e.decide_locally(&q.query, Via::Fallback);
        assert_eq!(
            (d.action, d.reason, d.delay),
            (Action::Pass, Reason::Retried, 400)
        );
        // Confirmed whitelisted by the store: answered locally for a while.
        let d = redis(&mut e, &q, TableOutcome::Whitelisted);
        assert_eq!(d.reason, Reason::Whitelisted);
        clock.advance(u64::from(CACHE_FRESH) - 1);
        assert!(matches!(e.rcpt_shared(&r), SharedStep::Cached(_)));
        clock.advance(1);
        assert!(matches!(e.rcpt_shared(&r), SharedStep::Ask(_)));
        assert_eq!(e.stats().deferred, 1);
        // Confirmed again, then distrusted: asked again at once.
        let q = ask(&mut e, &r);
        redis(&mut e, &q, TableOutcome::Whitelisted);
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
                SharedStep::Ask(q) => q.query.key,
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
