//! Live administration through a Unix control socket.
//!
//! * [`protocol`]: the command line format, parsed without trusting it.
//! * [`server`]: the socket, peer credentials, limits; commands go to the
//!   main loop through a channel.
//! * [`handle`]: executes a command against the engine and the allowances.
//! * [`check`]: `greymilter check`, the daemon's steps read-only (DNS,
//!   classify, this node's table or Redis' record).
//! * [`shared`]: the Redis half of a command at a cluster node.
//! * [`allows`]: runtime network / sender-domain allowances and their file.
//! * [`client`]: the CLI side.

pub mod allows;
pub mod check;
pub mod cli;
pub mod client;
pub mod handle;
pub mod protocol;
pub mod server;
pub mod shared;
