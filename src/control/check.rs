//! `greymilter check`: what the daemon would decide for a recipient now,
//! by the same steps, read-only. The same DNS lookups the daemon makes at
//! CONNECT and MAIL (each bounded by `[dns] timeout`), the engine's
//! classify, and the table's answer: this node's, or on a cluster node the
//! record Redis holds under the same key (SPF domain included). Nothing is
//! recorded anywhere; the answer says which DNS facts were missing.

use std::fmt::Write as _;

use super::handle::{Reply, describe};
use super::protocol::Command;
use super::shared::SHARED_DEADLINE;
use crate::cluster::admin::{Peek, SharedTuple};
use crate::dns::Outcome;
use crate::dns::transaction::{Found, Lookups};
use crate::greylist::date::rfc3339;
use crate::greylist::facts::{ClientFacts, SpfFacts};
use crate::greylist::{Explaining, Request, SharedView, TableView, TupleInfo};
use crate::pipeline::Pipeline;

/// The `check` answer. Must run inside the daemon's `LocalSet` (the DNS
/// lookups are spawned there, as for a milter session).
pub async fn check(pipeline: &Pipeline, command: &Command) -> Reply {
    let Command::Check {
        tuple,
        name,
        authenticated,
    } = command
    else {
        return Reply::error("not a check");
    };
    let name = name.as_deref().unwrap_or("[unverified]").as_bytes();
    let req = Request {
        client_addr: Some(tuple.client),
        client_name: name,
        sender: tuple.from.as_bytes(),
        recipient: tuple.to.as_bytes(),
        authenticated: *authenticated,
    };
    let found = match pipeline.dns() {
        Some(dns) => {
            let mut lookups = Lookups::default();
            lookups.connect(&dns, req.client_addr, name);
            // `check` has no HELO name: a null sender gets no SPF result.
            lookups.mail(&dns, req.client_addr, b"", req.sender);
            Some(lookups.wait().await)
        }
        None => None,
    };
    let facts = found.as_ref().map(|f| f.view().facts()).unwrap_or_default();
    let engine = pipeline.engine();
    let started = engine.borrow_mut().explain_start(&req, facts);
    let Some(cluster) = pipeline.cluster() else {
        let mut engine = engine.borrow_mut();
        let x = match started {
            Explaining::Done(x) => x,
            Explaining::Table(q, list) => engine.explain_table(&q, list, TableView::Local),
        };
        let mut out = describe(&x, &engine);
        out.push_str(&dns_lines(found.as_ref(), req.sender));
        return Reply::ok(out);
    };
    let key = match &started {
        Explaining::Table(q, _) => q.key,
        // Decided by a rule: the record by client network all the same.
        Explaining::Done(_) => {
            engine
                .borrow()
                .tuple_key_of(tuple.client, tuple.from.as_bytes(), tuple.to.as_bytes())
        }
    };
    let peek = tokio::time::timeout(SHARED_DEADLINE, cluster.peek(&key))
        .await
        .unwrap_or_else(|_| Err("no answer in time".to_string()));
    let mut engine = engine.borrow_mut();
    let lifetime = engine.settings().whitelist_lifetime.as_secs();
    let (view, source) = match &peek {
        Ok(p) => (
            Some(view_of(p, engine.now(), lifetime)),
            "redis".to_string(),
        ),
        Err(e) => (None, format!("local (redis unreachable: {e})")),
    };
    let x = match started {
        Explaining::Table(q, list) => engine.explain_table(&q, list, TableView::Cluster(view)),
        Explaining::Done(mut x) => {
            if let Some(v) = view {
                x.tuple = v.tuple;
                x.auto_whitelisted =
                    engine.settings().auto_whitelist_after > 0 && v.auto_whitelisted;
            }
            x
        }
    };
    let mut out = describe(&x, &engine);
    out.push_str(&dns_lines(found.as_ref(), req.sender));
    let _ = writeln!(out, "source: {source}");
    if let Ok(p) = peek {
        out.push_str(&shared_lines(&p));
    }
    Reply::ok(out)
}

