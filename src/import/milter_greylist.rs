//! milter-greylist's text dump (`dumpfile`, e.g. greylist.db).
//!
//! Comment lines start with `#`; the header names the version that wrote
//! the dump (`# milter-greylist databases, dumped by milter-greylist-4.6.2
//! on …`). One tuple per line, tab-separated: `IP  FROM  TO  TIME`, then
//! ` AUTO` for an auto-whitelisted tuple, or `\tTARPIT_TIME TARPIT` for a
//! tarpitted one, optionally followed by ` # local date`. For a pending
//! tuple TIME is when a retry will be accepted (first attempt + delay);
//! for `AUTO`, when the whitelisting expires. Addresses are as the MTA gave
//! them (angle brackets possible); IPs are full client addresses.

use std::net::IpAddr;

use super::{Read, TupleEntry, When};

/// The newest major version whose dump format this reader knows.
pub const MAX_MAJOR: u32 = 4;

/// Reads a whole dump into `read`. Only a dump from an unknown (newer)
/// milter-greylist is an error; a line that cannot be keyed is counted.
pub fn parse(text: &[u8], read: &mut Read) -> Result<(), String> {
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first() == Some(&b'#') {
            check_version(line)?;
            continue;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        read.records += 1;
        match tuple(line) {
            Ok(t) => read.tuples.push(t),
            Err(reason) => read.unkeyable(reason),
        }
    }
    Ok(())
}

fn check_version(comment: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(comment);
    let Some((_, rest)) = text.split_once("dumped by milter-greylist-") else {
        return Ok(());
    };
    let version = rest.split_whitespace().next().unwrap_or("");
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if m <= MAX_MAJOR => Ok(()),
        _ => Err(format!(
            "the dump was written by milter-greylist {version}; this greymilter reads the format of milter-greylist {MAX_MAJOR}.x and older"
        )),
    }
}

fn tuple(line: &[u8]) -> Result<TupleEntry, &'static str> {
    let mut fields = line.splitn(4, |&b| b == b'\t');
    let (Some(ip), Some(from), Some(to), Some(tail)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err("line is not IP, FROM, TO, TIME");
    };
    let client: IpAddr = std::str::from_utf8(ip)
        .ok()
        .and_then(|ip| ip.trim().parse().ok())
        .ok_or("client is not an address")?;
    let tail = std::str::from_utf8(tail).map_err(|_| "time is not a number")?;
    // The optional local date comment.
    let tail = tail.split_once('#').map_or(tail, |(t, _)| t);
    let words: Vec<&str> = tail.split_whitespace().collect();
    let time = |w: &str| w.parse::<u64>().map_err(|_| "time is not a number");
    let when = match words.as_slice() {
        [t] => When::PendingUntil { ready_at: time(t)? },
        [t, "AUTO"] => When::WhiteUntil { expires: time(t)? },
        [_, _, "TARPIT"] => return Err("tarpitted tuple (no greylisting state)"),
        _ => return Err("unknown record type"),
    };
    if to.is_empty() {
        return Err("line is not IP, FROM, TO, TIME");
    }
    Ok(TupleEntry {
        client,
        prefix: if client.is_ipv4() { 32 } else { 128 },
        sender: from.to_vec(),
        recipient: to.to_vec(),
        when,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "#\n# milter-greylist databases, dumped by milter-greylist-4.6.2 on 2026-12-06 18:20:00.\n# DO NOT EDIT while milter-greylist is running, changes will be overwritten.\n#\n\n\n#\n# stored tuples\n#\n# Sender IP\tSender e-mail\tRecipient e-mail\tTime accepted\tUnsuccessful shortest tarpit\n192.0.2.7\t<alice@example.org>\t<bob@example.net>\t1796580600 \n2001:db8::5\t<>\t<dave@example.net>\t1799000000 AUTO # 2027-01-03 00:00:00\n192.0.2.9\t<x@example.org>\t<y@example.net>\t1796580600\t30 TARPIT\n192.0.2.10\t<x@example.org>\t<y@example.net>\tsoon \n#\n# Summary: 4 records, 1 greylisted, 1 whitelisted, 1 tarpitted\n#\n";

    #[test]
    fn tuples_read_and_odd_lines_are_counted() {
        let mut read = Read::default();
        parse(DUMP.as_bytes(), &mut read).unwrap();
        assert_eq!(read.records, 4);
        assert_eq!(read.tuples.len(), 2);
        let t = &read.tuples[0];
        assert_eq!(t.client, "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_eq!(
            (t.sender.as_slice(), t.recipient.as_slice()),
            (&b"<alice@example.org>"[..], &b"<bob@example.net>"[..])
        );
        assert_eq!(
            t.when,
            When::PendingUntil {
                ready_at: 1_796_580_600
            }
        );
        assert_eq!(
            read.tuples[1].when,
            When::WhiteUntil {
                expires: 1_799_000_000
            }
        );
        assert_eq!(read.tuples[1].prefix, 128);
        assert_eq!(read.unkeyable_total(), 2);
    }

    #[test]
    fn a_dump_of_a_newer_milter_greylist_is_refused() {
        let newer = DUMP.replace("milter-greylist-4.6.2", "milter-greylist-5.0");
        let e = parse(newer.as_bytes(), &mut Read::default()).unwrap_err();
        assert!(e.contains("milter-greylist 5.0"), "{e}");
    }
}
