//! The only seam between the protocol layer and whatever decides.
//!
//! The session calls a [`Decider`] at CONNECT, MAIL, RCPT and EOM and turns
//! its [`Verdict`]s into milter replies. It knows nothing about greylisting;
//! the greylist engine knows nothing about sockets.
//!
//! A recipient's decision may have to wait (a shared table across the
//! network, DNS): [`Decider::rcpt`] then returns [`Decided::Wait`] with a
//! future that owns what it needs. The connection driver awaits it, reading
//! nothing else meanwhile (the MTA waits for this reply anyway), for at most
//! [`SessionOptions::decision_timeout`]; past that the recipient gets
//! CONTINUE (fail open) and the decider hears [`Decider::rcpt_expired`].
//! A decision that is ready costs no allocation: [`Decided::Now`].

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use crate::reply::Reply;

/// What the MTA told us about the SMTP client in SMFIC_CONNECT.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// The host name field as the MTA sent it: the verified name, or the
    /// bracketed address (`[192.0.2.1]`, `[IPv6:2001:db8::1]`) when the MTA
    /// could not verify one. Raw bytes: not guaranteed to be UTF-8.
    pub hostname: &'a [u8],
    /// The client address, normalised (`IPv6:` prefix and brackets removed,
    /// IPv4-mapped IPv6 turned into IPv4). `None` for the local (`L`) and
    /// unknown (`U`) families and for addresses that do not parse.
    pub addr: Option<IpAddr>,
    pub port: u16,
}

/// Macro look-up for the current event, from its stage back to CONNECT.
/// `x` and `{x}` name the same macro.
pub trait Macros {
    fn get(&self, name: &str) -> Option<&[u8]>;
}

/// What to answer for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Carry on. The answer for a recipient that passes.
    Continue,
    /// Stop filtering: the whole connection at CONNECT, the message at MAIL.
    /// The session sends CONTINUE instead at any other stage, because ACCEPT
    /// at RCPT would let later recipients through unfiltered.
    Accept,
    /// A 4xx reply (class checked by the session; a mismatch falls back to a
    /// bare TEMPFAIL).
    Tempfail(Reply),
    /// A 5xx reply (class checked likewise; fallback: bare REJECT).
    Reject(Reply),
}

/// A recipient's decision: ready now, or a future to wait for.
pub enum Decided<W> {
    Now(Verdict),
    Wait(W),
}

impl<W> fmt::Debug for Decided<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decided::Now(v) => f.debug_tuple("Now").field(v).finish(),
            Decided::Wait(_) => f.write_str("Wait(..)"),
        }
    }
}

impl<W> Decided<W> {
    /// The verdict if it is ready (tests and synchronous callers).
    pub fn now(self) -> Option<Verdict> {
        match self {
            Decided::Now(v) => Some(v),
            Decided::Wait(_) => None,
        }
    }
}

