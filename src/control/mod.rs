//! Live administration through a Unix control socket.
//!
//! * [`protocol`]: the command line format, parsed without trusting it.
//! * [`server`]: the socket, peer credentials, limits; commands go to the
//!   main loop through a channel.
//! * [`handle`]: executes a command against the engine and the allowances.
//! * [`import`]: the batches `greymilter import` streams to a running daemon.
//! * [`check`]: `greymilter check`, the daemon's steps read-only (DNS,
//!   classify, this node's table or Redis' record).
//! * [`shared`]: the Redis half of a command at a cluster node.
//! * [`allows`]: runtime network / sender-domain allowances and their file.
//! * [`client`]: the CLI side.

pub(crate) mod allows;
pub(crate) mod check;
pub(crate) mod cli;
pub(crate) mod client;
pub(crate) mod handle;
pub(crate) mod import;
pub mod protocol;
pub(crate) mod server;
pub(crate) mod shared;

pub use allows::MAX_ALLOWS;
pub use cli::{ControlCommand, run as run_cli, send};
pub use handle::Reply;
