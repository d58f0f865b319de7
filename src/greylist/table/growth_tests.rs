//! The table through many index growths, with a manual clock, against a
//! plain map that applies the timing model of the module docs: every
//! decision, expiry and eviction is checked while the indexes drain.

use std::collections::HashMap;

use super::*;

const T: Timing = Timing {
    delay: 300,
    retry_window: 3600,
    lifetime: 20_000,
};

fn key(i: u64) -> TupleKey {
    let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i >> 7);
    TupleKey([i % 7, h])
}

/// (times, whitelisted) per stored tuple.
type Model = HashMap<TupleKey, (Times, bool)>;

/// What the timing model says of an attempt at `now`, applied to `model`.
fn model_lookup(model: &mut Model, k: TupleKey, now: u32) -> Outcome {
    let fresh = (
        Times {
            first_seen: now,
            last: now,
        },
        false,
    );
    let Some((t, white)) = model.get_mut(&k) else {
        model.insert(k, fresh);
        return Outcome::New;
    };
    let waited = now.saturating_sub(t.first_seen);
    match *white {
        true if now.saturating_sub(t.last) < T.lifetime => {
            t.last = t.last.max(now);
            Outcome::Whitelisted
        }
        false if waited < T.delay => {
            t.last = now;
            Outcome::Early {
                waited,
                remaining: T.delay - waited,
            }
        }
        false if waited < T.retry_window => {
            *t = Times {
                first_seen: t.first_seen,
                last: now,
            };
            *white = true;
            Outcome::Retried { waited }
        }
        _ => {
            *t = fresh.0;
            *white = false;
            Outcome::New
        }
    }
}

fn due(entry: &(Times, bool), now: u32) -> bool {
    match entry {
        (t, true) => now.saturating_sub(t.last) >= T.lifetime,
        (t, false) => now.saturating_sub(t.first_seen) >= T.retry_window,
    }
}

/// The table holds exactly the model's tuples, with the same times.
fn same(t: &Table, model: &Model) {
    assert_eq!(t.len(), model.len());
    for (k, v) in model {
        assert_eq!(t.get(k), Some(*v), "{k:?}");
    }
    let f = t.flows();
    assert_eq!(
        t.len() as u64,
        f.restored + f.graylisted + f.allowed
            - f.graylist_expired
            - f.whitelist_expired
            - f.evicted
            - f.forgotten
    );
}

#[test]
fn decisions_and_expiry_stay_exact_through_many_growths() {
    let mut t = Table::new(1_000_000);
    let mut model = Model::new();
    let mut now: u64 = 1_000_000;
    let mut growths = 0;
    let mut was_growing = false;
    let mut checked_mid_growth = 0;
    let mut next_new = 0u64;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for step in 0..120_000u64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        now += rng % 3;
        // Two new tuples for one retry of a tuple seen before.
        let k = if rng.is_multiple_of(3) && next_new > 0 {
            key((rng >> 8) % next_new)
        } else {
            next_new += 1;
            key(next_new - 1)
        };
        let expected = model_lookup(&mut model, k, secs32(now));
        assert_eq!(t.lookup(k, now, T.delay, &T), expected, "step {step}");
        if step % 16 == 0 {
            t.sweep(now, &T, 256);
            // What the sweep removed was due, and only that.
            let now32 = secs32(now);
            model.retain(|k, v| t.get(k).is_some() || !due(v, now32));
        }
        let growing = t.pending.growing() || t.white.growing() || t.networks.growing();
        if growing && !was_growing {
            growths += 1;
        }
        was_growing = growing;
        if (growing && step % 13 == 0) || step % 10_007 == 0 {
            same(&t, &model);
            checked_mid_growth += usize::from(growing);
        }
    }
    same(&t, &model);
    assert!(growths >= 10, "{growths} growths");
    assert!(checked_mid_growth >= 10, "{checked_mid_growth} checks");
    assert!(t.flows().graylist_expired > 1000 && t.flows().whitelist_expired > 100);
}

#[test]
fn eviction_mid_growth_takes_pending_tuples_and_loses_nothing_else() {
    // 3072 pending tuples fill a 4096-slot index to 3/4: the growth to
    // 8192 slots drains over the next 128 inserts, and the table is full
    // at 500 white + 3100 pending.
    let max = 3600;
    let mut t = Table::new(max);
    let now = 1_000_000;
    for i in 0..500 {
        t.lookup(key(i), now, T.delay, &T);
        t.lookup(key(i), now + 300, T.delay, &T);
    }
    assert_eq!(t.whitelisted(), 500);
    let mut evictions_mid_growth = 0;
    for i in 500..6000u64 {
        let growing = t.pending.growing();
        let before = t.flows().evicted;
        assert_eq!(
            t.lookup(key(i), now + 300 + i / 10, T.delay, &T),
            Outcome::New
        );
        assert_eq!(t.len(), (i as usize + 1).min(max));
        evictions_mid_growth += usize::from(growing && t.flows().evicted > before);
        // The white tuples all stay while pending ones can go; the newest
        // pending tuple is never the one evicted.
        assert!(t.get(&key(i)).is_some());
        if growing || i % 500 == 0 {
            for w in 0..500 {
                assert_eq!(t.get(&key(w)).map(|(_, white)| white), Some(true));
            }
            let stored = (500..=i).filter(|&p| t.get(&key(p)).is_some()).count();
            assert_eq!(stored, t.pending());
        }
    }
    assert!(evictions_mid_growth > 10, "{evictions_mid_growth}");
    assert_eq!(t.flows().evicted, 6000 - max as u64);
}
