//! An administrator's commands on the shared state (`greymilter check`,
//! `allow`, `forget`, `flush --pending` at a cluster node).
//!
//! * A forgotten or flushed tuple becomes a tombstone (`x`, see
//!   `script.lua`) rather than vanishing: another node still holding the
//!   tuple would otherwise hand it back as its hint on its next question.
//! * Network and sender-domain allowances live in one sorted set
//!   ([`ALLOWS_KEY`], member `network CIDR` / `sender-domain DOMAIN`, score
//!   = until); every change bumps [`EPOCH_KEY`], which each node polls
//!   ([`Cluster::epoch`]) to reload the allowances and stop trusting its
//!   cache of whitelisted tuples (so a `forget` is seen everywhere).
//! * `flush --pending` and `forget network=` walk the keys with SCAN in
//!   bounded batches under a time budget rather than keeping an index:
//!   an index would cost every decision a write and grow with keys that
//!   expire by themselves, for a command run a few times a year. Each batch
//!   is checked and rewritten by one script, so a tuple that passes
//!   meanwhile is never flushed. On a Redis Cluster the walk visits every
//!   primary in turn, and a batch is rewritten one slot at a time (a
//!   script's keys must share a slot).
//!
//! Every call is bounded by the cluster timeout (at least [`MIN_CALL`]:
//! the decision timeout is tuned for mail, a command can wait longer), a
//! walk by its budget.

use std::cell::Cell;
use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;

use super::conn::Conn;
use redis::Value;

use super::client::Cluster;
use super::script::keys;
use super::slot::key_slot;
use crate::greylist::key::TupleKey;

/// The allowances; `{admin}` keeps it and the epoch in one cluster slot.
pub const ALLOWS_KEY: &str = "gm{admin}allows";
/// Bumped by every change other nodes must notice.
pub const EPOCH_KEY: &str = "gm{admin}epoch";
/// The least time one administrative call is given.
pub const MIN_CALL: Duration = Duration::from_secs(1);
/// Keys one SCAN step asks for (and one sweep script rewrites at most).
const SCAN_BATCH: usize = 500;

const SWEEP: &str = r"
-- KEYS: tuple keys. ARGV[1] 'p': pending tuples keep their expiry;
-- 'a': every tuple, tombstone until ARGV[2]. Returns how many were rewritten.
local n = 0
for _, k in ipairs(KEYS) do
  local v = redis.pcall('GET', k)
  local t = type(v) == 'string' and tonumber(v) or nil
  if t and t ~= 0 then
    if ARGV[1] == 'a' then
      redis.call('SET', k, 'x', 'EXAT', ARGV[2]); n = n + 1
    elseif t > 0 then
      redis.call('SET', k, 'x', 'KEEPTTL'); n = n + 1
    end
  end
end
return n
";

const ALLOW: &str = r"
-- KEYS[1] allowances, KEYS[2] epoch. ARGV: now, until, member, max.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[3])
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return -1
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
return redis.call('INCR', KEYS[2])
";

/// A tuple as Redis holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedTuple {
    Pending { first_seen: u64 },
    Whitelisted { first_seen: u64 },
    Forgotten,
}

/// What `check` reads: the tuple and its client network's auto-whitelist
/// record, each with its absolute expiry (unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Peek {
    pub tuple: Option<(SharedTuple, Option<u64>)>,
    /// (passes, last counted, last use; 0 = not whitelisted yet), expiry.
    pub network: Option<((u32, u32, u32), Option<u64>)>,
}

/// A walk's bounds, and whether its rewrites must go one slot at a time.
struct Walk {
    started: Instant,
    budget: Duration,
    sharded: bool,
}

/// How far a walk got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub tuples: u64,
    /// False when the budget ran out before the SCAN ended.
    pub complete: bool,
}

