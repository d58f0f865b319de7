//! The glue between the milter protocol and the greylist engine.
//!
//! * [`decider`]: [`PolicyDecider`], the [`crate::milter::decision::Decider`]
//!   each milter connection gets: engine decisions in, verdicts out.
//! * [`factory`]: [`PolicyFactory`], which makes deciders, gives sessions
//!   their options and counts how sessions ended.
//! * [`log`]: the decision log line.
//! * [`shared`]: the RCPT path of a cluster node (`[cluster]`, Redis).

pub mod decider;
pub mod factory;
pub mod log;
pub mod shared;

pub use decider::{Envelope, PolicyDecider};
pub use factory::{PolicyFactory, SessionCounters, Timeouts};
