//! postgrey's two databases, from their `db_dump` text.
//!
//! * The tuple database (`postgrey.db`): key `CLIENT_NET/SENDER/RECIPIENT`,
//!   lower-cased, where CLIENT_NET is the client's network address (its
//!   /24 or /64 by default, the full address with `--lookup-by-host`) and
//!   SENDER is postgrey's normalised sender (BATV and `+extension` removed,
//!   digit runs turned into `#`); value `FIRST_SEEN,LAST_SEEN[,HOST]`. A
//!   tuple has passed when LAST_SEEN − FIRST_SEEN ≥ postgrey's `--delay`.
//! * The clients database (`postgrey_clients.db`, `--auto-whitelist-clients`):
//!   key the client address, value `COUNT,LAST_SEEN`.
//!
//! With `--privacy` the keys are SHA-1 digests: such entries are counted,
//! nothing can be recovered from them.

use std::net::IpAddr;

use super::{NetEntry, Read, TupleEntry, When};

/// How postgrey was run, as far as its keys depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// `--delay`, seconds.
    pub delay: u64,
    /// `--ipv4cidr`/`--ipv6cidr`, or 32/128 with `--lookup-by-host`.
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            delay: 300,
            ipv4_prefix: 24,
            ipv6_prefix: 64,
        }
    }
}

/// Adds the tuple database's records to `read`.
pub fn tuples(records: &[(Vec<u8>, Vec<u8>)], options: &Options, read: &mut Read) {
    for (key, value) in records {
        read.records += 1;
        match tuple(key, value, options) {
            Ok(entry) => read.tuples.push(entry),
            Err(reason) => read.unkeyable(reason),
        }
    }
}

fn tuple(key: &[u8], value: &[u8], options: &Options) -> Result<TupleEntry, &'static str> {
    let key = std::str::from_utf8(key).map_err(|_| "key is not UTF-8")?;
    let Some((net, rest)) = key.split_once('/') else {
        return Err(if is_sha1(key) {
            "hashed key (postgrey --privacy)"
        } else {
            "key is not NET/SENDER/RECIPIENT"
        });
    };
    let client: IpAddr = net
        .parse()
        .map_err(|_| "client network is not an address")?;
    let (sender, recipient) = split_sender(rest).ok_or("key is not NET/SENDER/RECIPIENT")?;
    if recipient.is_empty() {
        return Err("key is not NET/SENDER/RECIPIENT");
    }
    let (first, last) = times(value).ok_or("value is not FIRST,LAST")?;
    let prefix = match client {
        IpAddr::V4(_) => options.ipv4_prefix,
        IpAddr::V6(_) => options.ipv6_prefix,
    };
    let when = if last.saturating_sub(first) >= options.delay {
        When::White {
            first_seen: first,
            last_use: last,
        }
    } else {
        When::Pending {
            first_seen: first,
            last,
        }
    };
    Ok(TupleEntry {
        client,
        prefix,
        sender: sender.as_bytes().to_vec(),
        recipient: recipient.as_bytes().to_vec(),
        when,
    })
}

/// `SENDER/RECIPIENT`: a domain holds no `/`, so the sender ends at the
/// first `/` after its `@` (a local part may hold one); the null sender
/// is empty.
fn split_sender(rest: &str) -> Option<(&str, &str)> {
    if let Some(recipient) = rest.strip_prefix('/') {
        return Some(("", recipient));
    }
    let from = rest.find('@').unwrap_or(0);
    let slash = rest.get(from..)?.find('/')? + from;
    Some((rest.get(..slash)?, rest.get(slash + 1..)?))
}

fn times(value: &[u8]) -> Option<(u64, u64)> {
    let value = std::str::from_utf8(value).ok()?;
    let mut parts = value.split(',');
    let first = parts.next()?.trim().parse().ok()?;
    let last = parts.next()?.trim().parse().ok()?;
    Some((first, last))
}

fn is_sha1(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Adds the clients database's records to `read`.
pub fn clients(records: &[(Vec<u8>, Vec<u8>)], read: &mut Read) {
    for (key, value) in records {
        read.records += 1;
        let Some(key) = std::str::from_utf8(key).ok() else {
            read.unkeyable("key is not UTF-8");
            continue;
        };
        let Ok(client) = key.parse::<IpAddr>() else {
            read.unkeyable(if is_sha1(key) {
                "hashed key (postgrey --privacy)"
            } else {
                "client is not an address"
            });
            continue;
        };
        let Some((count, last)) = times(value) else {
            read.unkeyable("value is not COUNT,LAST");
            continue;
        };
        read.networks.push(NetEntry {
            client,
            prefix: if client.is_ipv4() { 32 } else { 128 },
            passes: u32::try_from(count).unwrap_or(u32::MAX),
            last,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
        (k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    #[test]
    fn tuples_map_to_entries_and_bad_ones_are_counted() {
        let records = [
            rec("192.0.2.0/alice@example.org/bob@example.net", "1000,1400"),
            rec(
                "2001:db8:0:0:0:0:0:0/carol@example.org/dave@example.net",
                "1000,1000,host",
            ),
            rec("192.0.2.0//bob@example.net", "1000,1100"),
            rec("192.0.2.0/a/b@x.example/c/d@example.net", "1000,1400"),
            rec("0123456789abcdef0123456789abcdef01234567", "1000,1400"),
            rec(
                "mail.example/alice@example.org/bob@example.net",
                "1000,1400",
            ),
            rec("192.0.2.0/alice@example.org/bob@example.net", "yesterday"),
        ];
        let mut read = Read::default();
        tuples(&records, &Options::default(), &mut read);
        assert_eq!(read.records, 7);
        assert_eq!(read.tuples.len(), 4);
        let t = &read.tuples[0];
        assert_eq!((t.client, t.prefix), ("192.0.2.0".parse().unwrap(), 24));
        assert_eq!(
            t.when,
            When::White {
                first_seen: 1000,
                last_use: 1400
            }
        );
        assert_eq!(read.tuples[1].prefix, 64);
        assert_eq!(
            read.tuples[1].when,
            When::Pending {
                first_seen: 1000,
                last: 1000
            }
        );
        assert_eq!(read.tuples[2].sender, b"");
        assert_eq!(read.tuples[3].sender, b"a/b@x.example");
        assert_eq!(read.tuples[3].recipient, b"c/d@example.net");
        assert_eq!(read.unkeyable_total(), 3);
        assert_eq!(read.skipped["hashed key (postgrey --privacy)"], 1);
    }

    #[test]
    fn clients_are_host_addresses() {
        let mut read = Read::default();
        clients(&[rec("192.0.2.7", "6,1400"), rec("junk", "1,1")], &mut read);
        assert_eq!(read.networks.len(), 1);
        assert_eq!(read.networks[0].prefix, 32);
        assert_eq!(read.networks[0].passes, 6);
        assert_eq!(read.unkeyable_total(), 1);
    }
}
