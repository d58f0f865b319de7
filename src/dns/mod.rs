//! DNS for decisions (issue 12): one resolver on the daemon's
//! single-threaded runtime, the allow/block zone checks of a client, the
//! dynamic-name heuristic, SPF, and a breaker for a dead resolver
//! (`crate::breaker`).
//!
//! * [`lookup`]: [`Dns`], the resolver and the two lookup sets (client at
//!   CONNECT, SPF at MAIL), each bounded by `[dns] timeout`.
//! * [`zones`]: DNSWL/DNSBL query names and answer codes.
//! * [`rdns`]: does a verified client name look dynamic?
//! * [`transaction`]: the lookups of one milter connection, started early,
//!   awaited at RCPT.
//! * [`spf_walk`]: `greymilter spf-walk`, the networks SPF records
//!   authorise, for list files.
//! * [`spf_cache`]: parsed SPF records, kept for their TTL.
//!
//! Everything here fails open: a failed or slow lookup is "no information"
//! and the engine (`crate::greylist`, plain data only) decides as without
//! DNS.

pub(crate) mod lookup;
pub(crate) mod rdns;
pub(crate) mod spf_cache;
pub(crate) mod spf_walk;
pub(crate) mod transaction;
pub(crate) mod zones;

use std::net::SocketAddr;
use std::time::Duration;

pub use lookup::{Dns, Outcome, build_resolver};
pub use spf_walk::{refuses_queries, walk as spf_walk};
pub use zones::Zone;

/// The settings of this module, from `[dns]` and `[greylist]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsSettings {
    /// Empty: /etc/resolv.conf.
    pub servers: Vec<SocketAddr>,
    pub timeout: Duration,
    pub cache_size: usize,
    /// Evaluate SPF at MAIL (`spf` is not `off`).
    pub spf: bool,
    pub allow_zones: Vec<zones::Zone>,
    pub block_zones: Vec<zones::Zone>,
    pub selective: bool,
    pub dynamic_words: Vec<String>,
}

impl DnsSettings {
    /// Whether any check needs DNS (or the name heuristic).
    pub fn wanted(&self) -> bool {
        self.spf || self.selective || !self.allow_zones.is_empty() || !self.block_zones.is_empty()
    }
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            servers: Vec::new(),
            timeout: Duration::from_secs(2),
            cache_size: 4096,
            spf: false,
            allow_zones: Vec::new(),
            block_zones: Vec::new(),
            selective: false,
            dynamic_words: rdns::DEFAULT_WORDS.iter().map(|w| w.to_string()).collect(),
        }
    }
}
