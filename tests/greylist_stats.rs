//! The statistics identity under random traffic, maintenance, capacity
//! changes and save/restore; and the report's shape.

#[path = "support/greylist/mod.rs"]
mod greylist_support;

use std::time::Duration;

use greylist_support::{T0, assert_identity, engine, rcpt};
use greymilter::greylist::settings::Settings;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Rcpt { client: u8, sender: u8, rcpt: u8 },
    Advance(u64),
    Maintain,
    SetMax(usize),
    SaveRestore,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..6, 0u8..6, 0u8..4).prop_map(|(client, sender, rcpt)| Op::Rcpt { client, sender, rcpt }),
        3 => prop_oneof![0u64..600, 0u64..100_000, 0u64..4_000_000].prop_map(Op::Advance),
        2 => Just(Op::Maintain),
        1 => (1usize..40).prop_map(Op::SetMax),
        1 => Just(Op::SaveRestore),
    ]
}

fn settings(max: usize) -> Settings {
    Settings {
        max_tuples: max,
        auto_whitelist_after: 2,
        whitelist_lifetime: Duration::from_secs(3 * 86_400),
        ..Settings::default()
    }
}

proptest! {
    #[test]
    fn tuples_balance_inflows_and_outflows(ops in proptest::collection::vec(op(), 1..200)) {
        let (mut e, clock) = engine(settings(30));
        for op in ops {
            match op {
                Op::Rcpt { client, sender, rcpt: r } => {
                    let client = format!("10.{client}.0.1");
                    rcpt(&mut e, &client, &format!("<s{sender}@example.org>"), &format!("<r{r}@example.net>"));
                }
                Op::Advance(s) => clock.advance(s),
                Op::Maintain => {
                    for _ in 0..100 {
                        if !e.maintain() {
                            break;
                        }
                    }
                }
                Op::SetMax(m) => e.set_settings(settings(m)),
                Op::SaveRestore => {
                    let mut buf = Vec::new();
                    e.write_state(&mut buf).unwrap();
                    let before = e.stats();
                    e.restore_state(&buf).unwrap();
                    let after = e.stats();
                    prop_assert_eq!(after.tuples, before.tuples.min(e.settings().max_tuples as u64));
                    // Excess beyond max_tuples is removed: expired first, else evicted.
                    prop_assert_eq!(after.tuples + after.evicted + after.graylist_expired + after.whitelist_expired, before.tuples);
                    prop_assert_eq!(after.graylisted, 0);
                    prop_assert_eq!(after.restored, before.tuples);
                }
            }
            assert_identity(&e);
        }
    }
}

#[test]
fn counters_and_intervals() {
    let (mut e, clock) = engine(Settings::default());
    for i in 0..7 {
        rcpt(
            &mut e,
            "192.0.2.1",
            &format!("<s{i}@x.example>"),
            "<r@y.example>",
        );
    }
    rcpt(&mut e, "198.51.100.1", "<s@x.example>", "<r@y.example>");
    clock.advance(300);
    e.maintain();
    rcpt(&mut e, "192.0.2.1", "<s0@x.example>", "<r@y.example>");
    clock.advance(300);
    e.maintain();
    let s = e.stats();
    assert_eq!(s.requests, 9);
    assert_eq!(s.requests_cu, 1);
    assert_eq!(s.requests_cu_max, 8);
    assert_eq!(s.requests_cu_ave, 5); // (8 + 1) / 2 rounded
    assert_eq!(
        (s.ips, s.tuples, s.graylisted, s.whitelisted, s.passed),
        (2, 8, 8, 1, 1)
    );
    assert_eq!(s.deferred, 8);
    assert_eq!(s.start, T0);
    assert_eq!(s.now, T0 + 600);

    let report = e.stats_report();
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], "Start              2023-11-14T22:13:20Z");
    assert_eq!(lines[2], "Running time       10m 0s");
    assert_eq!(lines[3], "IPs                2");
    assert_eq!(lines[6], "Tuples             8");
    assert_eq!(lines[10], "Whitelist-Expired  0");
    for label in [
        "Requests-Cu-Max",
        "Requests-Cu-Ave",
        "Passed",
        "Accepted-By-List",
        "Rejected-By-List",
        "Authenticated",
        "Auto-Whitelisted",
        "Evicted",
        "Tuples-High",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.split_whitespace().next() == Some(label)),
            "{label}"
        );
    }
}

#[test]
fn expiry_by_maintenance_is_counted_and_bumps_the_generation() {
    let (mut e, clock) = engine(Settings::default());
    for i in 0..5000 {
        rcpt(
            &mut e,
            "192.0.2.1",
            &format!("<s{i}@x.example>"),
            "<r@y.example>",
        );
    }
    let g = e.generation();
    clock.advance(86_400);
    let mut calls = 0;
    while e.maintain() {
        calls += 1;
    }
    assert!(calls >= 2, "5000 entries take more than one slice");
    assert!(e.generation() > g);
    let s = e.stats();
    assert_eq!((s.tuples, s.graylist_expired, s.ips), (0, 5000, 0));
    assert_identity(&e);
    // Nothing due: maintenance has nothing to do and changes nothing.
    let g = e.generation();
    assert!(!e.maintain());
    assert_eq!(e.generation(), g);
}
