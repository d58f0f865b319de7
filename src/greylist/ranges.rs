//! Longest-prefix match over many networks in one binary search.
//!
//! The networks of a list are flattened into a partition of the whole
//! address space: sorted start addresses, each with the action of the most
//! specific network covering it (or none). A look-up is one
//! `partition_point` over the starts, so 100,000 networks cost about
//! 17 comparisons where 10 cost 5, with no per-prefix-length probing. The
//! actions are interned with the prefix length of the network that gave
//! them (so that a look-up also says how specific its match is): a start
//! costs its address plus a `u32`.

use super::settings::ListAction;

/// An unsigned address: `u32` for IPv4, `u128` for IPv6.
pub trait Addr: Copy + Ord + Default + std::fmt::Debug {
    const BITS: u8;
    fn next(self) -> Option<Self>;
    /// The top 16 bits, for the first-level index.
    fn top16(self) -> usize;
    /// The last address of the network `self/prefix` (`self` masked).
    fn last_of(self, prefix: u8) -> Self;
}

impl Addr for u32 {
    const BITS: u8 = 32;
    fn next(self) -> Option<u32> {
        self.checked_add(1)
    }
    fn top16(self) -> usize {
        (self >> 16) as usize
    }
    fn last_of(self, prefix: u8) -> u32 {
        self | !super::key::mask32(prefix)
    }
}

impl Addr for u128 {
    const BITS: u8 = 128;
    fn next(self) -> Option<u128> {
        self.checked_add(1)
    }
    fn top16(self) -> usize {
        (self >> 112) as usize
    }
    fn last_of(self, prefix: u8) -> u128 {
        self | !super::key::mask128(prefix)
    }
}

#[derive(Debug, Clone)]
pub struct Ranges<A> {
    /// Ascending; the first is always 0.
    starts: Vec<A>,
    /// Index into `actions` plus one; 0 = no entry covers the range.
    values: Vec<u32>,
    /// The action and the prefix length of the network it came from.
    actions: Vec<(ListAction, u8)>,
    /// For large lists: entry `b` is the first start whose top 16 bits are
    /// at least `b`, so a look-up searches only its own /16 (or /16 of
    /// IPv6) instead of the whole array: one cache miss instead of a dozen.
    index: Vec<u32>,
}

/// Below this many starts the plain binary search stays in cache.
const INDEX_FROM: usize = 4096;

impl<A: Addr> Default for Ranges<A> {
    fn default() -> Self {
        Ranges {
            starts: vec![A::default()],
            values: vec![0],
            actions: Vec::new(),
            index: Vec::new(),
        }
    }
}

impl<A: Addr> Ranges<A> {
    /// `nets`: (masked network, prefix length, action), one per network
    /// (duplicates already resolved by the caller).
    #[cfg(test)]
    pub fn build(mut nets: Vec<(A, u8, ListAction)>) -> Ranges<A> {
        nets.sort_unstable_by_key(|(net, prefix, _)| (*net, *prefix));
        crate::pace::run_now(Ranges::build_sorted(
            nets.into_iter(),
            &mut crate::pace::Pacer::unpaced(),
        ))
    }

    /// `nets` as for `build`, sorted by (network, prefix length): broader
    /// networks first at one start, so the narrower one overrides. One
    /// step of `pacer` per network.
    pub async fn build_sorted(
        nets: impl Iterator<Item = (A, u8, ListAction)>,
        pacer: &mut crate::pace::Pacer<'_>,
    ) -> Ranges<A> {
        let mut r = Ranges::default();
        let mut interned: Vec<(ListAction, u8)> = Vec::new();
        // Open networks, each nested in the one below: (last address, value).
        let mut open: Vec<(A, u32)> = Vec::new();
        for (net, prefix, action) in nets {
            pacer.step().await;
            let value = intern(&mut interned, (action, prefix.min(A::BITS)));
            r.close_before(&mut open, Some(net));
            open.push((net.last_of(prefix.min(A::BITS)), value));
            r.emit(net, value);
        }
        r.close_before(&mut open, None);
        r.actions = interned;
        r.starts.shrink_to_fit();
        r.values.shrink_to_fit();
        if r.starts.len() >= INDEX_FROM {
            let mut i = 0usize;
            r.index = (0..=1usize << 16)
                .map(|b| {
                    while r.starts.get(i).is_some_and(|s| s.top16() < b) {
                        i += 1;
                    }
                    u32::try_from(i).unwrap_or(u32::MAX)
                })
                .collect();
        }
        r
    }

    /// Closes the open networks that end before `until` (all when `None`),
    /// handing the rest of each back to the network it was nested in.
    fn close_before(&mut self, open: &mut Vec<(A, u32)>, until: Option<A>) {
        while let Some(&(last, _)) = open.last() {
            if until.is_some_and(|u| last >= u) {
                break;
            }
            open.pop();
            let outer = open.last().map_or(0, |o| o.1);
            if let Some(after) = last.next() {
                self.emit(after, outer);
            }
        }
    }

