//! The recipient pipeline, written once. Every way a recipient is decided
//! (a lone node, a cluster node asking Redis or falling back, `greymilter
//! check`) takes the same two steps:
//!
//! 1. [`Engine::classify`]: no client address, authentication, the static
//!    lists (runtime allowances included), loopback, then the DNS steps
//!    (`engine/dns.rs`). Either a rule decides, or the recipient goes to a
//!    tuple table with a [`TableQuery`]: its key (by client network or SPF
//!    domain), delay, and whether a list forced greylisting.
//! 2. [`Engine::settle`]: a table's answer ([`TableOutcome`]: from the
//!    local table, from Redis, from the local fallback, or read without
//!    change for `check`) becomes the decision, with learning mode applied,
//!    the statistics counted (unless only peeking) and, for Redis' answers,
//!    the local mirror updated.
//!
//! A new decision step goes into `classify` (or `dns_step`); what a table
//! answer means goes into `settle`.

use std::net::IpAddr;

use tracing::info;

use super::dns::{DnsStep, Effect};
use super::{Action, Decision, Engine, Reason, Request, SharedView, TupleInfo, secs};
use crate::greylist::envelope_address::{base_form, sender_form};
use crate::greylist::facts::DnsView;
use crate::greylist::key::{Network, TupleKey};
use crate::greylist::lists::ListHit;
use crate::greylist::settings::{ListAction, Mode};
use crate::greylist::table::{Outcome, Times, secs32};

/// A recipient a tuple table (local or shared) must decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableQuery {
    /// By client network, or by SPF domain (`spf = "key"`).
    pub key: TupleKey,
    pub addr: IpAddr,
    /// When the recipient was classified.
    pub now: u64,
    pub delay: u32,
    /// A `greylist` list entry or a block zone: the auto-whitelist is
    /// skipped.
    pub forced: bool,
}

/// What [`Engine::classify`] concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classified {
    /// A rule decided (counted already, unless peeking).
    Decided(Decision),
    /// A tuple table must decide.
    Table(TableQuery),
}

/// What a tuple table answered: the local table, or the shared store (the
/// engine's view of the cluster script's reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableOutcome {
    New {
        remaining: u32,
    },
    Early {
        waited: u32,
        remaining: u32,
    },
    Retried {
        waited: u32,
    },
    Whitelisted,
    AutoWhitelisted,
    /// The local table could not grow (out of memory): passed, fail open.
    Unstored,
}

/// Who answered a [`TableQuery`]; decides what [`Engine::settle`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The local table of a lone node.
    Local,
    /// A cluster node's local table, whose whitelisted tuple Redis
    /// confirmed recently.
    Cached,
    /// Redis.
    Redis { network_became_whitelisted: bool },
    /// The local table, because Redis could not be asked in time.
    Fallback,
    /// Read without changing anything (`check`).
    Peek,
}

/// The accept a list hit gives: a configured entry or a runtime
/// allowance, each with its own reason.
fn accepted((list, action): ListHit) -> Decision {
    let reason = match action {
        ListAction::Allow => Reason::Allowed(list),
        _ => Reason::List(list),
    };
    Decision::of(Action::Accept, reason)
}

impl TableOutcome {
    fn of_table(o: Outcome, delay: u32) -> TableOutcome {
        match o {
            Outcome::New => TableOutcome::New { remaining: delay },
            Outcome::Early { waited, remaining } => TableOutcome::Early { waited, remaining },
            Outcome::Retried { waited } => TableOutcome::Retried { waited },
            Outcome::Whitelisted => TableOutcome::Whitelisted,
            Outcome::Unstored => TableOutcome::Unstored,
        }
    }

    fn decision(self) -> Decision {
        match self {
            TableOutcome::New { remaining } => Decision {
                action: Action::Greylist,
                reason: Reason::New,
                delay: 0,
                remaining: u64::from(remaining),
            },
            TableOutcome::Early { waited, remaining } => Decision {
                action: Action::Greylist,
                reason: Reason::Early,
                delay: u64::from(waited),
                remaining: u64::from(remaining),
            },
            TableOutcome::Retried { waited } => Decision {
                action: Action::Pass,
                reason: Reason::Retried,
                delay: u64::from(waited),
                remaining: 0,
            },
            TableOutcome::Whitelisted => Decision::of(Action::Pass, Reason::Whitelisted),
            TableOutcome::AutoWhitelisted => Decision::of(Action::Pass, Reason::AutoWhitelisted),
            TableOutcome::Unstored => Decision::of(Action::Pass, Reason::Unstored),
        }
    }
}

