//! One milter conversation: a lenient state machine like libmilter's
//! (milter-protocol.md §9–§11) between the codec and a [`Decider`].
//!
//! [`SessionCore`] is synchronous and does no I/O: it takes decoded commands
//! and appends replies to a buffer, so tests and fuzzers can drive it
//! directly. [`run_session`] drives it over any byte stream.
//!
//! Every command that owes a reply gets exactly one, in every state; odd but
//! survivable sequences are logged at debug; only framing errors, unknown
//! commands, unparsable key fields, a refused version and events before
//! OPTNEG close the connection (rate-limited warn).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, warn};

use super::address::client_ip;
use super::codec::{
    Command, Family, Frame, FrameBuffer, cmd, encode_addheader, encode_empty, encode_replycode,
    resp, split_frame,
};
use super::decision::{Client, Decider, Header, SessionOptions, SessionSummary, Verdict};
use super::macros::{MAX_STAGE_BYTES, MacroStore, Stored};
use super::negotiate::{Agreement, negotiate};
use crate::ratelimit::LogLimiter;

/// One warn line per interval for protocol violations, across all sessions:
/// a hostile peer must not be able to flood the log.
static VIOLATIONS: LogLimiter = LogLimiter::new(Duration::from_secs(10));

/// The longest header line we hand to the MTA (RFC 5322 line limit).
const MAX_HEADER_LINE: usize = 998;

/// Where the conversation is (milter-protocol.md §11.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Before OPTNEG.
    Init,
    /// Negotiated, no CONNECT yet (or after QUIT_NC).
    Ready,
    /// Client known, no transaction.
    Conn,
    /// MAIL seen.
    Mail,
}

/// Whether to keep reading after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Close(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// SMFIC_QUIT: the normal end.
    Quit,
    /// The peer broke the protocol; the MTA applies its default action.
    ProtocolError,
}

/// The synchronous, I/O-free session state machine.
pub struct SessionCore<D> {
    decider: D,
    add_header: bool,
    conn_id: u64,
    peer: String,
    state: State,
    agreement: Option<Agreement>,
    macros: MacroStore,
    /// `decider.connect` was called for the current SMTP connection.
    client_known: bool,
    /// The CONNECT verdict was not CONTINUE: the connection is decided, and
    /// anything that still arrives gets CONTINUE without asking.
    connection_decided: bool,
    /// `decider.mail` was called and the transaction is not over yet.
    decider_txn: bool,
    /// MAIL was answered ACCEPT: the rest of this message is not filtered.
    message_accepted: bool,
}

