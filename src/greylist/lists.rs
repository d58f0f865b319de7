//! Static lists, compiled for look-up on the hot path. Entries come from
//! the `[lists]` tables and from list files (`crate::lists`); both are
//! merged here, and for one key the most restrictive action wins.
//!
//! * `clients`: longest prefix wins, by one binary search over the address
//!   space partitioned by [`Ranges`] (cost grows with log of the entries).
//!   IPv4-mapped IPv6 entries (`::ffff:0:0/96` and longer) are stored as
//!   IPv4, because client addresses are.
//! * `client_names`: exact name, then `.suffix` entries (which match the
//!   subdomains only), the longest suffix first, then regular expressions.
//!   Case-insensitive, trailing dot ignored. A bracketed name
//!   (`[192.0.2.1]`, the MTA's form for an unverified client) never
//!   matches.
//! * `senders`, `recipients`: exact address; for recipients also the
//!   address without its `+extension` (postgrey's and Postfix's rule);
//!   then a local part at any domain (`postmaster@` in a file). Entries and
//!   the envelope address are normalised the same way as for keys,
//!   *including* the sender rules when `normalize_sender` is on: an entry
//!   for `news@lists.example` then also matches its BATV-signed and VERP
//!   variants, which is what the entry is for.
//! * `*_domains`: the domain and all its subdomains, the longest match
//!   first; then the list's regular expressions, matched against the whole
//!   address in key form.
//!
//! Runtime allowances (`greymilter allow network=… | sender-domain=…`)
//! are compiled apart, in [`Allowed`], and looked up beside the lists: an
//! allowance costs its own compile, not the lists' (100,000 entries), and a
//! reload keeps them. They decide as if merged into `clients` and
//! `sender_domains` as `accept`: an allowance replaces a configured entry
//! for the same network or domain; a more specific configured entry still
//! wins.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use super::envelope_address::{base_form, domain_of, normalize_sender as apply_sender_rules};
use super::key::{canonical, mask32, mask128};
use super::patterns::{Patterns, rank};
use super::ranges::Ranges;
use super::settings::{ListAction, ListSpec};
use crate::pace::Pacer;

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

/// Longest client name looked up (a DNS name is at most 253 characters).
const MAX_NAME: usize = 255;

/// Everything that can decide for one envelope address.
#[derive(Debug)]
struct AddressLists {
    exact: Exact,
    locals: Exact,
    domains: Exact,
    patterns: Patterns,
    /// Try the address without its `+extension` too.
    plus: bool,
    names: (ListName, ListName),
}

#[derive(Debug)]
pub struct Lists {
    v4: Ranges<u32>,
    v6: Ranges<u128>,
    names: Exact,
    name_suffixes: Exact,
    /// Bit n: some entry has n labels (63 for 63 and more). A look-up
    /// hashes only the suffixes of a length some entry has.
    name_labels: u64,
    suffix_labels: u64,
    name_patterns: Patterns,
    senders: AddressLists,
    recipients: AddressLists,
    allowed: Allowed,
}

/// The runtime allowances, compiled: networks and sender domains, each
/// [`ListAction::Allow`]. At most `control::allows::MAX_ALLOWS` of them.
#[derive(Debug, Default)]
pub struct Allowed {
    v4: Ranges<u32>,
    v6: Ranges<u128>,
    domains: Exact,
}

impl Allowed {
    pub fn new<'a>(
        nets: impl IntoIterator<Item = IpNet>,
        domains: impl IntoIterator<Item = &'a str>,
    ) -> Allowed {
        let mut v4 = BTreeMap::new();
        let mut v6 = BTreeMap::new();
        for net in nets {
            match client_key(net) {
                Net::V4(k) => v4.insert(k, ListAction::Allow),
                Net::V6(k) => v6.insert(k, ListAction::Allow),
            };
        }
        let v4 = v4.into_iter().map(|((n, p), a)| (n, p, a));
        let v4 = crate::pace::run_now(Ranges::build_sorted(v4, &mut Pacer::unpaced()));
        let v6 = v6.into_iter().map(|((n, p), a)| (n, p, a));
        let v6 = crate::pace::run_now(Ranges::build_sorted(v6, &mut Pacer::unpaced()));
        let domains = domains
            .into_iter()
            .map(|d| (domain_form(d).into_boxed_slice(), ListAction::Allow))
            .collect();
        Allowed { v4, v6, domains }
    }
}