/// How far into a transaction a front end is: the steps before RCPT
/// decide for every recipient, if they decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Stage {
    Connect,
    Mail,
    Rcpt,
}

impl Engine {
    /// CONNECT: `Some(reason)` when the whole connection is accepted (no
    /// client address, a client accept).
    pub fn check_connect(&mut self, addr: Option<IpAddr>, name: &[u8]) -> Option<Reason> {
        let req = Request {
            client_addr: addr,
            client_name: name,
            sender: b"",
            recipient: b"",
            authenticated: false,
        };
        self.before_rcpt(Stage::Connect, &req)
    }

    /// MAIL: `Some(reason)` when the message is accepted for every
    /// recipient (authentication, a sender accept; see the module docs).
    pub fn check_mail(
        &mut self,
        addr: Option<IpAddr>,
        name: &[u8],
        sender: &[u8],
        authenticated: bool,
    ) -> Option<Reason> {
        let req = Request {
            client_addr: addr,
            client_name: name,
            sender,
            recipient: b"",
            authenticated,
        };
        self.before_rcpt(Stage::Mail, &req)
    }

    /// A decision before RCPT, counted as one request and one decision.
    fn before_rcpt(&mut self, stage: Stage, req: &Request<'_>) -> Option<Reason> {
        let (classified, _) = self.steps(stage, req, DnsView::default(), Effect::Record);
        match classified {
            Some(Classified::Decided(d)) => Some(d.reason),
            _ => None,
        }
    }

    /// Step 1 for one recipient, recording its statistics.
    pub fn classify(&mut self, req: &Request<'_>) -> Classified {
        self.classify_seen(req, DnsView::default())
    }

    /// Step 1 with what DNS found, recording its statistics.
    pub fn classify_seen(&mut self, req: &Request<'_>, facts: DnsView<'_>) -> Classified {
        self.classify_as(req, facts, Effect::Record).0
    }

    /// Step 1, and the list entry that decided or forced the table.
    /// Leaves the normalised sender and recipient in the buffers.
    pub(super) fn classify_as(
        &mut self,
        req: &Request<'_>,
        facts: DnsView<'_>,
        effect: Effect,
    ) -> (Classified, Option<ListHit>) {
        match self.steps(Stage::Rcpt, req, facts, effect) {
            (Some(c), hit) => (c, hit),
            // `steps` always concludes at RCPT; failing open all the same.
            (None, hit) => (
                Classified::Decided(Decision::of(Action::Pass, Reason::Local)),
                hit,
            ),
        }
    }

