//! `import`: entries carried over from another greylister, streamed to a
//! running daemon by `greymilter import` in bounded batches, one batch per
//! connection. The daemon keys them (its secret, normalisation and
//! prefixes) and merges them in the main loop, a batch at a time.
//!
//! ```text
//! import entries=N                              (1 ≤ N ≤ MAX_BATCH)
//! w CLIENT/PREFIX FIRST LAST <SENDER> <RECIPIENT>   a whitelisted tuple
//! p CLIENT/PREFIX FIRST LAST <SENDER> <RECIPIENT>   a pending tuple
//! n CLIENT PASSES LAST_COUNTED LAST_USE              an auto-whitelist record
//! ```
//!
//! Times are unix seconds. Addresses are the source's, between angle
//! brackets, bytes outside `!`..`~` and `%<>` as `%XX`. The answer:
//! `ok` then `imported white=N pending=N networks=N known=N full=N wider=N`.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::greylist::awl::AwlRecord;
use crate::greylist::engine::{ImportCounts, ImportEntry, Placed, PlacedNet};
use crate::greylist::table::Times;

/// Entries in one batch: merged in well under a millisecond, so the loop
/// serves mail between two batches.
pub const MAX_BATCH: usize = 1000;
/// Longest entry line, newline excluded (two addresses, escaped).
pub const MAX_ENTRY_LINE: usize = 2048;

/// The entry count of an `import` header line; `None` if the line is not
/// one.
pub fn header(line: &[u8]) -> Option<Result<usize, String>> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let rest = line.strip_prefix(b"import")?;
    if !(rest.is_empty() || rest.starts_with(b" ")) {
        return None;
    }
    let n = std::str::from_utf8(rest)
        .ok()
        .and_then(|r| r.trim().strip_prefix("entries="))
        .and_then(|n| n.parse::<usize>().ok());
    Some(match n {
        Some(n) if (1..=MAX_BATCH).contains(&n) => Ok(n),
        _ => Err(format!(
            "import: expected `import entries=N`, N from 1 to {MAX_BATCH}, then N entry lines"
        )),
    })
}

/// One entry line.
pub fn parse_entry(line: &[u8]) -> Result<ImportEntry, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|_| "import: an entry is not UTF-8")?;
    let mut w = text.split(' ');
    let kind = w.next().unwrap_or_default();
    let mut field = |what: &str| w.next().ok_or_else(|| format!("import: {what} missing"));
    let num = |s: &str, what: &str| {
        s.parse::<u32>()
            .map_err(|_| format!("import: {what} {s:?} is not a number"))
    };
    let entry = match kind {
        "w" | "p" => {
            let (client, prefix) = field("client")?
                .split_once('/')
                .ok_or("import: client without /prefix")?;
            let client: IpAddr = client
                .parse()
                .map_err(|_| "import: client is not an IP address")?;
            let prefix: u8 = prefix.parse().map_err(|_| "import: bad prefix")?;
            let first_seen = num(field("first")?, "first")?;
            let last = num(field("last")?, "last")?;
            let sender = unescape(field("sender")?)?;
            let recipient = unescape(field("recipient")?)?;
            ImportEntry::Tuple(Placed {
                white: kind == "w",
                client,
                prefix,
                sender,
                recipient,
                times: Times { first_seen, last },
            })
        }
        "n" => {
            let client: IpAddr = field("client")?
                .parse()
                .map_err(|_| "import: client is not an IP address")?;
            let record = AwlRecord {
                passes: num(field("passes")?, "passes")?,
                last_counted: num(field("last_counted")?, "last_counted")?,
                last_use: num(field("last_use")?, "last_use")?,
            };
            ImportEntry::Network(PlacedNet { client, record })
        }
        _ => return Err("import: an entry starts with w, p or n".to_string()),
    };
    if w.next().is_some() {
        return Err("import: extra words after an entry".to_string());
    }
    Ok(entry)
}

