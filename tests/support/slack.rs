//! The one scheduling slack of the suite.

use std::time::Duration;

/// What a loaded 2-core CI machine may add to anything a test times: a
/// latency bound is the configured budget (a DNS or cluster timeout) plus
/// this. Exact figures are measured by the benchmarks, not here.
pub const SCHEDULING_SLACK: Duration = Duration::from_secs(2);
