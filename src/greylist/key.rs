//! Tuple keys: what the table stores instead of addresses.
//!
//! The table never stores address strings. A tuple is identified by a
//! [`TupleKey`] of two 64-bit halves, both keyed SipHash-1-3 values under a
//! per-installation [`Secret`]:
//!
//! * `[0]`: the hash of the client *network* (the masked address, its family
//!   and prefix length). It doubles as the [`NetKey`] of the tuple, so the
//!   table can count tuples per network (the `IPs` statistic) and find the
//!   auto-whitelist record without storing anything else per tuple.
//! * `[1]`: the hash of (network, normalised sender, normalised recipient),
//!   length-prefixed so that field boundaries cannot be shifted.
//!
//! Two tuples collide only if both halves collide; for tuples of the same
//! network that is a 64-bit keyed hash collision, about n²/2⁶⁵ (3·10⁻⁶ for
//! 10 million tuples from a single network), and the effect of one would be
//! a recipient not greylisted. The key is secret and random, so an attacker
//! cannot aim at a collision nor flood one hash bucket; since the key is
//! already uniform, the maps use it as its own hash ([`MapKey`]).
//! The secret is saved in the state file so keys survive a restart.
//!
//! Changing `ipv4_prefix`/`ipv6_prefix` changes every network hash: old
//! tuples stay in the table and expire normally, but no longer match, so
//! clients are greylisted once more after such a change.

use std::hash::{Hash, Hasher};
use std::io::Read as _;
use std::net::IpAddr;

use siphasher::sip::SipHasher13;

use super::dense_map::MapKey;

/// Per-installation hashing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secret {
    pub k0: u64,
    pub k1: u64,
}

/// Mixed into the secret for network hashes, so that the network hash and
/// the tuple hash are independent functions.
const NET_DOMAIN: u64 = 0x6e65_7477_6f72_6b21;

impl Secret {
    /// 16 bytes from `/dev/urandom`. If that cannot be read (a chroot
    /// without /dev), falls back to a key derived from the time, the
    /// process id and an address (not secret against a local attacker,
    /// still unpredictable from the network); `fallback` says so.
    pub fn random() -> (Secret, bool) {
        let mut buf = [0u8; 16];
        let ok = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut buf))
            .is_ok();
        if ok {
            let (a, b) = buf.split_at(8);
            let k0 = u64::from_le_bytes(a.try_into().unwrap_or_default());
            let k1 = u64::from_le_bytes(b.try_into().unwrap_or_default());
            return (Secret { k0, k1 }, false);
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let local = 0u8;
        let addr = std::ptr::addr_of!(local) as u64;
        let mut h = SipHasher13::new_with_keys(nanos, addr);
        std::process::id().hash(&mut h);
        let k0 = h.finish();
        nanos.rotate_left(17).hash(&mut h);
        (Secret { k0, k1: h.finish() }, true)
    }

    pub fn net_key(&self, net: &Network) -> NetKey {
        let mut h = SipHasher13::new_with_keys(self.k0 ^ NET_DOMAIN, self.k1);
        h.write(&net.0);
        NetKey::from_u64(h.finish())
    }

    /// The key of (network, sender, recipient); `sender` and `recipient`
    /// already normalised.
    pub fn tuple_key(&self, net: &Network, sender: &[u8], recipient: &[u8]) -> TupleKey {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write(&net.0);
        h.write(&(sender.len() as u64).to_le_bytes());
        h.write(sender);
        h.write(&(recipient.len() as u64).to_le_bytes());
        h.write(recipient);
        TupleKey([self.net_key(net).as_u64(), h.finish()])
    }
}

/// A masked client address: family tag, prefix length, 16 address bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network([u8; 18]);

