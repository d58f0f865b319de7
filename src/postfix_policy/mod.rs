//! Postfix's policy delegation protocol (`check_policy_service`), the
//! second front end beside the milter.
//!
//! * [`request`]: the I/O-free request parser, with its bounds.
//! * [`answer`]: the answer writer.
//! * [`connection`]: one connection's driver, and [`connection::Policy`],
//!   the protocol as a front end of the recipient pipeline.
//! * [`server`]: policy connections under the shared accept loop.
//!
//! The protocol knows nothing about greylisting: the connection driver
//! hands each RCPT request to the recipient pipeline and writes back what
//! it decided.

pub mod answer;
pub(crate) mod connection;
pub mod request;
pub(crate) mod server;

pub use answer::Answer;
pub use request::{LIMITS, Limits, Request, RequestError};
