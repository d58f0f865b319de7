//! A sharded Redis Cluster: `redis+cluster://` URLs.
//!
//! `redis+cluster://[user:password@]IP:PORT[,IP:PORT…][/0]`
//! (`rediss+cluster://`: TLS to every node, whose certificate must name
//! its IP address): the seeds (IP literals only, so nothing is ever
//! resolved) are asked `CLUSTER SLOTS`, and each command goes to the
//! primary serving the slot of its first key (CRC16 of the key, or of its
//! hash tag, modulo 16384). A Redis Cluster has database 0 only.
//!
//! Every key one script or transaction touches shares a hash tag: a tuple
//! and its network (`gm{NET}…`), the allowances and the epoch
//! (`gm{admin}…`); the start-up keys (`gm:fingerprint`, `gm:schema`,
//! `gm:settings`) are each read alone. So the key format is the one of a
//! single Redis, and one Redis can become a cluster by moving its keys.
//!
//! `MOVED` reloads the slot map and the command goes where it was sent;
//! `ASK` sends it once to the importing node after `ASKING`. An I/O error
//! marks the map stale, and the next command reloads it first (at most
//! once per [`REFRESH_EVERY`]), so a failover to a replica is followed.
//! `CLUSTERDOWN` and `TRYAGAIN` are failures like any: the caller decides
//! locally. One connection per primary, multiplexed, on the caller's
//! thread: nothing here starts a task or a thread.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::future::select_ok;
use redis::aio::ConnectionLike;
use redis::{
    Cmd, ConnectionAddr, ErrorKind, IntoConnectionInfo, Pipeline, RedisConnectionInfo, RedisError,
    RedisFuture, RedisResult, ServerErrorKind, Value,
};
use tracing::{info, warn};

use super::link::{self, Link};
use super::sentinel;
use super::slot::{SLOTS, cmd_slot, pipeline_slot};
use super::tls::TlsSetup;
use crate::ratelimit::LogLimiter;

pub const SCHEME: &str = "redis+cluster://";
/// The same with TLS to every node.
pub const TLS_SCHEME: &str = "rediss+cluster://";

/// Redirects one command follows before giving up (a slot moving twice).
const MAX_REDIRECTS: usize = 3;
/// Least time between two reloads of the slot map after I/O errors.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// Connections kept at most (Redis Cluster's own limit is about 1,000
/// nodes).
const MAX_NODES: usize = 1024;
/// The slot map's warnings, at most one a minute.
static MAP_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(60));
/// After a reload, MOVED replies do not trigger another for this long.
const MOVED_QUIET: Duration = Duration::from_millis(100);
/// Bound of one node's `CLUSTER SLOTS` answer.
const ASK_NODE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct ShardSpec {
    pub seeds: Vec<SocketAddr>,
    /// Credentials for every node (database 0).
    pub redis: RedisConnectionInfo,
}

/// Parses a `redis+cluster://` URL (no resolution).
pub fn parse(url: &str) -> Result<ShardSpec, String> {
    let (creds, rest) = sentinel::credentials_and_rest(url, SCHEME, TLS_SCHEME)?;
    let (hosts, db) = match rest.split_once('/') {
        Some((h, d)) => (h, d),
        None => (rest, ""),
    };
    if !(db.is_empty() || db == "0") {
        return Err(format!(
            "{url:?}: a Redis Cluster has database 0 only (…/0 or nothing after the nodes)"
        ));
    }
    Ok(ShardSpec {
        seeds: sentinel::addresses(url, "node", hosts)?,
        redis: sentinel::settings(url, creds, "0")?,
    })
}

struct Map {
    /// (first slot, last slot, primary), sorted.
    ranges: Vec<(u16, u16, SocketAddr)>,
    nodes: HashMap<SocketAddr, Link>,
    stale: bool,
    refreshed: Option<Instant>,
}

/// Connections to the primaries of a Redis Cluster, routed by key slot.
/// Clones share the map and the connections.
#[derive(Clone)]
pub struct Sharded {
    spec: Arc<ShardSpec>,
    tls: Option<TlsSetup>,
    map: Arc<Mutex<Map>>,
}

