//! `greymilter spf-walk`: the networks a domain's SPF record authorises,
//! expanded for a list file that cron regenerates.
//!
//! Only what an SPF check would *pass* is collected: `ip4:`/`ip6:`, the
//! addresses of `a` and `mx` (with their prefix lengths), and whatever an
//! `include:` or `redirect=` target authorises. Directives with another
//! qualifier authorise nothing and are left out. `exists:`, `ptr` and
//! macros depend on the client, so they cannot become networks; they are
//! skipped with a note.
//!
//! RFC 7208's limits apply to each domain's walk as they would to one check
//! of it (section 4.6.4): at most 10 DNS-querying terms, at most 2 void
//! lookups, at most 10 MX names per `mx`; a domain that includes itself,
//! directly or not, is refused at once. A walk that breaks a limit, meets a
//! DNS failure or finds no usable record gives no networks at all: a partial
//! list would silently drop senders that the last good list accepted.
//!
//! Records are parsed by `mail-auth`'s SPF parser, the one the daemon's SPF
//! checks use; the queries go through the project's resolver.

use std::collections::BTreeSet;
use std::net::IpAddr;

use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;
use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use ipnet::IpNet;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::spf::{Macro, Mechanism, Qualifier, Spf};

/// DNS-querying mechanisms and modifiers per walk (RFC 7208 4.6.4).
pub const MAX_LOOKUPS: u32 = 10;
/// Lookups that found nothing, per walk (RFC 7208 4.6.4).
pub const MAX_VOID: u32 = 2;
/// Names one `mx` may return (RFC 7208 4.6.4).
pub const MAX_MX: usize = 10;
/// Longest domain name.
const MAX_NAME: usize = 253;

/// What one domain's walk found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainWalk {
    pub domain: String,
    /// Empty when `error` is set.
    pub networks: BTreeSet<IpNet>,
    /// What could not be expanded (macros, `exists`, `ptr`, other
    /// qualifiers); the walk is still complete.
    pub notes: Vec<String>,
    /// Why the domain gives no networks.
    pub error: Option<String>,
}

/// The walks of every domain asked for, in the order asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walk {
    pub domains: Vec<DomainWalk>,
}

impl Walk {
    /// Every domain was walked without error.
    pub fn complete(&self) -> bool {
        self.domains.iter().all(|d| d.error.is_none())
    }

    /// The list file: a header naming the domains, then every network of
    /// the domains walked without error, sorted, once each. No date, so
    /// that an unchanged result gives an unchanged file.
    pub fn list_file(&self) -> String {
        let names: Vec<&str> = self.domains.iter().map(|d| d.domain.as_str()).collect();
        let mut out = format!(
            "# greymilter spf-walk {}\n\
             # The networks that these domains' SPF records authorise (pass),\n\
             # following include, redirect, a and mx.\n",
            names.join(" ")
        );
        for d in self.domains.iter().filter(|d| d.error.is_some()) {
            out.push_str(&format!("# {}: left out, walk failed\n", d.domain));
        }
        let all: BTreeSet<&IpNet> = self.domains.iter().flat_map(|d| &d.networks).collect();
        for net in all {
            out.push_str(&format!("{net}\n"));
        }
        out
    }
}

/// Walks each domain in turn through `resolver`.
pub async fn walk(resolver: &TokioResolver, domains: &[String]) -> Walk {
    let mut out = Vec::with_capacity(domains.len());
    for raw in domains {
        let domain = normalise(raw);
        let mut state = State {
            resolver,
            lookups: 0,
            voids: 0,
            stack: Vec::new(),
            networks: BTreeSet::new(),
            notes: Vec::new(),
        };
        let result = if domain.is_empty() || domain.len() > MAX_NAME {
            Err("not a domain name".to_string())
        } else {
            state.record(domain.clone()).await
        };
        out.push(DomainWalk {
            domain: if domain.is_empty() {
                raw.clone()
            } else {
                domain
            },
            networks: if result.is_ok() {
                state.networks
            } else {
                BTreeSet::new()
            },
            notes: state.notes,
            error: result.err(),
        });
    }
    Walk { domains: out }
}

fn normalise(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

struct State<'a> {
    resolver: &'a TokioResolver,
    lookups: u32,
    voids: u32,
    /// The include/redirect chain being walked, for loop detection.
    stack: Vec<String>,
    networks: BTreeSet<IpNet>,
    notes: Vec<String>,
}