impl Lists {
    pub fn compile(spec: &ListSpec, normalize_sender: bool) -> Lists {
        crate::pace::run_now(Lists::compile_paced(
            spec,
            normalize_sender,
            &mut Pacer::unpaced(),
        ))
    }

    /// [`Lists::compile`] in slices of entries, pausing with `pacer`
    /// between them. The result is built aside: the caller swaps it in.
    pub async fn compile_paced(
        spec: &ListSpec,
        normalize_sender: bool,
        pacer: &mut Pacer<'_>,
    ) -> Lists {
        // Ordered maps: the ranges are built from the networks in order,
        // and a B-tree grows a node at a time (a hash map's growth, or a
        // sort of 100,000 networks, would be one long step).
        let mut v4: BTreeMap<(u32, u8), ListAction> = BTreeMap::new();
        let mut v6: BTreeMap<(u128, u8), ListAction> = BTreeMap::new();
        for (net, action) in &spec.clients {
            pacer.step().await;
            match client_key(*net) {
                Net::V4(k) => merge_ordered(&mut v4, k, *action),
                Net::V6(k) => merge_ordered(&mut v6, k, *action),
            }
        }
        pacer.pause().await;
        let v4 = v4.into_iter().map(|((n, p), a)| (n, p, a));
        let v4 = Ranges::build_sorted(v4, pacer).await;
        let v6 = v6.into_iter().map(|((n, p), a)| (n, p, a));
        let v6 = Ranges::build_sorted(v6, pacer).await;
        pacer.pause().await;
        let mut lists = Lists {
            v4,
            v6,
            names: Exact::new(),
            name_suffixes: Exact::new(),
            name_labels: 0,
            suffix_labels: 0,
            name_patterns: spec.client_name_patterns.clone(),
            senders: AddressLists::new(
                (ListName::Senders, ListName::SenderDomains),
                spec.sender_patterns.clone(),
                false,
            ),
            recipients: AddressLists::new(
                (ListName::Recipients, ListName::RecipientDomains),
                spec.recipient_patterns.clone(),
                true,
            ),
            allowed: Allowed::default(),
        };
        for (name, action) in &spec.client_names {
            pacer.step().await;
            let n = hostname_form(name.as_bytes());
            match n.strip_prefix(b".") {
                Some(suffix) => {
                    lists.suffix_labels |= label_bit(suffix);
                    put(&mut lists.name_suffixes, suffix, *action);
                }
                None => {
                    lists.name_labels |= label_bit(&n);
                    put(&mut lists.names, &n, *action);
                }
            };
        }
        let s = &mut lists.senders;
        let mut buf = Vec::new();
        for (addr, action) in &spec.senders {
            pacer.step().await;
            base_form(addr.as_bytes(), &mut buf);
            if normalize_sender {
                apply_sender_rules(&mut buf);
            }
            put(&mut s.exact, &buf, *action);
        }
        for (local, action) in &spec.sender_locals {
            pacer.step().await;
            // Normalised as the local part of a whole address would be.
            base_form(format!("{local}@x").as_bytes(), &mut buf);
            if normalize_sender {
                apply_sender_rules(&mut buf);
            }
            let local = buf.strip_suffix(b"@x").unwrap_or(&buf);
            put(&mut s.locals, local, *action);
        }
        for (d, action) in &spec.sender_domains {
            pacer.step().await;
            put(&mut s.domains, &domain_form(d), *action);
        }
        let r = &mut lists.recipients;
        for (addr, action) in &spec.recipients {
            pacer.step().await;
            base_form(addr.as_bytes(), &mut buf);
            put(&mut r.exact, &buf, *action);
        }
        for (local, action) in &spec.recipient_locals {
            pacer.step().await;
            put(
                &mut r.locals,
                local.to_ascii_lowercase().as_bytes(),
                *action,
            );
        }
        for (d, action) in &spec.recipient_domains {
            pacer.step().await;
            put(&mut r.domains, &domain_form(d), *action);
        }
        lists
    }

