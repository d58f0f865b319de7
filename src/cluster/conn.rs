//! The connection the rest of `cluster` talks through: one Redis server
//! ([`Link`], plain or TLS) or a sharded Redis Cluster ([`Sharded`], see
//! `shard.rs`: one `Link` per primary, each command routed by its key's
//! slot).

use redis::aio::ConnectionLike;
use redis::{Cmd, ConnectionInfo, Pipeline, RedisFuture, Value};

use super::link::{self, Link};
use super::shard::Sharded;
use super::tls::TlsSetup;

#[derive(Clone)]
pub enum Conn {
    One(Link),
    Sharded(Sharded),
}

/// A connection to one server (see [`link::open`]).
pub fn open(info: ConnectionInfo, tls: Option<(&TlsSetup, &str)>) -> Result<Conn, String> {
    link::open(info, tls).map(Conn::One)
}

impl Conn {
    /// What a key walk (SCAN) must visit: every primary of a Redis
    /// Cluster, else this connection.
    pub async fn walk_targets(&self) -> Result<Vec<Conn>, String> {
        match self {
            Conn::Sharded(s) => s
                .primaries()
                .await
                .map(|links| links.into_iter().map(Conn::One).collect())
                .map_err(|e| e.to_string()),
            one => Ok(vec![one.clone()]),
        }
    }

    /// The commands of a batch by the connection they go to (`slots[i]`
    /// the slot of command `i`): each primary of a Redis Cluster its own,
    /// else this connection all of them.
    pub async fn by_primary(
        &self,
        slots: &[Option<u16>],
    ) -> Result<Vec<(Conn, Vec<usize>)>, String> {
        match self {
            Conn::Sharded(s) => s
                .by_primary(slots)
                .await
                .map(|groups| {
                    groups
                        .into_iter()
                        .map(|(link, commands)| (Conn::One(link), commands))
                        .collect()
                })
                .map_err(|e| e.to_string()),
            one => Ok(vec![(one.clone(), (0..slots.len()).collect())]),
        }
    }

    /// Whether keys of different hash tags must go in separate calls.
    pub fn sharded(&self) -> bool {
        matches!(self, Conn::Sharded(_))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::One(c) => c.req_packed_command(cmd),
            Conn::Sharded(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::One(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sharded(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::One(c) => c.get_db(),
            Conn::Sharded(c) => c.get_db(),
        }
    }
}