impl State<'_> {
    fn count_lookup(&mut self, term: &str, domain: &str) -> Result<(), String> {
        self.lookups += 1;
        if self.lookups > MAX_LOOKUPS {
            return Err(format!(
                "more than {MAX_LOOKUPS} DNS lookups (at {term} in the record of {domain})"
            ));
        }
        Ok(())
    }

    fn count_void(&mut self, name: &str) -> Result<(), String> {
        self.voids += 1;
        if self.voids > MAX_VOID {
            return Err(format!(
                "more than {MAX_VOID} lookups found nothing (the last: {name})"
            ));
        }
        Ok(())
    }

    /// Walks the SPF record of `domain`, boxed because include and
    /// redirect recurse (at most `MAX_LOOKUPS` deep).
    fn record(&mut self, domain: String) -> LocalBoxFuture<'_, Result<(), String>> {
        async move {
            if self.stack.contains(&domain) {
                return Err(format!("loop: {} -> {domain}", self.stack.join(" -> ")));
            }
            let spf = self.fetch(&domain).await?;
            self.stack.push(domain.clone());
            let mut saw_all = false;
            for d in spf.directives.iter() {
                let pass = d.qualifier == Qualifier::Pass;
                match &d.mechanism {
                    Mechanism::All => saw_all = true,
                    Mechanism::Ip4 { addr, mask } if pass => {
                        self.add(IpAddr::V4(*addr), mask.leading_ones());
                    }
                    Mechanism::Ip6 { addr, mask } if pass => {
                        self.add(IpAddr::V6(*addr), mask.leading_ones());
                    }
                    Mechanism::Ip4 { .. } | Mechanism::Ip6 { .. } => {
                        self.note(&domain, "an ip4/ip6 without pass qualifier");
                    }
                    Mechanism::A {
                        macro_string,
                        ip4_mask,
                        ip6_mask,
                    } => {
                        self.count_lookup("a", &domain)?;
                        let Some(target) = self.target(macro_string, &domain, "a") else {
                            continue;
                        };
                        if !pass {
                            self.note(&domain, "an a without pass qualifier");
                            continue;
                        }
                        let found = self
                            .addresses(&target, ip4_mask.leading_ones(), ip6_mask.leading_ones())
                            .await?;
                        if !found {
                            self.count_void(&target)?;
                        }
                    }
                    Mechanism::Mx {
                        macro_string,
                        ip4_mask,
                        ip6_mask,
                    } => {
                        self.count_lookup("mx", &domain)?;
                        let Some(target) = self.target(macro_string, &domain, "mx") else {
                            continue;
                        };
                        if !pass {
                            self.note(&domain, "an mx without pass qualifier");
                            continue;
                        }
                        self.mx(&target, ip4_mask.leading_ones(), ip6_mask.leading_ones())
                            .await?;
                    }
                    Mechanism::Include { macro_string } => {
                        self.count_lookup("include", &domain)?;
                        let Some(target) = self.target(macro_string, &domain, "include") else {
                            continue;
                        };
                        if !pass {
                            self.note(&domain, &format!("include:{target} without pass qualifier"));
                            continue;
                        }
                        self.record(target).await?;
                    }
                    Mechanism::Ptr { .. } => {
                        self.count_lookup("ptr", &domain)?;
                        self.note(&domain, "ptr depends on the client");
                    }
                    Mechanism::Exists { .. } => {
                        self.count_lookup("exists", &domain)?;
                        self.note(&domain, "exists depends on the client");
                    }
                }
            }
            // RFC 7208 6.1: redirect is ignored when the record has `all`.
            if let (false, Some(redirect)) = (saw_all, &spf.redirect) {
                self.count_lookup("redirect", &domain)?;
                if let Some(target) = self.target(redirect, &domain, "redirect") {
                    self.record(target).await?;
                }
            }
            self.stack.pop();
            Ok(())
        }
        .boxed_local()
    }

    fn note(&mut self, domain: &str, what: &str) {
        self.notes.push(format!("{domain}: skipped {what}"));
    }

    /// The domain a mechanism names; `None` (with a note) for a macro.
    fn target(&mut self, m: &Macro, domain: &str, term: &str) -> Option<String> {
        let mut name = Vec::new();
        if !literal(m, &mut name) {
            self.note(domain, &format!("{term} with a macro"));
            return None;
        }
        if name.is_empty() {
            return Some(domain.to_string());
        }
        match String::from_utf8(name) {
            Ok(n) => Some(normalise(&n)),
            Err(_) => {
                self.note(domain, &format!("{term} naming no valid domain"));
                None
            }
        }
    }

    fn add(&mut self, addr: IpAddr, prefix: u32) {
        let prefix = u8::try_from(prefix).unwrap_or(u8::MAX);
        if let Ok(net) = IpNet::new(addr, prefix) {
            self.networks.insert(net.trunc());
        }
    }

    /// Adds `name`'s addresses with the given prefix lengths; whether there
    /// were any.
    async fn addresses(&mut self, name: &str, v4: u32, v6: u32) -> Result<bool, String> {
        let mut found = false;
        for rtype in [RecordType::A, RecordType::AAAA] {
            for data in self.query(name, rtype).await? {
                match data {
                    RData::A(a) => self.add(IpAddr::V4(a.0), v4),
                    RData::AAAA(a) => self.add(IpAddr::V6(a.0), v6),
                    _ => continue,
                }
                found = true;
            }
        }
        Ok(found)
    }

    async fn mx(&mut self, domain: &str, v4: u32, v6: u32) -> Result<(), String> {
        let hosts: Vec<String> = self
            .query(domain, RecordType::MX)
            .await?
            .into_iter()
            .filter_map(|d| match d {
                RData::MX(mx) => Some(normalise(&mx.exchange.to_ascii())),
                _ => None,
            })
            .collect();
        if hosts.is_empty() {
            return self.count_void(domain);
        }
        if hosts.len() > MAX_MX {
            return Err(format!("{domain} has more than {MAX_MX} MX names"));
        }
        for host in hosts {
            // RFC 7208 5.4: a null MX (".") matches nothing.
            if !host.is_empty() {
                self.addresses(&host, v4, v6).await?;
            }
        }
        Ok(())
    }

    /// The one SPF record of `domain`.
    async fn fetch(&mut self, domain: &str) -> Result<Spf, String> {
        let mut records = Vec::new();
        let Some(answers) = self.query_nx(domain, RecordType::TXT).await? else {
            return Err(format!("{domain} does not exist (NXDOMAIN)"));
        };
        for data in answers {
            if let RData::TXT(txt) = data {
                let text: Vec<u8> = txt
                    .txt_data
                    .iter()
                    .flat_map(|s| s.iter().copied())
                    .collect();
                if is_spf(&text) {
                    records.push(text);
                }
            }
        }
        let text = match records.as_slice() {
            [] => return Err(format!("{domain} has no SPF record")),
            [one] => one,
            _ => return Err(format!("{domain} has more than one SPF record")),
        };
        Spf::parse(text).map_err(|e| format!("the SPF record of {domain} does not parse: {e}"))
    }

    /// The answers of one query; empty for NXDOMAIN or no records.
    async fn query(&self, name: &str, rtype: RecordType) -> Result<Vec<RData>, String> {
        Ok(self.query_nx(name, rtype).await?.unwrap_or_default())
    }

    /// The answers of one query; `None` for NXDOMAIN, empty for no records.
    async fn query_nx(&self, name: &str, rtype: RecordType) -> Result<Option<Vec<RData>>, String> {
        let fqdn = Name::from_ascii(format!("{name}."))
            .map_err(|e| format!("{name:?} is not a domain name: {e}"))?;
        match self.resolver.lookup(fqdn, rtype).await {
            Ok(lookup) => Ok(Some(
                lookup.answers().iter().map(|r| r.data.clone()).collect(),
            )),
            Err(e) if e.is_nx_domain() => Ok(None),
            Err(e) if e.is_no_records_found() => Ok(Some(Vec::new())),
            Err(e) => Err(format!("DNS lookup of {name} {rtype} failed: {e}")),
        }
    }
}