    /// The decision order, written once: the steps up to `stage`. `None`
    /// when nothing before RCPT decided (never at RCPT).
    fn steps(
        &mut self,
        stage: Stage,
        req: &Request<'_>,
        facts: DnsView<'_>,
        effect: Effect,
    ) -> (Option<Classified>, Option<ListHit>) {
        let record = effect == Effect::Record;
        let decided = |e: &mut Engine, d: Decision| {
            if record {
                e.counters.requests += 1;
                Some(Classified::Decided(e.counted(d)))
            } else {
                Some(Classified::Decided(d))
            }
        };
        // CONNECT: no client address (a local or unknown-family client).
        let Some(addr) = req.client_addr else {
            return (
                decided(self, Decision::of(Action::Accept, Reason::Local)),
                None,
            );
        };
        // CONNECT: a client accept covers the whole connection.
        let client = self.lists.lookup_client(addr, req.client_name);
        if let Some(hit @ (_, action)) = client
            && action.accepts()
        {
            if record {
                self.counters.accepted_by_list += 1;
            }
            return (decided(self, accepted(hit)), client);
        }
        if stage == Stage::Connect {
            return (None, None);
        }
        // MAIL: authentication beats the client lists' other entries.
        if req.authenticated && self.settings.skip_authenticated {
            if record && stage == Stage::Mail {
                self.counters.authenticated += 1;
            }
            let d = Decision::of(Action::Accept, Reason::Authenticated);
            return (decided(self, d), None);
        }
        sender_form(
            req.sender,
            self.settings.normalize_sender,
            &mut self.sender_buf,
        );
        if stage == Stage::Mail {
            // A sender accept decides for every recipient, unless a client
            // entry (reject, greylist) decides first, at RCPT.
            if client.is_some() {
                return (None, None);
            }
            return match self.lists.lookup_sender(&self.sender_buf) {
                Some(hit @ (_, action)) if action.accepts() => {
                    if record {
                        self.counters.accepted_by_list += 1;
                    }
                    (decided(self, accepted(hit)), None)
                }
                _ => (None, None),
            };
        }
        // RCPT: every other list entry, then DNS, then a table.
        if record {
            self.counters.requests += 1;
        }
        let decided = |e: &mut Engine, d: Decision| {
            let d = if record { e.counted(d) } else { d };
            Some(Classified::Decided(d))
        };
        base_form(req.recipient, &mut self.recipient_buf);
        let hit = client
            .or_else(|| self.lists.lookup_sender(&self.sender_buf))
            .or_else(|| self.lists.lookup_recipient(&self.recipient_buf));
        let (delay, forced, domain) = match hit {
            Some(h @ (_, ListAction::Accept | ListAction::Allow)) => {
                if record {
                    self.counters.accepted_by_list += 1;
                }
                return (decided(self, accepted(h)), hit);
            }
            Some((list, ListAction::Reject)) => {
                if record {
                    self.counters.rejected_by_list += 1;
                }
                let d = Decision::of(Action::Reject, Reason::List(list));
                return (decided(self, d), hit);
            }
            Some((_, ListAction::Greylist { delay })) => {
                (delay.map_or(self.timing.delay, secs), true, None)
            }
            // Loopback: local software (webmail, a content filter), not
            // mail from the network; a list entry above decides instead.
            None if addr.is_loopback() => {
                let d = Decision::of(Action::Accept, Reason::Loopback);
                return (decided(self, d), None);
            }
            None => match self.dns_step(facts, effect) {
                DnsStep::Decided(d) => return (decided(self, d), None),
                DnsStep::Table {
                    delay,
                    forced,
                    domain,
                } => (delay, forced, domain),
            },
        };
        let s = &self.settings;
        let net = match domain {
            Some(d) => Network::of_domain(d),
            None => Network::of(addr, s.ipv4_prefix, s.ipv6_prefix),
        };
        let key = self
            .secret
            .tuple_key(&net, &self.sender_buf, &self.recipient_buf);
        let q = TableQuery {
            key,
            addr,
            now: self.clock.now(),
            delay,
            forced,
        };
        (Some(Classified::Table(q)), hit)
    }

    /// The local table's answer to `q` (the auto-whitelist first, unless a
    /// list forced the table), as it records the attempt.
    pub fn consult_table(&mut self, q: &TableQuery) -> TableOutcome {
        let now = self.clock.now();
        let now32 = secs32(now);
        self.generation += 1;
        let awl_on = self.settings.auto_whitelist_after > 0;
        if awl_on && !q.forced && self.awl.check(q.key.net(), now32, self.timing.lifetime) {
            return TableOutcome::AutoWhitelisted;
        }
        let o = self.table.lookup(q.key, now, q.delay, &self.timing);
        TableOutcome::of_table(o, q.delay)
    }

    /// What the local table (or `shared`, the store's record) would answer
    /// to `q`, changing nothing.
    pub fn peek_table(&self, q: &TableQuery, shared: Option<SharedView>) -> TableOutcome {
        let now32 = secs32(q.now);
        let (stored, awl) = match shared {
            Some(v) => (
                v.tuple.map(|t| {
                    let times = Times {
                        first_seen: secs32(t.first_seen),
                        last: secs32(t.last),
                    };
                    (times, t.whitelisted)
                }),
                v.auto_whitelisted,
            ),
            None => (
                self.table.get(&q.key),
                self.awl
                    .is_whitelisted(q.key.net(), now32, self.timing.lifetime),
            ),
        };
        if self.settings.auto_whitelist_after > 0 && awl && !q.forced {
            return TableOutcome::AutoWhitelisted;
        }
        TableOutcome::of_table(self.timing.judge(stored, now32, q.delay), q.delay)
    }

