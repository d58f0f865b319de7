//! The MTA side of the milter protocol: drives a milter the way Postfix
//! does and returns typed replies with their text. Used by the tests, the
//! benchmark load generator and `greymilter query`.
//!
//! Besides the well-behaved calls there is a raw mode ([`MilterClient::send`],
//! [`MilterClient::write_raw`], [`MilterClient::write_split`]) for abuse
//! tests: arbitrary bytes, split writes, several packets in one write.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::codec::{Command, FrameBuffer, MacroPairs, StrArray, action, encode_macro_pairs, proto};
pub use super::codec::{Family, Negotiated, Response};
use super::listener::ListenSpec;

/// A byte stream the client can drive.
pub trait ClientIo: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> ClientIo for T {}

/// The offer sent in OPTNEG and how long to wait for a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientBuilder {
    pub version: u32,
    pub actions: u32,
    pub protocol: u32,
    /// Longest wait for one reply (Postfix's default command timeout).
    pub timeout: Duration,
}

impl Default for ClientBuilder {
    /// What Postfix ≥ 2.6 and Sendmail 8.14+ offer: v6, every action, every
    /// protocol step.
    fn default() -> Self {
        ClientBuilder {
            version: 6,
            actions: action::ALL,
            protocol: proto::ALL,
            timeout: Duration::from_secs(30),
        }
    }
}

impl ClientBuilder {
    pub fn new() -> ClientBuilder {
        ClientBuilder::default()
    }

    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    pub fn actions(mut self, actions: u32) -> Self {
        self.actions = actions;
        self
    }

    pub fn protocol(mut self, protocol: u32) -> Self {
        self.protocol = protocol;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Opens a TCP or Unix connection to the milter at `spec`.
    pub async fn connect(&self, spec: &ListenSpec) -> io::Result<MilterClient<Box<dyn ClientIo>>> {
        let stream: Box<dyn ClientIo> = match spec {
            ListenSpec::Tcp(addr) => {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
            ListenSpec::Unix(path) => Box::new(UnixStream::connect(path).await?),
        };
        Ok(self.on_stream(stream))
    }

    /// Uses an existing stream (for example one end of `tokio::io::duplex`).
    pub fn on_stream<S: AsyncRead + AsyncWrite + Unpin>(&self, stream: S) -> MilterClient<S> {
        MilterClient {
            stream,
            offer: *self,
            negotiated: None,
            rx: FrameBuffer::new(),
            tx: Vec::with_capacity(256),
            known: Vec::new(),
        }
    }
}

/// The client address of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectAddr {
    /// Family `4` or `6` with the bare address, as Postfix sends it.
    Ip(IpAddr, u16),
    /// Any family byte with an address as given, e.g. Sendmail's
    /// `IPv6:2001:db8::25` or an uncompressed form.
    Raw {
        family: Family,
        port: u16,
        address: String,
    },
    /// Family `L`: a local socket path.
    Local(String),
    /// Family `U`: nothing after the family byte.
    Unknown,
}

/// The answer to SMFIC_BODYEOB: modification requests, then a final reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EomReply {
    pub modifications: Vec<Response>,
    pub last: Response,
}

