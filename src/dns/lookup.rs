//! The resolver and the lookup sets a transaction starts.
//!
//! Crates: `hickory-resolver` (MIT/Apache-2.0) with its tokio runtime
//! provider, which spawns its I/O tasks on the caller's runtime and starts no
//! thread as long as nameservers are IP addresses (they are: from the
//! config or resolv.conf), and `mail-auth` (MIT/Apache-2.0) for the SPF
//! evaluation (RFC 7208 lookup limits, macros, include/redirect), which
//! queries through the same resolver. The resolver's own cache (bounded by
//! `cache_size` records, TTLs honoured) serves repeated lookups; parsed SPF
//! records are kept apart ([`TxtCache`], same bound) so a warm check does
//! not parse them again.

use std::cell::RefCell;
use std::net::IpAddr;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{TokioResolver, system_conf};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{MessageAuthenticator, Parameters};
use tracing::warn;

use super::spf_cache::TxtCache;
use super::zones::Zone;
use super::{DnsSettings, rdns};
use crate::breaker::{Allow, Breaker, Failure, Policy};
use crate::greylist::facts::{ClientFacts, SpfFacts, SpfResult};
use crate::ratelimit::LogLimiter;

static FAIL_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(60));
static BREAKER_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(60));

/// After three failed lookup sets the resolver is left alone for 5 s, and
/// twice as long after each failed probe, up to 5 minutes.
const BREAKER: Policy = Policy {
    trip_after: 3,
    first_pause: Duration::from_secs(5),
    max_pause: Duration::from_secs(300),
};

/// Longest domain kept from an SPF check.
const MAX_DOMAIN: usize = 253;

/// What a lookup set found, and how many of its queries failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<T> {
    /// `None`: no information.
    pub facts: Option<T>,
    pub timeouts: u64,
    pub errors: u64,
}

impl<T> Default for Outcome<T> {
    fn default() -> Self {
        Outcome {
            facts: None,
            timeouts: 0,
            errors: 0,
        }
    }
}

pub struct Dns {
    /// `None`: no usable resolver configuration; every lookup is "no
    /// information" at once.
    auth: Option<MessageAuthenticator>,
    settings: DnsSettings,
    breaker: RefCell<Breaker>,
    /// Parsed SPF records (bounded by `cache_size` too).
    spf_records: TxtCache,
}

enum Answer {
    Listed,
    NotListed,
    Timeout,
    Error,
}

impl Dns {
    /// Never fails: without a usable configuration DNS gives no
    /// information (logged once).
    pub fn new(settings: DnsSettings) -> Dns {
        Dns::with_resolv_conf(settings, Path::new(RESOLV_CONF))
    }

    /// As [`Dns::new`], with `resolv_conf` read in place of
    /// /etc/resolv.conf when `settings.servers` is empty (tests reach the
    /// "no resolver" path this way on any host).
    pub fn with_resolv_conf(settings: DnsSettings, resolv_conf: &Path) -> Dns {
        let auth = match build_resolver_from(&settings, resolv_conf) {
            Ok(r) => Some(MessageAuthenticator(r)),
            Err(e) => {
                warn!("DNS checks disabled: {e}");
                None
            }
        };
        Dns {
            auth,
            spf_records: TxtCache::new(settings.cache_size),
            settings,
            breaker: RefCell::new(Breaker::new(BREAKER)),
        }
    }

    /// False when no usable resolver configuration was found: every
    /// lookup then answers "no information" at once.
    pub fn resolves(&self) -> bool {
        self.auth.is_some()
    }

    pub fn settings(&self) -> &DnsSettings {
        &self.settings
    }

    /// Whether CONNECT should start the client checks.
    pub fn wants_client(&self) -> bool {
        let s = &self.settings;
        s.selective || !s.allow_zones.is_empty() || !s.block_zones.is_empty()
    }

    pub fn wants_spf(&self) -> bool {
        self.settings.spf
    }

