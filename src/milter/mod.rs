//! The milter protocol, version 6 (see `shared/docs/milter-protocol.md`).

pub mod decision;
pub mod reply;