fn context(what: &str) -> impl Fn(redis::RedisError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn expiry(v: i64) -> Option<u64> {
    u64::try_from(v).ok()
}

fn parse_tuple(v: &Option<String>) -> Option<SharedTuple> {
    let v = v.as_deref()?;
    if v == "x" {
        return Some(SharedTuple::Forgotten);
    }
    let t: i64 = v.parse().ok()?;
    let first_seen = t.unsigned_abs();
    match t {
        0 => None,
        t if t > 0 => Some(SharedTuple::Pending { first_seen }),
        _ => Some(SharedTuple::Whitelisted { first_seen }),
    }
}

fn parse_network(v: &Option<String>) -> Option<(u32, u32, u32)> {
    let mut it = v.as_deref()?.split(',').map(|p| p.parse::<u32>().ok());
    let r = (it.next()??, it.next()??, it.next()??);
    it.next().is_none().then_some(r)
}

/// The net key of a tuple key name, if it has our shape.
fn net_of(key: &str) -> Option<u64> {
    let rest = key.strip_prefix("gm{")?;
    let (net, tuple) = rest.split_once("}t")?;
    let hex = |s: &str| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !(hex(net) && hex(tuple)) {
        return None;
    }
    u64::from_str_radix(net, 16).ok()
}

impl Cluster {
    async fn bounded<T>(
        &self,
        what: &str,
        f: impl AsyncFnOnce(Conn) -> Result<T, String>,
    ) -> Result<T, String> {
        self.bounded_at(None, what, f).await
    }

    /// As [`Self::bounded`], at `node` (one primary of a Redis Cluster)
    /// rather than wherever the key leads.
    async fn bounded_at<T>(
        &self,
        node: Option<&Conn>,
        what: &str,
        f: impl AsyncFnOnce(Conn) -> Result<T, String>,
    ) -> Result<T, String> {
        let call = async {
            let conn = self.admin_connection().await?;
            f(node.cloned().unwrap_or(conn)).await
        };
        let bound = self.timeout().max(MIN_CALL);
        match tokio::time::timeout(bound, call).await {
            Ok(r) => r.map_err(|e| format!("{what}: {e}")),
            Err(_) => Err(format!("{what}: no answer within {} ms", bound.as_millis())),
        }
    }

    /// Reads a tuple and its network record, changing nothing (GET and
    /// EXPIRETIME leave expiry and access order alone).
    pub async fn peek(&self, key: &TupleKey) -> Result<Peek, String> {
        let (t, n) = keys(key);
        self.bounded("redis read", async |mut conn| {
            let (tv, te, nv, ne): (Option<String>, i64, Option<String>, i64) = redis::pipe()
                .cmd("GET")
                .arg(&t)
                .cmd("EXPIRETIME")
                .arg(&t)
                .cmd("GET")
                .arg(&n)
                .cmd("EXPIRETIME")
                .arg(&n)
                .query_async(&mut conn)
                .await
                .map_err(context("GET"))?;
            Ok(Peek {
                tuple: parse_tuple(&tv).map(|s| (s, expiry(te))),
                network: parse_network(&nv).map(|r| (r, expiry(ne))),
            })
        })
        .await
    }

    /// Whitelists a tuple from `now` until `until`.
    pub async fn allow_tuple(&self, key: &TupleKey, now: u64, until: u64) -> Result<(), String> {
        let (t, _) = keys(key);
        self.bounded("redis allow", async |mut conn| {
            let () = redis::cmd("SET")
                .arg(&t)
                .arg(-i64::try_from(now.max(1)).unwrap_or(i64::MAX))
                .arg("EXAT")
                .arg(until)
                .query_async(&mut conn)
                .await
                .map_err(context("SET"))?;
            Ok(())
        })
        .await
    }

    /// Forgets a tuple (a tombstone until `until`, when any node's memory
    /// of it has expired too). True when Redis held it. The tombstone is
    /// written before the epoch is bumped (two calls: on a Redis Cluster
    /// they live in different slots), so a node that sees the new epoch
    /// finds the tombstone.
    pub async fn forget_tuple(&self, key: &TupleKey, until: u64) -> Result<bool, String> {
        let (t, _) = keys(key);
        let old = self
            .bounded("redis forget", async |mut conn| {
                redis::cmd("SET")
                    .arg(&t)
                    .arg("x")
                    .arg("EXAT")
                    .arg(until)
                    .arg("GET")
                    .query_async::<Option<String>>(&mut conn)
                    .await
                    .map_err(context("SET"))
            })
            .await?;
        self.bump().await?;
        Ok(matches!(
            parse_tuple(&old),
            Some(SharedTuple::Pending { .. } | SharedTuple::Whitelisted { .. })
        ))
    }

    /// Every pending tuple becomes a tombstone (whitelisted ones stay).
    /// `progress` counts the tuples as batches are done.
    pub async fn flush_pending(
        &self,
        budget: Duration,
        progress: &Cell<u64>,
    ) -> Result<Swept, String> {
        self.sweep(budget, |_| true, &["p"], progress).await
    }

    /// Forgets the tuples and auto-whitelist records of the client
    /// networks `nets` (net keys); tombstones until `until`.
    pub async fn forget_networks(
        &self,
        nets: &HashSet<u64>,
        until: u64,
        budget: Duration,
        progress: &Cell<u64>,
    ) -> Result<Swept, String> {
        let started = Instant::now();
        let until = until.to_string();
        let mut swept = self
            .sweep(budget, |net| nets.contains(&net), &["a", &until], progress)
            .await?;
        let names: Vec<String> = nets.iter().map(|n| format!("gm{{{n:016x}}}n")).collect();
        for chunk in names.chunks(SCAN_BATCH) {
            if started.elapsed() > budget {
                swept.complete = false;
                break;
            }
            self.bounded("redis forget network", async |conn| {
                // Each network key has its own slot on a Redis Cluster:
                // one UNLINK each, all sent at once.
                let per_call = if conn.sharded() { 1 } else { chunk.len() };
                let calls = chunk.chunks(per_call).map(|keys| {
                    let mut conn = conn.clone();
                    async move {
                        redis::cmd("UNLINK")
                            .arg(keys)
                            .query_async::<i64>(&mut conn)
                            .await
                            .map_err(context("UNLINK"))
                    }
                });
                try_join_all(calls).await?;
                Ok(())
            })
            .await?;
        }
        self.bump().await?;
        Ok(swept)
    }

    async fn sweep(
        &self,
        budget: Duration,
        wanted: impl Fn(u64) -> bool,
        argv: &[&str],
        progress: &Cell<u64>,
    ) -> Result<Swept, String> {
        let started = Instant::now();
        let (sharded, nodes) = self
            .bounded("redis nodes", async |conn| {
                Ok((conn.sharded(), conn.walk_targets().await?))
            })
            .await?;
        let walk = Walk {
            started,
            budget,
            sharded,
        };
        let mut tuples = 0u64;
        for node in &nodes {
            let complete = self
                .sweep_node(node, &walk, &wanted, argv, progress, &mut tuples)
                .await?;
            if !complete {
                return Ok(Swept {
                    tuples,
                    complete: false,
                });
            }
        }
        Ok(Swept {
            tuples,
            complete: true,
        })
    }

    /// Walks one node's keys; false when the budget ran out first.
    async fn sweep_node(
        &self,
        node: &Conn,
        walk: &Walk,
        wanted: &impl Fn(u64) -> bool,
        argv: &[&str],
        progress: &Cell<u64>,
        tuples: &mut u64,
    ) -> Result<bool, String> {
        let mut cursor = "0".to_string();
        loop {
            if walk.started.elapsed() > walk.budget {
                return Ok(false);
            }
            let (next, batch): (String, Vec<String>) = self
                .bounded_at(Some(node), "redis scan", async |mut conn| {
                    redis::cmd("SCAN")
                        .arg(&cursor)
                        .arg("MATCH")
                        .arg("gm{*}t*")
                        .arg("COUNT")
                        .arg(SCAN_BATCH)
                        .query_async(&mut conn)
                        .await
                        .map_err(context("SCAN"))
                })
                .await?;
            let mut batch: Vec<(u16, &String)> = batch
                .iter()
                .filter(|k| net_of(k).is_some_and(wanted))
                .map(|k| (key_slot(k.as_bytes()), k))
                .collect();
            let groups: Vec<&[(u16, &String)]> = if walk.sharded {
                batch.sort_unstable();
                batch.chunk_by(|a, b| a.0 == b.0).collect()
            } else if batch.is_empty() {
                Vec::new()
            } else {
                vec![&batch[..]]
            };
            if !groups.is_empty() {
                // One script per slot, all sent at once (pipelined on each
                // primary's connection), under one call's bound.
                *tuples += self
                    .bounded("redis sweep", async |conn| {
                        let calls = groups.iter().map(|group| {
                            let mut conn = conn.clone();
                            let keys: Vec<&String> = group.iter().map(|(_, k)| *k).collect();
                            async move {
                                redis::cmd("EVAL")
                                    .arg(SWEEP)
                                    .arg(keys.len())
                                    .arg(&keys)
                                    .arg(argv)
                                    .query_async::<u64>(&mut conn)
                                    .await
                                    .map_err(context("EVAL"))
                            }
                        });
                        Ok(try_join_all(calls).await?.iter().sum::<u64>())
                    })
                    .await?;
                progress.set(*tuples);
            }
            if next == "0" {
                return Ok(true);
            }
            cursor = next;
        }
    }

    async fn bump(&self) -> Result<(), String> {
        self.bounded("redis epoch", async |mut conn| {
            let _: i64 = redis::cmd("INCR")
                .arg(EPOCH_KEY)
                .query_async(&mut conn)
                .await
                .map_err(context("INCR"))?;
            Ok(())
        })
        .await
    }

    /// Adds or extends a shared allowance (`member`: `network CIDR` or
    /// `sender-domain DOMAIN`). Err when `max` are stored already.
    pub async fn allow_shared(
        &self,
        member: &str,
        now: u64,
        until: u64,
        max: usize,
    ) -> Result<(), String> {
        let n: i64 = self
            .bounded("redis allow", async |mut conn| {
                redis::cmd("EVAL")
                    .arg(ALLOW)
                    .arg(2)
                    .arg(ALLOWS_KEY)
                    .arg(EPOCH_KEY)
                    .arg(now)
                    .arg(until)
                    .arg(member)
                    .arg(max)
                    .query_async(&mut conn)
                    .await
                    .map_err(context("EVAL"))
            })
            .await?;
        if n < 0 {
            return Err(format!("redis holds {max} allowances already"));
        }
        Ok(())
    }

    /// Removes a shared allowance; true if there was one.
    pub async fn forget_shared(&self, member: &str) -> Result<bool, String> {
        self.bounded("redis forget", async |mut conn| {
            let (removed, _): (i64, i64) = redis::pipe()
                .atomic()
                .cmd("ZREM")
                .arg(ALLOWS_KEY)
                .arg(member)
                .cmd("INCR")
                .arg(EPOCH_KEY)
                .query_async(&mut conn)
                .await
                .map_err(context("ZREM"))?;
            Ok(removed > 0)
        })
        .await
    }

    /// The epoch (`None`: no administrator ever changed the shared state).
    pub async fn epoch(&self) -> Result<Option<i64>, String> {
        self.bounded("redis epoch", async |mut conn| {
            redis::cmd("GET")
                .arg(EPOCH_KEY)
                .query_async(&mut conn)
                .await
                .map_err(context("GET"))
        })
        .await
    }

    /// The unexpired shared allowances, at most `max`: (member, until).
    pub async fn allowances(&self, now: u64, max: usize) -> Result<Vec<(String, u64)>, String> {
        let v: Value = self
            .bounded("redis allowances", async |mut conn| {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(ALLOWS_KEY)
                    .arg(format!("({now}"))
                    .arg("+inf")
                    .arg("WITHSCORES")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(max)
                    .query_async(&mut conn)
                    .await
                    .map_err(context("ZRANGEBYSCORE"))
            })
            .await?;
        decode_scored(&v).ok_or_else(|| format!("redis allowances: unexpected reply {v:.200?}"))
    }
}

/// `[member, score, …]` (RESP2) or `[[member, score], …]` (RESP3).
fn decode_scored(v: &Value) -> Option<Vec<(String, u64)>> {
    let Value::Array(items) = v else {
        return None;
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Double(d) => Some(d.to_string()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    };
    let score = |v: &Value| text(v)?.parse::<f64>().ok().map(|f| f as u64);
    let mut out = Vec::new();
    if items.iter().all(|i| matches!(i, Value::Array(_))) {
        for i in items {
            let Value::Array(pair) = i else { return None };
            let [m, s] = pair.as_slice() else { return None };
            out.push((text(m)?, score(s)?));
        }
    } else {
        for pair in items.chunks(2) {
            let [m, s] = pair else { return None };
            out.push((text(m)?, score(s)?));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_values() {
        assert_eq!(
            net_of("gm{0123456789abcdef}t0000000000000001"),
            Some(0x0123_4567_89ab_cdef)
        );
        assert_eq!(net_of("gm{admin}allows"), None);
        assert_eq!(net_of("gm{0123456789abcdef}n"), None);
        assert_eq!(
            parse_tuple(&Some("-5".into())),
            Some(SharedTuple::Whitelisted { first_seen: 5 })
        );
        assert_eq!(parse_tuple(&Some("x".into())), Some(SharedTuple::Forgotten));
        assert_eq!(parse_tuple(&Some("junk".into())), None);
        assert_eq!(parse_network(&Some("3,10,12".into())), Some((3, 10, 12)));
        assert_eq!(parse_network(&Some("3,10".into())), None);
        let flat = Value::Array(vec![
            Value::BulkString(b"network 192.0.2.0/24".to_vec()),
            Value::BulkString(b"1700000000".to_vec()),
        ]);
        assert_eq!(
            decode_scored(&flat),
            Some(vec![("network 192.0.2.0/24".into(), 1_700_000_000)])
        );
        assert_eq!(decode_scored(&Value::Nil), None);
    }
}
