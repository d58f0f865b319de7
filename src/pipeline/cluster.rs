//! The table step of a cluster node: a whitelisted tuple Redis confirmed
//! recently is answered from the local table; anything else is one bounded
//! call to Redis, whose answer the engine settles; when Redis cannot be
//! asked or does not answer in time, the local table decides. Each
//! decision says where it came from (`src=` in the log). The engine is
//! borrowed between awaits only.

use futures_util::FutureExt as _;
use futures_util::future::LocalBoxFuture;

use super::envelope::Source;
use crate::cluster::{Args, Cluster, Reply};
use crate::greylist::engine::{SharedQuery, SharedStep, Via};
use crate::greylist::facts::DnsView;
use crate::greylist::{Decision, Engine, Request};

/// A call to Redis that ended: its reply (`None`: decide locally).
pub struct Asked {
    pub query: SharedQuery,
    pub reply: Option<Reply>,
}

/// Decided now, or a call to Redis to wait for.
pub enum Step {
    Now(Decision, Source),
    Wait(LocalBoxFuture<'static, Asked>),
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
        SharedStep::Ask(query) => match cluster.decide(&query.query.key, Args::of(&query)) {
            None => Step::Now(
                engine.decide_locally(&query.query, Via::Fallback),
                Source::Fallback,
            ),
            Some(call) => Step::Wait(call.map(move |reply| Asked { query, reply }).boxed_local()),
        },
    }
}

/// The decision once the call ended.
pub fn finish(engine: &mut Engine, asked: &Asked) -> (Decision, Source) {
    let q = &asked.query.query;
    match &asked.reply {
        Some(r) => {
            let via = Via::Redis {
                network_became_whitelisted: r.network_became_whitelisted,
            };
            (engine.settle(q, r.outcome, via), Source::Redis)
        }
        None => (engine.decide_locally(q, Via::Fallback), Source::Fallback),
    }
}
