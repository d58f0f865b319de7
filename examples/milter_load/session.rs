//! One milter connection the way Postfix 3.7 drives it
//! (as Postfix sends it): OPTNEG, CONNECT with its macros, HELO,
//! per transaction MAIL, RCPT × k, DATA … EOM when a recipient passed,
//! ABORT twice, and QUIT. A MACRO packet and its command go out in one
//! write, as Postfix writes them; steps the milter switched off in the
//! negotiation are skipped, and replies it switched off are not awaited.

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use greymilter::milter::client::{ClientBuilder, ClientIo, MilterClient, Negotiated, Response};
use greymilter::milter::codec::{
    Command, Family, MacroPairs, StrArray, cmd, encode_macro_pairs, proto,
};
use greymilter::milter::listener::ListenSpec;
use tokio::net::{TcpStream, UnixStream};

use crate::plan::ConnPlan;
use crate::report::{Recorder, Reply};

/// Fixed settings of every connection.
pub struct Conversation {
    pub spec: ListenSpec,
    pub builder: ClientBuilder,
    pub aborts: usize,
    /// Write like Sendmail 8.17: a MACRO packet and its command in two
    /// writes, with Nagle's algorithm on.
    pub sendmail_writes: bool,
}

/// Pacing of RCPT commands (`--rate`): a shared schedule of send slots.
pub struct Pacer {
    next: std::cell::Cell<Instant>,
    interval: Option<Duration>,
}

impl Pacer {
    pub fn new(rcpts_per_sec: f64) -> Pacer {
        Pacer {
            next: std::cell::Cell::new(Instant::now()),
            interval: (rcpts_per_sec > 0.0).then(|| Duration::from_secs_f64(1.0 / rcpts_per_sec)),
        }
    }

    async fn wait(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let now = Instant::now();
        let slot = self.next.get().max(now);
        self.next.set(slot + interval);
        if slot > now {
            tokio::time::sleep_until(slot.into()).await;
        }
    }
}

/// Per-task scratch buffers, so a connection allocates little.
#[derive(Default)]
pub struct Scratch {
    packet: Vec<u8>,
    macros: Vec<u8>,
    args: Vec<u8>,
    qid: String,
}

struct Peer {
    client: MilterClient<Box<dyn ClientIo>>,
    negotiated: Negotiated,
}

impl Peer {
    fn skips(&self, bit: u32) -> bool {
        self.negotiated.protocol & bit != 0
    }

    fn replies_to(&self, code: u8) -> bool {
        self.negotiated.protocol & proto::no_reply_bit(code) == 0
    }

    /// Whether the milter asked for macro `name` at `stage` (SMFIM_*),
    /// when it sent a list for that stage; otherwise everything goes.
    fn wants(&self, stage: u32, name: &str) -> bool {
        let Some(list) = self
            .negotiated
            .macro_lists
            .iter()
            .find(|l| l.stage == stage)
        else {
            return true;
        };
        let bare = name.trim_start_matches('{').trim_end_matches('}');
        list.names
            .split(|b| *b == b' ' || *b == b',')
            .map(|n| n.strip_prefix(b"{").unwrap_or(n))
            .map(|n| n.strip_suffix(b"}").unwrap_or(n))
            .any(|n| n == bare.as_bytes())
    }
}

