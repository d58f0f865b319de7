//! The daemon: event loop, signals, checkpoints, privileges.

pub mod checkpoint;
pub mod logging;
pub mod pidfile;
pub mod privileges;
pub mod signals;
