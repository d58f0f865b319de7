//! The longest slice one list regular expression can cost a reload (issue
//! 24): for each shape an admin might write, the largest that is accepted
//! (within `patterns::MAX_SOURCE` bytes and `PATTERN_SIZE_LIMIT` compiled)
//! and the first that is refused, each compiled as a reload compiles it
//! (`Patterns::new_paced`, a timed pacer); prints the longest slice, best
//! of 5 (the machine is shared).
//!
//! `cargo run --release --example regex_bound`

use std::cell::Cell;
use std::time::Instant;

use greymilter::greylist::patterns::{MAX_SOURCE, Patterns};
use greymilter::greylist::settings::ListAction;
use greymilter::pace::{BUDGET, Pacer, run_now};

/// An expression of size N.
type Shape = Box<dyn Fn(usize) -> String>;

/// The longest slice (ms) and whether the expression was accepted.
fn slice_ms(source: &str) -> (f64, bool) {
    let mut best = f64::MAX;
    let mut ok = false;
    for _ in 0..5 {
        let mark = Cell::new(Instant::now());
        let worst = Cell::new(0.0f64);
        let mut pacer = Pacer::timed(BUDGET, || {
            let now = Instant::now();
            worst.set(worst.get().max((now - mark.get()).as_secs_f64() * 1e3));
            mark.set(now);
            std::future::ready(())
        });
        mark.set(Instant::now());
        let r = run_now(Patterns::new_paced(
            vec![(source.to_string(), ListAction::Accept)],
            &mut pacer,
        ));
        let last = (Instant::now() - mark.get()).as_secs_f64() * 1e3;
        drop(pacer);
        ok = r.is_ok();
        best = best.min(worst.get().max(last));
    }
    (best, ok)
}

fn main() {
    let alternation = |n: usize| {
        let words: Vec<String> = (0..n).map(|i| format!("mx{i}")).collect();
        format!("^({})\\.example\\.com$", words.join("|"))
    };
    let shapes: Vec<(&str, Shape)> = vec![
        ("\\w{N}", Box::new(|n| format!("\\w{{{n}}}"))),
        ("(\\w+\\.){N}", Box::new(|n| format!("(\\w+\\.){{{n}}}"))),
        (
            "[a-z0-9-]{1,N}",
            Box::new(|n| format!("[a-z0-9-]{{1,{n}}}")),
        ),
        ("[^@]{1,N}@", Box::new(|n| format!("^[^@]{{1,{n}}}@"))),
        ("\\pL{N}", Box::new(|n| format!("\\pL{{{n}}}"))),
        ("(.*\\.){N}", Box::new(|n| format!("(.*\\.){{{n}}}example"))),
        ("(a|b)*c{N}", Box::new(|n| format!("(a|b)*c{{{n}}}"))),
        ("^(mx0|...|mxN)\\.example\\.com$", Box::new(alternation)),
        ("literal of N bytes", Box::new(|n| "a".repeat(n))),
    ];
    let mut worst_ok = (0.0f64, String::new());
    for (name, make) in &shapes {
        // Doubling, then bisecting, the largest N accepted.
        let (mut lo, mut hi) = (1usize, 2usize);
        while slice_ms(&make(hi)).1 && make(hi).len() <= MAX_SOURCE && hi < 1 << 20 {
            lo = hi;
            hi *= 2;
        }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if slice_ms(&make(mid)).1 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let (ok_ms, _) = slice_ms(&make(lo));
        let (refused_ms, refused) = slice_ms(&make(hi));
        println!(
            "{name:36} largest accepted N={lo:5} ({:4} bytes) {ok_ms:6.2} ms; N={hi} {} {refused_ms:6.2} ms",
            make(lo).len(),
            if refused { "accepted?" } else { "refused" }
        );
        if ok_ms > worst_ok.0 {
            worst_ok = (ok_ms, make(lo));
        }
    }
    let long = "a".repeat(MAX_SOURCE + 1);
    println!(
        "RESULT worst_accepted_slice_ms={:.2} refused_over_max_source_ms={:.3} worst={}",
        worst_ok.0,
        slice_ms(&long).0,
        worst_ok.1.chars().take(60).collect::<String>()
    );
}
