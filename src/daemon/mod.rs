//! The daemon: event loop, signals, checkpoints, privileges, and the
//! command-line helpers that talk to a running daemon.

mod announce;
pub(crate) mod checkpoint;
pub(crate) mod logging;
pub(crate) mod loop_lag;
pub(crate) mod notify;
pub(crate) mod pidfile;
pub(crate) mod privileges;
pub(crate) mod query;
pub(crate) mod restore;
pub(crate) mod run;
pub(crate) mod serve;
pub(crate) mod signals;
pub(crate) mod syslog;

pub use checkpoint::{
    Checkpointer, Outcome as CheckpointOutcome, Start as CheckpointStart, thread_count,
};
pub use pidfile::read as read_pidfile;
pub use query::{QueryArgs, run as run_query};
pub use run::run;
pub use serve::{Daemon, Event, Events, Setup, bind_admin};
