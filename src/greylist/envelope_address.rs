//! Envelope addresses as they go into keys and list look-ups.
//!
//! MTAs pass MAIL/RCPT arguments exactly as the SMTP client sent them
//! (`<User@Example.COM>`, `<>`, `<@hop1,@hop2:user@example.org>`), so the
//! engine normalises them itself. Everything works on bytes: the input is
//! not guaranteed to be UTF-8 and nothing here may panic on it.
//!
//! Base form (senders and recipients): surrounding whitespace, one pair of
//! angle brackets and any source route are removed, the result is cut to
//! [`MAX_ADDRESS_LEN`] bytes and ASCII-lower-cased (the whole address, local
//! part included: the common choice, and what makes `Bob@x` and `bob@x` one
//! tuple). The null sender `<>` becomes the empty string, a value of its own.
//!
//! Sender normalisation (`normalize_sender`, on by default) then removes the
//! parts that change from message to message, so that mailing lists and
//! bounces do not start a new tuple with every message:
//!
//! | rule | example in | example out |
//! |---|---|---|
//! | BATV (`prvs=`, `msprvs1=`, `btv1==`) | `prvs=1234abcdef=bob@example.org` | `bob@example.org` |
//! | SRS0: drop hash and timestamp | `srs0=hhhh=tt=orig.example=alice@fwd.example` | `srs0=orig.example=alice@fwd.example` |
//! | SRS1: drop both hashes and the timestamp | `srs1=xxxx=fwd1.example==hhhh=tt=orig.example=alice@fwd2.example` | `srs1=fwd1.example==orig.example=alice@fwd2.example` |
//! | `+extension` | `bob+lists@example.org` | `bob@example.org` |
//! | VERP digit runs (a run of digits not glued to a letter) | `bounce-12345-67@lists.example` | `bounce-#-#@lists.example` |
//!
//! Digit runs glued to letters (`john1980`) are kept: they are part of a
//! stable name, not a per-message identifier. The full table of examples
//! is in `tests/greylist_address.rs`.

/// Longest address (after brackets and source route) that takes part in a
/// key. RFC 5321 allows 256 octets for a path; anything longer is hostile or
/// broken, and cutting it keeps hashing and list look-ups bounded.
pub const MAX_ADDRESS_LEN: usize = 512;

/// Placeholder for a VERP digit run.
const DIGITS_PLACEHOLDER: u8 = b'#';

/// Writes the base form of `raw` into `out` (cleared first).
pub fn base_form(raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut s = raw.trim_ascii();
    if let Some(rest) = s.strip_prefix(b"<") {
        s = rest.strip_suffix(b">").unwrap_or(rest);
    }
    s = s.trim_ascii();
    // Source route: `@a,@b:user@c`.
    if s.first() == Some(&b'@')
        && let Some(colon) = s.iter().position(|&b| b == b':')
    {
        s = s.get(colon + 1..).unwrap_or_default();
    }
    let s = s.get(..MAX_ADDRESS_LEN).unwrap_or(s);
    out.extend(s.iter().map(u8::to_ascii_lowercase));
}

/// Writes the key form of a sender into `out`: the base form, then (with
/// `normalize`) BATV, SRS, `+extension` and VERP rules.
pub fn sender_form(raw: &[u8], normalize: bool, out: &mut Vec<u8>) {
    base_form(raw, out);
    if normalize {
        normalize_sender(out);
    }
}

/// Applies the sender rules to an address already in base form, in place:
/// the rules only ever remove bytes (or put one `#` where a digit run
/// was), so no allocation is needed on the RCPT path.
pub fn normalize_sender(addr: &mut Vec<u8>) {
    let Some(mut at) = addr.iter().rposition(|&b| b == b'@') else {
        return;
    };
    if let Some(cut) = addr.get(..at).and_then(batv_cut) {
        addr.drain(..cut);
        at -= cut;
    }
    let local = addr.get(..at).unwrap_or_default();
    match srs_cuts(local) {
        Srs::Not => {
            if let Some(plus) = local.iter().position(|&b| b == b'+')
                && plus > 0
            {
                addr.drain(plus..at);
                at = plus;
            }
        }
        Srs::Malformed => {}
        Srs::Reduce(later, earlier) => {
            // Later range first, so the earlier one's offsets still hold.
            let removed = later.len() + earlier.len();
            addr.drain(later);
            addr.drain(earlier);
            at -= removed;
            // `srs0+`/`srs0-` are written `srs0=`, as the reduced form.
            if let Some(sep) = addr.get_mut(4) {
                *sep = b'=';
            }
        }
    }
    squeeze_digit_runs(addr, at);
}