/// The line [`parse_entry`] reads back as `e` (no newline).
pub fn entry_line(e: &ImportEntry) -> String {
    let mut out = String::with_capacity(128);
    match e {
        ImportEntry::Tuple(t) => {
            let kind = if t.white { 'w' } else { 'p' };
            let _ = write!(
                out,
                "{kind} {}/{} {} {} ",
                t.client, t.prefix, t.times.first_seen, t.times.last
            );
            escape(&t.sender, &mut out);
            out.push(' ');
            escape(&t.recipient, &mut out);
        }
        ImportEntry::Network(n) => {
            let r = &n.record;
            let _ = write!(
                out,
                "n {} {} {} {}",
                n.client, r.passes, r.last_counted, r.last_use
            );
        }
    }
    out
}

fn escape(bytes: &[u8], out: &mut String) {
    out.push('<');
    for &b in bytes {
        if (b'!'..=b'~').contains(&b) && !matches!(b, b'%' | b'<' | b'>') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out.push('>');
}

fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let inner = s
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .ok_or("import: an address is not between < and >")?;
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = [bytes.next(), bytes.next()];
        let v = match hex {
            [Some(h), Some(l)] => std::str::from_utf8(&[h, l])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok()),
            _ => None,
        };
        out.push(v.ok_or("import: bad %XX escape in an address")?);
    }
    Ok(out)
}

/// The answer text for `c`.
pub fn answer(c: &ImportCounts) -> String {
    format!(
        "imported white={} pending={} networks={} known={} full={} wider={}",
        c.new_white, c.new_pending, c.new_networks, c.known, c.full, c.wider
    )
}

/// Reads [`answer`] back.
pub fn parse_answer(text: &str) -> Option<ImportCounts> {
    let rest = text.lines().next()?.strip_prefix("imported ")?;
    let mut c = ImportCounts::default();
    for pair in rest.split(' ') {
        let (k, v) = pair.split_once('=')?;
        let v: u64 = v.parse().ok()?;
        let slot = match k {
            "white" => &mut c.new_white,
            "pending" => &mut c.new_pending,
            "networks" => &mut c.new_networks,
            "known" => &mut c.known,
            "full" => &mut c.full,
            "wider" => &mut c.wider,
            _ => return None,
        };
        *slot = v;
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_answers_round_trip() {
        let entries = [
            ImportEntry::Tuple(Placed {
                white: true,
                client: "192.0.2.0".parse().unwrap(),
                prefix: 24,
                sender: b"a b%<c>@example.org\xff".to_vec(),
                recipient: b"<Bob@Example.NET>".to_vec(),
                times: Times {
                    first_seen: 10,
                    last: 20,
                },
            }),
            ImportEntry::Tuple(Placed {
                white: false,
                client: "2001:db8::1".parse().unwrap(),
                prefix: 128,
                sender: Vec::new(),
                recipient: b"x@y".to_vec(),
                times: Times {
                    first_seen: 1,
                    last: 1,
                },
            }),
            ImportEntry::Network(PlacedNet {
                client: "192.0.2.7".parse().unwrap(),
                record: AwlRecord {
                    passes: 5,
                    last_counted: 9,
                    last_use: 9,
                },
            }),
        ];
        for e in &entries {
            let line = entry_line(e);
            assert!(
                !line.contains('\n') && line.len() < MAX_ENTRY_LINE,
                "{line}"
            );
            assert_eq!(&parse_entry(line.as_bytes()).unwrap(), e, "{line}");
        }
        for bad in [
            "",
            "x 1",
            "w 192.0.2.1 1 2 <a> <b>",
            "p 192.0.2.1/32 1 2 <a%zz> <b>",
            "n 192.0.2.1 1 2 3 4",
        ] {
            assert!(parse_entry(bad.as_bytes()).is_err(), "{bad}");
        }
        assert_eq!(header(b"import entries=3"), Some(Ok(3)));
        assert!(matches!(header(b"import entries=0"), Some(Err(_))));
        assert!(matches!(header(b"import entries=1001"), Some(Err(_))));
        assert_eq!(header(b"stats"), None);
        assert_eq!(header(b"imports"), None);
        let c = ImportCounts {
            new_white: 1,
            new_pending: 2,
            new_networks: 3,
            known: 4,
            full: 5,
            wider: 6,
        };
        assert_eq!(parse_answer(&answer(&c)), Some(c));
    }
}