    /// Step 2: a table's answer to `q` as the decision, recorded as `via`
    /// says.
    pub fn settle(&mut self, q: &TableQuery, outcome: TableOutcome, via: Via) -> Decision {
        let mut d = outcome.decision();
        if d.action == Action::Greylist && self.settings.mode == Mode::Learn {
            d.action = Action::WouldGreylist;
        }
        match via {
            Via::Peek => return d,
            Via::Redis {
                network_became_whitelisted,
            } => {
                self.generation += 1;
                self.mirror(q, outcome);
                if network_became_whitelisted {
                    info!(
                        "client network of {} auto-whitelisted after {} passes (shared)",
                        q.addr, self.settings.auto_whitelist_after
                    );
                }
            }
            Via::Local | Via::Fallback | Via::Cached => {}
        }
        match (d.action, d.reason) {
            (Action::Greylist, _) => self.counters.deferred += 1,
            (Action::WouldGreylist, _) => self.counters.would_greylist += 1,
            (Action::Pass, Reason::AutoWhitelisted) => self.counters.auto_whitelist_passes += 1,
            (Action::Pass, Reason::Retried | Reason::Whitelisted)
                if matches!(via, Via::Local | Via::Fallback) =>
            {
                self.note_pass(q)
            }
            _ => {}
        }
        self.counted(d)
    }

    /// The local table decides `q` (a lone node, or a cluster node that
    /// could not ask Redis: `via` says which).
    pub fn decide_locally(&mut self, q: &TableQuery, via: Via) -> Decision {
        let outcome = self.consult_table(q);
        self.settle(q, outcome, via)
    }

    /// A pass feeds the client network's auto-whitelist.
    fn note_pass(&mut self, q: &TableQuery) {
        let s = &self.settings;
        let became = self.awl.note_pass(
            q.key.net(),
            secs32(self.clock.now()),
            s.auto_whitelist_after,
            self.timing.lifetime,
            s.max_tuples,
        );
        if became {
            let prefix = if q.addr.is_ipv4() {
                s.ipv4_prefix
            } else {
                s.ipv6_prefix
            };
            info!(
                "client network of {} (/{prefix}) auto-whitelisted after {} passes",
                q.addr, s.auto_whitelist_after
            );
        }
    }

    /// Copies the store's answer into the local table.
    fn mirror(&mut self, q: &TableQuery, outcome: TableOutcome) {
        let (now, timing) = (q.now, self.timing);
        match outcome {
            TableOutcome::New { .. } => self.table.mirror_pending(q.key, now, now, &timing),
            TableOutcome::Early { waited, .. } => {
                let first = now.saturating_sub(u64::from(waited));
                self.table.mirror_pending(q.key, first, now, &timing);
            }
            TableOutcome::Retried { waited } => {
                let first = now.saturating_sub(u64::from(waited));
                self.table.mirror_white(q.key, first, now, &timing);
            }
            TableOutcome::Whitelisted => self.table.mirror_white(q.key, now, now, &timing),
            TableOutcome::AutoWhitelisted | TableOutcome::Unstored => {}
        }
    }

    /// RCPT: decides one recipient, in the documented order, without DNS.
    pub fn decide_rcpt(&mut self, req: &Request<'_>) -> Decision {
        self.decide_rcpt_seen(req, DnsView::default())
    }

    /// RCPT with what DNS found (a lone node): both steps.
    pub fn decide_rcpt_seen(&mut self, req: &Request<'_>, facts: DnsView<'_>) -> Decision {
        match self.classify_seen(req, facts) {
            Classified::Decided(d) => d,
            Classified::Table(q) => self.decide_locally(&q, Via::Local),
        }
    }

    /// [`Engine::decide_rcpt_seen`] with the facts owned.
    pub fn decide_rcpt_with(&mut self, req: &Request<'_>, facts: &super::DnsFacts) -> Decision {
        self.decide_rcpt_seen(req, facts.view())
    }

    /// The stored state of the tuple a request maps to by its client
    /// network, without deciding or changing anything.
    pub fn peek(&mut self, req: &Request<'_>) -> Option<TupleInfo> {
        let addr = req.client_addr?;
        let key = self.tuple_key_of(addr, req.sender, req.recipient);
        let (t, whitelisted) = self.table.get(&key)?;
        Some(TupleInfo {
            first_seen: u64::from(t.first_seen),
            last: u64::from(t.last),
            whitelisted,
        })
    }
}
