//! The client address of SMFIC_CONNECT, normalised (docs/milter.md, "Client address").

use std::net::IpAddr;

use super::codec::Family;

/// The client IP for families `4` and `6`: brackets and a Sendmail `IPv6:`
/// prefix (any case) removed, compressed or full IPv6 form, a `%zone` suffix
/// dropped, IPv4-mapped IPv6 turned into IPv4. `None` for `L`, `U`, other
/// families and anything that does not parse.
pub fn client_ip(family: Family, address: &[u8]) -> Option<IpAddr> {
    if !matches!(family, Family::Inet4 | Family::Inet6) {
        return None;
    }
    client_ip_text(address)
}

/// The same for an address without a family: the `{client_addr}` macro
/// (Postfix writes IPv6 addresses with the `IPv6:` prefix).
pub fn client_ip_text(address: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(address).ok()?.trim();
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    let text = match text.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("IPv6:") => text.get(5..)?,
        _ => text,
    };
    let text = text.split_once('%').map_or(text, |(addr, _zone)| addr);
    match text.parse::<IpAddr>().ok()? {
        IpAddr::V6(v6) => Some(match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }),
        v4 => Some(v4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn forms_from_both_mtas() {
        let v6 = ip("2001:db8::25");
        assert_eq!(
            client_ip(Family::Inet4, b"198.51.100.7"),
            ip("198.51.100.7")
        );
        assert_eq!(client_ip(Family::Inet6, b"2001:db8::25"), v6);
        assert_eq!(client_ip(Family::Inet6, b"IPv6:2001:db8::25"), v6);
        assert_eq!(client_ip(Family::Inet6, b"ipv6:2001:DB8::25"), v6);
        assert_eq!(client_ip(Family::Inet6, b"[IPv6:2001:db8::25]"), v6);
        assert_eq!(client_ip(Family::Inet6, b"[2001:db8::25]"), v6);
        assert_eq!(client_ip(Family::Inet6, b"IPv6:2001:db8:0:0:0:0:0:25"), v6);
        assert_eq!(
            client_ip(Family::Inet6, b"::ffff:192.0.2.1"),
            ip("192.0.2.1")
        );
        assert_eq!(
            client_ip(Family::Inet6, b"IPv6:::ffff:192.0.2.1"),
            ip("192.0.2.1")
        );
        assert_eq!(client_ip(Family::Inet6, b"fe80::1%eth0"), ip("fe80::1"));
    }

    #[test]
    fn no_client_ip() {
        assert_eq!(client_ip(Family::Local, b"/var/run/x.sock"), None);
        assert_eq!(client_ip(Family::Unknown, b""), None);
        assert_eq!(client_ip(Family::Other(b'X'), b"192.0.2.1"), None);
        assert_eq!(client_ip(Family::Inet4, b"not an address"), None);
        assert_eq!(client_ip(Family::Inet6, b"IPv6:"), None);
        assert_eq!(client_ip(Family::Inet4, b"\xff\xfe"), None);
        assert_eq!(client_ip(Family::Inet4, b""), None);
    }
}
