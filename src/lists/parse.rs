//! One line of a list file.
//!
//! postgrey's lines are read as postgrey reads them: `#` starts a comment
//! anywhere on the line, surrounding white space is ignored, and an entry
//! never contains white space. That leaves room for greymilter's extension:
//! an entry may be followed by an action and, for `greylist`, a delay
//! (`192.0.2.0/24 greylist 10m`). Where postgrey would warn and skip a line
//! (or keep an entry that can never match), greymilter refuses the file
//! with the line and column, so a typo never silently drops an entry.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::IpNet;

use crate::greylist::settings::ListAction;

/// What a file lists, which decides how its entries are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// postgrey's `whitelist_clients`: addresses, networks, names, regexes.
    Clients,
    /// Envelope senders, in the recipients format.
    Senders,
    /// postgrey's `whitelist_recipients`: addresses, `local@`, domains, regexes.
    Recipients,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An address, a partial IPv4 address or a CIDR network.
    Net(IpNet),
    /// A client name: the name and its subdomains (postgrey), or with a
    /// leading dot the subdomains only (as in `[lists] client_names`).
    Name { name: String, subdomains_only: bool },
    /// `user@domain` (also `user+ext@domain` for recipients); `""` is the
    /// null sender `<>`.
    Address(String),
    /// `user@`: that local part at any domain.
    Local(String),
    /// The domain and its subdomains.
    Domain(String),
    /// `/regex/`: the expression and the 1-based column where it starts.
    Regex { source: String, column: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub item: Item,
    /// The line's own action; `None`: the file's.
    pub action: Option<ListAction>,
}

/// A refused line: 1-based column and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub column: usize,
    pub message: String,
}

fn err<T>(column: usize, message: impl Into<String>) -> Result<T, LineError> {
    Err(LineError {
        column,
        message: message.into(),
    })
}

/// `Ok(None)` for a blank or comment line.
pub fn parse_line(kind: Kind, line: &str) -> Result<Option<Line>, LineError> {
    let text = line.split('#').next().unwrap_or_default();
    let tokens = tokens(text);
    let mut words = tokens.iter().map(|(offset, w)| (column(line, *offset), *w));
    let Some((col, entry)) = words.next() else {
        return Ok(None);
    };
    let item = match kind {
        Kind::Clients => client_item(entry, col)?,
        Kind::Senders | Kind::Recipients => address_item(kind, entry, col)?,
    };
    let action = match words.next() {
        None => None,
        Some((col, word)) => {
            let delay = words.next();
            if let Some((col, extra)) = words.next() {
                return err(
                    col,
                    format!(
                        "unexpected {extra:?}: a line is ENTRY [accept | reject | greylist [DELAY]]"
                    ),
                );
            }
            Some(action(word, col, delay)?)
        }
    };
    Ok(Some(Line { item, action }))
}

/// Words and their byte offsets.
fn tokens(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                if let Some(w) = text.get(s..i) {
                    out.push((s, w));
                }
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    out
}

/// 1-based column, in characters, of a byte offset.
fn column(line: &str, offset: usize) -> usize {
    line.get(..offset).map_or(1, |b| b.chars().count() + 1)
}

fn action(word: &str, col: usize, delay: Option<(usize, &str)>) -> Result<ListAction, LineError> {
    match (word, delay) {
        ("accept", None) => Ok(ListAction::Accept),
        ("reject", None) => Ok(ListAction::Reject),
        ("greylist", None) => Ok(ListAction::Greylist { delay: None }),
        ("greylist", Some((dcol, d))) => Ok(ListAction::Greylist {
            delay: Some(parse_delay(d).map_err(|m| LineError {
                column: dcol,
                message: m,
            })?),
        }),
        ("accept" | "reject", Some((dcol, _))) => {
            err(dcol, "a delay applies only to the greylist action")
        }
        (other, _) => err(
            col,
            format!(
                "unknown action {other:?}, expected accept, reject or greylist (an entry contains no spaces)"
            ),
        ),
    }
}