    /// The runtime allowances in force; they replace the previous ones.
    pub fn set_allowed(&mut self, allowed: Allowed) {
        self.allowed = allowed;
    }

    /// The runtime allowances, taken out (for the lists a reload swaps in).
    pub fn take_allowed(&mut self) -> Allowed {
        std::mem::take(&mut self.allowed)
    }

    pub fn client(&self, addr: IpAddr) -> Option<ListAction> {
        let (configured, allowed) = match canonical(addr) {
            IpAddr::V4(a) => (self.v4.get(u32::from(a)), self.allowed.v4.get(u32::from(a))),
            IpAddr::V6(a) => (
                self.v6.get(u128::from(a)),
                self.allowed.v6.get(u128::from(a)),
            ),
        };
        // An allowance replaced the configured entry for its own network:
        // it wins over one as broad as it, or broader.
        match (configured, allowed) {
            (Some((_, listed)), Some((allow, prefix))) if prefix >= listed => Some(allow),
            (Some((action, _)), _) => Some(action),
            (None, allowed) => allowed.map(|(allow, _)| allow),
        }
    }

    pub fn client_name(&self, name: &[u8]) -> Option<ListAction> {
        if self.names.is_empty() && self.name_suffixes.is_empty() && self.name_patterns.is_empty() {
            return None;
        }
        // On the stack: this runs for every recipient. A DNS name has at
        // most 253 characters; anything longer matches nothing.
        let mut buf = [0u8; MAX_NAME];
        let trimmed = name.trim_ascii();
        let trimmed = trimmed.strip_suffix(b".").unwrap_or(trimmed);
        let name = buf.get_mut(..trimmed.len())?;
        name.copy_from_slice(trimmed);
        name.make_ascii_lowercase();
        let name = &*name;
        if name.is_empty() || name.first() == Some(&b'[') {
            return None;
        }
        if self.name_labels & label_bit(name) != 0
            && let Some(a) = self.names.get(name)
        {
            return Some(*a);
        }
        // Suffixes strictly shorter than the name, longest first.
        let wanted = self.suffix_labels;
        proper_suffixes(name)
            .filter(|s| wanted & label_bit(s) != 0)
            .find_map(|s| self.name_suffixes.get(s).copied())
            .or_else(|| self.name_patterns.find(name))
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
        self.senders.lookup(sender, Some(&self.allowed.domains))
    }

    /// Recipient, then recipient domain; `recipient` in key form.
    pub fn lookup_recipient(&self, recipient: &[u8]) -> Option<ListHit> {
        self.recipients.lookup(recipient, None)
    }

    /// Bytes held by the client ranges (for the memory figures).
    pub fn client_heap_bytes(&self) -> usize {
        self.v4.heap_bytes()
            + self.v6.heap_bytes()
            + self.allowed.v4.heap_bytes()
            + self.allowed.v6.heap_bytes()
    }
}

impl AddressLists {
    fn new(names: (ListName, ListName), patterns: Patterns, plus: bool) -> AddressLists {
        AddressLists {
            exact: Exact::new(),
            locals: Exact::new(),
            domains: Exact::new(),
            patterns,
            plus,
            names,
        }
    }

