//! Static lists, compiled for look-up on the hot path.
//!
//! * `clients`: longest prefix wins; one hash map per prefix length in use,
//!   probed from the longest. IPv4-mapped IPv6 entries (`::ffff:0:0/96` and
//!   longer) are stored as IPv4, because client addresses are.
//! * `client_names`: exact name, then `.suffix` entries (which match the
//!   subdomains only), the longest suffix first. Case-insensitive, trailing
//!   dot ignored. A bracketed name (`[192.0.2.1]`, the MTA's form for an
//!   unverified client) never matches.
//! * `senders`, `recipients`: exact address. Entries and the envelope
//!   address are normalised the same way as for keys, *including* the
//!   sender rules when `normalize_sender` is on: an entry for
//!   `news@lists.example` then also matches its BATV-signed and VERP
//!   variants, which is what the entry is for.
//! * `*_domains`: the domain and all its subdomains, the longest match first.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::envelope_address::{base_form, domain_of, normalize_sender as apply_sender_rules};
use super::key::{canonical, mask32, mask128};
use super::settings::{ListAction, ListSpec};

/// Which list decided; its name as in the config and the decision log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListName {
    Clients,
    ClientNames,
    Senders,
    SenderDomains,
    Recipients,
    RecipientDomains,
}

impl ListName {
    pub fn as_str(self) -> &'static str {
        match self {
            ListName::Clients => "clients",
            ListName::ClientNames => "client_names",
            ListName::Senders => "senders",
            ListName::SenderDomains => "sender_domains",
            ListName::Recipients => "recipients",
            ListName::RecipientDomains => "recipient_domains",
        }
    }
}

/// A list's verdict: which list, and what its entry says.
pub type ListHit = (ListName, ListAction);

type Exact = HashMap<Box<[u8]>, ListAction>;

#[derive(Debug, Default)]
pub struct Lists {
    /// (prefix length, masked network → action), longest prefix first.
    v4: Vec<(u8, HashMap<u32, ListAction>)>,
    v6: Vec<(u8, HashMap<u128, ListAction>)>,
    names: Exact,
    name_suffixes: Exact,
    senders: Exact,
    sender_domains: Exact,
    recipients: Exact,
    recipient_domains: Exact,
}

impl Lists {
    pub fn compile(spec: &ListSpec, normalize_sender: bool) -> Lists {
        let mut lists = Lists::default();
        for (net, action) in &spec.clients {
            lists.add_client(*net, *action);
        }
        lists.v4.sort_by_key(|e| std::cmp::Reverse(e.0));
        lists.v6.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (name, action) in &spec.client_names {
            let n = hostname_form(name.as_bytes());
            match n.strip_prefix(b".") {
                Some(suffix) => lists.name_suffixes.insert(suffix.into(), *action),
                None => lists.names.insert(n.into(), *action),
            };
        }
        let mut buf = Vec::new();
        for (addr, action) in &spec.senders {
            base_form(addr.as_bytes(), &mut buf);
            if normalize_sender {
                apply_sender_rules(&mut buf);
            }
            lists.senders.insert(buf.as_slice().into(), *action);
        }
        for (addr, action) in &spec.recipients {
            base_form(addr.as_bytes(), &mut buf);
            lists.recipients.insert(buf.as_slice().into(), *action);
        }
        for (d, action) in &spec.sender_domains {
            lists.sender_domains.insert(domain_form(d).into(), *action);
        }
        for (d, action) in &spec.recipient_domains {
            lists
                .recipient_domains
                .insert(domain_form(d).into(), *action);
        }
        lists
    }

    fn add_client(&mut self, net: IpNet, action: ListAction) {
        match net.trunc() {
            IpNet::V4(n) => {
                let p = n.prefix_len();
                insert_prefix(&mut self.v4, p, u32::from(n.network()) & mask32(p), action);
            }
            IpNet::V6(n) => {
                let p = n.prefix_len();
                if p >= 96
                    && let Some(v4) = n.network().to_ipv4_mapped()
                {
                    let p4 = p - 96;
                    insert_prefix(&mut self.v4, p4, u32::from(v4) & mask32(p4), action);
                } else {
                    insert_prefix(
                        &mut self.v6,
                        p,
                        u128::from(n.network()) & mask128(p),
                        action,
                    );
                }
            }
        }
    }

