//! Does a client name look like a dynamic (end-user) address? For
//! selective greylisting. The name is the one the MTA verified (Postfix
//! sends `[ip]` when forward-confirmed reverse DNS failed), so no lookup of
//! our own is needed.

use std::net::IpAddr;

/// Words that mark access networks, as alphabetic tokens or token prefixes.
pub const DEFAULT_WORDS: &[&str] = &[
    "dyn",
    "dynamic",
    "dhcp",
    "pool",
    "ppp",
    "dsl",
    "adsl",
    "vdsl",
    "xdsl",
    "cable",
    "dial",
    "dialup",
    "broadband",
];

/// Suspicious: no verified name, or a name with the address embedded in
/// it, or a name with one of `words` in a host label (all labels but the
/// last two, so that a registered domain like `liverpool.ac.uk` does not
/// count).
pub fn suspicious(name: &[u8], addr: IpAddr, words: &[String]) -> bool {
    let name = name.trim_ascii();
    if name.is_empty() || name.first() == Some(&b'[') {
        return true;
    }
    let name = name.to_ascii_lowercase();
    let labels: Vec<&[u8]> = name.split(|&b| b == b'.').collect();
    let host = labels.len().saturating_sub(2);
    let host_labels = labels.get(..host).unwrap_or_default();
    embeds_address(host_labels, addr) || has_word(host_labels, words)
}

fn has_word(labels: &[&[u8]], words: &[String]) -> bool {
    labels.iter().any(|label| {
        label
            .split(|b| !b.is_ascii_alphabetic())
            .filter(|t| !t.is_empty())
            .any(|token| words.iter().any(|w| token.starts_with(w.as_bytes())))
    })
}

/// Three or more of the IPv4 octets in the host labels, in order or
/// reversed (`1-2-3-4`, `4.3.2.1.dsl`, `host1-2-3`), or the address as 8
/// hex digits.
fn embeds_address(labels: &[&[u8]], addr: IpAddr) -> bool {
    let IpAddr::V4(v4) = crate::greylist::key::canonical(addr) else {
        return false;
    };
    let octets = v4.octets();
    let hex = format!("{:08x}", u32::from(v4));
    let mut numbers: Vec<u32> = Vec::new();
    for label in labels {
        if label
            .windows(8)
            .any(|w| w.eq_ignore_ascii_case(hex.as_bytes()))
        {
            return true;
        }
        for run in label
            .split(|b| !b.is_ascii_digit())
            .filter(|r| !r.is_empty())
        {
            let value = std::str::from_utf8(run)
                .ok()
                .and_then(|r| r.parse::<u32>().ok());
            numbers.push(value.unwrap_or(u32::MAX));
        }
    }
    let want: Vec<u32> = octets.iter().map(|&o| u32::from(o)).collect();
    let rev: Vec<u32> = want.iter().rev().copied().collect();
    [want, rev].iter().any(|w| {
        w.windows(3)
            .any(|three| numbers.windows(3).any(|n| n == three))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words() -> Vec<String> {
        DEFAULT_WORDS.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn dynamic_names() {
        let ip: IpAddr = "198.51.100.23".parse().unwrap();
        let w = words();
        for name in [
            "[198.51.100.23]",
            "",
            "198-51-100-23.example.net",
            "23.100.51.198.in-addr.example.net",
            "host-51-100-23.isp.example",
            "c6336417.isp.example",
            "dyn-77.isp.example",
            "adsl77.isp.example",
            "pool-a.b.isp.example",
            "ppp.isp.example",
            "cable-modem.isp.example",
        ] {
            assert!(suspicious(name.as_bytes(), ip, &w), "{name}");
        }
        for name in [
            "mail.example.com",
            "mx1.liverpool.ac.uk",
            "smtp23.example.org",
            "mail-51.provider.example",
            "o1.poolside.example",
        ] {
            assert!(!suspicious(name.as_bytes(), ip, &w), "{name}");
        }
        assert!(suspicious(b"o1.poolside.example.com", ip, &w));
        assert!(!suspicious(b"dyn.example.com", ip, &[]));
    }
}