/// One milter connection, MTA side.
pub struct MilterClient<S> {
    stream: S,
    offer: ClientBuilder,
    negotiated: Option<Negotiated>,
    rx: FrameBuffer,
    tx: Vec<u8>,
    /// Macro values the "MTA" knows (from CONNECT, MAIL and every macro
    /// packet sent), for a milter that skips CONNECT and MAIL and asks for
    /// them at RCPT instead, as Postfix and Sendmail would evaluate them.
    known: Vec<(String, String)>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> MilterClient<S> {
    /// Sends the offer and returns the milter's answer.
    pub async fn negotiate(&mut self) -> io::Result<Negotiated> {
        let offer = Command::OptNeg {
            version: self.offer.version,
            actions: self.offer.actions,
            protocol: self.offer.protocol,
        };
        match self.request(&offer).await? {
            Response::OptNeg(n) => Ok(n),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("OPTNEG answered with {other:?}"),
            )),
        }
    }

    /// The milter's answer to the last negotiation.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Sends one MACRO packet for `stage` (an SMFIC byte such as `b'C'`).
    /// An empty `pairs` sends just the stage byte, as both MTAs do.
    pub async fn macros(&mut self, stage: u8, pairs: &[(&str, &str)]) -> io::Result<()> {
        for (name, value) in pairs {
            self.know(name, value);
        }
        let mut raw = Vec::new();
        let pairs: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        encode_macro_pairs(&mut raw, &pairs);
        self.send(&Command::Macro {
            stage: Some(stage),
            pairs: MacroPairs::new(&raw),
        })
        .await
    }

    pub async fn connect(&mut self, hostname: &str, addr: &ConnectAddr) -> io::Result<Response> {
        // Postfix's forms: `IPv6:` before an IPv6 address, `unknown` for a
        // client without a verified name.
        let client_addr = match addr {
            ConnectAddr::Ip(IpAddr::V6(ip), _) => format!("IPv6:{ip}"),
            ConnectAddr::Ip(ip, _) => ip.to_string(),
            ConnectAddr::Raw { address, .. } => address.clone(),
            ConnectAddr::Local(_) | ConnectAddr::Unknown => String::new(),
        };
        let client_name = if hostname.starts_with('[') {
            "unknown"
        } else {
            hostname
        };
        self.know("{client_addr}", &client_addr);
        self.know("{client_name}", client_name);
        if self.skips(proto::NOCONNECT) {
            return Ok(Response::Continue);
        }
        let ip_text;
        let (family, port, address) = match addr {
            ConnectAddr::Ip(ip, port) => {
                ip_text = ip.to_string();
                let family = if ip.is_ipv4() {
                    Family::Inet4
                } else {
                    Family::Inet6
                };
                (family, *port, ip_text.as_bytes())
            }
            ConnectAddr::Raw {
                family,
                port,
                address,
            } => (*family, *port, address.as_bytes()),
            ConnectAddr::Local(path) => (Family::Local, 0, path.as_bytes()),
            ConnectAddr::Unknown => (Family::Unknown, 0, &[][..]),
        };
        self.event(&Command::Connect {
            hostname: hostname.as_bytes(),
            family,
            port,
            address,
        })
        .await
    }

    pub async fn helo(&mut self, name: &str) -> io::Result<Response> {
        self.event(&Command::Helo(name.as_bytes())).await
    }

    /// `args[0]` is the sender as the client typed it (`<a@b>`, `<>`), the
    /// rest are ESMTP parameters.
    pub async fn mail(&mut self, args: &[&str]) -> io::Result<Response> {
        let sender = args.first().copied().unwrap_or_default();
        let bare = sender.trim();
        let bare = bare.strip_prefix('<').unwrap_or(bare);
        let bare = bare.strip_suffix('>').unwrap_or(bare);
        self.know("{mail_addr}", bare);
        if self.skips(proto::NOMAIL) {
            return Ok(Response::Continue);
        }
        let raw = str_array(args);
        self.event(&Command::Mail(checked_array(&raw)?)).await
    }

    pub async fn rcpt(&mut self, args: &[&str]) -> io::Result<Response> {
        if self.skips(proto::NOCONNECT) {
            self.rcpt_macros().await?;
        }
        let raw = str_array(args);
        self.event(&Command::Rcpt(checked_array(&raw)?)).await
    }

    pub async fn data(&mut self) -> io::Result<Response> {
        self.event(&Command::Data).await
    }

    pub async fn header(&mut self, name: &str, value: &str) -> io::Result<Response> {
        self.event(&Command::Header {
            name: name.as_bytes(),
            value: value.as_bytes(),
        })
        .await
    }

    pub async fn eoh(&mut self) -> io::Result<Response> {
        self.event(&Command::Eoh).await
    }

    pub async fn body(&mut self, chunk: &[u8]) -> io::Result<Response> {
        self.event(&Command::Body(chunk)).await
    }

    pub async fn unknown(&mut self, line: &str) -> io::Result<Response> {
        self.event(&Command::Unknown(line.as_bytes())).await
    }

    /// End of message: collects modification requests up to the final reply.
    pub async fn eom(&mut self) -> io::Result<EomReply> {
        self.send(&Command::BodyEob(&[])).await?;
        let mut modifications = Vec::new();
        loop {
            let r = self.read_response().await?;
            if r.is_final() {
                return Ok(EomReply {
                    modifications,
                    last: r,
                });
            }
            modifications.push(r);
        }
    }

    pub async fn abort(&mut self) -> io::Result<()> {
        self.send(&Command::Abort).await
    }

    /// Sends QUIT and closes our writing half.
    pub async fn quit(&mut self) -> io::Result<()> {
        self.send(&Command::Quit).await?;
        self.stream.shutdown().await
    }

    /// "Quit, new connection follows": the next command is a CONNECT.
    pub async fn quit_nc(&mut self) -> io::Result<()> {
        self.known.clear();
        self.send(&Command::QuitNc).await
    }

    fn skips(&self, bit: u32) -> bool {
        self.negotiated
            .as_ref()
            .is_some_and(|n| n.protocol & bit != 0)
    }

    fn know(&mut self, name: &str, value: &str) {
        let bare = |n: &str| n.trim_start_matches('{').trim_end_matches('}').to_string();
        let name = bare(name);
        self.known.retain(|(n, _)| *n != name);
        self.known.push((name, value.to_string()));
    }

    /// The RCPT-stage macro packet the milter's list asks for, with every
    /// value this client knows (a name it does not know is left out, as
    /// the MTAs leave out empty macros).
    async fn rcpt_macros(&mut self) -> io::Result<()> {
        let Some(list) = self
            .negotiated
            .as_ref()
            .and_then(|n| n.macro_lists.iter().find(|l| l.stage == 3))
        else {
            return Ok(());
        };
        let names = String::from_utf8_lossy(&list.names).into_owned();
        let pairs: Vec<(&[u8], &[u8])> = names
            .split([' ', ','])
            .filter_map(|name| {
                let bare = name.trim_start_matches('{').trim_end_matches('}');
                let (_, value) = self.known.iter().find(|(n, _)| n == bare)?;
                Some((name.as_bytes(), value.as_bytes()))
            })
            .collect();
        let mut raw = Vec::new();
        encode_macro_pairs(&mut raw, &pairs);
        self.send(&Command::Macro {
            stage: Some(b'R'),
            pairs: MacroPairs::new(&raw),
        })
        .await
    }

    /// Sends an event and reads its reply. For an event the milter
    /// negotiated no reply to (NR_CONN, NR_MAIL, …), the MTA goes on as if
    /// it had answered CONTINUE; so does this client: it returns
    /// [`Response::Continue`] without reading.
    async fn event(&mut self, command: &Command<'_>) -> io::Result<Response> {
        if !self.expects_reply(command.code()) {
            self.send(command).await?;
            return Ok(Response::Continue);
        }
        self.request(command).await
    }

    /// Whether the milter answers `code` (an SMFIC byte) as negotiated.
    pub fn expects_reply(&self, code: u8) -> bool {
        let Some(n) = &self.negotiated else {
            return true;
        };
        n.protocol & proto::no_reply_bit(code) == 0
    }

    /// Sends any command and reads one response, whatever was negotiated.
    pub async fn request(&mut self, command: &Command<'_>) -> io::Result<Response> {
        self.send(command).await?;
        self.read_response().await
    }

    /// Sends any command as one write; reads nothing.
    pub async fn send(&mut self, command: &Command<'_>) -> io::Result<()> {
        self.tx.clear();
        command.encode(&mut self.tx);
        self.stream.write_all(&self.tx).await?;
        self.stream.flush().await
    }

    /// Writes arbitrary bytes in one write.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Writes `bytes` in pieces of `chunk` bytes, flushing and yielding
    /// between them so the peer sees separate reads.
    pub async fn write_split(&mut self, bytes: &[u8], chunk: usize) -> io::Result<()> {
        for piece in bytes.chunks(chunk.max(1)) {
            self.stream.write_all(piece).await?;
            self.stream.flush().await?;
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    /// Reads the next response packet. An OPTNEG answer is remembered,
    /// however the offer was sent.
    pub async fn read_response(&mut self) -> io::Result<Response> {
        let timeout = self.offer.timeout;
        let response = tokio::time::timeout(timeout, self.read_frame())
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no reply from the milter within {timeout:?}"),
                )
            })??;
        if let Response::OptNeg(n) = &response {
            self.negotiated = Some(n.clone());
        }
        Ok(response)
    }

    async fn read_frame(&mut self) -> io::Result<Response> {
        loop {
            let framed = self
                .rx
                .next_frame()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if let Some(frame) = framed {
                return Ok(Response::decode(frame));
            }
            let spare = self
                .rx
                .spare()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let n = self.stream.read(spare).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the milter closed the connection",
                ));
            }
            self.rx.filled(n);
        }
    }

    /// Waits (up to the timeout) for the milter to close the connection.
    /// `Ok(true)`: closed (EOF or reset) with nothing more sent; `Ok(false)`:
    /// it sent more bytes instead.
    pub async fn closed(&mut self) -> io::Result<bool> {
        if !self.rx.is_empty() {
            return Ok(false);
        }
        let mut byte = [0u8; 1];
        match tokio::time::timeout(self.offer.timeout, self.stream.read(&mut byte)).await {
            Ok(Ok(0)) => Ok(true),
            Ok(Ok(_)) => Ok(false),
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => Ok(true),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the milter kept the connection open",
            )),
        }
    }

    pub fn into_inner(self) -> S {
        self.stream
    }
}

fn str_array(args: &[&str]) -> Vec<u8> {
    let parts: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let mut raw = Vec::new();
    StrArray::encode(&mut raw, &parts);
    raw
}

fn checked_array(raw: &[u8]) -> io::Result<StrArray<'_>> {
    StrArray::new(raw).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "MAIL and RCPT need at least the address argument",
        )
    })
}