fn failure(what: &'static str, detail: String) -> RedisError {
    RedisError::from((ErrorKind::Io, what, detail))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `CLUSTER SLOTS` as ranges; the node asked stands for an empty address.
fn parse_slots(v: &Value, asked: SocketAddr) -> Result<Vec<(u16, u16, SocketAddr)>, String> {
    let Value::Array(items) = v else {
        return Err(format!("CLUSTER SLOTS: unexpected reply {v:.200?}"));
    };
    let mut ranges = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(parts) = item else {
            return Err("CLUSTER SLOTS: a range is not an array".to_string());
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(node))) =
            (parts.first(), parts.get(1), parts.get(2))
        else {
            return Err("CLUSTER SLOTS: a range lacks its slots or primary".to_string());
        };
        let (Ok(start), Ok(end)) = (u16::try_from(*start), u16::try_from(*end)) else {
            return Err("CLUSTER SLOTS: a slot out of range".to_string());
        };
        if start > end || end >= SLOTS {
            return Err("CLUSTER SLOTS: a slot out of range".to_string());
        }
        let (Some(host), Some(Value::Int(port))) = (node.first().and_then(text), node.get(1))
        else {
            return Err("CLUSTER SLOTS: a primary lacks its address".to_string());
        };
        let port =
            u16::try_from(*port).map_err(|_| "CLUSTER SLOTS: a port out of range".to_string())?;
        let ip = if host.is_empty() {
            asked.ip()
        } else {
            host.parse::<IpAddr>().map_err(|_| {
                format!(
                    "CLUSTER SLOTS names the host {host:?}, not an address: set \
                     cluster-preferred-endpoint-type ip on the nodes"
                )
            })?
        };
        ranges.push((start, end, SocketAddr::new(ip, port)));
    }
    ranges.sort_unstable();
    Ok(ranges)
}

/// The primary serving `slot`: the ranges are sorted and disjoint, so it
/// is the last one starting at or before the slot, if it reaches it.
fn owner(ranges: &[(u16, u16, SocketAddr)], slot: u16) -> Option<SocketAddr> {
    let i = ranges.partition_point(|r| r.0 <= slot).checked_sub(1)?;
    ranges.get(i).filter(|r| slot <= r.1).map(|r| r.2)
}

fn redirect(e: &RedisError) -> Option<(bool, SocketAddr)> {
    let ask = match e.kind() {
        ErrorKind::Server(ServerErrorKind::Moved) => false,
        ErrorKind::Server(ServerErrorKind::Ask) => true,
        _ => return None,
    };
    let (addr, _) = e.redirect_node()?;
    Some((ask, addr.parse().ok()?))
}

/// A redirect, whether Redis' error came as an error or as a reply (a
/// connection hands server errors over as values).
fn redirect_of(r: &RedisResult<Value>) -> Option<(bool, SocketAddr)> {
    match r {
        Err(e) => redirect(e),
        Ok(Value::ServerError(se)) => redirect(&RedisError::from(se.clone())),
        Ok(_) => None,
    }
}

fn not_served(slot: Option<u16>) -> RedisError {
    RedisError::from((
        ErrorKind::Server(ServerErrorKind::ClusterDown),
        "slot not served",
        format!("no primary serves slot {slot:?}"),
    ))
}

impl Sharded {
    pub fn new(spec: ShardSpec, tls: Option<TlsSetup>) -> Sharded {
        Sharded {
            spec: Arc::new(spec),
            tls,
            map: Arc::new(Mutex::new(Map {
                ranges: Vec::new(),
                nodes: HashMap::new(),
                stale: true,
                refreshed: None,
            })),
        }
    }

    fn map(&self) -> MutexGuard<'_, Map> {
        // One thread: a poisoned lock only means a panic elsewhere, and
        // the map is consistent between statements.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reload the map before the next command (a breaker probe, a failover).
    pub fn mark_stale(&self) {
        self.map().stale = true;
    }

    /// The connection to `addr`, opened (lazily) if new.
    fn node(&self, addr: SocketAddr) -> RedisResult<Link> {
        let mut map = self.map();
        if let Some(c) = map.nodes.get(&addr) {
            return Ok(c.clone());
        }
        // Redirects name the nodes: a Redis naming ever new ones must not
        // grow the table past the primaries (a reload prunes it too).
        if map.nodes.len() >= MAX_NODES {
            let primaries: Vec<SocketAddr> = map.ranges.iter().map(|r| r.2).collect();
            map.nodes.retain(|a, _| primaries.contains(a));
        }
        let info = ConnectionAddr::Tcp(addr.ip().to_string(), addr.port())
            .into_connection_info()?
            .set_redis_settings(self.spec.redis.clone());
        let name = addr.ip().to_string();
        let c = link::open(info, self.tls.as_ref().map(|t| (t, name.as_str())))
            .map_err(|e| failure("redis cluster node", format!("{addr}: {e}")))?;
        map.nodes.insert(addr, c.clone());
        Ok(c)
    }