impl Conversation {
    /// Runs one connection; every reply is recorded. An `Err` is a protocol
    /// or I/O error (the connection is dropped).
    pub async fn run(
        &self,
        plan: &ConnPlan,
        scratch: &mut Scratch,
        pacer: &Pacer,
        rec: &Recorder,
    ) -> io::Result<()> {
        let started = Instant::now();
        let mut client = if self.sendmail_writes {
            let stream: Box<dyn ClientIo> = match &self.spec {
                ListenSpec::Tcp(addr) => Box::new(TcpStream::connect(addr).await?),
                ListenSpec::Unix(path) => Box::new(UnixStream::connect(path).await?),
            };
            self.builder.on_stream(stream)
        } else {
            self.builder.connect(&self.spec).await?
        };
        let negotiated = client.negotiate().await?;
        rec.connected(started.elapsed());
        let mut peer = Peer { client, negotiated };
        let go_on = self.connect(&mut peer, plan, scratch).await?;
        if go_on {
            for (n, txn) in plan.txns.iter().enumerate() {
                let _ = std::fmt::Write::write_fmt(
                    &mut scratch.qid,
                    format_args!("{:X}", rec.next_qid()),
                );
                self.transaction(&mut peer, plan, n, txn, scratch, pacer, rec)
                    .await?;
                scratch.qid.clear();
                rec.transaction_done();
            }
        }
        peer.client.quit().await?;
        rec.session_done(started.elapsed());
        Ok(())
    }