    /// `allowed`: domains allowed at run time, each replacing the
    /// configured entry for the same domain.
    fn lookup(&self, addr: &[u8], allowed: Option<&Exact>) -> Option<ListHit> {
        let (exact_name, domain_name) = self.names;
        let hit = |a: &ListAction| (exact_name, *a);
        if let Some(a) = self.exact.get(addr) {
            return Some(hit(a));
        }
        let at = addr.iter().rposition(|&b| b == b'@');
        let local = at.and_then(|i| addr.get(..i)).filter(|l| !l.is_empty());
        let bare = local
            .filter(|_| self.plus)
            .and_then(|l| l.iter().position(|&b| b == b'+').filter(|&p| p > 0))
            .and_then(|p| Some((local?.get(..p)?, addr.get(at?..)?)));
        if let Some((user, domain)) = bare
            && !self.exact.is_empty()
        {
            let mut without: Vec<u8> = Vec::with_capacity(addr.len());
            without.extend_from_slice(user);
            without.extend_from_slice(domain);
            if let Some(a) = self.exact.get(without.as_slice()) {
                return Some(hit(a));
            }
        }
        if !self.locals.is_empty()
            && let Some(local) = local
        {
            let found = self.locals.get(local).or_else(|| {
                let (user, _) = bare?;
                self.locals.get(user)
            });
            if let Some(a) = found {
                return Some(hit(a));
            }
        }
        let allowed = allowed.filter(|a| !a.is_empty());
        if (!self.domains.is_empty() || allowed.is_some())
            && let Some(domain) = domain_of(addr)
        {
            let found = std::iter::once(domain)
                .chain(proper_suffixes(domain))
                .find_map(|d| {
                    allowed
                        .and_then(|a| a.get(d))
                        .or_else(|| self.domains.get(d))
                });
            if let Some(a) = found {
                return Some((domain_name, *a));
            }
        }
        self.patterns.find(addr).map(|a| (exact_name, a))
    }
}

#[derive(PartialEq)]
enum Net {
    V4((u32, u8)),
    V6((u128, u8)),
}

fn client_key(net: IpNet) -> Net {
    match net.trunc() {
        IpNet::V4(n) => {
            let p = n.prefix_len();
            Net::V4((u32::from(n.network()) & mask32(p), p))
        }
        IpNet::V6(n) => {
            let p = n.prefix_len();
            if p >= 96
                && let Some(v4) = n.network().to_ipv4_mapped()
            {
                let p4 = p - 96;
                Net::V4((u32::from(v4) & mask32(p4), p4))
            } else {
                Net::V6((u128::from(n.network()) & mask128(p), p))
            }
        }
    }
}

/// [`merge`] for the client networks' ordered maps.
fn merge_ordered<K: Ord>(map: &mut BTreeMap<K, ListAction>, key: K, action: ListAction) {
    let slot = map.entry(key).or_insert(action);
    if rank(action) > rank(*slot) {
        *slot = action;
    }
}

/// One key, two actions: the more restrictive stays (the first on a tie).
fn merge<K>(slot: Entry<'_, K, ListAction>, action: ListAction) {
    match slot {
        Entry::Occupied(mut o) => {
            if rank(action) > rank(*o.get()) {
                o.insert(action);
            }
        }
        Entry::Vacant(v) => {
            v.insert(action);
        }
    }
}

fn put(map: &mut Exact, key: &[u8], action: ListAction) {
    merge(map.entry(key.into()), action);
}

