//! The control socket's walks in slices, with the table changing between
//! slices: every tuple the walk owes is removed, nothing else is.

use std::collections::HashSet;

use super::*;

const T: Timing = Timing {
    delay: 300,
    retry_window: 3600,
    lifetime: 20_000,
};

/// Network `i % 5`, so a forget of networks 0 and 1 takes two fifths.
fn key(i: u64) -> TupleKey {
    TupleKey([i % 5, i.wrapping_mul(0x9e37_79b9_7f4a_7c15)])
}

/// Fills 3000 tuples at t=1000, a third retried (whitelisted) at 1400.
fn filled() -> Table {
    let mut t = Table::new(100_000);
    for i in 0..3000 {
        t.lookup(key(i), 1_000, 300, &T);
    }
    for i in (0..3000).step_by(3) {
        assert_eq!(
            t.lookup(key(i), 1_400, 300, &T),
            Outcome::Retried { waited: 400 }
        );
    }
    t
}

/// Between slices: new tuples, passes of old pending tuples, and removals
/// (forget of single tuples) that move entries around.
fn churn(t: &mut Table, round: u64, now: u64) -> Vec<TupleKey> {
    let mut added = Vec::new();
    for j in 0..20 {
        let k = key(10_000 + round * 20 + j);
        assert_eq!(t.lookup(k, now, 300, &T), Outcome::New);
        added.push(k);
    }
    // An old pending tuple passes (moves to white, the last pending entry
    // moves into its hole).
    let _ = t.lookup(key(round * 3 + 1), now, 300, &T);
    // An old tuple is forgotten on its own.
    t.forget(&key(round * 3 + 2));
    added
}

fn flows_hold(t: &Table) {
    let f = t.flows();
    let inflow = f.restored + f.graylisted + f.allowed;
    let outflow = f.graylist_expired + f.whitelist_expired + f.evicted + f.forgotten;
    assert_eq!(t.len() as u64, inflow - outflow);
    let counted: u32 = t.networks.iter().map(|(_, c)| *c).sum();
    assert_eq!(counted as usize, t.len());
}

#[test]
fn flush_in_slices_drops_every_old_pending_tuple_and_keeps_the_new_ones() {
    let mut t = filled();
    let mut walk = Walk::new(WalkKind::Flush, 1_500);
    let mut added = Vec::new();
    let mut round = 0;
    while !t.walk_step(&mut walk, 97, |_| true) {
        added.extend(churn(&mut t, round, 1_501 + round));
        round += 1;
        flows_hold(&t);
    }
    assert!(round > 10, "{round} slices");
    for k in &added {
        assert_eq!(t.get(k).map(|(_, white)| white), Some(false), "{k:?}");
    }
    // Left pending: only what came after the walk started.
    assert_eq!(t.pending(), added.len());
    // Whitelisted tuples, including those that passed mid-walk, stay.
    assert_eq!(t.whitelisted(), 1000 + round as usize);
    flows_hold(&t);
}

#[test]
fn forget_in_slices_removes_old_tuples_of_the_networks_even_if_they_pass_mid_walk() {
    let mut t = filled();
    let nets: HashSet<NetKey> = [key(0).net(), key(1).net()].into_iter().collect();
    let mut walk = Walk::new(WalkKind::Forget, 1_500);
    let mut added = Vec::new();
    let mut round = 0;
    while !t.walk_step(&mut walk, 61, |k| nets.contains(&k.net())) {
        added.extend(churn(&mut t, round, 1_501 + round));
        round += 1;
        flows_hold(&t);
    }
    assert!(round > 20, "{round} slices");
    for i in 0..3000 {
        let k = key(i);
        // Unless churn's attempt came after the walk had removed it: a
        // new tuple then.
        if nets.contains(&k.net())
            && let Some((times, _)) = t.get(&k)
        {
            assert!(times.first_seen > 1_500, "{i} should be forgotten");
        }
    }
    for k in &added {
        assert!(t.get(k).is_some(), "{k:?} came after the walk started");
    }
    // The other networks keep their old tuples, but for those churn forgot.
    let old_others = (0..3000)
        .filter(|i| !nets.contains(&key(*i).net()))
        .filter(|i| t.get(&key(*i)).is_some())
        .count();
    assert!(old_others >= 1800 - round as usize, "{old_others}");
    flows_hold(&t);
}
