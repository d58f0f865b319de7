//! The map against a plain `HashMap` model, through many growths.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct K(u64);

impl MapKey for K {
    fn hash64(&self) -> u64 {
        // 16 distinct low bits only: beyond 64k slots, homes cluster and
        // probe runs grow long (the hard case for the drain), yet the
        // tests stay fast.
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) & 0xffff_ffff_0000_ffff
    }
}

/// Every entry is found at its position, nothing else is found.
fn check(m: &DenseMap<K, u32>, model: &HashMap<K, u32>) {
    assert_eq!(m.len(), model.len());
    for (i, (k, v)) in m.iter().enumerate() {
        assert_eq!(m.get_index_of(k), Some(i), "{k:?}");
        assert_eq!(model.get(k), Some(v), "{k:?}");
    }
    for (k, v) in model {
        assert_eq!(m.get(k), Some(v), "{k:?}");
    }
}

#[test]
fn grows_through_many_drains_and_finds_everything_at_every_step() {
    let mut m = DenseMap::default();
    let mut model = HashMap::new();
    let mut growths = 0;
    let mut was_growing = false;
    for i in 0..60_000u64 {
        assert!(m.try_reserve_one(usize::MAX));
        assert_eq!(m.insert(K(i), i as u32), None);
        model.insert(K(i), i as u32);
        if m.growing() && !was_growing {
            growths += 1;
        }
        was_growing = m.growing();
        // Remove one in three as we go: tombstones in the old index and
        // backward shifts in the new one, mid-drain.
        if i % 3 == 2 {
            assert_eq!(m.swap_remove(&K(i - 1)), Some((i - 1) as u32));
            model.remove(&K(i - 1));
        }
        if i % 997 == 0 || (m.growing() && i % 7 == 0) {
            check(&m, &model);
        }
    }
    assert!(growths >= 8, "{growths} growths");
    check(&m, &model);
}

#[test]
fn a_drain_ends_long_before_the_next_growth_is_due() {
    let mut m = DenseMap::default();
    let mut inserts_while_growing = 0;
    for i in 0..40_000u64 {
        m.insert(K(i), 0u32);
        if m.growing() {
            inserts_while_growing += 1;
            let slots = m.old.as_ref().map_or(0, |o| o.index.len());
            // MIGRATE_STEP slots per insert at least.
            assert!(inserts_while_growing <= slots / MIGRATE_STEP + 1);
        } else {
            inserts_while_growing = 0;
        }
    }
}

#[test]
fn restored_maps_do_not_grow_and_reinsert_replaces() {
    let mut m = DenseMap::with_capacity(1000);
    for i in 0..1000u64 {
        m.insert(K(i), 1u32);
    }
    assert!(!m.growing());
    assert_eq!(m.insert(K(5), 2), Some(1));
    assert_eq!(m.len(), 1000);
    if let Some(v) = m.get_or_insert_with(K(5), || 9) {
        *v += 1;
    }
    assert_eq!(m.get(&K(5)), Some(&3));
    m.retain(|k, _| k.0 % 2 == 0);
    assert_eq!(m.len(), 500);
    assert!(m.keys().all(|k| k.0 % 2 == 0));
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u64, u32),
    Remove(u64),
    RemoveAt(usize),
    Retain(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3000u64, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => (0..3000u64).prop_map(Op::Remove),
        2 => any::<usize>().prop_map(Op::RemoveAt),
        1 => (2..50u64).prop_map(Op::Retain),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn behaves_like_a_hash_map(ops in proptest::collection::vec(op(), 1..4000)) {
        let mut m = DenseMap::default();
        let mut model = HashMap::new();
        for op in ops {
            match op {
                Op::Insert(k, v) => {
                    prop_assert!(m.try_reserve_one(usize::MAX));
                    prop_assert_eq!(m.insert(K(k), v), model.insert(K(k), v));
                }
                Op::Remove(k) => prop_assert_eq!(m.swap_remove(&K(k)), model.remove(&K(k))),
                Op::RemoveAt(i) => {
                    if !m.is_empty() {
                        let i = i % m.len();
                        let (k, v) = m.swap_remove_index(i).unwrap_or((K(u64::MAX), 0));
                        prop_assert_eq!(model.remove(&k), Some(v));
                    }
                }
                Op::Retain(d) => {
                    m.retain(|k, _| k.0 % d != 0);
                    model.retain(|k, _| k.0 % d != 0);
                }
            }
            prop_assert_eq!(m.len(), model.len());
        }
        check(&m, &model);
    }
}

