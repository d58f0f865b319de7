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

/// Applies the sender rules to an address already in base form.
pub fn normalize_sender(addr: &mut Vec<u8>) {
    let at = addr.iter().rposition(|&b| b == b'@');
    let Some(at) = at else {
        return;
    };
    let (local, domain) = addr.split_at(at);
    let mut local = local.to_vec();
    strip_batv(&mut local);
    if !reduce_srs(&mut local)
        && let Some(plus) = local.iter().position(|&b| b == b'+')
        && plus > 0
    {
        local.truncate(plus);
    }
    replace_digit_runs(&mut local);
    let mut out = local;
    out.extend_from_slice(domain);
    *addr = out;
}

/// The domain of an address in base form: what follows the last `@`.
pub fn domain_of(addr: &[u8]) -> Option<&[u8]> {
    let at = addr.iter().rposition(|&b| b == b'@')?;
    addr.get(at + 1..).filter(|d| !d.is_empty())
}

/// `prvs=TAG=local`, `msprvs1=TAG=local`, `btv1==TAG==local` → `local`.
fn strip_batv(local: &mut Vec<u8>) {
    let rest = if let Some(r) = local.strip_prefix(b"prvs=") {
        split_tag(r, b"=")
    } else if let Some(r) = local.strip_prefix(b"msprvs1=") {
        split_tag(r, b"=")
    } else if let Some(r) = local.strip_prefix(b"btv1==") {
        split_tag(r, b"==")
    } else {
        None
    };
    if let Some(rest) = rest {
        *local = rest.to_vec();
    }
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

/// SRS0/SRS1 local parts reduced to their stable fields. Returns whether
/// the local part was an SRS address (then no `+extension` rule applies:
/// `+` may be SRS's own separator).
fn reduce_srs(local: &mut Vec<u8>) -> bool {
    let (kind, rest) = match local.get(..5) {
        Some(b"srs0=" | b"srs0+" | b"srs0-") => (0, local.get(5..).unwrap_or_default()),
        Some(b"srs1=" | b"srs1+" | b"srs1-") => (1, local.get(5..).unwrap_or_default()),
        _ => return false,
    };
    let reduced = if kind == 0 {
        // hash=tt=domain=local
        let mut f = rest.splitn(4, |&b| b == b'=');
        match (f.next(), f.next(), f.next(), f.next()) {
            (Some(_hash), Some(_tt), Some(domain), Some(user)) => {
                let mut v = b"srs0=".to_vec();
                v.extend_from_slice(domain);
                v.push(b'=');
                v.extend_from_slice(user);
                Some(v)
            }
            _ => None,
        }
    } else {
        // hash=host0==hash0=tt=domain=local
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
            (Some(_), Some(host0), Some([]), Some(_), Some(_), Some(domain), Some(user)) => {
                let mut v = b"srs1=".to_vec();
                v.extend_from_slice(host0);
                v.extend_from_slice(b"==");
                v.extend_from_slice(domain);
                v.push(b'=');
                v.extend_from_slice(user);
                Some(v)
            }
            _ => None,
        }
    };
    if let Some(v) = reduced {
        *local = v;
    }
    true
}

/// Replaces each run of ASCII digits that is not glued to a letter by `#`.
fn replace_digit_runs(local: &mut Vec<u8>) {
    if !local.iter().any(u8::is_ascii_digit) {
        return;
    }
    let mut out = Vec::with_capacity(local.len());
    let mut i = 0;
    while let Some(&b) = local.get(i) {
        if !b.is_ascii_digit() {
            out.push(b);
            i += 1;
            continue;
        }
        let end = i + local
            .get(i..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let before = i.checked_sub(1).and_then(|j| local.get(j));
        let glued = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_alphabetic());
        if glued(before) || glued(local.get(end)) {
            out.extend_from_slice(local.get(i..end).unwrap_or_default());
        } else {
            out.push(DIGITS_PLACEHOLDER);
        }
        i = end;
    }
    *local = out;
}

/// Longest address text put in a log line.
pub const MAX_LOGGED_LEN: usize = 256;

/// Appends `raw` to a log line safely: printable ASCII except space and `\`
/// as is, everything else as `\xNN`, cut after [`MAX_LOGGED_LEN`] input
/// bytes with a `...` marker, so that hostile input can neither forge
/// key=value fields nor blow up the log.
pub fn push_loggable(line: &mut String, raw: &[u8]) {
    use std::fmt::Write as _;
    let shown = raw.get(..MAX_LOGGED_LEN).unwrap_or(raw);
    for &b in shown {
        if b.is_ascii_graphic() && b != b'\\' {
            line.push(char::from(b));
        } else {
            let _ = write!(line, "\\x{b:02x}");
        }
    }
    if shown.len() < raw.len() {
        line.push_str("...");
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
    }
}