/// Whether a DNS server refuses UDP queries outright (ICMP port
/// unreachable: nothing listens there), found within `wait`. The resolver
/// would only report a timeout, after waiting its whole timeout per
/// transport; `spf-walk` asks this first so it can say what is wrong.
pub fn refuses_queries(server: std::net::SocketAddr, wait: std::time::Duration) -> bool {
    // A query for the root's NS records, recursion desired.
    const QUERY: [u8; 17] = [
        0x47, 0x4d, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1,
    ];
    let local: std::net::SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let Ok(socket) = std::net::UdpSocket::bind(local) else {
        return false;
    };
    let mut buf = [0u8; 512];
    socket.connect(server).is_ok()
        && socket.set_read_timeout(Some(wait)).is_ok()
        && socket.send(&QUERY).is_ok()
        && matches!(socket.recv(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
}

/// `v=spf1` alone or followed by a space (RFC 7208 4.5).
fn is_spf(text: &[u8]) -> bool {
    let Some(head) = text.get(..6) else {
        return false;
    };
    head.eq_ignore_ascii_case(b"v=spf1") && text.get(6).is_none_or(|c| *c == b' ')
}

/// Appends the text of a macro-free `m` to `out`; false if it has a macro.
fn literal(m: &Macro, out: &mut Vec<u8>) -> bool {
    match m {
        Macro::None => true,
        Macro::Literal(bytes) => {
            out.extend_from_slice(bytes);
            true
        }
        Macro::List(parts) => parts.iter().all(|p| literal(p, out)),
        Macro::Variable { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spf_versions() {
        assert!(is_spf(b"v=spf1"));
        assert!(is_spf(b"V=SPF1 -all"));
        assert!(!is_spf(b"v=spf10 -all"));
        assert!(!is_spf(b"v=spf"));
    }

    #[test]
    fn literals_and_macros() {
        let mut out = Vec::new();
        let m = Macro::List(vec![Macro::Literal(b"a.".as_slice().into())].into());
        assert!(literal(&m, &mut out));
        assert_eq!(out, b"a.");
        let v = Spf::parse(b"v=spf1 include:%{d}.x.test").unwrap();
        let Mechanism::Include { macro_string } = &v.directives[0].mechanism else {
            panic!("not an include");
        };
        assert!(!literal(macro_string, &mut Vec::new()));
    }
}