/// The domain of an address in base form: what follows the last `@`.
pub fn domain_of(addr: &[u8]) -> Option<&[u8]> {
    let at = addr.iter().rposition(|&b| b == b'@')?;
    addr.get(at + 1..).filter(|d| !d.is_empty())
}

/// `prvs=TAG=local`, `msprvs1=TAG=local`, `btv1==TAG==local`: how many
/// leading bytes go, leaving `local`.
fn batv_cut(local: &[u8]) -> Option<usize> {
    let rest = if let Some(r) = local.strip_prefix(b"prvs=") {
        split_tag(r, b"=")
    } else if let Some(r) = local.strip_prefix(b"msprvs1=") {
        split_tag(r, b"=")
    } else if let Some(r) = local.strip_prefix(b"btv1==") {
        split_tag(r, b"==")
    } else {
        None
    };
    rest.map(|r| local.len() - r.len())
}

/// `TAG<sep>rest` with an alphanumeric tag of 4 to 32 bytes → `rest`.
fn split_tag<'a>(s: &'a [u8], sep: &[u8]) -> Option<&'a [u8]> {
    let tag_len = s.iter().take_while(|b| b.is_ascii_alphanumeric()).count();
    if !(4..=32).contains(&tag_len) {
        return None;
    }
    let rest = s.get(tag_len..)?.strip_prefix(sep)?;
    (!rest.is_empty()).then_some(rest)
}

/// What the SRS rule does to a local part.
enum Srs {
    /// Not SRS: the `+extension` rule applies.
    Not,
    /// SRS, but not in a form we reduce (then no `+extension` rule either:
    /// `+` may be SRS's own separator).
    Malformed,
    /// SRS reduced to its stable fields by removing these two ranges (the
    /// first is after the second; either may be empty).
    Reduce(std::ops::Range<usize>, std::ops::Range<usize>),
}

/// SRS0 `srs0=hash=tt=domain=local` keeps `srs0=domain=local`; SRS1
/// `srs1=hash=host0==hash0=tt=domain=local` keeps `srs1=host0==domain=local`.
fn srs_cuts(local: &[u8]) -> Srs {
    const HEAD: usize = 5;
    let (kind, rest) = match local.get(..HEAD) {
        Some(b"srs0=" | b"srs0+" | b"srs0-") => (0, local.get(HEAD..).unwrap_or_default()),
        Some(b"srs1=" | b"srs1+" | b"srs1-") => (1, local.get(HEAD..).unwrap_or_default()),
        _ => return Srs::Not,
    };
    if kind == 0 {
        let mut f = rest.splitn(4, |&b| b == b'=');
        match (f.next(), f.next(), f.next(), f.next()) {
            (Some(hash), Some(tt), Some(_domain), Some(_user)) => {
                let domain_start = HEAD + hash.len() + 1 + tt.len() + 1;
                Srs::Reduce(HEAD..domain_start, 0..0)
            }
            _ => Srs::Malformed,
        }
    } else {
        let mut f = rest.splitn(7, |&b| b == b'=');
        match (
            f.next(),
            f.next(),
            f.next(),
            f.next(),
            f.next(),
            f.next(),
            f.next(),
        ) {
            (Some(hash), Some(host0), Some([]), Some(hash0), Some(tt), Some(_), Some(_)) => {
                let host0_start = HEAD + hash.len() + 1;
                let hash0_start = host0_start + host0.len() + 2;
                let domain_start = hash0_start + hash0.len() + 1 + tt.len() + 1;
                Srs::Reduce(hash0_start..domain_start, HEAD..host0_start)
            }
            _ => Srs::Malformed,
        }
    }
}