/// A header to add at end of message (needs SMFIF_ADDHDRS, negotiated only
/// when [`SessionOptions::add_header`] is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// Per-connection decision state. One value per milter connection.
pub trait Decider {
    /// SMFIC_CONNECT. Also called again after QUIT_NC or a repeated CONNECT,
    /// after [`Decider::reset`].
    fn connect(&mut self, client: &Client<'_>, macros: &dyn Macros) -> Verdict;
    /// SMFIC_HELO, only when [`SessionOptions::helo`] asked for it; never
    /// answered (NR_HELO), so it has no verdict.
    fn helo(&mut self, _name: &[u8]) {}
    /// SMFIC_MAIL with the sender argument as sent (`<a@b>`, `<>`, …).
    fn mail(&mut self, sender: &[u8], macros: &dyn Macros) -> Verdict;
    /// What a waiting decision yields; [`Decider::rcpt_answered`] turns it
    /// into the verdict.
    type Answer;
    /// A decision that waits. It owns its data (no borrow of the decider),
    /// so the decider stays usable while the future runs.
    type Wait: Future<Output = Self::Answer> + 'static;
    /// SMFIC_RCPT with the recipient argument as sent. Each recipient is
    /// decided on its own.
    fn rcpt(&mut self, recipient: &[u8], macros: &dyn Macros) -> Decided<Self::Wait>;
    /// The [`Decided::Wait`] of the last [`Decider::rcpt`] completed in time.
    fn rcpt_answered(&mut self, answer: Self::Answer) -> Verdict;
    /// The [`Decided::Wait`] of the last [`Decider::rcpt`] missed its
    /// deadline and was dropped; the session answers CONTINUE.
    fn rcpt_expired(&mut self) {}
    /// SMFIC_BODYEOB: a header to add, if any. The transaction ends after it.
    fn eom(&mut self, macros: &dyn Macros) -> Option<Header>;
    /// The transaction is over (ABORT, EOM answered, a new MAIL, EOF).
    fn end_transaction(&mut self);
    /// The connection state is gone (QUIT_NC, a second CONNECT).
    fn reset(&mut self) {
        self.end_transaction();
    }
}

/// Options read once per milter connection, so a reload applies to the
/// connections that start after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOptions {
    /// Close a connection that sends nothing for this long.
    pub idle_timeout: Duration,
    /// Ask for SMFIF_ADDHDRS in the negotiation (X-Greylist header).
    pub add_header: bool,
    /// The longest a recipient's decision may wait before the session
    /// answers CONTINUE (fail open).
    pub decision_timeout: Duration,
    /// How much of the conversation the session asks the MTA for.
    pub conversation: Conversation,
    /// Ask for the HELO event, without a reply (the HELO name is an SPF
    /// identity for the null sender, and Postfix has no macro for it).
    pub helo: bool,
    /// The decider wants CONNECT and MAIL as they happen (e.g. to start
    /// lookups early). When false, a [`Conversation::Lean`] session asks
    /// the MTA to skip both and calls [`Decider::connect`] and
    /// [`Decider::mail`] at the first RCPT of each transaction, from the
    /// `{client_addr}`, `{client_name}`, `{mail_addr}` and `{auth_authen}`
    /// macros; the MTA then writes one packet less per event.
    pub envelope_events: bool,
}

/// Which events wait for the milter's reply. Every round trip is time the
/// MTA spends waiting per message, so the default asks for the least that
/// keeps every decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Conversation {
    /// CONNECT and MAIL are sent without waiting for a reply (NR_CONN,
    /// NR_MAIL) when the MTA offers it: the decider still hears them, so
    /// work can start early, and a verdict other than CONTINUE given there
    /// is applied at each RCPT instead (ACCEPT: the recipients get
    /// CONTINUE). Two round trips fewer per message.
    #[default]
    Lean,
    /// CONNECT and MAIL wait for their reply, so an ACCEPT there spares the
    /// MTA the rest of the conversation.
    Full,
    /// Only end of message: the protocol's floor, for measuring what the
    /// conversation itself costs an MTA. The decider is never consulted.
    EomOnly,
}

/// Below Sendmail's default 10 s reply timeout for a milter command.
pub const DEFAULT_DECISION_TIMEOUT: Duration = Duration::from_secs(5);

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            idle_timeout: Duration::from_secs(600),
            add_header: false,
            decision_timeout: DEFAULT_DECISION_TIMEOUT,
            conversation: Conversation::default(),
            helo: false,
            envelope_events: true,
        }
    }
}

/// How a milter connection ended, for the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionSummary {
    /// The connection was closed because of a protocol violation (bad
    /// framing, unknown command, OPTNEG refused, idle timeout excluded).
    pub protocol_error: bool,
    pub timed_out: bool,
    /// Recipients answered CONTINUE because their decision missed
    /// [`SessionOptions::decision_timeout`].
    pub decisions_expired: u64,
}

/// Makes one [`Decider`] per milter connection.
pub trait DeciderFactory {
    type Decider: Decider + 'static;
    fn new_decider(&self, conn_id: u64) -> Self::Decider;
    fn options(&self) -> SessionOptions;
    fn session_ended(&self, _summary: &SessionSummary) {}
}

/// The `Wait` type of a decider that always decides at once.
pub type NeverWaits = std::future::Pending<Verdict>;