    fn may_query(&self) -> bool {
        self.auth.is_some() && self.breaker.borrow_mut().allow(Instant::now()) != Allow::Skip
    }

    fn record(&self, failed: bool) {
        let mut b = self.breaker.borrow_mut();
        if !failed {
            b.success();
        } else if b.failure(Instant::now()) != Failure::Counted
            && let Some(held) = BREAKER_LOG.allow()
        {
            warn!(
                "DNS: lookups keep failing; not asking the resolver for a while ({held} more suppressed)"
            );
        }
    }

    /// The client checks: allow and block zones, and the name heuristic.
    /// Always gives facts (the name check needs no DNS); a zone whose
    /// lookup failed counts as not listed.
    pub async fn client(self: Rc<Self>, addr: IpAddr, name: Vec<u8>) -> Outcome<ClientFacts> {
        let s = &self.settings;
        let mut out = Outcome {
            facts: Some(ClientFacts {
                suspicious_name: s.selective && rdns::suspicious(&name, addr, &s.dynamic_words),
                ..ClientFacts::default()
            }),
            timeouts: 0,
            errors: 0,
        };
        if (s.allow_zones.is_empty() && s.block_zones.is_empty()) || !self.may_query() {
            return out;
        }
        let allow = join_all(s.allow_zones.iter().map(|z| self.listed(z, addr)));
        let block = join_all(s.block_zones.iter().map(|z| self.listed(z, addr)));
        let (allow, block) = futures_util::join!(allow, block);
        let mut facts = out.facts.unwrap_or_default();
        for (answers, flag) in [
            (allow, &mut facts.allow_listed),
            (block, &mut facts.block_listed),
        ] {
            for a in answers {
                match a {
                    Answer::Listed => *flag = true,
                    Answer::NotListed => {}
                    Answer::Timeout => out.timeouts += 1,
                    Answer::Error => out.errors += 1,
                }
            }
        }
        out.facts = Some(facts);
        self.record(out.timeouts + out.errors > 0);
        out
    }

    async fn listed(&self, zone: &Zone, addr: IpAddr) -> Answer {
        let Some(auth) = &self.auth else {
            return Answer::Error;
        };
        let name = zone.query_name(addr);
        match tokio::time::timeout(self.settings.timeout, auth.ipv4_lookup_raw(&name)).await {
            Err(_) => {
                log_failure(&name, "timed out");
                Answer::Timeout
            }
            Ok(Ok(entry)) => {
                if entry.entry.iter().any(|a| zone.accepts(*a)) {
                    Answer::Listed
                } else {
                    Answer::NotListed
                }
            }
            Ok(Err(mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(_)))) => {
                Answer::NotListed
            }
            Ok(Err(e)) => {
                log_failure(&name, &e.to_string());
                Answer::Error
            }
        }
    }

    /// SPF for the MAIL FROM domain, or the HELO name for the null sender.
    pub async fn spf(
        self: Rc<Self>,
        addr: IpAddr,
        helo: String,
        sender: String,
    ) -> Outcome<SpfFacts> {
        let mut out = Outcome::default();
        let helo = helo.trim().trim_end_matches('.').to_ascii_lowercase();
        let sender = envelope_address(&sender);
        let domain = match sender.rsplit_once('@') {
            Some((_, d)) => d.to_string(),
            None if sender.is_empty() => helo.clone(),
            None => return out,
        };
        if domain.is_empty() || domain.len() > MAX_DOMAIN {
            return out;
        }
        if !self.may_query() {
            return out;
        }
        let Some(auth) = &self.auth else {
            return out;
        };
        let params = if sender.is_empty() {
            SpfParameters::verify_ehlo(addr, &helo, "unknown")
        } else {
            SpfParameters::verify_mail_from(addr, &helo, "unknown", &sender)
        };
        let check = auth.check_host(Parameters::new(params).with_txt_cache(&self.spf_records));
        let result = match tokio::time::timeout(self.settings.timeout, check).await {
            Err(_) => {
                log_failure(&domain, "SPF check timed out");
                out.timeouts = 1;
                self.record(true);
                return out;
            }
            Ok(o) => result_of(o.result()),
        };
        if result == SpfResult::TempError {
            out.errors = 1;
        }
        self.record(result == SpfResult::TempError);
        out.facts = Some(SpfFacts { result, domain });
        out
    }
}

