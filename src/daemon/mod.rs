//! The daemon: event loop, signals, checkpoints, privileges, and the
//! command-line helpers that talk to a running daemon.

pub mod checkpoint;
pub mod logging;
pub mod notify;
pub mod pidfile;
pub mod privileges;
pub mod query;
pub mod run;
pub mod signals;
pub mod syslog;

pub use run::run;
