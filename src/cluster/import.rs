//! `greymilter import` into Redis: entries already keyed with the
//! cluster's secret, written under the decision script's keys and value
//! forms (`script.lua`), merged one key per script call so that a
//! tuple a node decided meanwhile is never made worse: a whitelisted
//! tuple stays whitelisted, a tuple an administrator forgot (`x`) is left
//! alone, one tuple keeps its earliest first sighting and latest use.

use std::time::Duration;

use futures_util::future::try_join_all;
use redis::aio::ConnectionLike;
use redis::{ServerErrorKind, Value};

use super::client::Cluster;
use super::script::keys;
use super::slot::cmd_slot;
use crate::greylist::awl::AwlRecord;
use crate::greylist::key::{NetKey, TupleKey};
use crate::greylist::table::Times;

/// The bound of one batch (a pipeline of script calls).
pub const BATCH_DEADLINE: Duration = Duration::from_secs(10);

const MERGE: &str = r"
-- KEYS[1]: a tuple key (ARGV[1] 'w' or 'p') or a network key ('n').
-- Tuples: ARGV[2] first_seen, ARGV[3] last, ARGV[4] retry_window, ARGV[5] lifetime.
-- Networks: ARGV[2] passes, ARGV[3] last_counted, ARGV[4] last_use, ARGV[5] lifetime.
-- Returns 1 stored anew, 0 merged with what Redis held, 2 left alone (forgotten).
local kind = ARGV[1]
local a, b, c = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local life = tonumber(ARGV[5])
local v = redis.pcall('GET', KEYS[1])
if type(v) == 'table' then v = false end
if kind == 'n' then
  local known = false
  if v then
    local p, lc, lu = string.match(v, '^(%d+),(%d+),(%d+)$')
    if p then
      a = math.max(a, tonumber(p)); b = math.max(b, tonumber(lc)); c = math.max(c, tonumber(lu))
      known = true
    end
  end
  local since = c ~= 0 and c or b
  redis.call('SET', KEYS[1], string.format('%d,%d,%d', a, b, c), 'EXAT', since + life)
  if known then return 0 end
  return 1
end
if v == 'x' then return 2 end
local t = v and tonumber(v) or nil
if t == 0 or (t and t ~= math.floor(t)) then t = nil end
if kind == 'w' then
  if t and t < 0 then
    redis.call('SET', KEYS[1], string.format('%d', -math.min(-t, a)), 'KEEPTTL')
    redis.call('EXPIREAT', KEYS[1], b + life, 'GT')
    return 0
  end
  local first = a
  if t then first = math.min(t, a) end
  redis.call('SET', KEYS[1], string.format('%d', -first), 'EXAT', b + life)
  if t then return 0 end
  return 1
end
if t then
  if t > a then redis.call('SET', KEYS[1], string.format('%d', a), 'EXAT', a + c) end
  return 0
end
redis.call('SET', KEYS[1], string.format('%d', a), 'EXAT', a + c)
return 1
";

/// One keyed entry to merge into Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOp {
    White(TupleKey, Times),
    Pending(TupleKey, Times),
    Network(NetKey, AwlRecord),
}

/// What a batch changed in Redis.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RedisImported {
    pub new_white: u64,
    pub new_pending: u64,
    pub new_networks: u64,
    pub known: u64,
    /// Tuples an administrator forgot (tombstones), left alone.
    pub forgotten: u64,
}

/// A call of the merge script: `EVALSHA` with its hash or `EVAL` with
/// its source (`script`).
fn merge_call(
    name: &str,
    script: &str,
    op: &ImportOp,
    retry_window: u32,
    lifetime: u32,
) -> redis::Cmd {
    let (key, kind, x, y, z) = match *op {
        ImportOp::White(k, t) => (keys(&k).0, "w", t.first_seen, t.last, 0),
        ImportOp::Pending(k, t) => (keys(&k).0, "p", t.first_seen, t.last, retry_window),
        ImportOp::Network(n, r) => (
            keys(&TupleKey([n.as_u64(), 0])).1,
            "n",
            r.passes,
            r.last_counted,
            r.last_use,
        ),
    };
    let mut cmd = redis::cmd(name);
    cmd.arg(script)
        .arg(1)
        .arg(key)
        .arg(kind)
        .arg(x)
        .arg(y)
        .arg(z)
        .arg(lifetime);
    cmd
}

