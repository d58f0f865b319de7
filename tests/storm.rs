//! Signal storm: the bug this project started from, as a
//! test. While four healthy clients run full greylist conversations without
//! pause, a thread sends SIGHUP, SIGUSR1 and SIGUSR2 thousands of times per
//! second, with timer checkpoints every second on top, for
//! GREYMILTER_STORM_SECS (default 30).
//!
//! Pass: zero failed sessions (every reply as expected); no crash (alive,
//! no panic, exit 0 on SIGTERM); no zombie that outlives the next reap and
//! none at all afterwards; always exactly one thread (the fork relies on
//! it); every stats report read during the storm complete; afterwards the
//! statistics identity holds, no checkpoint failed, and the final
//! checkpoint restores exactly the table the last report describes.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use support::healthy::{Healthy, Plan};
use support::state::{restored_count, write_state};
use support::watch::{Report, assert_alive, fetch_report, proc_status};
use support::{Daemon, PATIENCE};

/// Tuples in the table before the storm: enough that every checkpoint child
/// takes a few milliseconds, so SIGUSR2s keep finding one at work.
const TABLE: u32 = 20_000;
/// Signal rounds (one of each kind) per second the sender aims at.
const ROUNDS_PER_SEC: u64 = 2_000;
/// A zombie seen for longer than this was not reaped (the daemon reaps on
/// SIGCHLD and on every 1 s checkpoint tick).
const ZOMBIE_GRACE: Duration = Duration::from_millis(2500);

fn storm_duration() -> Duration {
    let secs = std::env::var("GREYMILTER_STORM_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

const KINDS: [Signal; 3] = [Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2];

/// Sends the three signals in a paced loop until `stop`; returns the count
/// sent of each.
fn storm(pid: nix::unistd::Pid, stop: Arc<AtomicBool>) -> [u64; 3] {
    let mut sent = [0u64; 3];
    let started = Instant::now();
    let mut rounds: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        for (n, sig) in KINDS.iter().enumerate() {
            kill(pid, *sig).expect("the daemon is gone");
            sent[n] += 1;
        }
        rounds += 1;
        let due = Duration::from_micros(rounds * 1_000_000 / ROUNDS_PER_SEC);
        if let Some(ahead) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
    sent
}

/// What the watcher saw during the storm.
#[derive(Default, Debug)]
struct Watched {
    samples: u64,
    reports_read: u64,
    zombies_seen: u64,
    children_seen: u64,
}

#[test]
fn signal_storm_under_load() {
    let duration = storm_duration();
    let dir = tempfile::tempdir().unwrap();
    write_state(&dir.path().join("state"), TABLE);
    let mut d = Daemon::start_in(
        dir.path(),
        "[greylist]\ndelay = \"2s\"\n[state]\nfile = \"{dir}/state\"\ncheckpoint_interval = \"1s\"\n\
         [stats]\nfile = \"{dir}/stats\"\n",
    );
    let line = d.wait_for_log(|l| l.contains("restored state"));
    assert_eq!(restored_count(&line), u64::from(TABLE));
    let pid = d.pid();
    let stats = dir.path().join("stats");

    let healthy = Healthy::start(
        d.milter_addr(),
        Plan {
            delay: Duration::from_secs(2),
            lanes: 4,
            pause: Duration::ZERO,
        },
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || storm(pid, stop))
    };

    let started = Instant::now();
    let mut watched = Watched::default();
    let mut zombies: HashMap<i32, Instant> = HashMap::new();
    while started.elapsed() < duration {
        watched.samples += 1;
        assert_eq!(
            proc_status(pid.as_raw(), "Threads"),
            1,
            "the daemon must never have a second thread"
        );
        let children = d.children();
        watched.children_seen += children.len() as u64;
        let now = Instant::now();
        zombies.retain(|z, _| children.contains(&(*z, 'Z')));
        for (child, state) in &children {
            if *state == 'Z' {
                let since = *zombies.entry(*child).or_insert_with(|| {
                    watched.zombies_seen += 1;
                    now
                });
                assert!(
                    now - since < ZOMBIE_GRACE,
                    "zombie {child} not reaped for {:?}",
                    now - since
                );
            }
        }
        if let Ok(text) = std::fs::read_to_string(&stats) {
            let report = Report { text };
            assert!(
                report.is_complete() && report.has_checkpoint_lines(),
                "incomplete report:\n{}",
                report.text
            );
            watched.reports_read += 1;
        }
        if d.child.as_mut().unwrap().try_wait().unwrap().is_some() {
            panic!("the daemon died in the storm:\n{}", d.log_text());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    let outcome = healthy.finish();
    let log = d.log_text();
    outcome.assert_all_served(&log);
    assert_alive(&mut d);

    // Afterwards: every child reaped, none left at all.
    let deadline = Instant::now() + PATIENCE;
    while !d.children().is_empty() {
        assert!(
            Instant::now() < deadline,
            "children left after the storm: {:?}",
            d.children()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = fetch_report(&d, &stats);
    assert!(report.has_checkpoint_lines());
    report.assert_identity();
    assert_eq!(report.num("Checkpoint-Failed"), 0, "{}", report.text);
    assert_eq!(report.num("Restored"), u64::from(TABLE));
    let reloads = log.matches("configuration reloaded").count();
    assert!(!log.contains("reload failed"));

    eprintln!(
        "storm of {:?}: sent SIGHUP {}, SIGUSR1 {}, SIGUSR2 {} ({:.0} signals/s); \
         {} healthy sessions ({} passes after the delay), 0 failed; daemon did {} reloads, \
         {} checkpoints ({} skipped busy), {} sessions; watcher: {} samples, {} complete reports read, \
         {} zombies seen (all reaped), {} child sightings",
        duration,
        sent[0],
        sent[1],
        sent[2],
        sent.iter().sum::<u64>() as f64 / started.elapsed().as_secs_f64(),
        outcome.sessions,
        outcome.passes,
        reloads,
        report.num("Checkpoints"),
        report.num("Checkpoint-Busy"),
        report.num("Sessions"),
        watched.samples,
        watched.reports_read,
        watched.zombies_seen,
        watched.children_seen,
    );
    assert!(
        sent.iter().all(|&n| n >= duration.as_secs() * 1000),
        "fewer than 1,000 signals/s of a kind: {sent:?}"
    );
    assert!(
        report.num("Checkpoints") >= duration.as_secs(),
        "{}",
        report.text
    );
    assert!(watched.reports_read > 0);

    // The final checkpoint holds exactly the table of the last report.
    let tuples = report.num("Tuples");
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit().success(), "{}", d.log_text());
    let mark = d.log_len();
    d.spawn();
    let line = d.wait_for_log_after(mark, |l| l.contains("restored state"));
    assert_eq!(restored_count(&line), tuples, "{line}");
}
