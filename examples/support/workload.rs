//! Synthetic but realistic SMTP envelopes for the benchmarks: client
//! addresses, host names, senders and recipients with the length
//! distribution documented in BENCHMARKS.md ("Address model").
//!
//! Shared by the examples through `#[path]`; each example uses a part of it.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// SplitMix64: a small, fast, seedable generator. Benchmarks need
/// reproducible streams, not cryptographic quality.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    fn push_chars(&mut self, out: &mut String, n: usize) {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        for _ in 0..n {
            let c = ALPHABET[(self.next_u64() % ALPHABET.len() as u64) as usize];
            out.push(c as char);
        }
    }
}

/// Base-36 digits of `n`, so a unique number costs few characters.
fn push_base36(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 13];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize];
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or("0"));
}

/// A domain of 6 to 24 characters: one or two labels before a TLD.
fn push_domain(rng: &mut Rng, out: &mut String) {
    if rng.chance(30) {
        out.push_str(["mail.", "mx.", "bounce.", "em."][rng.range(0, 3)]);
    }
    let len = rng.range(3, 14);
    rng.push_chars(out, len);
    out.push_str([".com", ".net", ".org", ".de", ".co.uk", ".example"][rng.range(0, 5)]);
}

/// A sender as the MTA passes it in MAIL (`<…>`). Mixture (percent):
/// 5 null sender; 55 personal (local part 4–12 characters); 25 bulk or VERP
/// (local part 16–40, often with a `+tag` or numeric bounce id); 10 BATV
/// (`prvs=` tag + 6–14); 5 SRS forwarders (`SRS0=hash=tt=domain=local`).
/// `unique`, when given, is woven into the local part so the tuple is new.
pub fn sender(rng: &mut Rng, out: &mut String, unique: Option<u64>) {
    out.clear();
    out.push('<');
    let kind = rng.range(0, 99);
    if kind < 5 && unique.is_none() {
        out.push('>');
        return;
    }
    let local_len = match kind {
        0..=59 => rng.range(4, 12),
        60..=84 => rng.range(16, 40),
        85..=94 => {
            out.push_str("prvs=");
            rng.push_chars(out, 10);
            out.push('=');
            rng.range(6, 14)
        }
        _ => {
            out.push_str("SRS0=");
            rng.push_chars(out, 4);
            out.push_str("=2F=");
            push_domain(rng, out);
            out.push('=');
            rng.range(4, 12)
        }
    };
    let start = out.len();
    if let Some(u) = unique {
        push_base36(out, u);
        out.push('.');
    }
    let used = out.len() - start;
    rng.push_chars(out, local_len.saturating_sub(used).max(1));
    out.push('@');
    push_domain(rng, out);
    out.push('>');
}

/// A recipient at one of the protected domains: local part 3–12 characters
/// (users, role accounts), 10 % with a `+extension`.
pub fn recipient(rng: &mut Rng, out: &mut String, domain: &str) {
    out.clear();
    out.push('<');
    let len = rng.range(3, 12);
    rng.push_chars(out, len);
    if rng.chance(10) {
        out.push('+');
        let len = rng.range(3, 8);
        rng.push_chars(out, len);
    }
    out.push('@');
    out.push_str(domain);
    out.push('>');
}

/// A client address: 90 % IPv4, the /24 `net` of 11.0.0.0 to 210.255.255.0
/// (13M networks; never connected to), 10 % IPv6 in 2001:db8::/32 (/64s).
pub fn client_addr(rng: &mut Rng, networks: u64) -> IpAddr {
    let net = rng.next_u64() % networks.max(1);
    if rng.chance(10) {
        let host = rng.next_u64() as u16;
        IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            (net >> 16) as u16,
            net as u16,
            0,
            0,
            0,
            host | 1,
        ))
    } else {
        let first = 11 + ((net >> 16) % 200) as u8;
        IpAddr::V4(Ipv4Addr::new(
            first,
            (net >> 8) as u8,
            net as u8,
            rng.range(1, 254) as u8,
        ))
    }
}

/// The CONNECT host name: 40 % a verified name (`mail7.abcd.example`),
/// otherwise the bracketed address Postfix sends for an unverified client.
pub fn client_name(rng: &mut Rng, out: &mut String, addr: IpAddr) {
    out.clear();
    if rng.chance(40) {
        let _ = write!(out, "mail{}.", rng.range(1, 20));
        push_domain(rng, out);
    } else {
        match addr {
            IpAddr::V4(a) => {
                let _ = write!(out, "[{a}]");
            }
            IpAddr::V6(a) => {
                let _ = write!(out, "[IPv6:{a}]");
            }
        }
    }
}

/// The protected domains recipients belong to.
pub const DOMAINS: [&str; 4] = [
    "example.test",
    "mail.example.test",
    "corp.example.org",
    "example.net",
];

/// One envelope of a reproducible tuple population.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub addr: IpAddr,
    pub name: String,
    pub sender: String,
    pub recipient: String,
}

impl Envelope {
    /// Tuple number `i` out of `networks` client networks: the same every
    /// time it is asked for, and distinct tuples for distinct `i`.
    pub fn numbered(i: u64, networks: u64) -> Envelope {
        let mut e = Envelope {
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            name: String::new(),
            sender: String::new(),
            recipient: String::new(),
        };
        e.renumber(i, networks);
        e
    }

    /// [`Envelope::numbered`], reusing this envelope's buffers.
    pub fn renumber(&mut self, i: u64, networks: u64) {
        let mut rng = Rng::new(i.wrapping_mul(0x2545_f491_4f6c_dd1d));
        self.addr = client_addr(&mut rng, networks);
        client_name(&mut rng, &mut self.name, self.addr);
        sender(&mut rng, &mut self.sender, Some(i));
        let domain = DOMAINS[rng.range(0, DOMAINS.len() - 1)];
        recipient(&mut rng, &mut self.recipient, domain);
    }
}
