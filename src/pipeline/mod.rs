//! The recipient pipeline behind every front end, and the glue between a
//! protocol and the greylist engine (docs/architecture.md).
//!
//! * [`envelope`]: what a front end tells the pipeline ([`Envelope`]),
//!   where a decision came from ([`Source`]), the DNS handle. The leaf.
//! * [`front`]: [`FrontEnd`], the one trait a protocol implements, and the
//!   protocol-neutral [`Verdict`].
//! * [`transaction`]: [`Pipeline`] (engine, cluster, DNS) and
//!   [`Transaction`], one front-end connection's state; every recipient
//!   ends in its one finish path.
//! * [`cluster`]: the table step of a cluster node (Redis, fallback).
//! * [`log`]: the decision log line.
//! * [`milter`]: the milter as the first front end ([`MilterDecider`]).
//! * [`factory`]: [`MilterFactory`], which makes deciders, gives milter
//!   sessions their options and counts how they ended.

mod cluster;
mod envelope;
mod factory;
mod front;
mod log;
mod milter;
mod transaction;

pub use envelope::{CurrentDns, Envelope, MAX_KEPT, Proto, Source};
pub use factory::{MilterFactory, SessionCounters, Timeouts};
pub use front::{FrontEnd, Verdict};
pub use milter::{Milter, MilterDecider};
pub use transaction::{Pipeline, Step, Transaction, Wait, Waited};
