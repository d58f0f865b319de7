//! What DNS told us about a transaction, as plain data the engine can use
//! without knowing about resolvers: the SPF result and authenticated domain,
//! whether the client is in an allow or block zone, and whether its name
//! looks suspicious. Filled in by `crate::dns`; a missing fact means "no
//! information", and the engine then decides as without DNS.

use std::time::Duration;

/// `[greylist] spf`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SpfMode {
    /// SPF is not evaluated.
    #[default]
    Off,
    /// On `pass`, the tuple's network part is the SPF-authenticated domain.
    Key,
    /// On `pass`, the recipient is not greylisted.
    Skip,
}

impl SpfMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SpfMode::Off => "off",
            SpfMode::Key => "key",
            SpfMode::Skip => "skip",
        }
    }
}

/// RFC 7208 results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpfResult {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError,
    PermError,
}

impl SpfResult {
    pub fn as_str(self) -> &'static str {
        match self {
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::Neutral => "neutral",
            SpfResult::None => "none",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
        }
    }
}

/// The engine's part of the DNS settings (the zones and the resolver live
/// in `crate::dns`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsPolicy {
    pub spf: SpfMode,
    /// Delay for clients listed in a block zone.
    pub block_delay: Duration,
    /// Greylist only suspicious clients.
    pub selective: bool,
}

impl Default for DnsPolicy {
    fn default() -> Self {
        DnsPolicy {
            spf: SpfMode::Off,
            block_delay: Duration::from_secs(30 * 60),
            selective: false,
        }
    }
}

/// The client checks started at CONNECT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientFacts {
    /// Listed in an allow zone with an accepted answer.
    pub allow_listed: bool,
    /// Listed in a block zone with an accepted answer.
    pub block_listed: bool,
    /// No verified reverse name, or one that looks dynamic.
    pub suspicious_name: bool,
}

/// An SPF evaluation: the result and the domain it is about (lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfFacts {
    pub result: SpfResult,
    pub domain: String,
}

/// Everything known for one recipient. `None` = no information (not asked,
/// timed out, or the resolver failed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsFacts {
    pub client: Option<ClientFacts>,
    pub spf: Option<SpfFacts>,
}

impl DnsFacts {
    /// The SPF domain when SPF passed.
    pub fn spf_pass_domain(&self) -> Option<&str> {
        self.view().spf_pass_domain()
    }

    pub fn view(&self) -> DnsView<'_> {
        DnsView {
            client: self.client,
            spf: self.spf.as_ref(),
        }
    }
}

/// [`DnsFacts`] borrowed: what a decision reads from lookups that are
/// done, without copying the SPF domain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsView<'a> {
    pub client: Option<ClientFacts>,
    pub spf: Option<&'a SpfFacts>,
}

impl<'a> DnsView<'a> {
    /// The SPF domain when SPF passed.
    pub fn spf_pass_domain(&self) -> Option<&'a str> {
        self.spf
            .filter(|s| s.result == SpfResult::Pass && !s.domain.is_empty())
            .map(|s| s.domain.as_str())
    }

    pub fn spf_result(&self) -> Option<SpfResult> {
        self.spf.map(|s| s.result)
    }
}