#[test]
fn each_growth_beyond_the_threshold_takes_an_index_faulted_in_beforehand() {
    let mut m = DenseMap::default();
    let mut prepared_growths = 0;
    for i in 0..40_000u64 {
        let slots = m.index.len();
        let ready = m
            .next
            .as_ref()
            .map(|p| (p.index.len(), p.touched >= p.index.len()));
        let touched = m.next.as_ref().map_or(0, |p| p.touched);
        assert!(m.try_reserve_one(usize::MAX));
        m.insert(K(i), i as u32);
        // One page of the next index faulted per insert, never more.
        if let Some(p) = &m.next {
            assert!(p.touched <= touched + PREFAULT_STRIDE / 8, "at {i}");
        }
        if m.index.len() != slots && slots * 2 * 8 >= PREPARE_FROM {
            // The index that took over was the prepared one, every page
            // of it touched, and nothing is prepared while it drains.
            assert_eq!(ready, Some((m.index.len(), true)), "at {i}");
            assert!(m.next.is_none());
            prepared_growths += 1;
        }
        // Prepared only near a growth, never during a drain.
        if m.next.is_some() {
            assert!(m.old.is_none());
        }
    }
    assert!(prepared_growths >= 4, "{prepared_growths}");
    assert_eq!(m.len(), 40_000);
    for i in 0..40_000u64 {
        assert_eq!(m.get(&K(i)), Some(&(i as u32)));
    }
}

/// A key with a full hash: the map below holds 260k of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wide(u64);

impl MapKey for Wide {
    fn hash64(&self) -> u64 {
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// Grown with `try_reserve_one` by the caller (the tuple maps) and by
/// inserts alone (the network counts): in 1/8 steps either way.
#[test]
fn the_entries_leave_the_heap_for_a_mapping_faulted_in_beforehand() {
    for reserve in [true, false] {
        let mut m = DenseMap::default();
        let size = std::mem::size_of::<(Wide, u32)>();
        let threshold = crate::memory::THRESHOLD;
        let n = (threshold / size + 10_000) as u64;
        let mut moves = 0;
        for i in 0..n {
            let before = m.entries.capacity();
            let prepared = m.bigger.as_ref().map(|b| (b.capacity(), b.ready()));
            if reserve {
                assert!(m.try_reserve_one(usize::MAX));
            }
            m.insert(Wide(i), i as u32);
            let bytes = m.entries.capacity() * size;
            if before * size < threshold && bytes >= threshold {
                // The move out of malloc's heap went into the prepared
                // block, every page of it faulted in already.
                assert_eq!(prepared, Some((m.entries.capacity(), true)), "at {i}");
                moves += 1;
            }
            // Prepared only while the entries are in the heap, from half
            // the threshold on.
            if m.bigger.is_some() {
                assert!((threshold / 2..threshold).contains(&bytes), "at {i}");
            }
        }
        assert_eq!(moves, 1, "reserve: {reserve}");
        let cap = m.entries.capacity() as u64;
        assert!(
            cap <= n + n / 8 + 16,
            "reserve: {reserve}: capacity {cap} for {n}"
        );
        assert!(m.bigger.is_none());
        assert_eq!(m.len() as u64, n);
        for i in 0..n {
            assert_eq!(m.get(&Wide(i)), Some(&(i as u32)), "{i}");
        }
    }
}
