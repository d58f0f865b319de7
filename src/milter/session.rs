//! One milter conversation: a lenient state machine like libmilter's
//! (docs/milter.md, "Conversation") between the codec and a [`Decider`].
//!
//! [`SessionCore`] is synchronous and does no I/O: it takes decoded commands
//! and appends replies to a buffer, so tests and fuzzers can drive it
//! directly. [`super::connection`] drives it over a byte stream.
//!
//! Every command that owes a reply gets exactly one, in every state; odd but
//! survivable sequences are logged at debug; only framing errors, unknown
//! commands, unparsable key fields, a refused version and events before
//! OPTNEG close the connection (rate-limited warn).

use std::fmt;
use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tracing::{debug, warn};

use super::client_address::client_ip;
use super::codec::{Command, Family, Frame, MacroPairs, cmd, encode_empty, resp, split_frame};
use super::decision::{Client, Decided, Decider, SessionOptions, Verdict};
use super::macros::{MAX_STAGE_BYTES, MacroStore, Stored};
use super::negotiate::{Agreement, Wanted, negotiate};
use crate::ratelimit::LogLimiter;

mod envelope;
mod replies;

use envelope::refusal;

/// One warn line per interval for protocol violations, across all sessions:
/// a hostile peer must not be able to flood the log.
static VIOLATIONS: LogLimiter = LogLimiter::new(Duration::from_secs(10));

/// Where the conversation is (docs/milter.md, "Conversation").
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

/// What the driver does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// A recipient's decision waits: take it with
    /// [`SessionCore::take_wait`], then call [`SessionCore::answer`] or,
    /// past the deadline, [`SessionCore::expire`]; read nothing meanwhile.
    Wait,
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
pub struct SessionCore<D: Decider> {
    decider: D,
    wanted: Wanted,
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
    /// A refusal at CONNECT or MAIL that the MTA did not wait for (NR_CONN,
    /// NR_MAIL): each RCPT of the connection or transaction gets it.
    connection_refusal: Option<Verdict>,
    message_refusal: Option<Verdict>,
    /// A recipient's decision that has to wait, handed to the driver by
    /// [`SessionCore::take_wait`].
    waiting: Option<D::Wait>,
    /// The host name or sender rebuilt from macros when CONNECT and MAIL
    /// are skipped; kept to reuse its memory.
    envelope: Vec<u8>,
}

