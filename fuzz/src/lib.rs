//! The checks behind greymilter's fuzz targets, one module per target.
//!
//! Each `check` takes the fuzzer's bytes, drives one public API of the
//! `greymilter` crate with them and panics when an invariant breaks (libFuzzer
//! reports a panic as a crash). The targets in `fuzz_targets/` only call
//! these, so the same checks replay the committed corpus in `cargo test`
//! (see `tests/corpus.rs`) without a nightly compiler.

pub mod address;
pub mod config;
pub mod control_line;
pub mod frame_decoder;
pub mod postfix_request;
pub mod session;
pub mod state_file;

/// The engine's clock at the start of every run: a fixed instant, so that a
/// crash reproduces.
pub const START: u64 = 1_700_000_000;
