//! The one trait a protocol implements to put the whole recipient pipeline
//! behind it ([`FrontEnd`]), and the protocol-neutral [`Verdict`] it turns
//! into its own answers. The milter (`pipeline/milter.rs`) is its first
//! user; docs/architecture.md shows how a second one plugs in.

use crate::greylist::HeaderField;
use crate::reply::Reply;

use super::envelope::Proto;

/// What the pipeline answers for a recipient, or for every recipient of a
/// connection or message decided before RCPT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The recipient passes: the MTA carries on with its other checks.
    /// `header`: the `X-Greylist` trace for a recipient that passed after
    /// its delay, given here only to a front end that adds it per
    /// recipient ([`FrontEnd::HEADER_AT_RCPT`]) with `[greylist] header` on.
    Pass { header: Option<HeaderField> },
    /// Decided for every recipient of the connection (CONNECT) or message
    /// (MAIL): a client or sender accept, authentication, no client IP.
    Accept,
    /// Greylisted: a 4xx reply.
    Tempfail(Reply),
    /// A `reject` list entry: a 5xx reply.
    Reject(Reply),
}

impl Verdict {
    /// The answer that fails open (engine busy, a decision past its
    /// deadline).
    pub const PASS: Verdict = Verdict::Pass { header: None };
}

/// A protocol in front of the pipeline: how a [`Verdict`] is said in it.
/// Its facts reach the pipeline through `Transaction`'s `connect`, `helo`,
/// `mail` and `rcpt`; a protocol that carries them all at once calls them
/// in a row.
pub trait FrontEnd {
    /// `proto=` in the decision log.
    const PROTO: Proto;
    /// Whether the `X-Greylist` header is added with the recipient's answer
    /// (Postfix's `PREPEND`) rather than at end of message (the milter asks
    /// `Transaction::header` then).
    const HEADER_AT_RCPT: bool;
    /// The protocol's answer for one event.
    type Reply;
    /// Says `verdict` in the protocol.
    fn reply(verdict: Verdict) -> Self::Reply;
}