fn parse_delay(d: &str) -> Result<Duration, String> {
    let delay = crate::config::values::parse_duration(d)?;
    if delay.is_zero() || delay.as_secs() > u64::from(u32::MAX) {
        return Err(format!(
            "delay must be between 1 second and {} seconds",
            u32::MAX
        ));
    }
    Ok(delay)
}

fn regex(entry: &str, col: usize) -> Result<Option<Item>, LineError> {
    let Some(rest) = entry.strip_prefix('/') else {
        return Ok(None);
    };
    match rest.strip_suffix('/') {
        Some(source) if !source.is_empty() => Ok(Some(Item::Regex {
            source: source.to_string(),
            column: col + 1,
        })),
        _ => err(
            col,
            "a regular expression is written /regex/ (no spaces: use \\s; no #: use \\x23)",
        ),
    }
}

fn client_item(entry: &str, col: usize) -> Result<Item, LineError> {
    if let Some(item) = regex(entry, col)? {
        return Ok(item);
    }
    if entry.contains('/') {
        return match entry.parse::<IpNet>() {
            Ok(net) => match crate::config::values::exact_network(net) {
                Ok(net) => Ok(Item::Net(net)),
                Err(e) => err(col, e),
            },
            Err(_) => err(
                col,
                format!("{entry:?} is not a CIDR network (like 192.0.2.0/24 or 2001:db8::/32)"),
            ),
        };
    }
    if entry.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return partial_v4(entry, col).map(Item::Net);
    }
    if entry.contains(':') {
        return v6(entry, col).map(Item::Net);
    }
    host_name(entry, col)
}

/// `195.235.39` is postgrey's prefix match on whole octets: a /24.
fn partial_v4(entry: &str, col: usize) -> Result<IpNet, LineError> {
    let mut octets = [0u8; 4];
    let mut n = 0;
    let mut offset = 0;
    for part in entry.split('.') {
        let here = col + offset;
        offset += part.len() + 1;
        let Some(slot) = octets.get_mut(n) else {
            return err(here, "an IPv4 address has at most 4 parts");
        };
        if part.is_empty() || part.len() > 3 {
            return err(here, "each part of an IPv4 address is 1 to 3 digits");
        }
        *slot = part.parse::<u8>().or_else(|_| {
            err(
                here,
                format!("{part} is not an IPv4 address part (0 to 255)"),
            )
        })?;
        n += 1;
    }
    let prefix = u8::try_from(n * 8).unwrap_or(32);
    IpNet::new(IpAddr::V4(Ipv4Addr::from(octets)), prefix)
        .or_else(|_| err(col, "not an IPv4 address"))
}

/// A whole IPv6 address, or postgrey's textual prefix of whole groups
/// (`2001:db8:1234`, read as 2001:db8:1234::/48).
fn v6(entry: &str, col: usize) -> Result<IpNet, LineError> {
    if let Ok(a) = entry.parse::<Ipv6Addr>() {
        return Ok(IpNet::from(IpAddr::V6(a)));
    }
    let groups: Vec<&str> = entry
        .strip_suffix(':')
        .unwrap_or(entry)
        .split(':')
        .collect();
    let hex = |g: &&str| !g.is_empty() && g.len() <= 4 && g.bytes().all(|b| b.is_ascii_hexdigit());
    if (2..=7).contains(&groups.len()) && groups.iter().all(hex) {
        let mut bits: u128 = 0;
        for (i, g) in groups.iter().enumerate() {
            let v = u128::from(u16::from_str_radix(g, 16).unwrap_or(0));
            bits |= v << (112 - 16 * i);
        }
        let prefix = u8::try_from(groups.len() * 16).unwrap_or(128);
        if let Ok(net) = IpNet::new(IpAddr::V6(Ipv6Addr::from(bits)), prefix) {
            return Ok(net);
        }
    }
    err(
        col,
        format!(
            "{entry:?} is not an IPv6 address or a prefix of whole groups; write a network as 2001:db8::/32"
        ),
    )
}

