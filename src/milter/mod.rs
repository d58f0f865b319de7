//! The milter protocol, version 6 (see `shared/docs/milter-protocol.md`).
//!
//! Layers, bottom up: [`codec`] (framing, commands, responses), [`negotiate`],
//! [`macros`] and [`address`] (pieces of a conversation), [`session`] (the
//! I/O-free state machine), [`connection`] (its async driver), [`listener`] and [`server`] (sockets,
//! limits, shutdown), and [`client`] (the MTA side, for tests and tools).
//! Nothing here knows about greylisting: [`decision`] is the only seam.

pub mod address;
pub mod client;
pub mod codec;
pub mod connection;
pub mod decision;
pub mod listener;
pub mod macros;
pub mod negotiate;
pub mod server;
pub mod session;