/// An answer that asks for the call again, alone: its slot moved
/// (`MOVED`, `ASK`; the routing connection follows them) or the node
/// lost the script (`NOSCRIPT`, after a restart between the load and the
/// call).
fn again(answer: &Value) -> bool {
    matches!(answer, Value::ServerError(e) if matches!(
        e.kind(),
        Some(ServerErrorKind::Moved | ServerErrorKind::Ask | ServerErrorKind::NoScript)
    ))
}

impl Cluster {
    /// Merges a batch; `retry_window` and `lifetime` in seconds (the
    /// expiries the decision script would give). One pipeline per primary
    /// (one for a single Redis), sent to all at once, each loading the
    /// script first: a script loaded on one primary is unknown to the
    /// others.
    pub async fn import(
        &self,
        ops: &[ImportOp],
        retry_window: u32,
        lifetime: u32,
    ) -> Result<RedisImported, String> {
        let call = async {
            let mut conn = self.admin_connection().await?;
            let sha = redis::Script::new(MERGE).get_hash().to_string();
            let calls: Vec<redis::Cmd> = ops
                .iter()
                .map(|op| merge_call("EVALSHA", &sha, op, retry_window, lifetime))
                .collect();
            let slots: Vec<Option<u16>> = calls.iter().map(cmd_slot).collect();
            let sends = conn
                .by_primary(&slots)
                .await?
                .into_iter()
                .map(|(mut node, which)| {
                    let mut pipe = redis::pipe();
                    pipe.cmd("SCRIPT").arg("LOAD").arg(MERGE);
                    for &i in &which {
                        if let Some(c) = calls.get(i) {
                            pipe.add_command(c.clone());
                        }
                    }
                    async move {
                        let answers = node
                            .req_packed_commands(&pipe, 1, which.len())
                            .await
                            .map_err(|e| format!("EVALSHA: {e}"))?;
                        if answers.len() != which.len() {
                            return Err(format!(
                                "{} answers to {} script calls",
                                answers.len(),
                                which.len()
                            ));
                        }
                        Ok((which, answers))
                    }
                });
            let mut answers = vec![Value::Nil; ops.len()];
            for (which, got) in try_join_all(sends).await? {
                for (i, answer) in which.into_iter().zip(got) {
                    if let Some(slot) = answers.get_mut(i) {
                        *slot = answer;
                    }
                }
            }
            for (op, answer) in ops.iter().zip(answers.iter_mut()) {
                if again(answer) {
                    let alone = merge_call("EVAL", MERGE, op, retry_window, lifetime);
                    *answer = conn
                        .req_packed_command(&alone)
                        .await
                        .map_err(|e| format!("EVAL: {e}"))?;
                }
            }
            let mut done = RedisImported::default();
            for (op, answer) in ops.iter().zip(answers) {
                match (answer, op) {
                    (Value::Int(1), ImportOp::White(..)) => done.new_white += 1,
                    (Value::Int(1), ImportOp::Pending(..)) => done.new_pending += 1,
                    (Value::Int(1), ImportOp::Network(..)) => done.new_networks += 1,
                    (Value::Int(0), _) => done.known += 1,
                    (Value::Int(2), _) => done.forgotten += 1,
                    (Value::ServerError(e), _) => return Err(format!("script call: {e}")),
                    (other, _) => return Err(format!("unexpected script answer {other:?}")),
                }
            }
            Ok(done)
        };
        match tokio::time::timeout(BATCH_DEADLINE, call).await {
            Ok(r) => r.map_err(|e| format!("redis import: {e}")),
            Err(_) => Err(format!(
                "redis import: no answer within {} s",
                BATCH_DEADLINE.as_secs()
            )),
        }
    }
}