impl<D: Decider> SessionCore<D> {
    pub fn new(decider: D, options: &SessionOptions, conn_id: u64, peer: &str) -> SessionCore<D> {
        SessionCore {
            decider,
            wanted: Wanted {
                add_header: options.add_header,
                conversation: options.conversation,
                helo: options.helo,
                envelope_events: options.envelope_events,
            },
            conn_id,
            peer: peer.to_owned(),
            state: State::Init,
            agreement: None,
            macros: MacroStore::new(),
            client_known: false,
            connection_decided: false,
            decider_txn: false,
            message_accepted: false,
            connection_refusal: None,
            message_refusal: None,
            waiting: None,
            envelope: Vec::new(),
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

    pub fn conn_id(&self) -> u64 {
        self.conn_id
    }

    pub fn peer(&self) -> &str {
        &self.peer
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
    /// A decision that waits is polled once: if it is not ready then, the
    /// recipient is answered as if its deadline had passed (no I/O here).
    pub fn run_bytes(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Flow {
        loop {
            match split_frame(input) {
                Err(e) => return self.violation(format_args!("{e}")),
                Ok(None) => return Flow::Continue,
                Ok(Some((frame, used))) => {
                    match self.handle_frame(frame, out) {
                        Flow::Continue => {}
                        Flow::Wait => self.poll_wait_once(out),
                        Flow::Close(r) => return Flow::Close(r),
                    }
                    input = input.get(used..).unwrap_or_default();
                }
            }
        }
    }

    fn poll_wait_once(&mut self, out: &mut Vec<u8>) {
        let Some(wait) = self.take_wait() else {
            return;
        };
        let mut wait = std::pin::pin!(wait);
        let mut cx = Context::from_waker(Waker::noop());
        match wait.as_mut().poll(&mut cx) {
            Poll::Ready(answer) => self.answer(answer, out),
            Poll::Pending => self.expire(out),
        }
    }

    /// The stream ended (EOF, error, timeout, shutdown): ABORT + QUIT.
    pub fn finish(&mut self) {
        if self.waiting.take().is_some() {
            self.decider.rcpt_expired();
        }
        self.end_transaction();
    }

    /// Handles one command, appending any reply to `out`. [`Flow::Wait`]:
    /// the reply is owed once [`SessionCore::take_wait`]'s future is done.
    pub fn handle(&mut self, command: Command<'_>, out: &mut Vec<u8>) -> Flow {
        let code = command.code();
        match command {
            Command::OptNeg {
                version,
                actions,
                protocol,
            } => return self.optneg(version, actions, protocol, out),
            Command::Macro { stage, pairs } => {
                self.on_macro(stage, pairs);
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
            Command::QuitNc => self.on_quit_nc(),
            Command::Connect {
                hostname,
                family,
                port,
                address,
            } => self.on_connect(agreement, hostname, family, port, address, out),
            Command::Helo(name) => self.on_helo(agreement, name, out),
            Command::Mail(args) => self.on_mail(agreement, args.first(), out),
            Command::Rcpt(args) => return self.on_rcpt(agreement, args.first(), out),
            Command::BodyEob(_) => self.on_eom(agreement, out),
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

    /// The decision [`Flow::Wait`] announced; `None` if there is none.
    pub fn take_wait(&mut self) -> Option<D::Wait> {
        self.waiting.take()
    }

    /// The waited-for decision is in: answers the recipient.
    pub fn answer(&mut self, answer: D::Answer, out: &mut Vec<u8>) {
        let verdict = self.decider.rcpt_answered(answer);
        if let Some(agreement) = self.agreement {
            self.reply_verdict(agreement, cmd::RCPT, verdict, out);
        }
    }

    /// The waited-for decision missed its deadline: CONTINUE (fail open).
    pub fn expire(&mut self, out: &mut Vec<u8>) {
        self.decider.rcpt_expired();
        if let Some(agreement) = self.agreement {
            self.reply_continue(agreement, cmd::RCPT, out);
        }
    }

    fn on_macro(&mut self, stage: Option<u8>, pairs: MacroPairs<'_>) {
        match self.macros.store(stage, pairs) {
            Stored::All => {}
            Stored::UnknownStage => self.debug(format_args!(
                "macros for stage {} ignored",
                stage.map_or_else(|| "(none)".to_string(), printable_byte)
            )),
            // Both MTAs send a few well-formed pairs; anything else is a
            // broken peer and may cost a macro we key on.
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
    }

    fn on_quit_nc(&mut self) {
        self.reset_connection();
        self.macros.clear_all();
        self.state = State::Ready;
    }

    fn on_connect(
        &mut self,
        agreement: Agreement,
        hostname: &[u8],
        family: Family,
        port: u16,
        address: &[u8],
        out: &mut Vec<u8>,
    ) {
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
            // No MTA sends these: the connection passes ungreylisted, which
            // an admin must be able to see.
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
        if agreement.owes_reply(cmd::CONNECT) {
            self.reply_verdict(agreement, cmd::CONNECT, verdict, out);
        } else {
            self.connection_refusal = refusal(verdict);
        }
    }

    fn on_helo(&mut self, agreement: Agreement, name: &[u8], out: &mut Vec<u8>) {
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
        if self.wanted.helo && self.consults_decider() {
            self.decider.helo(name);
        }
        self.reply_continue(agreement, cmd::HELO, out);
    }

    fn on_mail(&mut self, agreement: Agreement, sender: &[u8], out: &mut Vec<u8>) {
        match self.state {
            State::Mail => {
                self.debug(format_args!("MAIL without ABORT: implicit abort"));
                self.end_transaction();
            }
            State::Ready | State::Init => {
                self.debug(format_args!("MAIL before CONNECT: not greylisted"));
                self.reply_continue(agreement, cmd::MAIL, out);
                return;
            }
            State::Conn => {}
        }
        self.macros.clear_after(cmd::MAIL);
        self.state = State::Mail;
        if !self.consults_decider() {
            self.message_accepted = true;
            self.reply_continue(agreement, cmd::MAIL, out);
            return;
        }
        let verdict = self.decider.mail(sender, &self.macros.view(cmd::MAIL));
        self.decider_txn = true;
        if !agreement.owes_reply(cmd::MAIL) {
            self.mail_unanswered(verdict);
            return;
        }
        match verdict {
            Verdict::Continue => {}
            Verdict::Accept => self.message_accepted = true,
            Verdict::Tempfail(_) | Verdict::Reject(_) => {
                // The MTA refuses the sender and resets the transaction.
                self.end_transaction();
                self.state = State::Conn;
            }
        }
        self.reply_verdict(agreement, cmd::MAIL, verdict, out);
    }

    fn on_rcpt(&mut self, agreement: Agreement, recipient: &[u8], out: &mut Vec<u8>) -> Flow {
        self.macros.clear_after(cmd::RCPT);
        if agreement.skips_envelope() && self.state != State::Mail {
            self.envelope_from_macros();
        }
        if let Some(refusal) = self.refusal_for_rcpt() {
            self.reply_verdict(agreement, cmd::RCPT, refusal, out);
            return Flow::Continue;
        }
        match self.state {
            State::Mail if self.consults_decider() && !self.message_accepted => {
                match self.decider.rcpt(recipient, &self.macros.view(cmd::RCPT)) {
                    Decided::Now(verdict) => self.reply_verdict(agreement, cmd::RCPT, verdict, out),
                    Decided::Wait(wait) => {
                        self.waiting = Some(wait);
                        return Flow::Wait;
                    }
                }
            }
            State::Mail => self.reply_continue(agreement, cmd::RCPT, out),
            State::Conn if self.consults_decider() => {
                // Fail open: no sender to key on.
                self.violation_warn(format_args!("RCPT without MAIL: answered CONTINUE"));
                self.reply_continue(agreement, cmd::RCPT, out);
            }
            _ => {
                self.debug(format_args!("RCPT outside a filtered transaction"));
                self.reply_continue(agreement, cmd::RCPT, out);
            }
        }
        Flow::Continue
    }

    fn on_eom(&mut self, agreement: Agreement, out: &mut Vec<u8>) {
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

    fn optneg(&mut self, version: u32, actions: u32, protocol: u32, out: &mut Vec<u8>) -> Flow {
        if self.state != State::Init {
            self.debug(format_args!("repeated OPTNEG: starting over"));
            self.reset_connection();
            self.macros.clear_all();
        }
        match negotiate(version, actions, protocol, self.wanted) {
            Ok(agreement) => {
                self.debug(format_args!(
                    "negotiated version {} actions {:#x} protocol {:#x}{}",
                    agreement.version,
                    agreement.actions,
                    agreement.protocol,
                    if agreement.skips_envelope() {
                        ": CONNECT and MAIL skipped, envelope from RCPT macros"
                    } else {
                        ""
                    }
                ));
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
        self.message_refusal = None;
    }

    /// QUIT_NC, a second CONNECT, a repeated OPTNEG.
    fn reset_connection(&mut self) {
        if self.client_known {
            // `reset` also ends an open transaction.
            self.decider.reset();
        }
        self.decider_txn = false;
        self.message_accepted = false;
        self.message_refusal = None;
        self.connection_refusal = None;
        self.client_known = false;
        self.connection_decided = false;
    }

    pub(super) fn debug(&self, what: fmt::Arguments<'_>) {
        debug!(conn = self.conn_id, peer = %self.peer, "{what}");
    }

    /// A protocol violation that closes the connection.
    pub(super) fn violation(&self, what: fmt::Arguments<'_>) -> Flow {
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
    pub(super) fn violation_warn(&self, what: fmt::Arguments<'_>) {
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
