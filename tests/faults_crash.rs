//! kill -9 at random moments: the state file is always the old or the new one, never torn.
//!
//! One daemon directory, a table of 100,000 tuples (so that a checkpoint
//! child takes a while to write), checkpoints every second and on SIGUSR2.
//! Each iteration restarts the daemon and kills it with SIGKILL at a random
//! moment: while it restores, after new tuples and a SIGUSR2 (often while
//! the checkpoint child writes), or between timer checkpoints. After every
//! kill the state file must be a complete version (it parses, checksum
//! included) holding between the last known-saved count and the count the
//! daemon had; the next start must restore exactly that file and remove
//! the temp files of dead writers; the orphaned child must die with its
//! parent. Seed: GREYMILTER_TEST_SEED; iterations: GREYMILTER_KILL_ITERATIONS.

mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use greymilter::milter::client::{ConnectAddr, Response};
use nix::sys::signal::Signal;
use support::healthy::{is_greylisted, negotiated};
use support::rng::Rng;
use support::state::{names_with_prefix, restored_count, tuples_in, write_state};
use support::{Daemon, PATIENCE};

const TABLE: u32 = 100_000;

fn iterations() -> usize {
    std::env::var("GREYMILTER_KILL_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

/// `k` new tuples in one transaction.
async fn add_tuples(d: &Daemon, first: u64, k: u64) {
    let mut c = negotiated(d.milter_addr()).await;
    let ip = "192.0.2.200".parse().unwrap();
    let r = c
        .connect("mx.crash.example", &ConnectAddr::Ip(ip, 25))
        .await;
    assert_eq!(r.unwrap(), Response::Continue);
    assert_eq!(
        c.mail(&["<s@crash.example>"]).await.unwrap(),
        Response::Continue
    );
    for i in first..first + k {
        let r = c.rcpt(&[&format!("<n{i}@crash.example>")]).await.unwrap();
        assert!(is_greylisted(&r), "{r:?}");
    }
    c.quit().await.unwrap();
}

/// Waits until no process in `pids` runs any more (gone, or a zombie
/// nobody reaps: in a container init may not).
fn wait_dead(pids: &[i32]) {
    let deadline = Instant::now() + PATIENCE;
    for pid in pids {
        loop {
            let state = fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')').map(|(_, a)| a.trim().chars().next()))
                .flatten();
            if matches!(state, None | Some('Z') | Some('X')) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "orphaned checkpoint child {pid} still runs"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn pid_alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// After a start: every `state.tmp.PID` left belongs to a live process (the
/// new daemon's own checkpoint child); a dead writer's temp was removed.
fn assert_no_stale_temps(dir: &Path) {
    for name in names_with_prefix(dir, "state.tmp.") {
        let pid: i32 = name.rsplit('.').next().unwrap().parse().unwrap();
        assert!(
            pid_alive(pid),
            "stale temp file {name} left after the restart"
        );
    }
}

#[test]
fn kill9_at_random_moments_always_leaves_a_complete_state_that_restores() {
    let mut rng = Rng::from_env("kill -9");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    write_state(&state, TABLE);
    let mut d = Daemon::start_in(
        dir.path(),
        "[greylist]\ndelay = \"1h\"\n[state]\nfile = \"{dir}/state\"\ncheckpoint_interval = \"1s\"\n",
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let line = d.wait_for_log(|l| l.contains("restored state"));
    assert_eq!(restored_count(&line), u64::from(TABLE), "{line}");

    // How long a checkpoint of this table takes, to aim the kills at it.
    let mut next_rcpt = 0;
    runtime.block_on(add_tuples(&d, next_rcpt, 1));
    next_rcpt += 1;
    let mark = d.log_len();
    d.signal(Signal::SIGUSR2);
    let line = d.wait_for_log_after(mark, |l| l.contains("checkpoint written"));
    let child_ms: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ms=")?.parse().ok())
        .unwrap();
    let window_ms = 2 * child_ms + 4;
    eprintln!(
        "a checkpoint of {TABLE} tuples takes {child_ms} ms; kills land within {window_ms} ms"
    );
    d.kill9();
    let mut saved = tuples_in(&state).unwrap();
    assert_eq!(saved, u64::from(TABLE) + 1);

    let (mut during_child, mut during_start, mut new_versions) = (0, 0, 0);
    let n = iterations();
    for i in 0..n {
        let before = fs::read(&state).unwrap();
        let mark = d.log_len();
        d.spawn();
        let mut current = saved;
        // 0-1: during start-up; 2-8: after SIGUSR2; 9: around the timer.
        let mode = rng.below(10);
        if mode <= 1 {
            // While it restores (or just after): nothing may change the file.
            std::thread::sleep(Duration::from_millis(rng.below(window_ms)));
            during_start += 1;
        } else {
            let line = d.wait_for_log_after(mark, |l| l.contains("restored state"));
            assert_eq!(restored_count(&line), saved, "iteration {i}: {line}");
            assert_no_stale_temps(dir.path());
            let k = 1 + rng.below(20);
            runtime.block_on(add_tuples(&d, next_rcpt, k));
            next_rcpt += k;
            current += k;
            if mode == 9 {
                // No SIGUSR2: somewhere around the 1 s timer checkpoint.
                std::thread::sleep(Duration::from_millis(rng.below(1200)));
            } else {
                d.signal(Signal::SIGUSR2);
                std::thread::sleep(Duration::from_millis(rng.below(window_ms)));
            }
        }
        let children: Vec<i32> = d
            .children()
            .iter()
            .filter(|(_, s)| *s != 'Z')
            .map(|(p, _)| *p)
            .collect();
        d.kill9();
        wait_dead(&children);
        during_child += usize::from(!children.is_empty());

        let count =
            tuples_in(&state).unwrap_or_else(|e| panic!("iteration {i} (mode {mode}): {e}"));
        assert!(
            (saved..=current).contains(&count),
            "iteration {i} (mode {mode}): the file holds {count} tuples, expected {saved}..={current}"
        );
        if mode == 0 {
            assert!(
                fs::read(&state).unwrap() == before,
                "iteration {i}: a kill during start-up changed the file"
            );
        }
        new_versions += usize::from(count != saved);
        saved = count;
    }
    let restores: Vec<u64> = d
        .log_text()
        .lines()
        .filter(|l| l.contains("restored state"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("ms=")?.parse().ok())
        })
        .collect();
    eprintln!(
        "{n} kills: {during_child} while a checkpoint child ran, {during_start} during start-up, \
         {new_versions} left a new version, {} the previous one; {} restores, {} ms on average",
        n - new_versions,
        restores.len(),
        restores.iter().sum::<u64>() / restores.len().max(1) as u64
    );
    assert!(n >= 100);
    assert!(
        during_child >= n / 10,
        "too few kills hit a checkpoint child: {during_child} of {n}"
    );

    // The last file restores, and its tuples are the real ones: the first
    // tuple written by the library is an early retry, not a new one.
    let mark = d.log_len();
    d.spawn();
    let line = d.wait_for_log_after(mark, |l| l.contains("restored state"));
    assert_eq!(restored_count(&line), saved, "{line}");
    assert_no_stale_temps(dir.path());
    runtime.block_on(async {
        let mut c = negotiated(d.milter_addr()).await;
        let ip = "10.0.0.1".parse().unwrap();
        let r = c.connect("mx", &ConnectAddr::Ip(ip, 25)).await.unwrap();
        assert_eq!(r, Response::Continue);
        assert_eq!(
            c.mail(&["<s@state.example>"]).await.unwrap(),
            Response::Continue
        );
        let r = c.rcpt(&["<t1@state.example>"]).await.unwrap();
        assert!(is_greylisted(&r), "{r:?}");
        c.quit().await.unwrap();
    });
    d.wait_for_log_after(mark, |l| {
        l.contains("reason=early") && l.contains("to=<t1@state.example>")
    });
    assert!(!d.log_text().contains("panicked"));
}
