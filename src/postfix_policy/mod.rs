//! Postfix's policy delegation protocol (`check_policy_service`), the
//! second front end beside the milter.
//!
//! * [`request`]: the I/O-free request parser, with its bounds.
//! * [`answer`]: the answer writer.
//!
//! The protocol knows nothing about greylisting: the connection driver
//! hands each RCPT request to the recipient pipeline and writes back what
//! it decided.

pub mod answer;
pub mod request;

pub use answer::Answer;
pub use request::{LIMITS, Limits, Request, RequestError};