/// What DNS said, and which facts are missing: `dns: off`, or a
/// `dns-client:` and an `spf:` line.
fn dns_lines(found: Option<&Found>, sender: &[u8]) -> String {
    let Some(found) = found else {
        return "dns: off\n".to_string();
    };
    let mut out = String::new();
    let yes = |b: bool| if b { "yes" } else { "no" };
    match &found.client {
        None => out.push_str("dns-client: not asked\n"),
        Some(Outcome {
            facts:
                Some(ClientFacts {
                    allow_listed,
                    block_listed,
                    suspicious_name,
                }),
            ..
        }) => {
            let _ = writeln!(
                out,
                "dns-client: allow-listed={} block-listed={} suspicious-name={}",
                yes(*allow_listed),
                yes(*block_listed),
                yes(*suspicious_name)
            );
        }
        Some(o) => {
            let _ = writeln!(
                out,
                "dns-client: unknown ({} timeout(s), {} error(s)): decided as without it",
                o.timeouts, o.errors
            );
        }
    }
    let null_sender = matches!(sender.trim_ascii(), b"" | b"<>");
    match &found.spf {
        None => out.push_str("spf: not asked\n"),
        Some(Outcome {
            facts: Some(SpfFacts { result, domain }),
            ..
        }) => {
            let _ = writeln!(out, "spf: {} domain={domain}", result.as_str());
        }
        Some(_) if null_sender => out.push_str(
            "spf: unknown (null sender: the daemon checks the HELO name, which check has not)\n",
        ),
        Some(o) => {
            let _ = writeln!(
                out,
                "spf: unknown ({} timeout(s), {} error(s)): decided as without it",
                o.timeouts, o.errors
            );
        }
    }
    out
}

/// Redis' record as the engine's tuple view. A whitelisted tuple's last
/// use is its expiry less the lifetime (each pass pushes it on).
fn view_of(p: &Peek, now: u64, lifetime: u64) -> SharedView {
    let tuple = match p.tuple {
        Some((SharedTuple::Pending { first_seen }, _)) => Some(TupleInfo {
            first_seen,
            last: first_seen,
            whitelisted: false,
        }),
        Some((SharedTuple::Whitelisted { first_seen }, exp)) => Some(TupleInfo {
            first_seen,
            last: exp
                .map_or(now, |e| e.saturating_sub(lifetime))
                .clamp(first_seen.min(now), now),
            whitelisted: true,
        }),
        Some((SharedTuple::Forgotten, _)) | None => None,
    };
    let auto_whitelisted = p.network.is_some_and(|((_, _, last_use), _)| {
        last_use != 0 && now.saturating_sub(u64::from(last_use)) < lifetime
    });
    SharedView {
        tuple,
        auto_whitelisted,
    }
}

fn shared_lines(p: &Peek) -> String {
    let expires = |e: Option<u64>| e.map_or_else(|| "never".to_string(), rfc3339);
    let mut out = String::new();
    match p.tuple {
        Some((t, exp)) => {
            let state = match t {
                SharedTuple::Pending { first_seen } => {
                    format!("pending first-seen={}", rfc3339(first_seen))
                }
                SharedTuple::Whitelisted { first_seen } => {
                    format!("whitelisted first-seen={}", rfc3339(first_seen))
                }
                SharedTuple::Forgotten => "forgotten".to_string(),
            };
            let _ = writeln!(out, "redis-tuple: {state} expires={}", expires(exp));
        }
        None => out.push_str("redis-tuple: none\n"),
    }
    match p.network {
        Some(((passes, _, last_use), exp)) => {
            let _ = writeln!(
                out,
                "redis-network: passes={passes} whitelisted={} expires={}",
                if last_use == 0 { "no" } else { "yes" },
                expires(exp)
            );
        }
        None => out.push_str("redis-network: none\n"),
    }
    out
}
