//! The RCPT path of a cluster node: the DNS lookups of the transaction
//! first (bounded by `[dns] timeout`), then the engine's rules and DNS
//! steps, then the local cache of whitelisted tuples, then one bounded
//! call to Redis; when Redis cannot be asked or does not answer in time,
//! the local table decides. Each decision says where it came from (`src=`
//! in the log). The engine is borrowed between awaits only.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use futures_util::FutureExt as _;
use futures_util::future::LocalBoxFuture;

use super::decider::Envelope;
use crate::cluster::{Args, Cluster, Reply};
use crate::dns::transaction::Found;
use crate::greylist::engine::{SharedQuery, SharedStep};
use crate::greylist::facts::{DnsView, SpfResult};
use crate::greylist::{Decision, Engine, Request};
use crate::milter::decision::Macros;

/// Where a decision came from, for the decision log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The shared state in Redis.
    Redis,
    /// This node alone: a list or rule, or a whitelisted tuple Redis
    /// confirmed recently.
    Local,
    /// Redis should have decided but could not be asked in time.
    Fallback,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Redis => "redis",
            Source::Local => "local",
            Source::Fallback => "fallback",
        }
    }
}

/// How a waiting recipient was settled.
pub enum Settled {
    /// Redis was asked; its reply (`None`: decide locally).
    Asked {
        query: SharedQuery,
        reply: Option<Reply>,
    },
    /// Decided without Redis once the DNS lookups were done.
    Decided(Decision, Source),
    /// The engine was borrowed elsewhere: fail open.
    Busy,
}

/// What a waiting recipient gets back, with the recipient for the verdict
/// and the log.
pub struct SharedAnswer {
    pub settled: Settled,
    pub recipient: Vec<u8>,
    /// The `i` macro (queue id) at RCPT, for the log line.
    pub qid: Option<Vec<u8>>,
    /// The DNS lookups waited for first, if the recipient waited for them.
    pub found: Option<Found>,
    /// The transaction's SPF result, for the log line.
    pub spf: Option<SpfResult>,
}

impl Macros for SharedAnswer {
    fn get(&self, name: &str) -> Option<&[u8]> {
        match name {
            "i" | "{i}" => self.qid.as_deref(),
            _ => None,
        }
    }
}

/// Decided now, or a call to Redis to wait for.
pub enum Step {
    Now(Decision, Source),
    Wait(LocalBoxFuture<'static, Settled>),
}

/// The steps of a recipient at a cluster node once DNS is known.
pub fn start(
    engine: &mut Engine,
    cluster: &Cluster,
    req: &Request<'_>,
    facts: DnsView<'_>,
) -> Step {
    match engine.rcpt_shared_with(req, facts) {
        SharedStep::Decided(d) => Step::Now(d, Source::Local),
        SharedStep::Cached(d) => {
            cluster.note_cached();
            Step::Now(d, Source::Local)
        }
        SharedStep::Ask(query) => match cluster.decide(&query.key, Args::of(&query)) {
            None => Step::Now(engine.decide_fallback(&query), Source::Fallback),
            Some(call) => Step::Wait(
                call.map(move |reply| Settled::Asked { query, reply })
                    .boxed_local(),
            ),
        },
    }
}

/// A recipient whose DNS lookups are still running: waits for them, then
/// takes the steps of [`start`], all in one future (one wait for the
/// driver, bounded by its decision deadline).
pub async fn after_dns(
    engine: Rc<RefCell<Engine>>,
    cluster: Cluster,
    envelope: Envelope,
    recipient: Vec<u8>,
    qid: Option<Vec<u8>>,
    lookups: impl Future<Output = Found> + 'static,
) -> SharedAnswer {
    let found = lookups.await;
    // The borrow ends with this statement, before any await.
    let step = match engine.try_borrow_mut() {
        Ok(mut engine) => {
            let req = envelope.request(&recipient);
            Some(start(&mut engine, &cluster, &req, found.view().facts()))
        }
        Err(_) => None,
    };
    let settled = match step {
        None => Settled::Busy,
        Some(Step::Now(d, src)) => Settled::Decided(d, src),
        Some(Step::Wait(call)) => call.await,
    };
    SharedAnswer {
        settled,
        recipient,
        qid,
        spf: found.view().facts().spf_result(),
        found: Some(found),
    }
}

/// The decision once the call ended.
pub fn finish(
    engine: &mut Engine,
    query: &SharedQuery,
    reply: Option<&Reply>,
) -> (Decision, Source) {
    match reply {
        Some(r) => (
            engine.apply_shared(query, r.outcome, r.network_became_whitelisted),
            Source::Redis,
        ),
        None => (engine.decide_fallback(query), Source::Fallback),
    }
}