/// `<User@Example.COM>` → `User@example.com`; `<>` → empty.
fn envelope_address(raw: &str) -> String {
    let a = raw.trim();
    let a = a.strip_prefix('<').unwrap_or(a);
    let a = a.strip_suffix('>').unwrap_or(a);
    match a.rsplit_once('@') {
        Some((local, domain)) => {
            format!(
                "{local}@{}",
                domain.trim_end_matches('.').to_ascii_lowercase()
            )
        }
        None => a.to_string(),
    }
}

fn result_of(r: mail_auth::SpfResult) -> SpfResult {
    match r {
        mail_auth::SpfResult::Pass => SpfResult::Pass,
        mail_auth::SpfResult::Fail => SpfResult::Fail,
        mail_auth::SpfResult::SoftFail => SpfResult::SoftFail,
        mail_auth::SpfResult::Neutral => SpfResult::Neutral,
        mail_auth::SpfResult::TempError => SpfResult::TempError,
        mail_auth::SpfResult::PermError => SpfResult::PermError,
        mail_auth::SpfResult::None => SpfResult::None,
    }
}

fn log_failure(name: &str, what: &str) {
    if let Some(held) = FAIL_LOG.allow() {
        let name: String = name.chars().take(120).collect();
        warn!("DNS lookup for {name:?}: {what} ({held} more suppressed)");
    }
}

const RESOLV_CONF: &str = "/etc/resolv.conf";

/// A resolver on the caller's runtime, with the nameservers of `s` (or
/// /etc/resolv.conf), its timeout and cache size, one attempt per query.
pub fn build_resolver(s: &DnsSettings) -> Result<TokioResolver, String> {
    build_resolver_from(s, Path::new(RESOLV_CONF))
}

fn build_resolver_from(s: &DnsSettings, resolv_conf: &Path) -> Result<TokioResolver, String> {
    let config = if s.servers.is_empty() {
        let where_ = resolv_conf.display();
        let text = std::fs::read(resolv_conf).map_err(|e| format!("cannot read {where_}: {e}"))?;
        let (config, _) = system_conf::parse_resolv_conf(text)
            .map_err(|e| format!("no usable nameserver in {where_}: {e}"))?;
        // Only the nameservers: our names are absolute, no search list.
        ResolverConfig::from_name_servers(config.name_servers().to_vec())
    } else {
        let servers = s
            .servers
            .iter()
            .map(|a| {
                let mut ns = NameServerConfig::udp_and_tcp(a.ip());
                for c in &mut ns.connections {
                    c.port = a.port();
                }
                ns
            })
            .collect();
        ResolverConfig::from_name_servers(servers)
    };
    if config.name_servers().is_empty() {
        return Err("no nameserver configured".to_string());
    }
    let mut opts = ResolverOpts::default();
    opts.timeout = s.timeout;
    opts.attempts = 1;
    opts.cache_size = u64::try_from(s.cache_size).unwrap_or(u64::MAX);
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ndots = 0;
    opts.positive_max_ttl = Some(Duration::from_secs(86_400));
    opts.negative_max_ttl = Some(Duration::from_secs(3600));
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .map_err(|e| format!("cannot build the resolver: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_addresses() {
        assert_eq!(envelope_address("<User@Example.COM.>"), "User@example.com");
        assert_eq!(envelope_address("<>"), "");
        assert_eq!(envelope_address(""), "");
    }
}
