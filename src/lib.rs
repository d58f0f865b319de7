//! greymilter: a greylisting milter for Postfix and Sendmail.
//!
//! Data flows one way: socket → [`milter::codec`] → [`milter::session`] →
//! [`greylist`] policy → tuple table, and the verdict back. The protocol
//! layer knows nothing about greylisting; the engine knows nothing about
//! sockets; [`daemon`] owns the event loop, signals and checkpoints.

pub mod config;
pub mod daemon;
pub mod files;
pub mod greylist;
pub mod milter;
pub mod ratelimit;