    /// Asks the known primaries and the seeds, all at once, for the slot
    /// map; the first good answer wins, so a dead or hung node costs
    /// nothing while another answers. The time of the attempt is noted
    /// first: a caller giving up on it (its `timeout`) does not make the
    /// next call try again at once.
    pub async fn refresh(&self) -> RedisResult<()> {
        let mut asked: Vec<SocketAddr> = {
            let mut map = self.map();
            map.refreshed = Some(Instant::now());
            map.ranges.iter().map(|r| r.2).collect()
        };
        asked.extend(self.spec.seeds.iter().copied());
        let mut seen = Vec::with_capacity(asked.len());
        asked.retain(|a| {
            let new = !seen.contains(a);
            seen.push(*a);
            new
        });
        let mut asks = Vec::with_capacity(asked.len());
        for addr in asked {
            let mut c = self.node(addr)?;
            asks.push(Box::pin(async move {
                let mut slots = redis::cmd("CLUSTER");
                slots.arg("SLOTS");
                let v = match tokio::time::timeout(ASK_NODE, slots.query_async::<Value>(&mut c))
                    .await
                {
                    Ok(Ok(v)) => v,
                    Ok(Err(e)) => return Err(format!("{addr}: {e}")),
                    Err(_) => {
                        return Err(format!(
                            "{addr}: no answer within {} ms",
                            ASK_NODE.as_millis()
                        ));
                    }
                };
                match parse_slots(&v, addr) {
                    Ok(ranges) if !ranges.is_empty() => Ok(ranges),
                    Ok(_) => Err(format!("{addr}: no slot assigned yet")),
                    Err(e) => Err(format!("{addr}: {e}")),
                }
            }));
        }
        if asks.is_empty() {
            return Err(failure("redis cluster slot map", "no node to ask".into()));
        }
        match select_ok(asks).await {
            Ok((ranges, _)) => {
                self.install(ranges);
                Ok(())
            }
            // select_ok gives the last error: the others were alike.
            Err(last) => Err(failure("redis cluster slot map", last)),
        }
    }

