//! The RCPT path of a cluster node: the engine's rules first, then the
//! local cache of whitelisted tuples, then one bounded call to Redis; when
//! Redis cannot be asked or does not answer in time, the local table
//! decides. Each decision says where it came from (`src=` in the log).

use futures_util::future::LocalBoxFuture;

use crate::cluster::{Args, Cluster, Reply};
use crate::greylist::engine::{SharedQuery, SharedStep};
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

/// What a waiting recipient gets back: the query, Redis' reply (`None`:
/// decide locally), and the recipient for the verdict and the log.
pub struct SharedAnswer {
    pub query: SharedQuery,
    pub reply: Option<Reply>,
    pub recipient: Vec<u8>,
    /// The `i` macro (queue id) at RCPT, for the log line.
    pub qid: Option<Vec<u8>>,
}

impl Macros for SharedAnswer {
    fn get(&self, name: &str) -> Option<&[u8]> {
        match name {
            "i" | "{i}" => self.qid.as_deref(),
            _ => None,
        }
    }
}

pub type SharedWait = LocalBoxFuture<'static, SharedAnswer>;

/// Decided now, or a call to wait for.
pub enum Step {
    Now(Decision, Source),
    Wait(SharedWait),
}

/// The first step of a recipient at a cluster node.
pub fn start(
    engine: &mut Engine,
    cluster: &Cluster,
    req: &Request<'_>,
    macros: &dyn Macros,
) -> Step {
    match engine.rcpt_shared(req) {
        SharedStep::Decided(d) => Step::Now(d, Source::Local),
        SharedStep::Cached(d) => {
            cluster.note_cached();
            Step::Now(d, Source::Local)
        }
        SharedStep::Ask(query) => match cluster.decide(&query.key, Args::of(&query)) {
            None => Step::Now(engine.decide_fallback(&query), Source::Fallback),
            Some(call) => {
                let recipient = req.recipient.to_vec();
                let qid = macros.get("i").map(<[u8]>::to_vec);
                Step::Wait(Box::pin(async move {
                    SharedAnswer {
                        query,
                        reply: call.await,
                        recipient,
                        qid,
                    }
                }))
            }
        },
    }
}

/// The decision once the call ended.
pub fn finish(engine: &mut Engine, answer: &SharedAnswer) -> (Decision, Source) {
    match &answer.reply {
        Some(r) => (
            engine.apply_shared(&answer.query, r.outcome, r.network_became_whitelisted),
            Source::Redis,
        ),
        None => (engine.decide_fallback(&answer.query), Source::Fallback),
    }
}