fn host_name(entry: &str, col: usize) -> Result<Item, LineError> {
    let lower = entry.to_ascii_lowercase();
    let (subdomains_only, body, skip) = match lower.strip_prefix('.') {
        Some(rest) => (true, rest, 1),
        None => (false, lower.as_str(), 0),
    };
    let body = body.strip_suffix('.').unwrap_or(body);
    if entry.starts_with("*.") {
        return err(
            col,
            "no wildcards: example.com matches the name and its subdomains, .example.com the subdomains only",
        );
    }
    check_domain(body, col + skip, "a host name or domain")?;
    let last = body.rsplit('.').next().unwrap_or_default();
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return err(
            col,
            format!("{entry:?} is neither an IPv4 address nor a host name"),
        );
    }
    Ok(Item::Name {
        name: body.to_string(),
        subdomains_only,
    })
}

/// Labels of letters, digits, `-` and `_`; the column of the first fault.
fn check_domain(d: &str, col: usize, what: &str) -> Result<(), LineError> {
    if d.is_empty() {
        return err(col, format!("expected {what}"));
    }
    if d.len() > 253 {
        return err(col, format!("{what} is at most 253 characters"));
    }
    let mut offset = 0;
    for label in d.split('.') {
        let here = col + offset;
        if label.is_empty() {
            return err(here, format!("empty label in {what}"));
        }
        if label.len() > 63 {
            return err(here, "a label is at most 63 characters");
        }
        if let Some((i, c)) = label
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return err(
                here + label.get(..i).map_or(0, |s| s.chars().count()),
                format!("{c:?} is not allowed in {what}"),
            );
        }
        offset += label.chars().count() + 1;
    }
    Ok(())
}

fn address_item(kind: Kind, entry: &str, col: usize) -> Result<Item, LineError> {
    if let Some(item) = regex(entry, col)? {
        return Ok(item);
    }
    if entry == "<>" {
        return match kind {
            Kind::Senders => Ok(Item::Address(String::new())),
            _ => err(col, "<> (the null sender) is not a recipient"),
        };
    }
    let lower = entry.to_ascii_lowercase();
    let lower = lower
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(&lower);
    // postgrey splits at the first `@` (Postfix access(5) syntax).
    match lower.split_once('@') {
        Some(("", domain)) => domain_item(domain, col + 1),
        Some((user, "")) => {
            check_local(user, col)?;
            Ok(Item::Local(user.to_string()))
        }
        Some((user, domain)) => {
            check_local(user, col)?;
            let dcol = col + user.chars().count() + 1;
            check_domain(domain.strip_suffix('.').unwrap_or(domain), dcol, "a domain")?;
            Ok(Item::Address(lower.to_string()))
        }
        None => domain_item(lower, col),
    }
}

fn domain_item(d: &str, col: usize) -> Result<Item, LineError> {
    let (d, skip) = match d.strip_prefix('.') {
        Some(rest) => (rest, 1),
        None => (d, 0),
    };
    let d = d.strip_suffix('.').unwrap_or(d);
    check_domain(d, col + skip, "a domain")?;
    Ok(Item::Domain(d.to_string()))
}