    fn install(&self, ranges: Vec<(u16, u16, SocketAddr)>) {
        let mut map = self.map();
        let changed = map.ranges != ranges;
        map.nodes.retain(|a, _| ranges.iter().any(|r| r.2 == *a));
        if changed {
            let mut primaries: Vec<SocketAddr> = ranges.iter().map(|r| r.2).collect();
            primaries.sort_unstable();
            primaries.dedup();
            info!(
                "redis cluster: {} slot ranges on {} primaries ({})",
                ranges.len(),
                primaries.len(),
                primaries
                    .iter()
                    .map(SocketAddr::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        map.ranges = ranges;
        map.stale = false;
        map.refreshed = Some(Instant::now());
    }

    /// Where a command for `slot` goes, reloading a stale map first.
    async fn target(&self, slot: Option<u16>) -> RedisResult<SocketAddr> {
        let (empty, due) = {
            let map = self.map();
            let due = map.stale && map.refreshed.is_none_or(|t| t.elapsed() >= REFRESH_EVERY);
            (map.ranges.is_empty(), due)
        };
        if empty || due {
            let r = self.refresh().await;
            if empty {
                r?;
            } else if let Err(e) = r
                && let Some(held) = MAP_LOG.allow()
            {
                warn!("redis cluster: cannot reload the slot map: {e} ({held} more not logged)");
            }
        }
        let map = self.map();
        let found = match slot {
            Some(s) => owner(&map.ranges, s),
            None => map.ranges.first().map(|r| r.2),
        };
        found.ok_or_else(|| not_served(slot))
    }

    /// The commands of a batch grouped by the primary serving each one's
    /// slot (`slots[i]` for command `i`), a stale map reloaded first: one
    /// pipeline per primary, which may mix the slots it serves.
    pub async fn by_primary(&self, slots: &[Option<u16>]) -> RedisResult<Vec<(Link, Vec<usize>)>> {
        let any = self.target(None).await?;
        let mut groups: Vec<(SocketAddr, Vec<usize>)> = Vec::new();
        {
            let map = self.map();
            for (i, slot) in slots.iter().enumerate() {
                let addr = match slot {
                    Some(s) => owner(&map.ranges, *s).ok_or_else(|| not_served(*slot))?,
                    None => any,
                };
                match groups.iter_mut().find(|g| g.0 == addr) {
                    Some(g) => g.1.push(i),
                    None => groups.push((addr, vec![i])),
                }
            }
        }
        groups
            .into_iter()
            .map(|(addr, commands)| Ok((self.node(addr)?, commands)))
            .collect()
    }

    /// After MOVED: reloads the map, unless it was reloaded a moment ago
    /// (the calls in flight during a resharding all get MOVED; the first
    /// reload serves them all, and each follows its redirect anyway).
    async fn moved(&self) {
        if self
            .map()
            .refreshed
            .is_some_and(|t| t.elapsed() < MOVED_QUIET)
        {
            return;
        }
        if let Err(e) = self.refresh().await
            && let Some(held) = MAP_LOG.allow()
        {
            warn!(
                "redis cluster: cannot reload the slot map after MOVED: {e} ({held} more not \
                 logged)"
            );
        }
    }

    fn note(&self, e: &RedisError) {
        if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
            self.mark_stale();
        }
    }

    async fn run_cmd(&self, cmd: &Cmd) -> RedisResult<Value> {
        let mut addr = self.target(cmd_slot(cmd)).await?;
        let mut asking = false;
        for _ in 0..MAX_REDIRECTS {
            let mut c = self.node(addr)?;
            let r = if asking {
                let mut p = redis::pipe();
                p.cmd("ASKING").ignore().add_command(cmd.clone());
                p.query_async::<Vec<Value>>(&mut c)
                    .await
                    .and_then(|mut v| v.pop().ok_or_else(|| failure("ASKING", String::new())))
            } else {
                c.req_packed_command(cmd).await
            };
            match redirect_of(&r) {
                Some((true, to)) => {
                    addr = to;
                    asking = true;
                }
                Some((false, to)) => {
                    self.moved().await;
                    addr = to;
                    asking = false;
                }
                None => {
                    if let Err(e) = &r {
                        self.note(e);
                    }
                    return r;
                }
            }
        }
        Err(failure("redis cluster", "too many redirects".to_string()))
    }

    async fn run_pipeline(
        &self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let mut addr = self.target(pipeline_slot(pipeline)).await?;
        for _ in 0..MAX_REDIRECTS {
            let mut c = self.node(addr)?;
            let r = c.req_packed_commands(pipeline, offset, count).await;
            // A pipeline's keys share a slot: after MOVED it goes whole to
            // the new owner; ASK (a slot half moved) fails it.
            let moved = match &r {
                Err(e) => redirect(e),
                Ok(values) => values.iter().find_map(|v| redirect_of(&Ok(v.clone()))),
            };
            match moved {
                Some((false, to)) => {
                    self.moved().await;
                    addr = to;
                }
                _ => {
                    if let Err(e) = &r {
                        self.note(e);
                    }
                    return r;
                }
            }
        }
        Err(failure("redis cluster", "too many redirects".to_string()))
    }

    /// A connection to each primary, after reloading the map: what a key
    /// walk visits.
    pub async fn primaries(&self) -> RedisResult<Vec<Link>> {
        self.refresh().await?;
        let mut addrs: Vec<SocketAddr> = self.map().ranges.iter().map(|r| r.2).collect();
        addrs.sort_unstable();
        addrs.dedup();
        addrs.into_iter().map(|a| self.node(a)).collect()
    }
}

impl ConnectionLike for Sharded {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.run_cmd(cmd))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.run_pipeline(pipeline, offset, count))
    }

    fn get_db(&self) -> i64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nodes_and_refuses_other_databases() {
        let s = parse("redis+cluster://u:p@127.0.0.1:7000,[::1]:7001").unwrap();
        assert_eq!(s.seeds.len(), 2);
        assert_eq!(s.redis.password(), Some("p"));
        assert!(parse("rediss+cluster://127.0.0.1:7000/0").is_ok());
        assert!(parse("redis+cluster://127.0.0.1:7000/1").is_err());
        assert!(parse("redis+cluster://localhost:7000").is_err());
        assert!(parse("redis+cluster://").is_err());
    }

    #[test]
    fn slot_maps_parse_and_junk_is_refused() {
        let node = |ip: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(ip.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let asked: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let v = Value::Array(vec![
            Value::Array(vec![
                Value::Int(8192),
                Value::Int(16383),
                node("127.0.0.1", 7001),
            ]),
            Value::Array(vec![Value::Int(0), Value::Int(8191), node("", 7000)]),
        ]);
        let r = parse_slots(&v, asked).unwrap();
        assert_eq!(r[0], (0, 8191, asked));
        let other: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        assert_eq!(r[1].2, other);
        assert_eq!(owner(&r, 0), Some(asked));
        assert_eq!(owner(&r, 8191), Some(asked));
        assert_eq!(owner(&r, 8192), Some(other));
        assert_eq!(owner(&r, 16383), Some(other));
        let gap = [(0, 10, asked), (20, 30, other)];
        assert_eq!(owner(&gap, 15), None);
        assert_eq!(owner(&gap, 31), None);
        assert_eq!(owner(&gap, 20), Some(other));
        let bad = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(20000),
            node("127.0.0.1", 7001),
        ])]);
        assert!(parse_slots(&bad, asked).is_err());
        let host = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(1),
            node("redis-a", 7001),
        ])]);
        assert!(parse_slots(&host, asked).unwrap_err().contains("endpoint"));
        assert!(parse_slots(&Value::Nil, asked).is_err());
    }
}
