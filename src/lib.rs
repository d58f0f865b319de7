//! greymilter: a greylisting milter for Postfix and Sendmail.
//!
//! Data flows one way: socket → [`milter::codec`] → [`milter::session`] →
//! [`milter::decision`] (the seam) → [`pipeline`] (the recipient pipeline) → [`greylist`]
//! engine → tuple table, and the verdict back. The protocol layer knows
//! nothing about greylisting; the engine knows nothing about sockets,
//! milter or tokio; [`daemon`] owns the event loop, signals and checkpoints.
//! [`reply`] (validated SMTP replies) and [`config`] are shared by all.

// Data from the network or a file must never panic the daemon: no
// `unwrap`, `expect`, `[i]` or `[a..b]` (on slices or strings) outside tests,
// anywhere in the library. Take `get`, `first_chunk`, `split_once`, … and
// handle the `None`. An `#[allow]` needs a comment saying why it cannot
// fire (only for constants, like the default reply templates).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::string_slice
    )
)]

pub(crate) mod breaker;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dns;
pub(crate) mod files;
pub mod greylist;
pub(crate) mod import;
pub mod lists;
pub(crate) mod log_output;
pub mod memory;
pub(crate) mod metrics;
pub mod milter;
pub mod pace;
pub mod pipeline;
pub mod postfix_policy;
pub mod prefault;
pub(crate) mod ratelimit;
pub mod reply;
pub(crate) mod slots;
pub mod stdout;

// The seams of the modules kept to the crate: what the binary, tests,
// examples, benches and fuzz targets use of them.
pub use files::atomic::write_atomically;
pub use import::cli::run as run_import;
pub use metrics::render::{Input as MetricsInput, render as render_metrics};