impl Network {
    /// Masks `addr` to `v4_prefix` or `v6_prefix` bits; IPv4-mapped IPv6
    /// counts as IPv4.
    pub fn of(addr: IpAddr, v4_prefix: u8, v6_prefix: u8) -> Network {
        let mut b = [0u8; 18];
        match canonical(addr) {
            IpAddr::V4(a) => {
                let p = v4_prefix.min(32);
                let masked = u32::from(a) & mask32(p);
                b[0] = 4;
                b[1] = p;
                b[2..6].copy_from_slice(&masked.to_be_bytes());
            }
            IpAddr::V6(a) => {
                let p = v6_prefix.min(128);
                let masked = u128::from(a) & mask128(p);
                b[0] = 6;
                b[1] = p;
                b[2..18].copy_from_slice(&masked.to_be_bytes());
            }
        }
        Network(b)
    }

    /// The "network" of an SPF-authenticated domain (`[greylist] spf =
    /// "key"`): a tag no address uses, then a 128-bit hash of the lower-case
    /// domain. The secret is applied when the tuple key is made, like for
    /// addresses, so this hash needs no key of its own.
    pub fn of_domain(domain: &str) -> Network {
        use siphasher::sip128::{Hasher128 as _, SipHasher13 as Sip128};
        let mut h = Sip128::new();
        h.write(domain.to_ascii_lowercase().as_bytes());
        let mut b = [0u8; 18];
        b[0] = b'd';
        b[2..18].copy_from_slice(&h.finish128().as_bytes());
        Network(b)
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as IPv4.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

pub fn mask32(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

pub fn mask128(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

/// `[network hash, tuple hash]`; see the module docs. `[u64; 2]` rather than
/// `u128` keeps the alignment at 8, so a table bucket is 32 bytes, not 48.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TupleKey(pub [u64; 2]);

impl TupleKey {
    pub fn net(&self) -> NetKey {
        NetKey::from_u64(self.0[0])
    }
}

impl Hash for TupleKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The tuple half: uniform, and differs between tuples of one network.
        state.write_u64(self.0[1]);
    }
}

/// A network hash stored as two `u32` so that `(NetKey, u32)` packs into
/// 12 bytes in the per-network count map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetKey([u32; 2]);

impl NetKey {
    pub fn from_u64(v: u64) -> NetKey {
        NetKey([(v >> 32) as u32, v as u32])
    }
    pub fn as_u64(&self) -> u64 {
        (u64::from(self.0[0]) << 32) | u64::from(self.0[1])
    }
}

impl MapKey for TupleKey {
    fn hash64(&self) -> u64 {
        self.0[1]
    }
}

impl MapKey for NetKey {
    fn hash64(&self) -> u64 {
        self.as_u64()
    }
}

impl Hash for NetKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.as_u64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_maps() {
        let n = |s: &str| Network::of(s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])), 24, 64);
        assert_eq!(n("192.0.2.1"), n("192.0.2.200"));
        assert_ne!(n("192.0.2.1"), n("192.0.3.1"));
        assert_eq!(n("::ffff:192.0.2.1"), n("192.0.2.9"));
        assert_eq!(n("2001:db8::1"), n("2001:db8::ffff:1"));
        assert_ne!(n("2001:db8::1"), n("2001:db8:0:1::1"));
        assert_eq!(mask32(0), 0);
        assert_eq!(mask32(32), u32::MAX);
        assert_eq!(mask128(0), 0);
        assert_eq!(mask128(128), u128::MAX);
    }

    #[test]
    fn keys_depend_on_every_field_and_the_secret() {
        let s = Secret { k0: 1, k1: 2 };
        let net = Network::of(IpAddr::from([192, 0, 2, 1]), 24, 64);
        let k = s.tuple_key(&net, b"a@b", b"c@d");
        assert_eq!(k, s.tuple_key(&net, b"a@b", b"c@d"));
        assert_ne!(k, s.tuple_key(&net, b"a@bc", b"@d"));
        assert_ne!(k, s.tuple_key(&net, b"a@b", b"c@e"));
        assert_ne!(k, Secret { k0: 1, k1: 3 }.tuple_key(&net, b"a@b", b"c@d"));
        assert_eq!(k.net(), s.net_key(&net));
        let (r1, _) = Secret::random();
        let (r2, _) = Secret::random();
        assert_ne!(r1, r2);
    }
}
