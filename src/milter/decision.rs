//! The only seam between the protocol layer and whatever decides.
//!
//! The session calls a [`Decider`] at CONNECT, MAIL, RCPT and EOM and turns
//! its [`Verdict`]s into milter replies. It knows nothing about greylisting;
//! the greylist engine knows nothing about sockets.

use std::net::IpAddr;
use std::time::Duration;

use super::reply::Reply;

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
    /// SMFIC_MAIL with the sender argument as sent (`<a@b>`, `<>`, …).
    fn mail(&mut self, sender: &[u8], macros: &dyn Macros) -> Verdict;
    /// SMFIC_RCPT with the recipient argument as sent. Each recipient is
    /// decided on its own.
    fn rcpt(&mut self, recipient: &[u8], macros: &dyn Macros) -> Verdict;
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
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            idle_timeout: Duration::from_secs(600),
            add_header: false,
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
}

/// Makes one [`Decider`] per milter connection.
pub trait DeciderFactory {
    type Decider: Decider + 'static;
    fn new_decider(&self, conn_id: u64) -> Self::Decider;
    fn options(&self) -> SessionOptions;
    fn session_ended(&self, _summary: &SessionSummary) {}
}
