//! DNS allow and block zones (DNSWL/DNSBL): the query name for a client
//! address and which answers count as "listed".

use std::fmt;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};

/// A zone and the answers it accepts. Without an explicit list, any
/// 127.0.0.0/8 answer counts except 127.255.255.0/24, which Spamhaus and
/// others use for "query refused" (public resolver, over quota): a refused
/// query is no information, not a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    pub accept: Vec<IpNet>,
}

impl Zone {
    /// `d.c.b.a.zone.` or the 32 reversed nibbles of an IPv6 address.
    pub fn query_name(&self, addr: IpAddr) -> String {
        let mut q = String::with_capacity(80 + self.name.len());
        match crate::greylist::key::canonical(addr) {
            IpAddr::V4(a) => {
                let [a, b, c, d] = a.octets();
                let _ = write!(q, "{d}.{c}.{b}.{a}.");
            }
            IpAddr::V6(a) => {
                for byte in a.octets().iter().rev() {
                    let _ = write!(q, "{:x}.{:x}.", byte & 0xf, byte >> 4);
                }
            }
        }
        q.push_str(&self.name);
        q.push('.');
        q
    }

    /// Whether one answer address means "listed".
    pub fn accepts(&self, answer: Ipv4Addr) -> bool {
        if self.accept.is_empty() {
            let refused = Ipv4Net::new(Ipv4Addr::new(127, 255, 255, 0), 24)
                .is_ok_and(|n| n.contains(&answer));
            return answer.is_loopback() && !refused;
        }
        self.accept.iter().any(|n| n.contains(&IpAddr::V4(answer)))
    }
}

impl FromStr for Zone {
    type Err = String;

    fn from_str(s: &str) -> Result<Zone, String> {
        let (name, codes) = match s.split_once('=') {
            Some((n, c)) => (n.trim(), Some(c)),
            None => (s.trim(), None),
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let valid_name = !name.is_empty()
            && name.len() <= 180
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid_name {
            return Err(format!(
                "{s:?} is not a DNS zone (like list.dnswl.org, or list.dnswl.org=127.0.0.2,127.0.10.0/24)"
            ));
        }
        let mut accept = Vec::new();
        for code in codes.into_iter().flat_map(|c| c.split(',')) {
            let code = code.trim();
            let net = code
                .parse::<IpNet>()
                .or_else(|_| code.parse::<IpAddr>().map(IpNet::from))
                .ok()
                .filter(|n| matches!(n, IpNet::V4(_)))
                .ok_or_else(|| {
                    format!("{code:?} in {s:?} is not an IPv4 answer code (like 127.0.0.2 or 127.0.10.0/24)")
                })?;
            accept.push(net.trunc());
        }
        if codes.is_some() && accept.is_empty() {
            return Err(format!("{s:?}: no answer codes after '='"));
        }
        Ok(Zone { name, accept })
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for (i, n) in self.accept.iter().enumerate() {
            f.write_str(if i == 0 { "=" } else { "," })?;
            match n {
                IpNet::V4(v) if v.prefix_len() == 32 => write!(f, "{}", v.addr())?,
                n => write!(f, "{n}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names() {
        let z: Zone = "List.DNSWL.org.".parse().unwrap();
        assert_eq!(
            z.query_name("192.0.2.10".parse().unwrap()),
            "10.2.0.192.list.dnswl.org."
        );
        assert_eq!(
            z.query_name("::ffff:192.0.2.10".parse().unwrap()),
            "10.2.0.192.list.dnswl.org."
        );
        let v6 = z.query_name("2001:db8::1".parse().unwrap());
        assert!(v6.starts_with("1.0.0.0.0.0.0.0."), "{v6}");
        assert!(v6.ends_with("8.b.d.0.1.0.0.2.list.dnswl.org."), "{v6}");
    }

    #[test]
    fn answer_codes() {
        let any: Zone = "bl.example".parse().unwrap();
        assert!(any.accepts(Ipv4Addr::new(127, 0, 0, 2)));
        assert!(!any.accepts(Ipv4Addr::new(127, 255, 255, 254)));
        assert!(!any.accepts(Ipv4Addr::new(192, 0, 2, 1)));
        let some: Zone = "wl.example=127.0.0.2, 127.0.10.0/24".parse().unwrap();
        assert!(some.accepts(Ipv4Addr::new(127, 0, 0, 2)));
        assert!(some.accepts(Ipv4Addr::new(127, 0, 10, 3)));
        assert!(!some.accepts(Ipv4Addr::new(127, 0, 0, 3)));
        assert_eq!(some.to_string(), "wl.example=127.0.0.2,127.0.10.0/24");
        for bad in ["", "a..b", "x=", "x=::1", "x=foo", "sp ace"] {
            assert!(bad.parse::<Zone>().is_err(), "{bad}");
        }
    }
}