    /// CONNECT (and HELO). False when the milter wants no more of this
    /// connection (ACCEPT, or a refusal the MTA would act on).
    async fn connect(&self, peer: &mut Peer, plan: &ConnPlan, s: &mut Scratch) -> io::Result<bool> {
        if !peer.skips(proto::NOCONNECT) {
            let addr_text = plan.addr.to_string();
            let family = match plan.addr {
                IpAddr::V4(_) => Family::Inet4,
                IpAddr::V6(_) => Family::Inet6,
            };
            let underscore = format!("{} [{}]", plan.name, addr_text);
            s.packet.clear();
            macro_packet(
                peer,
                &mut s.packet,
                &mut s.macros,
                b'C',
                0,
                &[
                    ("j", "mx.example.test"),
                    ("{daemon_name}", "mx.example.test"),
                    ("{daemon_addr}", "127.0.0.1"),
                    ("v", "Postfix 3.7.11"),
                    ("_", &underscore),
                ],
            );
            let macros = s.packet.len();
            Command::Connect {
                hostname: plan.name.as_bytes(),
                family,
                port: 25,
                address: addr_text.as_bytes(),
            }
            .encode(&mut s.packet);
            self.write(peer, &s.packet, macros).await?;
            if peer.replies_to(cmd::CONNECT) {
                let r = peer.client.read_response().await?;
                if !matches!(expect_final(r)?, Reply::Continue) {
                    return Ok(false);
                }
            }
        }
        if !peer.skips(proto::NOHELO) {
            s.packet.clear();
            // Postfix sends an empty HELO macro packet with the default lists.
            macro_packet(peer, &mut s.packet, &mut s.macros, b'H', 1, &[]);
            let macros = s.packet.len();
            Command::Helo(b"client.example").encode(&mut s.packet);
            self.write(peer, &s.packet, macros).await?;
            if peer.replies_to(cmd::HELO) {
                let r = peer.client.read_response().await?;
                if !matches!(expect_final(r)?, Reply::Continue) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    #[allow(clippy::too_many_arguments)]
    async fn transaction(
        &self,
        peer: &mut Peer,
        plan: &ConnPlan,
        n: usize,
        txn: &crate::plan::TxnPlan,
        s: &mut Scratch,
        pacer: &Pacer,
        rec: &Recorder,
    ) -> io::Result<()> {
        let mut passed = 0usize;
        let mut mail_ok = true;
        if !peer.skips(proto::NOMAIL) {
            let bare = txn.sender.trim_start_matches('<').trim_end_matches('>');
            let host = bare.rsplit_once('@').map_or("", |(_, h)| h);
            s.packet.clear();
            macro_packet(
                peer,
                &mut s.packet,
                &mut s.macros,
                b'M',
                2,
                &[
                    ("{mail_addr}", bare),
                    ("{mail_host}", host),
                    ("{mail_mailer}", "smtp"),
                ],
            );
            let macros = s.packet.len();
            s.args.clear();
            StrArray::encode(&mut s.args, &[txn.sender.as_bytes()]);
            Command::Mail(array(&s.args)?).encode(&mut s.packet);
            self.write(peer, &s.packet, macros).await?;
            if peer.replies_to(cmd::MAIL) {
                let r = peer.client.read_response().await?;
                match expect_final(r)? {
                    Reply::Continue => {}
                    // The milter is done with this message: the MTA carries
                    // on without it (counts as passed for every recipient).
                    Reply::Accept => {
                        mail_ok = false;
                        passed = txn.rcpts.len();
                    }
                    _ => mail_ok = false,
                }
            }
        }
        if mail_ok && !peer.skips(proto::NORCPT) {
            for (i, rcpt) in txn.rcpts.iter().enumerate() {
                let bare = rcpt.trim_start_matches('<').trim_end_matches('>');
                let host = bare.rsplit_once('@').map_or("", |(_, h)| h);
                s.packet.clear();
                // The queue ID exists from the second recipient on.
                let qid = if i > 0 { s.qid.as_str() } else { "" };
                // A milter that skips CONNECT and MAIL asks for the client
                // and the sender here (Postfix's forms).
                let sender = txn.sender.trim_start_matches('<').trim_end_matches('>');
                let envelope = peer.skips(proto::NOCONNECT);
                let client_addr = match (envelope, plan.addr) {
                    (false, _) => String::new(),
                    (true, IpAddr::V6(ip)) => format!("IPv6:{ip}"),
                    (true, ip) => ip.to_string(),
                };
                let pairs: [(&str, &str); 7] = [
                    ("i", qid),
                    ("{rcpt_addr}", bare),
                    ("{rcpt_host}", host),
                    ("{rcpt_mailer}", "smtp"),
                    ("{client_addr}", &client_addr),
                    ("{client_name}", &plan.name),
                    ("{mail_addr}", sender),
                ];
                let from = usize::from(i == 0);
                let to = if envelope { pairs.len() } else { 4 };
                let pairs = pairs.get(from..to).unwrap_or_default();
                macro_packet(peer, &mut s.packet, &mut s.macros, b'R', 3, pairs);
                let macros = s.packet.len();
                s.args.clear();
                StrArray::encode(&mut s.args, &[rcpt.as_bytes()]);
                Command::Rcpt(array(&s.args)?).encode(&mut s.packet);
                pacer.wait().await;
                let sent = Instant::now();
                self.write(peer, &s.packet, macros).await?;
                if peer.replies_to(cmd::RCPT) {
                    let r = peer.client.read_response().await?;
                    let reply = expect_final(r)?;
                    rec.rcpt(plan.category, reply, sent.elapsed());
                    if matches!(reply, Reply::Continue | Reply::Accept) {
                        passed += 1;
                    }
                } else {
                    rec.rcpt(plan.category, Reply::Continue, sent.elapsed());
                    passed += 1;
                }
            }
        }
        if passed > 0 && mail_ok {
            self.message(peer, n, s, rec).await?;
        }
        for _ in 0..self.aborts {
            peer.client.send(&Command::Abort).await?;
        }
        Ok(())
    }

    /// DATA, headers, body and EOM, each only if the milter wants it.
    async fn message(
        &self,
        peer: &mut Peer,
        n: usize,
        s: &mut Scratch,
        rec: &Recorder,
    ) -> io::Result<()> {
        let qid = s.qid.clone();
        if !peer.skips(proto::NODATA) {
            s.packet.clear();
            macro_packet(peer, &mut s.packet, &mut s.macros, b'T', 4, &[("i", &qid)]);
            let macros = s.packet.len();
            Command::Data.encode(&mut s.packet);
            if !self.step(peer, &s.packet, macros, cmd::DATA).await? {
                return Ok(());
            }
        }
        if !peer.skips(proto::NOHDRS) {
            let id = format!("<{qid}.{n}@client.example>");
            for (name, value) in [
                ("From", "sender <s@client.example>"),
                ("To", "user@example.test"),
                ("Subject", "load test"),
                ("Message-ID", id.as_str()),
            ] {
                s.packet.clear();
                Command::Header {
                    name: name.as_bytes(),
                    value: value.as_bytes(),
                }
                .encode(&mut s.packet);
                if !self.step(peer, &s.packet, 0, cmd::HEADER).await? {
                    return Ok(());
                }
            }
        }
        if !peer.skips(proto::NOEOH) {
            s.packet.clear();
            Command::Eoh.encode(&mut s.packet);
            if !self.step(peer, &s.packet, 0, cmd::EOH).await? {
                return Ok(());
            }
        }
        if !peer.skips(proto::NOBODY) {
            s.packet.clear();
            Command::Body(b"A short body.\r\n").encode(&mut s.packet);
            if !self.step(peer, &s.packet, 0, cmd::BODY).await? {
                return Ok(());
            }
        }
        s.packet.clear();
        macro_packet(peer, &mut s.packet, &mut s.macros, b'E', 5, &[("i", &qid)]);
        let macros = s.packet.len();
        Command::BodyEob(&[]).encode(&mut s.packet);
        self.write(peer, &s.packet, macros).await?;
        loop {
            let r = peer.client.read_response().await?;
            if r.is_final() {
                expect_final(r)?;
                rec.eom();
                return Ok(());
            }
        }
    }

    /// Sends MACRO packets (the first `macros` bytes) and a command: in one
    /// write like Postfix, or in two like Sendmail.
    async fn write(&self, peer: &mut Peer, packet: &[u8], macros: usize) -> io::Result<()> {
        match packet.split_at_checked(macros) {
            Some((m, command)) if self.sendmail_writes && !m.is_empty() => {
                peer.client.write_raw(m).await?;
                peer.client.write_raw(command).await
            }
            _ => peer.client.write_raw(packet).await,
        }
    }

    /// Sends a content step; false when its reply ends the message.
    async fn step(
        &self,
        peer: &mut Peer,
        packet: &[u8],
        macros: usize,
        code: u8,
    ) -> io::Result<bool> {
        self.write(peer, packet, macros).await?;
        if !peer.replies_to(code) {
            return Ok(true);
        }
        let r = peer.client.read_response().await?;
        Ok(matches!(expect_final(r)?, Reply::Continue))
    }
}

/// Appends a MACRO packet with the pairs the milter wants (none: nothing,
/// except for HELO where Postfix sends the bare stage byte). A pair with an
/// empty value is sent as Postfix sends it (`{mail_addr}` of `MAIL
/// FROM:<>`); macros Postfix leaves undefined are not in `pairs` at all.
fn macro_packet(
    peer: &Peer,
    out: &mut Vec<u8>,
    raw: &mut Vec<u8>,
    code: u8,
    stage: u32,
    pairs: &[(&str, &str)],
) {
    raw.clear();
    let mut any = false;
    for (name, value) in pairs {
        if peer.wants(stage, name) {
            encode_macro_pairs(raw, &[(name.as_bytes(), value.as_bytes())]);
            any = true;
        }
    }
    if any || code == b'H' {
        Command::Macro {
            stage: Some(code),
            pairs: MacroPairs::new(raw),
        }
        .encode(out);
    }
}

fn array(raw: &[u8]) -> io::Result<StrArray<'_>> {
    StrArray::new(raw).ok_or_else(|| io::Error::other("empty argument list"))
}

/// Classifies a reply that ends a step; anything else is a protocol error.
fn expect_final(r: Response) -> io::Result<Reply> {
    let reply = match r {
        Response::Continue => Reply::Continue,
        Response::Accept => Reply::Accept,
        Response::Tempfail => Reply::Tempfail,
        Response::Reject => Reply::Reject,
        Response::Discard => Reply::Reject,
        Response::Skip => Reply::Continue,
        Response::ReplyCode { code, .. } if (400..500).contains(&code) => Reply::Tempfail,
        Response::ReplyCode { code, .. } if (500..600).contains(&code) => Reply::Reject,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected reply {other:?}"),
            ));
        }
    };
    Ok(reply)
}
