//! The daemon: event loop, signals, checkpoints, privileges, and the
//! command-line helpers that talk to a running daemon.

mod announce;
pub mod checkpoint;
pub mod logging;
pub mod loop_lag;
pub mod notify;
pub mod pidfile;
pub mod privileges;
pub mod query;
pub mod restore;
pub mod run;
pub mod serve;
pub mod signals;
pub mod syslog;

pub use run::run;
pub use serve::{Daemon, Event, Events, Setup};
