//! The greylist engine: keys, static lists, the tuple table, verdicts and
//! statistics. No sockets, no signals; time comes from a [`clock::Clock`].
//!
//! * [`envelope_address`]: envelope address normalisation (bytes in, bounded).
//! * [`key`]: keyed-hash tuple keys; the table stores no strings.
//! * [`list_action`]: what a list entry says.
//! * [`lists`]: compiled static lists, with [`ranges`] (longest-prefix
//!   match by binary search) and [`patterns`] (regular expressions).
//! * [`table`]: pending and whitelisted tuples, timing model, expiry, eviction.
//! * [`awl`]: the client-network auto-whitelist.
//! * [`stats`]: counters and the report.
//! * [`state`]: the versioned, checksummed state file format.
//! * [`facts`]: what DNS found (SPF, zones), as plain data.
//! * [`engine`]: all of the above behind [`Engine`].
//!
//! Nothing here knows the milter protocol or the async runtime: [`crate::pipeline`] drives
//! the engine for the front ends.

pub(crate) mod awl;
pub mod clock;
pub(crate) mod date;
pub(crate) mod dense_map;
pub(crate) mod engine;
pub mod envelope_address;
pub mod facts;
pub mod key;
pub(crate) mod list_action;
pub mod lists;
pub mod patterns;
pub(crate) mod ranges;
pub mod settings;
pub mod state;
pub(crate) mod stats;
pub(crate) mod table;

pub use engine::{
    Action, AdminWalk, Classified, Decision, Engine, Explaining, Explanation, HeaderField, Reason,
    Request, RestoreSummary, SharedView, TableOutcome, TableQuery, TableView, TupleInfo, Via,
    WALK_SLICE,
};
pub use state::StateError;
pub use table::Times;