impl<D: Decider> SessionCore<D> {
    pub fn new(decider: D, options: &SessionOptions, conn_id: u64, peer: &str) -> SessionCore<D> {
        SessionCore {
            decider,
            add_header: options.add_header,
            conn_id,
            peer: peer.to_owned(),
            state: State::Init,
            agreement: None,
            macros: MacroStore::new(),
            client_known: false,
            connection_decided: false,
            decider_txn: false,
            message_accepted: false,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn agreement(&self) -> Option<Agreement> {
        self.agreement
    }

    pub fn decider(&self) -> &D {
        &self.decider
    }

    pub fn into_decider(self) -> D {
        self.decider
    }

    /// Decodes and handles one framed packet.
    pub fn handle_frame(&mut self, frame: Frame<'_>, out: &mut Vec<u8>) -> Flow {
        match Command::decode(frame) {
            Ok(command) => self.handle(command, out),
            Err(e) => self.violation(format_args!("{e}")),
        }
    }

    /// Frames and handles all of `input` (a whole conversation from one
    /// side). Stops at the first close; a trailing partial packet is left.
    pub fn run_bytes(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Flow {
        loop {
            match split_frame(input) {
                Err(e) => return self.violation(format_args!("{e}")),
                Ok(None) => return Flow::Continue,
                Ok(Some((frame, used))) => {
                    if let Flow::Close(r) = self.handle_frame(frame, out) {
                        return Flow::Close(r);
                    }
                    input = input.get(used..).unwrap_or_default();
                }
            }
        }
    }

    /// The stream ended (EOF, error, timeout, shutdown): ABORT + QUIT.
    pub fn finish(&mut self) {
        self.end_transaction();
    }

    /// Handles one command, appending any reply to `out`.
    pub fn handle(&mut self, command: Command<'_>, out: &mut Vec<u8>) -> Flow {
        let code = command.code();
        match command {
            Command::OptNeg {
                version,
                actions,
                protocol,
            } => return self.optneg(version, actions, protocol, out),
            Command::Macro { stage, pairs } => {
                match self.macros.store(stage, pairs) {
                    Stored::All => {}
                    Stored::UnknownStage => self.debug(format_args!(
                        "macros for stage {} ignored",
                        stage.map_or_else(|| "(none)".to_string(), printable_byte)
                    )),
                    // Both MTAs send a few well-formed pairs; anything else
                    // is a broken peer and may cost a macro we key on.
                    Stored::Malformed => self.violation_warn(format_args!(
                        "malformed macro packet for stage {}: kept the complete pairs",
                        stage.map_or_else(String::new, printable_byte)
                    )),
                    Stored::Truncated => self.violation_warn(format_args!(
                        "oversized macro packet for stage {} ({} bytes): kept the first {} bytes of pairs",
                        stage.map_or_else(String::new, printable_byte),
                        pairs.raw().len(),
                        MAX_STAGE_BYTES
                    )),
                }
                return Flow::Continue;
            }
            Command::Quit => return Flow::Close(CloseReason::Quit),
            Command::Abort => {
                self.abort();
                return Flow::Continue;
            }
            _ => {}
        }
        let Some(agreement) = self.agreement else {
            return self.violation(format_args!(
                "command '{}' before option negotiation",
                printable_byte(code)
            ));
        };
        match command {
            Command::QuitNc => {
                self.reset_connection();
                self.macros.clear_all();
                self.state = State::Ready;
                return Flow::Continue;
            }
            Command::Connect {
                hostname,
                family,
                port,
                address,
            } => {
                if matches!(self.state, State::Conn | State::Mail) {
                    self.debug(format_args!("CONNECT without QUIT_NC: starting over"));
                    self.reset_connection();
                }
                self.macros.clear_after(cmd::CONNECT);
                let addr = client_ip(family, address);
                match (addr, family) {
                    (Some(_), _) => {}
                    // A local socket or an unknown peer: normal, not greylisted.
                    (None, Family::Local | Family::Unknown) => self.debug(format_args!(
                        "no client IP (family '{}'): not greylisted",
                        printable_byte(family.to_byte())
                    )),
                    // No MTA sends these: the connection passes ungreylisted,
                    // which an admin must be able to see.
                    (None, Family::Inet4 | Family::Inet6) => self.violation_warn(format_args!(
                        "CONNECT with a client address that does not parse ({:?}, family '{}'): not greylisted",
                        String::from_utf8_lossy(address.get(..64).unwrap_or(address)),
                        printable_byte(family.to_byte())
                    )),
                    (None, Family::Other(byte)) => self.violation_warn(format_args!(
                        "CONNECT with an unknown address family '{}': not greylisted",
                        printable_byte(byte)
                    )),
                }
                let client = Client {
                    hostname,
                    addr,
                    port,
                };
                let verdict = self
                    .decider
                    .connect(&client, &self.macros.view(cmd::CONNECT));
                self.client_known = true;
                self.connection_decided = verdict != Verdict::Continue;
                self.state = State::Conn;
                self.reply_verdict(agreement, code, verdict, out);
            }
            Command::Helo(_) => {
                match self.state {
                    State::Mail => {
                        self.debug(format_args!("HELO inside a transaction: implicit abort"));
                        self.end_transaction();
                    }
                    State::Ready => self.debug(format_args!("HELO before CONNECT")),
                    State::Init | State::Conn => {}
                }
                self.macros.clear_after(cmd::HELO);
                self.state = State::Conn;
                self.reply_continue(agreement, code, out);
            }
            Command::Mail(args) => {
                match self.state {
                    State::Mail => {
                        self.debug(format_args!("MAIL without ABORT: implicit abort"));
                        self.end_transaction();
                    }
                    State::Ready | State::Init => {
                        self.debug(format_args!("MAIL before CONNECT: not greylisted"));
                        self.reply_continue(agreement, code, out);
                        return Flow::Continue;
                    }
                    State::Conn => {}
                }
                self.macros.clear_after(cmd::MAIL);
                self.state = State::Mail;
                if !self.consults_decider() {
                    self.message_accepted = true;
                    self.reply_continue(agreement, code, out);
                    return Flow::Continue;
                }
                let verdict = self
                    .decider
                    .mail(args.first(), &self.macros.view(cmd::MAIL));
                self.decider_txn = true;
                match verdict {
                    Verdict::Continue => {}
                    Verdict::Accept => self.message_accepted = true,
                    Verdict::Tempfail(_) | Verdict::Reject(_) => {
                        // The MTA refuses the sender and resets the transaction.
                        self.end_transaction();
                        self.state = State::Conn;
                    }
                }
                self.reply_verdict(agreement, code, verdict, out);
            }
            Command::Rcpt(args) => {
                self.macros.clear_after(cmd::RCPT);
                match self.state {
                    State::Mail if self.consults_decider() && !self.message_accepted => {
                        let verdict = self
                            .decider
                            .rcpt(args.first(), &self.macros.view(cmd::RCPT));
                        self.reply_verdict(agreement, code, verdict, out);
                    }
                    State::Mail => self.reply_continue(agreement, code, out),
                    State::Conn if self.consults_decider() => {
                        // Fail open: no sender to key on.
                        self.violation_warn(format_args!("RCPT without MAIL: answered CONTINUE"));
                        self.reply_continue(agreement, code, out);
                    }
                    _ => {
                        self.debug(format_args!("RCPT outside a filtered transaction"));
                        self.reply_continue(agreement, code, out);
                    }
                }
            }
            Command::BodyEob(_) => {
                self.macros.clear_after(cmd::BODYEOB);
                if self.state == State::Mail {
                    if self.decider_txn && !self.message_accepted {
                        let header = self.decider.eom(&self.macros.view(cmd::BODYEOB));
                        if let Some(h) = header {
                            self.add_header(agreement, &h, out);
                        }
                    }
                    self.end_transaction();
                    self.state = State::Conn;
                } else {
                    self.debug(format_args!("end of message outside a transaction"));
                }
                encode_empty(out, resp::CONTINUE);
            }
            Command::Data | Command::Header { .. } | Command::Eoh | Command::Body(_) => {
                self.macros.clear_after(code);
                self.debug(format_args!(
                    "event '{}' we did not ask for: CONTINUE",
                    printable_byte(code)
                ));
                self.reply_continue(agreement, code, out);
            }
            Command::Unknown(_) => self.reply_continue(agreement, code, out),
            Command::OptNeg { .. } | Command::Macro { .. } | Command::Quit | Command::Abort => {}
        }
        Flow::Continue
    }

    fn optneg(&mut self, version: u32, actions: u32, protocol: u32, out: &mut Vec<u8>) -> Flow {
        if self.state != State::Init {
            self.debug(format_args!("repeated OPTNEG: starting over"));
            self.reset_connection();
            self.macros.clear_all();
        }
        match negotiate(version, actions, protocol, self.add_header) {
            Ok(agreement) => {
                agreement.encode(out);
                self.agreement = Some(agreement);
                self.state = State::Ready;
                Flow::Continue
            }
            Err(e) => self.violation(format_args!("{e}")),
        }
    }

    fn abort(&mut self) {
        if self.state == State::Mail {
            self.end_transaction();
            self.state = State::Conn;
        } else {
            // Normal from Postfix (a second EHLO, ABORT after EOM).
            self.debug(format_args!("ABORT outside a transaction"));
        }
        self.macros.clear_after(cmd::HELO);
    }

    fn consults_decider(&self) -> bool {
        self.client_known && !self.connection_decided
    }

    fn end_transaction(&mut self) {
        if self.decider_txn {
            self.decider_txn = false;
            self.decider.end_transaction();
        }
        self.message_accepted = false;
    }

    /// QUIT_NC, a second CONNECT, a repeated OPTNEG.
    fn reset_connection(&mut self) {
        if self.client_known {
            // `reset` also ends an open transaction.
            self.decider.reset();
        }
        self.decider_txn = false;
        self.message_accepted = false;
        self.client_known = false;
        self.connection_decided = false;
    }

    fn reply_continue(&self, agreement: Agreement, code: u8, out: &mut Vec<u8>) {
        if agreement.owes_reply(code) {
            encode_empty(out, resp::CONTINUE);
        }
    }

    fn reply_verdict(&self, agreement: Agreement, code: u8, verdict: Verdict, out: &mut Vec<u8>) {
        if !agreement.owes_reply(code) {
            return;
        }
        match verdict {
            Verdict::Continue => encode_empty(out, resp::CONTINUE),
            // ACCEPT anywhere else would end filtering for the whole message.
            Verdict::Accept if code == cmd::CONNECT || code == cmd::MAIL => {
                encode_empty(out, resp::ACCEPT)
            }
            Verdict::Accept => encode_empty(out, resp::CONTINUE),
            Verdict::Tempfail(reply) if reply.class() == 4 => encode_replycode(out, &reply),
            Verdict::Reject(reply) if reply.class() == 5 => encode_replycode(out, &reply),
            Verdict::Tempfail(reply) => {
                self.class_mismatch(&reply, 4);
                encode_empty(out, resp::TEMPFAIL);
            }
            Verdict::Reject(reply) => {
                self.class_mismatch(&reply, 5);
                encode_empty(out, resp::REJECT);
            }
        }
    }

    fn class_mismatch(&self, reply: &super::reply::Reply, class: u8) {
        if let Some(suppressed) = VIOLATIONS.allow() {
            warn!(
                conn = self.conn_id,
                peer = %self.peer,
                suppressed,
                "reply {:?} does not match a {class}xx verdict: sent the bare code instead",
                reply.as_str()
            );
        }
    }

    fn add_header(&self, agreement: Agreement, header: &Header, out: &mut Vec<u8>) {
        if !agreement.may_add_headers() {
            self.debug(format_args!(
                "header {:?} not added: SMFIF_ADDHDRS not negotiated",
                header.name
            ));
            return;
        }
        let name_ok = !header.name.is_empty()
            && header
                .name
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b':');
        let value_ok = header
            .value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
        if !name_ok || !value_ok || header.name.len() + 2 + header.value.len() > MAX_HEADER_LINE {
            if let Some(suppressed) = VIOLATIONS.allow() {
                warn!(
                    conn = self.conn_id,
                    peer = %self.peer,
                    suppressed,
                    "header {:?} not added: invalid name or value",
                    header.name
                );
            }
            return;
        }
        encode_addheader(out, header.name.as_bytes(), header.value.as_bytes());
    }

    fn debug(&self, what: fmt::Arguments<'_>) {
        debug!(conn = self.conn_id, peer = %self.peer, "{what}");
    }

    /// A protocol violation that closes the connection.
    fn violation(&self, what: fmt::Arguments<'_>) -> Flow {
        if let Some(suppressed) = VIOLATIONS.allow() {
            warn!(
                conn = self.conn_id,
                peer = %self.peer,
                suppressed,
                "milter protocol error, closing: {what}"
            );
        }
        Flow::Close(CloseReason::ProtocolError)
    }

    /// A protocol violation we survive.
    fn violation_warn(&self, what: fmt::Arguments<'_>) {
        if let Some(suppressed) = VIOLATIONS.allow() {
            warn!(conn = self.conn_id, peer = %self.peer, suppressed, "{what}");
        }
    }
}

fn printable_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        (b as char).to_string()
    } else {
        format!("0x{b:02x}")
    }
}

