//! List files: the admin's (and postgrey's) whitelist files, read into the
//! same entries as the `[lists]` tables. Plain data, no I/O but reading the
//! files; the engine compiles the result (`crate::greylist::lists`).
//!
//! * [`parse`]: one line: postgrey's forms plus an optional action/delay.
//! * [`load`]: a set of files, all parsed or an error at file:line:col.

pub mod load;
pub mod parse;

pub use load::{LoadError, Source, Summary, load, load_paced};
pub use parse::Kind;
