//! A connection to one Redis server, plain or TLS, behind one type.
//!
//! Plain TCP and Unix sockets use redis-rs' `ConnectionManager`; TLS uses
//! ours ([`TlsConnection`], see `tls.rs` for why). Both multiplex calls on
//! one socket and reconnect after an I/O error; clones share the socket.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ConnectionAddr, ConnectionInfo, Pipeline, RedisFuture, Value};

use super::tls::{self, TlsConnection, TlsSetup};

#[derive(Clone)]
pub enum Link {
    Plain(ConnectionManager),
    Tls(TlsConnection),
}

/// Where to connect. For TLS `name` is the name the certificate must
/// carry (the URL's host as written); `info` holds the address to dial.
pub fn open(info: ConnectionInfo, tls: Option<(&TlsSetup, &str)>) -> Result<Link, String> {
    match tls {
        None => manager(info).map(Link::Plain),
        Some((setup, name)) => {
            let ConnectionAddr::Tcp(host, port) = info.addr() else {
                return Err("TLS needs a TCP address".to_string());
            };
            let ip: IpAddr = host
                .parse()
                .map_err(|_| format!("{host:?}: not resolved to an address"))?;
            Ok(Link::Tls(TlsConnection::new(
                setup.clone(),
                SocketAddr::new(ip, *port),
                tls::server_name(name)?,
                info.redis_settings().clone(),
            )))
        }
    }
}

fn manager(info: ConnectionInfo) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(info).map_err(|e| e.to_string())?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(None)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500))
        .set_number_of_retries(2);
    ConnectionManager::new_lazy_with_config(client, config).map_err(|e| e.to_string())
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Plain(c) => c.req_packed_command(cmd),
            Link::Tls(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Plain(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Tls(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Plain(c) => c.get_db(),
            Link::Tls(c) => c.get_db(),
        }
    }
}
