//! The milter protocol, version 6, as docs/milter.md describes it.
//!
//! Layers, bottom up: [`codec`] (framing, commands, responses), [`negotiate`],
//! [`macros`] and [`client_address`] (pieces of a conversation), [`session`] (the
//! I/O-free state machine; `session/envelope.rs` rebuilds a skipped CONNECT and
//! MAIL from RCPT macros, `session/replies.rs` turns verdicts into packets), [`connection`] (its async driver), [`listener`] and [`server`] (sockets,
//! limits, shutdown), and [`client`] (the MTA side, for tests and tools).
//! Nothing here knows about greylisting: [`decision`] is the only seam.

pub mod client;
pub mod client_address;
pub mod codec;
pub mod connection;
pub mod decision;
pub mod listener;
pub(crate) mod macros;
pub mod negotiate;
pub mod server;
pub mod session;