/// Replaces each run of ASCII digits in `addr[..at]` that is not glued to
/// a letter by `#`, compacting in place. Bytes are only ever moved towards
/// the front, and a run's neighbours are read before anything is written
/// over them, so one pass suffices.
fn squeeze_digit_runs(addr: &mut Vec<u8>, at: usize) {
    let local = addr.get(..at).unwrap_or_default();
    if !local.iter().any(u8::is_ascii_digit) {
        return;
    }
    let glued = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_alphabetic());
    let (mut read, mut write) = (0, 0);
    while let Some(&b) = addr.get(read).filter(|_| read < at) {
        if !b.is_ascii_digit() {
            put(addr, write, b);
            (read, write) = (read + 1, write + 1);
            continue;
        }
        let run = addr
            .get(read..at)
            .unwrap_or_default()
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let end = read + run;
        // Position `read - 1` holds its original byte: `write` ≤ `read`,
        // and whatever was written there came from that same position.
        let before = read.checked_sub(1).and_then(|j| addr.get(j));
        let after = addr.get(end).filter(|_| end < at);
        if glued(before) || glued(after) {
            for i in read..end {
                let digit = addr.get(i).copied().unwrap_or(b'0');
                put(addr, write, digit);
                write += 1;
            }
        } else {
            put(addr, write, DIGITS_PLACEHOLDER);
            write += 1;
        }
        read = end;
    }
    addr.drain(write..at);
}

fn put(addr: &mut [u8], at: usize, b: u8) {
    if let Some(slot) = addr.get_mut(at) {
        *slot = b;
    }
}

/// Longest address text put in a log line.
pub const MAX_LOGGED_LEN: usize = 256;

/// Appends `raw` to a log line safely: printable ASCII except space and `\`
/// as is, everything else as `\xNN`, cut after [`MAX_LOGGED_LEN`] input
/// bytes with a `...` marker, so that hostile input can neither forge
/// key=value fields nor blow up the log.
pub fn push_loggable(line: &mut String, raw: &[u8]) {
    let shown = raw.get(..MAX_LOGGED_LEN).unwrap_or(raw);
    // The usual address needs no escape: one copy (`fold`, not `all`, so
    // the check runs on whole words).
    let plain = shown
        .iter()
        .fold(true, |ok, &b| ok & (b.is_ascii_graphic() & (b != b'\\')));
    if let Some(text) = plain.then(|| std::str::from_utf8(shown).ok()).flatten() {
        line.push_str(text);
    } else {
        push_escaped(line, shown);
    }
    if shown.len() < raw.len() {
        line.push_str("...");
    }
}

fn push_escaped(line: &mut String, shown: &[u8]) {
    use std::fmt::Write as _;
    for &b in shown {
        if b.is_ascii_graphic() && b != b'\\' {
            line.push(char::from(b));
        } else {
            let _ = write!(line, "\\x{b:02x}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(raw: &str) -> String {
        let mut out = Vec::new();
        sender_form(raw.as_bytes(), true, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn malformed_srs_is_kept_whole() {
        assert_eq!(sender("<SRS0=onlyone@x.example>"), "srs0=onlyone@x.example");
        assert_eq!(sender("<SRS1=a=b=c@x.example>"), "srs1=a=b=c@x.example");
    }

    #[test]
    fn hostile_bytes_do_not_panic_and_are_bounded() {
        let mut out = Vec::new();
        let big = vec![0xffu8; 60_000];
        sender_form(&big, true, &mut out);
        assert_eq!(out.len(), MAX_ADDRESS_LEN);
        let mut line = String::new();
        push_loggable(&mut line, &big);
        assert!(line.len() <= MAX_LOGGED_LEN * 4 + 3);
        for raw in [
            &b"<"[..],
            b">",
            b"<@",
            b"<@:",
            b"@",
            b"+@",
            b"prvs=@",
            b"srs0=@",
        ] {
            sender_form(raw, true, &mut out);
        }
    }

    #[test]
    fn log_form_escapes_separators() {
        let mut line = String::new();
        push_loggable(&mut line, b"a b=c\\\n");
        assert_eq!(line, "a\\x20b=c\\x5c\\x0a");
        // The copy of a plain address, and the escape of one bad byte.
        for (raw, want) in [
            (&b"alice@example.org"[..], "alice@example.org"),
            (b"", ""),
            (b"caf\xc3\xa9@x", "caf\\xc3\\xa9@x"),
            (b"a\x7fb", "a\\x7fb"),
        ] {
            let mut line = String::from("to=");
            push_loggable(&mut line, raw);
            assert_eq!(line, format!("to={want}"));
        }
        let long = vec![b'x'; MAX_LOGGED_LEN + 1];
        let mut line = String::new();
        push_loggable(&mut line, &long);
        assert_eq!(line, format!("{}...", "x".repeat(MAX_LOGGED_LEN)));
    }
}
