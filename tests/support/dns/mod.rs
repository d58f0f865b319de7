//! DNS servers on loopback for the DNS tests: a real authoritative server
//! (hickory-server, in process, on the test's runtime) serving
//! `test.zone`, and misbehaving UDP servers: silent, SERVFAIL, garbage, and
//! one whose UDP answers are always truncated so that only TCP (served by
//! the real server on the same port) works.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use greymilter::dns::DnsSettings;
use greymilter::dns::Zone;
use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::op::{Message, ResponseCode};
use hickory_server::proto::rr::{LowerName, Name};
use hickory_server::proto::serialize::txt::Parser;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use tokio::net::{TcpListener, UdpSocket};

/// Six /24s of `provider.test`, all authorised by its SPF record.
pub const PROVIDER_POOL: [&str; 6] = [
    "192.0.2.1",
    "198.51.100.2",
    "203.0.113.3",
    "100.64.1.4",
    "100.64.2.5",
    "100.64.3.6",
];

pub const ZONE: &str = include_str!("test.zone");
pub const REVERSE_ZONE: &str = include_str!("reverse.zone");
const TEST_ZONES: [(&str, &str); 2] = [(ZONE, "test."), (REVERSE_ZONE, "2.0.192.in-addr.arpa.")];

/// Keeps the server's tasks alive; dropping it stops the server.
pub struct DnsServer {
    pub addr: SocketAddr,
    _server: Option<Server<Catalog>>,
    _task: Option<tokio::task::JoinHandle<()>>,
}

/// `(zone text, origin)` pairs.
fn catalog(zones: &[(&str, &str)]) -> Catalog {
    let mut catalog = Catalog::new();
    for &(text, origin) in zones {
        let origin = Name::from_ascii(origin).unwrap();
        let (name, records) = Parser::new(text, None, Some(origin)).parse().unwrap();
        let handler = InMemoryZoneHandler::<TokioRuntimeProvider>::new(
            name.clone(),
            records,
            ZoneType::Primary,
            AxfrPolicy::Deny,
        )
        .unwrap();
        catalog.upsert(LowerName::from(name), vec![Arc::new(handler)]);
    }
    catalog
}

/// UDP and TCP on one loopback port (tries a few ports if TCP's is taken).
async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
            return (udp, tcp);
        }
    }
    panic!("no free UDP+TCP port pair on 127.0.0.1");
}

/// The authoritative server for `test.` and `2.0.192.in-addr.arpa.`.
pub async fn authoritative() -> DnsServer {
    serving(&TEST_ZONES).await
}

/// An authoritative server for `(zone text, origin)` pairs.
pub async fn serving(zones: &[(&str, &str)]) -> DnsServer {
    let (udp, tcp) = bind_pair().await;
    let addr = udp.local_addr().unwrap();
    let mut server = Server::new(catalog(zones));
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 65_535);
    DnsServer {
        addr,
        _server: Some(server),
        _task: None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Reads queries and never answers.
    Silent,
    /// Answers every query with SERVFAIL.
    ServFail,
    /// Answers with the query's id followed by bytes that are no DNS message.
    Garbage,
    /// UDP answers are empty and truncated; TCP is the real server.
    Truncating,
}

pub async fn misbehaving(kind: Misbehaviour) -> DnsServer {
    let (udp, tcp) = bind_pair().await;
    let addr = udp.local_addr().unwrap();
    let server = (kind == Misbehaviour::Truncating).then(|| {
        let mut s = Server::new(catalog(&TEST_ZONES));
        s.register_listener(tcp, Duration::from_secs(5), 65_535);
        s
    });
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let id = query.metadata.id;
            let answer = match kind {
                Misbehaviour::Silent => continue,
                Misbehaviour::ServFail => {
                    let mut m =
                        Message::error_msg(id, query.metadata.op_code, ResponseCode::ServFail);
                    m.add_queries(query.queries.iter().cloned());
                    m.to_vec().unwrap()
                }
                Misbehaviour::Garbage => {
                    let mut g = id.to_be_bytes().to_vec();
                    g.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 9, 0, 0, 0, 0, 0xff, 0xc0, 0xff]);
                    g
                }
                Misbehaviour::Truncating => {
                    let mut m = Message::response(id, query.metadata.op_code);
                    m.metadata.truncation = true;
                    m.metadata.authoritative = true;
                    m.add_queries(query.queries.iter().cloned());
                    m.to_vec().unwrap()
                }
            };
            let _ = udp.send_to(&answer, peer).await;
        }
    });
    DnsServer {
        addr,
        _server: server,
        _task: Some(task),
    }
}

/// Settings pointing at `server`, with the test zones and `timeout`.
pub fn settings(server: SocketAddr, timeout: Duration) -> DnsSettings {
    DnsSettings {
        servers: vec![server],
        timeout,
        spf: true,
        allow_zones: vec!["wl.test=127.0.0.2,127.0.0.3".parse::<Zone>().unwrap()],
        block_zones: vec!["bl.test".parse::<Zone>().unwrap()],
        selective: true,
        ..DnsSettings::default()
    }
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The daemon's kind of runtime.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A good and a silent DNS server on a runtime of their own (a thread of
/// the test process) until the test drops this.
pub struct Servers {
    pub good: SocketAddr,
    pub silent: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Servers {
    pub fn start() -> Servers {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = runtime();
            rt.block_on(async move {
                let good = authoritative().await;
                let silent = misbehaving(Misbehaviour::Silent).await;
                tx.send((good.addr, silent.addr)).unwrap();
                let _ = stopped.await;
            });
        });
        let (good, silent) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Servers {
            good,
            silent,
            _stop: stop,
        }
    }
}