    /// From `start` on, the value is `value`.
    fn emit(&mut self, start: A, value: u32) {
        if self.starts.last() == Some(&start) {
            self.starts.pop();
            self.values.pop();
        }
        if self.values.last() == Some(&value) {
            return;
        }
        self.starts.push(start);
        self.values.push(value);
    }

    /// The action of the most specific network holding `addr`, and that
    /// network's prefix length.
    pub fn get(&self, addr: A) -> Option<(ListAction, u8)> {
        let b = addr.top16();
        let (lo, hi) = match (self.index.get(b), self.index.get(b + 1)) {
            (Some(&lo), Some(&hi)) => (lo as usize, hi as usize),
            _ => (0, self.starts.len()),
        };
        let within = self.starts.get(lo..hi)?;
        // The start covering `addr` is in its /16, or the last one before.
        let i = (lo + within.partition_point(|s| *s <= addr)).checked_sub(1)?;
        let v = self.values.get(i)?.checked_sub(1)?;
        self.actions.get(v as usize).copied()
    }

    /// Bytes held, for the memory figures.
    pub fn heap_bytes(&self) -> usize {
        self.starts.capacity() * std::mem::size_of::<A>()
            + self.values.capacity() * 4
            + self.actions.capacity() * std::mem::size_of::<(ListAction, u8)>()
            + self.index.capacity() * 4
    }
}

fn intern(actions: &mut Vec<(ListAction, u8)>, action: (ListAction, u8)) -> u32 {
    // Distinct actions are few (accept, reject, a handful of delays, at
    // the few prefix lengths a list uses); a linear search beats hashing
    // at that size.
    let i = match actions.iter().position(|a| *a == action) {
        Some(i) => i,
        None => {
            actions.push(action);
            actions.len() - 1
        }
    };
    u32::try_from(i + 1).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ListAction = ListAction::Accept;
    const R: ListAction = ListAction::Reject;
    const G: ListAction = ListAction::Greylist { delay: None };

    fn v4(s: &str) -> u32 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap())
    }

    /// Reference: the longest matching prefix by a linear scan.
    fn linear(nets: &[(u32, u8, ListAction)], addr: u32) -> Option<(ListAction, u8)> {
        nets.iter()
            .filter(|(n, p, _)| addr & super::super::key::mask32(*p) == *n)
            .max_by_key(|(_, p, _)| *p)
            .map(|e| (e.2, e.1))
    }

    #[test]
    fn nested_and_adjacent_networks() {
        let nets = vec![
            (v4("10.0.0.0"), 8, A),
            (v4("10.1.0.0"), 16, G),
            (v4("10.1.2.3"), 32, R),
            (v4("10.255.255.255"), 32, R),
            (v4("11.0.0.0"), 8, G),
            (v4("255.255.255.255"), 32, A),
        ];
        let r = Ranges::build(nets.clone());
        for a in [
            "0.0.0.0",
            "9.255.255.255",
            "10.0.0.0",
            "10.1.0.0",
            "10.1.2.2",
            "10.1.2.3",
            "10.1.2.4",
            "10.1.255.255",
            "10.2.0.0",
            "10.255.255.254",
            "10.255.255.255",
            "11.0.0.0",
            "12.0.0.0",
            "255.255.255.254",
            "255.255.255.255",
        ] {
            assert_eq!(r.get(v4(a)), linear(&nets, v4(a)), "{a}");
        }
        let all = Ranges::build(vec![(0u32, 0, A)]);
        assert_eq!(all.get(u32::MAX), Some((A, 0)));
        assert_eq!(Ranges::<u128>::build(vec![]).get(7), None);
    }

    #[test]
    fn agrees_with_a_linear_scan_on_random_networks() {
        let mut seed = 0x1234_5678_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut nets: Vec<(u32, u8, ListAction)> = Vec::new();
        for _ in 0..300 {
            let p = (next() % 33) as u8;
            // A small space, so networks nest and touch often.
            let n = (next() as u32 & 0xff00_00ff) & super::super::key::mask32(p);
            if nets.iter().any(|e| e.0 == n && e.1 == p) {
                continue;
            }
            let act = [A, R, G][(next() % 3) as usize];
            nets.push((n, p, act));
        }
        let r = Ranges::build(nets.clone());
        assert!(r.index.is_empty());
        // Enough more to build the index: /24s across the whole space.
        let mut big = nets.clone();
        for _ in 0..5000 {
            let n = next() as u32 & 0xffff_ff00;
            if !big.iter().any(|e| e.0 == n && e.1 == 24) {
                big.push((n, 24, [A, R, G][(next() % 3) as usize]));
            }
        }
        let indexed = Ranges::build(big.clone());
        assert!(!indexed.index.is_empty());
        for _ in 0..2_000 {
            let a = next() as u32;
            assert_eq!(indexed.get(a), linear(&big, a), "{a:#x}");
            if let Some(e) = big.get((a % 5000) as usize) {
                assert_eq!(indexed.get(e.0), linear(&big, e.0), "{:#x}", e.0);
            }
        }
        for _ in 0..20_000 {
            let mut a = next() as u32;
            if a.is_multiple_of(2) {
                a &= 0xff00_00ff;
            }
            assert_eq!(r.get(a), linear(&nets, a), "{a:#x}");
        }
    }
}