fn check_local(user: &str, col: usize) -> Result<(), LineError> {
    match user
        .char_indices()
        .find(|(_, c)| c.is_control() || *c == '@')
    {
        Some((i, c)) => err(
            col + user.get(..i).map_or(0, |s| s.chars().count()),
            format!("{c:?} is not allowed in a local part"),
        ),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: Kind, line: &str) -> Item {
        parse_line(kind, line).unwrap().unwrap().item
    }

    fn net(s: &str) -> Item {
        Item::Net(s.parse().unwrap())
    }

    fn fault(kind: Kind, line: &str) -> (usize, String) {
        let e = parse_line(kind, line).unwrap_err();
        (e.column, e.message)
    }

    #[test]
    fn postgrey_client_forms() {
        let c = Kind::Clients;
        assert_eq!(parse_line(c, "   # only a comment").unwrap(), None);
        assert_eq!(parse_line(c, "").unwrap(), None);
        assert_eq!(item(c, "195.235.39"), net("195.235.39.0/24"));
        assert_eq!(item(c, "10"), net("10.0.0.0/8"));
        assert_eq!(item(c, "192.0.2.1"), net("192.0.2.1/32"));
        assert_eq!(item(c, " 192.0.2.0/24 # a network"), net("192.0.2.0/24"));
        // Bits past the prefix are a typo to fix, not a network to guess.
        let e = parse_line(c, "192.0.2.77/24").unwrap_err();
        assert!(e.message.contains("write 192.0.2.0/24"), "{e:?}");
        assert_eq!(item(c, "2001:db8::1"), net("2001:db8::1/128"));
        assert_eq!(item(c, "2001:db8:1234"), net("2001:db8:1234::/48"));
        assert_eq!(item(c, "2001:db8::/32"), net("2001:db8::/32"));
        assert_eq!(
            item(c, "Mail.Example.COM."),
            Item::Name {
                name: "mail.example.com".into(),
                subdomains_only: false
            }
        );
        assert_eq!(
            item(c, ".example.com"),
            Item::Name {
                name: "example.com".into(),
                subdomains_only: true
            }
        );
        assert_eq!(
            item(c, r"/^mail[0-9]+\.example\.org$/"),
            Item::Regex {
                source: r"^mail[0-9]+\.example\.org$".into(),
                column: 2
            }
        );
    }

    #[test]
    fn postgrey_recipient_forms() {
        let r = Kind::Recipients;
        assert_eq!(item(r, "postmaster@"), Item::Local("postmaster".into()));
        assert_eq!(
            item(r, "Abuse@Example.NET"),
            Item::Address("abuse@example.net".into())
        );
        assert_eq!(item(r, "example.net"), Item::Domain("example.net".into()));
        assert_eq!(item(r, "@example.net"), Item::Domain("example.net".into()));
        assert_eq!(
            item(r, "/^bounce-.*@/"),
            Item::Regex {
                source: "^bounce-.*@".into(),
                column: 2
            }
        );
        assert_eq!(item(Kind::Senders, "<>"), Item::Address(String::new()));
    }

    #[test]
    fn the_extension_adds_an_action_and_a_delay() {
        let l = parse_line(Kind::Clients, "192.0.2.0/24\tgreylist 10m # slow").unwrap();
        assert_eq!(
            l.unwrap().action,
            Some(ListAction::Greylist {
                delay: Some(Duration::from_secs(600))
            })
        );
        let l = parse_line(Kind::Recipients, "x@y.test reject").unwrap();
        assert_eq!(l.unwrap().action, Some(ListAction::Reject));
        assert_eq!(
            fault(Kind::Clients, "192.0.2.1 acept"),
            (
                11,
                "unknown action \"acept\", expected accept, reject or greylist (an entry contains no spaces)"
                    .into()
            )
        );
        assert_eq!(fault(Kind::Clients, "192.0.2.1 accept 5m").0, 18);
        assert_eq!(fault(Kind::Clients, "192.0.2.1 greylist 0").0, 20);
        assert_eq!(fault(Kind::Clients, "192.0.2.1 greylist 5m x").0, 23);
    }

    #[test]
    fn bad_lines_say_where() {
        let c = Kind::Clients;
        assert_eq!(fault(c, "192.0.300.1").0, 7);
        assert_eq!(fault(c, "1.2.3.4.5").0, 9);
        assert_eq!(fault(c, "1..2").0, 3);
        assert_eq!(fault(c, "192.0.2.0/33").0, 1);
        assert_eq!(fault(c, "  mail.exa$mple.com").0, 11);
        assert_eq!(fault(c, "mail..example").0, 6);
        assert_eq!(fault(c, "*.example.com").0, 1);
        assert_eq!(fault(c, "/unclosed").0, 1);
        assert_eq!(fault(c, "2001:db8::1::2").0, 1);
        assert_eq!(fault(c, "ünïcode.example").0, 1);
        assert_eq!(fault(Kind::Recipients, "x@exa mple.com").0, 7);
        assert_eq!(fault(Kind::Recipients, "x@exa!mple.com").0, 6);
        assert_eq!(fault(Kind::Recipients, "<>").0, 1);
    }
}