/// The bit of `name`'s label count in `name_labels` / `suffix_labels`.
fn label_bit(name: &[u8]) -> u64 {
    let labels = name.iter().filter(|&&b| b == b'.').count() + 1;
    1 << labels.min(63)
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

    /// The allowances as the daemon merged them into the lists before they
    /// were compiled apart: the configured entries for an allowed network
    /// (however written: `::ffff:192.0.2.0/120` is `192.0.2.0/24`) or
    /// domain removed, the allowance added as an entry.
    fn merged(spec: &ListSpec, nets: &[IpNet], domains: &[String]) -> ListSpec {
        let mut spec = spec.clone();
        spec.clients
            .retain(|(n, _)| !nets.iter().any(|a| client_key(*a) == client_key(*n)));
        spec.sender_domains.retain(|(d, _)| !domains.contains(d));
        spec.clients
            .extend(nets.iter().map(|n| (*n, ListAction::Allow)));
        spec.sender_domains
            .extend(domains.iter().map(|d| (d.clone(), ListAction::Allow)));
        spec
    }

    /// Random lists and allowances (networks nested in, equal to and
    /// around configured ones; domains and their parents; senders with
    /// their own entries): the lists with [`Allowed`] beside them decide
    /// every client and sender as the lists with the allowances merged in.
    #[test]
    fn allowances_beside_the_lists_decide_as_if_merged_into_them() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let actions = [
            ListAction::Accept,
            ListAction::Reject,
            ListAction::Greylist { delay: None },
            ListAction::Greylist {
                delay: Some(std::time::Duration::from_secs(60)),
            },
        ];
        let labels = ["a", "b", "c"];
        for round in 0..200 {
            let mut n = |m: u64| next() % m;
            // A small v4 space (and a few v6 and mapped networks), so that
            // networks nest, touch and repeat.
            let net = |n: &mut dyn FnMut(u64) -> u64| -> IpNet {
                match n(8) {
                    0 => {
                        let p = 96 + n(33) as u8;
                        let v4 = std::net::Ipv4Addr::from(n(16) as u32 * 0x0100_0001);
                        IpNet::new(IpAddr::V6(v4.to_ipv6_mapped()), p)
                            .unwrap()
                            .trunc()
                    }
                    1 => {
                        let a = std::net::Ipv6Addr::from(u128::from(n(4) as u8) << 120);
                        IpNet::new(IpAddr::V6(a), n(129) as u8).unwrap().trunc()
                    }
                    _ => {
                        let p = n(33) as u8;
                        let a = std::net::Ipv4Addr::from((n(16) as u32) * 0x0100_0001);
                        IpNet::new(IpAddr::V4(a), p).unwrap().trunc()
                    }
                }
            };
            let domain = |n: &mut dyn FnMut(u64) -> u64| -> String {
                let depth = 1 + n(3) as usize;
                (0..depth)
                    .map(|_| labels[n(3) as usize])
                    .collect::<Vec<_>>()
                    .join(".")
            };
            let mut spec = ListSpec::default();
            for _ in 0..n(12) {
                let action = actions[n(4) as usize];
                spec.clients.push((net(&mut n), action));
            }
            for _ in 0..n(6) {
                let action = actions[n(4) as usize];
                spec.sender_domains.push((domain(&mut n), action));
            }
            if n(2) == 0 {
                spec.senders.push(("x@a.b".into(), ListAction::Reject));
            }
            let mut nets: Vec<IpNet> = (0..n(5)).map(|_| net(&mut n)).collect();
            // Often the very key of a configured entry.
            if let Some((c, _)) = spec.clients.first() {
                nets.push(*c);
            }
            nets.dedup();
            let mut domains: Vec<String> = (0..n(4)).map(|_| domain(&mut n)).collect();
            if let Some((d, _)) = spec.sender_domains.first() {
                domains.push(d.clone());
            }
            domains.sort();
            domains.dedup();

            let want = Lists::compile(&merged(&spec, &nets, &domains), true);
            let mut got = Lists::compile(&spec, true);
            got.set_allowed(Allowed::new(
                nets.iter().copied(),
                domains.iter().map(String::as_str),
            ));
            for _ in 0..200 {
                let addr = match net(&mut n) {
                    IpNet::V4(v) => {
                        IpAddr::V4((u32::from(v.network()) | (n(2) as u32 * 0x0080_0080)).into())
                    }
                    IpNet::V6(v) => IpAddr::V6(v.network()),
                };
                assert_eq!(
                    got.client(addr),
                    want.client(addr),
                    "round {round}: {addr} in {spec:?} allowed {nets:?}"
                );
            }
            for local in ["x", "y"] {
                for depth in 1..=3 {
                    for first in labels {
                        let d = std::iter::once(first)
                            .chain(labels.iter().copied().cycle().take(depth - 1))
                            .collect::<Vec<_>>()
                            .join(".");
                        let sender = format!("{local}@{d}");
                        assert_eq!(
                            got.lookup_sender(sender.as_bytes()),
                            want.lookup_sender(sender.as_bytes()),
                            "round {round}: {sender} in {spec:?} allowed {domains:?}"
                        );
                    }
                }
            }
        }
    }
}
