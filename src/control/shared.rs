//! The shared half of a control command at a cluster node: Redis is the
//! authority, the local table its cache. An edit is applied to this node
//! at once (as without a cluster), then to Redis within the cluster
//! timeout (a walk within [`WALK_BUDGET`]); when Redis fails, the answer is
//! an error that says what was applied on this node only. `check` reads
//! Redis (`check.rs`).

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::allows::MAX_ALLOWS;
use super::handle::Reply;
use super::protocol::{Command, Tuple};
use crate::cluster::Cluster;
use crate::cluster::admin::Swept;
use crate::greylist::Engine;
use crate::greylist::date::rfc3339;
use crate::greylist::key::TupleKey;

/// How long `flush --pending` and `forget network=` wait for their walk
/// of Redis' keys before answering (well inside the control socket's
/// deadline); a longer walk goes on in the background and logs its end.
pub const WALK_BUDGET: Duration = Duration::from_secs(3);
/// The bound of a walk in the background (tens of millions of keys).
pub const WALK_LIMIT: Duration = Duration::from_secs(600);

thread_local! {
    /// One walk at a time: repeating the command while one runs must not
    /// pile walks up.
    static WALKING: Cell<bool> = const { Cell::new(false) };
}

/// Clears [`WALKING`] however the walk ends.
struct Walking;

impl Drop for Walking {
    fn drop(&mut self) {
        WALKING.set(false);
    }
}

/// A walk of Redis' keys.
enum Walk {
    Flush,
    Forget {
        nets: HashSet<u64>,
        member: String,
        until: u64,
    },
}
/// The whole Redis part of one command (the socket's deadline is 5 s).
pub const SHARED_DEADLINE: Duration = Duration::from_secs(4);

/// What to do in Redis, computed from the command and the engine before
/// any waiting (the engine is not borrowed across an `.await`).
#[derive(Debug)]
pub enum Plan {
    Check,
    AllowTuple {
        key: TupleKey,
        now: u64,
        until: u64,
    },
    AllowShared {
        member: String,
        now: u64,
        until: u64,
    },
    ForgetTuple {
        key: TupleKey,
        until: u64,
    },
    ForgetNetwork {
        nets: HashSet<u64>,
        member: String,
        until: u64,
    },
    ForgetShared {
        member: String,
    },
    FlushPending,
}

/// The Redis side of `command`; `None` for commands that have none.
pub fn plan(command: &Command, engine: &Engine) -> Option<Result<Plan, String>> {
    let now = engine.now();
    let s = engine.settings();
    let lifetime = s.whitelist_lifetime.as_secs();
    // A tombstone outlives every node's memory of the tuple.
    let tomb = now.saturating_add(lifetime.max(s.retry_window.as_secs()));
    let key = |t: &Tuple| engine.tuple_key_of(t.client, t.from.as_bytes(), t.to.as_bytes());
    let plan = match command {
        Command::Check { .. } => Plan::Check,
        Command::AllowTuple { tuple, duration } => Plan::AllowTuple {
            key: key(tuple),
            now,
            until: now.saturating_add(duration.map_or(lifetime, |d| d.as_secs())),
        },
        Command::AllowNetwork { net, duration } => Plan::AllowShared {
            member: format!("network {net}"),
            now,
            until: now.saturating_add(duration.as_secs()),
        },
        Command::AllowSenderDomain { domain, duration } => Plan::AllowShared {
            member: format!("sender-domain {domain}"),
            now,
            until: now.saturating_add(duration.as_secs()),
        },
        Command::ForgetTuple(t) => Plan::ForgetTuple {
            key: key(t),
            until: tomb,
        },
        Command::ForgetNetwork(net) => match engine.net_keys_of(*net) {
            Ok(nets) => Plan::ForgetNetwork {
                nets,
                member: format!("network {net}"),
                until: tomb,
            },
            // Too wide to walk: still undo what `allow network=` did.
            Err(_) => Plan::ForgetShared {
                member: format!("network {net}"),
            },
        },
        Command::ForgetSenderDomain(d) => Plan::ForgetShared {
            member: format!("sender-domain {d}"),
        },
        Command::FlushPending => Plan::FlushPending,
        Command::Stats | Command::Reload | Command::AdoptSettings => return None,
    };
    Some(Ok(plan))
}

fn walked(what: &str, s: Swept) -> String {
    if s.complete {
        format!("{} {what}", s.tuples)
    } else {
        format!(
            "{} {what}; the key walk stopped after {} s, run the command again",
            s.tuples,
            WALK_LIMIT.as_secs()
        )
    }
}

