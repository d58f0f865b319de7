//! Disk faults under the state directory: read-only,
//! deleted after start, full. Each time a checkpoint fails it logs an
//! error line with the reason and counts in Checkpoint-Failed (SIGUSR1
//! report); serving goes on (the healthy client beside it gets every reply
//! right); the previous file stays as it was and no temp file is left; once
//! the fault is gone the next checkpoint is written.
//!
//! Read-only and full need a tmpfs mount: they run as root and are skipped
//! otherwise (and fail if root cannot mount while `CI` is set).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use greymilter::milter::client::{ConnectAddr, Response};
use greymilter::milter::codec::{Command as Packet, StrArray};
use nix::sys::signal::Signal;
use support::Daemon;
use support::healthy::{Healthy, Plan, is_greylisted, negotiated};
use support::state::{names_with_prefix, tuples_in};
use support::watch::{assert_alive, fetch_report};

/// A tmpfs mounted for the test, unmounted when dropped (also on panic).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` (after saying why) when this process cannot mount.
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        if !support::require_root("mounting a tmpfs") {
            return None;
        }
        fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .unwrap();
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            assert!(
                std::env::var_os("CI").is_none(),
                "root cannot mount a tmpfs in CI: {why}"
            );
            eprintln!("skipped: cannot mount a tmpfs: {why}");
            return None;
        }
        Some(Tmpfs(at.to_path_buf()))
    }

    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "remount {options}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// A daemon whose state lives in `dir/state.d/state`, with the healthy
/// client beside it.
struct Setup {
    daemon: Daemon,
    healthy: Option<Healthy>,
    runtime: tokio::runtime::Runtime,
    state: PathBuf,
    stats: PathBuf,
    next: u64,
}

impl Setup {
    fn start(dir: &Path) -> Setup {
        let daemon = Daemon::start_in(
            dir,
            "[greylist]\ndelay = \"2s\"\n[state]\nfile = \"{dir}/state.d/state\"\ncheckpoint_interval = \"1h\"\n\
             [stats]\nfile = \"{dir}/stats\"\n",
        );
        assert_ne!(daemon.port, 0, "{}", daemon.log_text());
        let healthy = Some(Healthy::start(daemon.milter_addr(), Plan::beside()));
        Setup {
            daemon,
            healthy,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            state: dir.join("state.d/state"),
            stats: dir.join("stats"),
            next: 0,
        }
    }

    /// `k` new tuples in one transaction (pipelined).
    fn add_tuples(&mut self, k: u64) {
        let (addr, first) = (self.daemon.milter_addr(), self.next);
        self.next += k;
        self.runtime.block_on(async move {
            let mut c = negotiated(addr).await;
            let ip = "192.0.2.44".parse().unwrap();
            let r = c
                .connect("mx.disk.example", &ConnectAddr::Ip(ip, 25))
                .await
                .unwrap();
            assert_eq!(r, Response::Continue);
            assert_eq!(
                c.mail(&["<s@disk.example>"]).await.unwrap(),
                Response::Continue
            );
            let mut batch = Vec::new();
            for i in first..first + k {
                let raw = format!("<d{i}@disk.example>\0");
                Packet::Rcpt(StrArray::new(raw.as_bytes()).unwrap()).encode(&mut batch);
            }
            c.write_raw(&batch).await.unwrap();
            for _ in 0..k {
                let r = c.read_response().await.unwrap();
                assert!(is_greylisted(&r), "{r:?}");
            }
            c.quit().await.unwrap();
        });
    }

    /// SIGUSR2 and the line saying how the checkpoint went.
    fn checkpoint(&self) -> String {
        let mark = self.daemon.log_len();
        self.daemon.signal(Signal::SIGUSR2);
        self.daemon.wait_for_log_after(mark, |l| {
            l.contains("checkpoint written") || l.contains("checkpoint failed")
        })
    }

    /// Checkpoints fail `times` times with `reason`, each counted; the
    /// file stays as `previous` (if any) and no temp file is left.
    fn assert_checkpoints_fail(&mut self, times: u64, reason: &str, previous: Option<&[u8]>) {
        let failed_before = fetch_report(&self.daemon, &self.stats).num("Checkpoint-Failed");
        for n in 0..times {
            self.add_tuples(1);
            let line = self.checkpoint();
            assert!(
                line.contains(" ERROR ")
                    && line.contains("checkpoint failed")
                    && line.contains(reason),
                "failure {n}: expected an error line with {reason:?}: {line}"
            );
            if let Some(bytes) = previous {
                assert!(
                    fs::read(&self.state).unwrap() == bytes,
                    "the previous state file changed"
                );
            }
            let dir = self.state.parent().unwrap();
            if dir.exists() {
                assert_eq!(names_with_prefix(dir, "state.tmp."), Vec::<String>::new());
            }
        }
        let report = fetch_report(&self.daemon, &self.stats);
        assert_eq!(
            report.num("Checkpoint-Failed"),
            failed_before + times,
            "{}",
            report.text
        );
    }

    /// The next checkpoint is written and holds every tuple of the moment
    /// (the healthy client adds tuples all along: between two reports).
    fn assert_checkpoint_written(&mut self) {
        self.add_tuples(1);
        let before = fetch_report(&self.daemon, &self.stats).num("Tuples");
        let line = self.checkpoint();
        assert!(line.contains("checkpoint written"), "{line}");
        let after = fetch_report(&self.daemon, &self.stats).num("Tuples");
        let saved = tuples_in(&self.state).unwrap();
        assert!(
            (before..=after).contains(&saved),
            "{saved} tuples saved, expected {before}..={after}"
        );
    }

    fn finish(mut self) {
        let outcome = self.healthy.take().unwrap().finish();
        outcome.assert_all_served(&self.daemon.log_text());
        assert_alive(&mut self.daemon);
    }
}

#[test]
fn a_read_only_state_directory_fails_checkpoints_and_keeps_the_last_file() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mount) = Tmpfs::mount(&dir.path().join("state.d"), "4m") else {
        return;
    };
    let mut s = Setup::start(dir.path());
    s.assert_checkpoint_written();
    let previous = fs::read(&s.state).unwrap();
    mount.remount("ro");
    s.assert_checkpoints_fail(3, "Read-only file system", Some(&previous));
    mount.remount("rw");
    s.assert_checkpoint_written();
    s.finish();
}

#[test]
fn a_full_state_directory_fails_checkpoints_and_keeps_the_last_file() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_mount) = Tmpfs::mount(&dir.path().join("state.d"), "64k") else {
        return;
    };
    let mut s = Setup::start(dir.path());
    s.assert_checkpoint_written();
    let previous = fs::read(&s.state).unwrap();
    // 3,000 tuples are 72 KB of state: more than the 64 KiB tmpfs holds.
    s.add_tuples(3000);
    s.assert_checkpoints_fail(3, "No space left on device", Some(&previous));
    s.finish();
}

#[test]
fn a_state_directory_deleted_after_start_fails_checkpoints_until_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Setup::start(dir.path());
    s.assert_checkpoint_written();
    fs::remove_dir_all(s.state.parent().unwrap()).unwrap();
    s.assert_checkpoints_fail(3, "No such file or directory", None);
    fs::create_dir(s.state.parent().unwrap()).unwrap();
    s.assert_checkpoint_written();
    s.finish();
}