/// Runs one milter conversation over `stream` until QUIT, EOF, a protocol
/// error or the idle timeout.
pub async fn run_session<S, D>(
    stream: S,
    decider: D,
    options: &SessionOptions,
    conn_id: u64,
    peer: &str,
) -> SessionSummary
where
    S: AsyncRead + AsyncWrite + Unpin,
    D: Decider,
{
    run_session_until(
        stream,
        decider,
        options,
        conn_id,
        peer,
        std::future::pending(),
    )
    .await
}

/// Like [`run_session`], and also ends the conversation once `stop` has
/// completed and no command is in flight (graceful shutdown: the command
/// being received is still answered).
pub async fn run_session_until<S, D, F>(
    mut stream: S,
    decider: D,
    options: &SessionOptions,
    conn_id: u64,
    peer: &str,
    stop: F,
) -> SessionSummary
where
    S: AsyncRead + AsyncWrite + Unpin,
    D: Decider,
    F: Future<Output = ()>,
{
    let mut core = SessionCore::new(decider, options, conn_id, peer);
    let mut frames = FrameBuffer::new();
    let mut out = Vec::with_capacity(64);
    let mut summary = SessionSummary::default();
    let idle = options.idle_timeout;
    let stop = stop.fuse();
    tokio::pin!(stop);
    let mut stopping = false;
    // When the first bytes of the packet being received were seen: a packet
    // must be whole within `idle`, or a peer trickling one byte per read
    // would hold the session (and a max_connections slot) forever.
    let mut packet_started: Option<tokio::time::Instant> = None;
    'conversation: loop {
        loop {
            let frame = match frames.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    core.violation(format_args!("{e}"));
                    summary.protocol_error = true;
                    break 'conversation;
                }
            };
            packet_started = None;
            let flow = core.handle_frame(frame, &mut out);
            if !out.is_empty() {
                // One buffer, one write: miltertest and some MTAs read the
                // header and the payload with exactly two reads.
                match tokio::time::timeout(idle, stream.write_all(&out)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        core.debug(format_args!("write failed: {e}"));
                        break 'conversation;
                    }
                    Err(_) => {
                        core.debug(format_args!("write timed out"));
                        summary.timed_out = true;
                        break 'conversation;
                    }
                }
                out.clear();
                if let Err(e) = stream.flush().await {
                    core.debug(format_args!("flush failed: {e}"));
                    break 'conversation;
                }
            }
            match flow {
                Flow::Continue => {}
                Flow::Close(CloseReason::Quit) => {
                    core.debug(format_args!("QUIT"));
                    break 'conversation;
                }
                Flow::Close(CloseReason::ProtocolError) => {
                    summary.protocol_error = true;
                    break 'conversation;
                }
            }
        }
        if stopping && frames.is_empty() {
            core.debug(format_args!(
                "shutting down: connection closed between commands"
            ));
            break;
        }
        let wait = if frames.is_empty() {
            idle
        } else {
            let started = *packet_started.get_or_insert_with(tokio::time::Instant::now);
            idle.saturating_sub(started.elapsed())
        };
        let spare = match frames.spare() {
            Ok(spare) => spare,
            Err(e) => {
                core.violation(format_args!("{e}"));
                summary.protocol_error = true;
                break;
            }
        };
        // Reading comes first: bytes the MTA sent before the stop are still
        // handled, and a command in flight is finished.
        tokio::select! {
            biased;
            read = tokio::time::timeout(wait, stream.read(spare)) => match read {
                Ok(Ok(0)) => {
                    if frames.is_empty() {
                        core.debug(format_args!("MTA closed the connection"));
                    } else {
                        // No MTA stops writing mid-packet unless it crashed or
                        // is not an MTA: worth a (rate-limited) line.
                        core.violation_warn(format_args!(
                            "MTA closed the connection inside a packet"
                        ));
                    }
                    break;
                }
                Ok(Ok(n)) => frames.filled(n),
                Ok(Err(e)) => {
                    core.debug(format_args!("read failed: {e}"));
                    break;
                }
                Err(_) => {
                    if frames.is_empty() {
                        core.debug(format_args!("idle for {idle:?}: closing"));
                    } else {
                        // Between commands an MTA may idle; inside a packet
                        // it does not (slowloris).
                        core.violation_warn(format_args!(
                            "packet still incomplete {idle:?} after its first byte: closing"
                        ));
                    }
                    summary.timed_out = true;
                    break;
                }
            },
            () = &mut stop, if !stopping => stopping = true,
        }
    }
    core.finish();
    let _ = stream.shutdown().await;
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::milter::codec::{Response, split_frame};
    use crate::milter::decision::Macros;
    use crate::milter::reply::Reply;

    /// Records calls; tempfails every recipient containing "grey".
    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
    }

    impl Decider for Recorder {
        fn connect(&mut self, client: &Client<'_>, _m: &dyn Macros) -> Verdict {
            self.calls.push(format!("connect {:?}", client.addr));
            match client.addr {
                None => Verdict::Accept,
                Some(_) => Verdict::Continue,
            }
        }
        fn mail(&mut self, sender: &[u8], m: &dyn Macros) -> Verdict {
            self.calls
                .push(format!("mail {}", String::from_utf8_lossy(sender)));
            if m.get("auth_authen").is_some() {
                Verdict::Accept
            } else {
                Verdict::Continue
            }
        }
        fn rcpt(&mut self, rcpt: &[u8], _m: &dyn Macros) -> Verdict {
            self.calls
                .push(format!("rcpt {}", String::from_utf8_lossy(rcpt)));
            if rcpt.windows(4).any(|w| w == b"grey") {
                Verdict::Tempfail(Reply::parse("451 4.7.1 Greylisted").unwrap())
            } else {
                Verdict::Accept
            }
        }
        fn eom(&mut self, _m: &dyn Macros) -> Option<Header> {
            self.calls.push("eom".into());
            None
        }
        fn end_transaction(&mut self) {
            self.calls.push("end".into());
        }
        fn reset(&mut self) {
            self.calls.push("reset".into());
        }
    }

    fn replies(out: &[u8]) -> Vec<Response> {
        let mut rest = out;
        let mut v = Vec::new();
        while let Some((f, used)) = split_frame(rest).unwrap() {
            v.push(Response::decode(f));
            rest = &rest[used..];
        }
        assert!(rest.is_empty());
        v
    }

    fn core() -> SessionCore<Recorder> {
        SessionCore::new(Recorder::default(), &SessionOptions::default(), 1, "test")
    }

    fn send(core: &mut SessionCore<Recorder>, c: Command<'_>) -> (Flow, Vec<Response>) {
        let mut out = Vec::new();
        let flow = core.handle(c, &mut out);
        (flow, replies(&out))
    }

    const OPTNEG: Command<'static> = Command::OptNeg {
        version: 6,
        actions: 0x1ff,
        protocol: 0x1f_ffff,
    };

    fn connect4() -> Command<'static> {
        Command::Connect {
            hostname: b"h",
            family: crate::milter::codec::Family::Inet4,
            port: 1,
            address: b"192.0.2.1",
        }
    }

    #[test]
    fn passing_recipient_gets_continue_never_accept() {
        let mut c = core();
        send(&mut c, OPTNEG);
        assert_eq!(send(&mut c, connect4()).1, vec![Response::Continue]);
        let mail = crate::milter::codec::StrArray::new(b"<a@b>\0").unwrap();
        assert_eq!(
            send(&mut c, Command::Mail(mail)).1,
            vec![Response::Continue]
        );
        let rcpt = crate::milter::codec::StrArray::new(b"<ok@b>\0").unwrap();
        assert_eq!(
            send(&mut c, Command::Rcpt(rcpt)).1,
            vec![Response::Continue]
        );
        let grey = crate::milter::codec::StrArray::new(b"<grey@b>\0").unwrap();
        let (_, r) = send(&mut c, Command::Rcpt(grey));
        assert!(matches!(&r[..], [Response::ReplyCode { code: 451, .. }]));
        assert_eq!(c.state(), State::Mail);
        assert_eq!(
            send(&mut c, Command::BodyEob(b"")).1,
            vec![Response::Continue]
        );
        assert_eq!(c.state(), State::Conn);
        assert_eq!(
            c.decider().calls,
            [
                "connect Some(192.0.2.1)",
                "mail <a@b>",
                "rcpt <ok@b>",
                "rcpt <grey@b>",
                "eom",
                "end"
            ]
        );
    }
}