async fn run_walk(cluster: &Cluster, walk: Walk, progress: &Cell<u64>) -> Result<String, String> {
    match walk {
        Walk::Flush => Ok(format!(
            "{} flushed",
            walked(
                "pending tuple(s)",
                cluster.flush_pending(WALK_LIMIT, progress).await?
            )
        )),
        Walk::Forget {
            nets,
            member,
            until,
        } => {
            let swept = cluster
                .forget_networks(&nets, until, WALK_LIMIT, progress)
                .await?;
            let allowance = if cluster.forget_shared(&member).await? {
                "; allowance removed"
            } else {
                ""
            };
            Ok(format!(
                "{} and the auto-whitelist records forgotten{allowance}",
                walked("tuple(s)", swept)
            ))
        }
    }
}

/// Starts a walk in a task of its own and waits for it up to
/// [`WALK_BUDGET`]; past that the answer says how far it got.
async fn walk(cluster: &Cluster, walk: Walk) -> Result<String, String> {
    if WALKING.get() {
        return Err(
            "a key walk started earlier is still running (its end is logged); try again later"
                .to_string(),
        );
    }
    WALKING.set(true);
    let guard = Walking;
    let progress = Rc::new(Cell::new(0));
    let mut task = tokio::task::spawn_local({
        let (cluster, progress) = (cluster.clone(), Rc::clone(&progress));
        async move {
            let _guard = guard;
            let started = Instant::now();
            let result = run_walk(&cluster, walk, &progress).await;
            let ms = started.elapsed().as_millis() as u64;
            match &result {
                Ok(text) => tracing::info!(ms, "control: redis key walk finished: {text}"),
                Err(e) => tracing::warn!(ms, "control: redis key walk failed: {e}"),
            }
            result
        }
    });
    match tokio::time::timeout(WALK_BUDGET, &mut task).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(format!("key walk: {e}")),
        Err(_) => Ok(format!(
            "{} tuple(s) so far; the key walk goes on in the background and logs its end",
            progress.get()
        )),
    }
}

/// Runs an edit's plan; the text says what Redis did.
async fn apply(cluster: &Cluster, plan: Plan) -> Result<String, String> {
    match plan {
        Plan::Check => Err("not an edit".to_string()),
        Plan::AllowTuple { key, now, until } => {
            cluster.allow_tuple(&key, now, until).await?;
            Ok(format!("tuple whitelisted until {}", rfc3339(until)))
        }
        Plan::AllowShared { member, now, until } => {
            cluster
                .allow_shared(&member, now, until, MAX_ALLOWS)
                .await?;
            Ok(format!("{member} allowed until {}", rfc3339(until)))
        }
        Plan::ForgetTuple { key, until } => Ok(if cluster.forget_tuple(&key, until).await? {
            "tuple forgotten".to_string()
        } else {
            "no such tuple".to_string()
        }),
        Plan::ForgetNetwork {
            nets,
            member,
            until,
        } => {
            walk(
                cluster,
                Walk::Forget {
                    nets,
                    member,
                    until,
                },
            )
            .await
        }
        Plan::ForgetShared { member } => Ok(if cluster.forget_shared(&member).await? {
            "allowance removed".to_string()
        } else {
            "no such allowance".to_string()
        }),
        Plan::FlushPending => walk(cluster, Walk::Flush).await,
    }
}

/// An edit at a cluster node, `local` being this node's answer: Redis'
/// part, the combined answer, and the log line of the shared part.
pub async fn edit(
    cluster: &Cluster,
    plan: Result<Plan, String>,
    local: Reply,
    line: &str,
    uid: u32,
) -> Reply {
    if !local.ok {
        return local;
    }
    let result = match plan {
        Ok(p) => tokio::time::timeout(SHARED_DEADLINE, apply(cluster, p))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "redis did not finish within {} s; it may be partly applied, run the \
                     command again",
                    SHARED_DEADLINE.as_secs()
                ))
            }),
        Err(e) => Err(e),
    };
    match result {
        Ok(text) => {
            tracing::info!(uid, "control: {line}: redis: {text}");
            let mut out = local.text;
            if !out.ends_with('\n') {
                out.push('\n');
            }
            let _ = writeln!(out, "redis: {text}");
            Reply::ok(out)
        }
        Err(e) => {
            tracing::warn!(
                uid,
                "control: {line}: redis failed, applied on this node only: {e}"
            );
            Reply::error(format!(
                "applied on this node only ({}); not in the shared state: {e}",
                local.text.trim_end().replace('\n', "; ")
            ))
        }
    }
}