    pub fn client(&self, addr: IpAddr) -> Option<ListAction> {
        match canonical(addr) {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4
                    .iter()
                    .find_map(|(p, m)| m.get(&(a & mask32(*p))).copied())
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6
                    .iter()
                    .find_map(|(p, m)| m.get(&(a & mask128(*p))).copied())
            }
        }
    }

    pub fn client_name(&self, name: &[u8]) -> Option<ListAction> {
        if self.names.is_empty() && self.name_suffixes.is_empty() {
            return None;
        }
        let name = hostname_form(name);
        if name.is_empty() || name.first() == Some(&b'[') {
            return None;
        }
        if let Some(a) = self.names.get(name.as_slice()) {
            return Some(*a);
        }
        // Suffixes strictly shorter than the name, longest first.
        proper_suffixes(&name).find_map(|s| self.name_suffixes.get(s).copied())
    }

    /// Client IP, then client name.
    pub fn lookup_client(&self, addr: IpAddr, name: &[u8]) -> Option<ListHit> {
        if let Some(a) = self.client(addr) {
            return Some((ListName::Clients, a));
        }
        self.client_name(name).map(|a| (ListName::ClientNames, a))
    }

    /// Sender, then sender domain; `sender` in key form.
    pub fn lookup_sender(&self, sender: &[u8]) -> Option<ListHit> {
        lookup_address(
            sender,
            (&self.senders, ListName::Senders),
            (&self.sender_domains, ListName::SenderDomains),
        )
    }

    /// Recipient, then recipient domain; `recipient` in key form.
    pub fn lookup_recipient(&self, recipient: &[u8]) -> Option<ListHit> {
        lookup_address(
            recipient,
            (&self.recipients, ListName::Recipients),
            (&self.recipient_domains, ListName::RecipientDomains),
        )
    }
}

fn lookup_address(
    addr: &[u8],
    (exact, exact_name): (&Exact, ListName),
    (domains, domain_name): (&Exact, ListName),
) -> Option<ListHit> {
    if let Some(a) = exact.get(addr) {
        return Some((exact_name, *a));
    }
    if domains.is_empty() {
        return None;
    }
    let domain = domain_of(addr)?;
    std::iter::once(domain)
        .chain(proper_suffixes(domain))
        .find_map(|d| domains.get(d).map(|a| (domain_name, *a)))
}

fn insert_prefix<T: std::hash::Hash + Eq>(
    by_len: &mut Vec<(u8, HashMap<T, ListAction>)>,
    prefix: u8,
    net: T,
    action: ListAction,
) {
    match by_len.iter_mut().find(|(p, _)| *p == prefix) {
        Some((_, m)) => {
            m.insert(net, action);
        }
        None => by_len.push((prefix, HashMap::from([(net, action)]))),
    }
}

/// `a.b.c` → `b.c`, `c`.
fn proper_suffixes(name: &[u8]) -> impl Iterator<Item = &[u8]> {
    name.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'.')
        .filter_map(|(i, _)| name.get(i + 1..))
        .filter(|s| !s.is_empty())
}

fn hostname_form(name: &[u8]) -> Vec<u8> {
    let n = name.trim_ascii();
    let n = n.strip_suffix(b".").unwrap_or(n);
    n.to_ascii_lowercase()
}

/// `Example.COM.`, `@example.com`, `.example.com` → `example.com`.
fn domain_form(d: &str) -> Vec<u8> {
    let d = d
        .trim()
        .trim_start_matches(['@', '.'])
        .trim_end_matches('.');
    d.to_ascii_lowercase().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_lists_match_nothing() {
        let l = Lists::compile(&ListSpec::default(), true);
        assert_eq!(
            l.lookup_client(IpAddr::from([192, 0, 2, 1]), b"mx.example"),
            None
        );
        assert_eq!(l.lookup_sender(b"a@b"), None);
        assert_eq!(l.lookup_recipient(b""), None);
    }
}
