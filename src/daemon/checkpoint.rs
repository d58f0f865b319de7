//! Checkpoints: the whole engine state written by a forked child while the
//! parent keeps serving.
//!
//! Why fork: serialising millions of tuples takes seconds; a child gets a
//! copy-on-write snapshot for the price of copying page tables, and the
//! parent never waits on its I/O. The runtime is `current_thread` and no
//! other thread exists, so the child inherits no lock held by a vanished
//! thread; we check the thread count before every fork anyway.
//!
//! What the child does, and nothing else: serialise, write `FILE.tmp.PID`,
//! fsync, rename over `FILE`, fsync the directory, `_exit` (no destructors,
//! no atexit handlers, no flushing of the parent's buffers). A failure is
//! reported to the parent as one line through a pipe. The file on disk is
//! therefore always a complete old or a complete new version.
//!
//! The temp name carries the writer's pid so two writers (a child orphaned
//! by a `kill -9` of its parent and the restarted daemon's) never share an
//! inode; the child also asks to die with its parent.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid, getppid, pipe2};

use crate::files::atomic::{WriteError, write_atomically};

/// Threads of this process, from /proc. The checkpoint forks only when it is 1.
pub fn thread_count() -> io::Result<usize> {
    let status = fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no Threads line in /proc/self/status"))
}

/// Counters kept by the daemon about its checkpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    pub written: u64,
    pub failed: u64,
    /// Ticks or SIGUSR2s that found a child still writing.
    pub skipped_busy: u64,
    pub last_duration: Option<Duration>,
}

/// What [`Checkpointer::start`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Start {
    Forked(Pid),
    /// A child is still writing the previous checkpoint.
    Busy,
    /// Nothing changed since the last checkpoint that was written.
    Unchanged,
    /// Could not fork (logged and counted).
    Failed,
}

/// How a reaped child ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Written { duration: Duration },
    Failed { duration: Duration, reason: String },
}

struct Child {
    pid: Pid,
    started: Instant,
    generation: u64,
    /// Read end of the pipe on which the child reports a failure.
    report: OwnedFd,
}

/// Owns the checkpoint child: at most one at a time.
pub struct Checkpointer {
    path: PathBuf,
    child: Option<Child>,
    /// Generation of the state in the file on disk.
    saved_generation: Option<u64>,
    pub stats: CheckpointStats,
}

impl Checkpointer {
    pub fn new(path: PathBuf) -> Checkpointer {
        Checkpointer {
            path,
            child: None,
            saved_generation: None,
            stats: CheckpointStats::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state of `generation` is already on disk (restored from it).
    pub fn mark_saved(&mut self, generation: u64) {
        self.saved_generation = Some(generation);
    }

    pub fn child_pid(&self) -> Option<Pid> {
        self.child.as_ref().map(|c| c.pid)
    }

    /// Forks a child that writes the state through `write`, unless one is
    /// still running or `generation` is already saved (`force` writes anyway).
    pub fn start(
        &mut self,
        generation: u64,
        force: bool,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Start {
        if self.child.is_some() {
            self.stats.skipped_busy += 1;
            return Start::Busy;
        }
        if !force && self.saved_generation == Some(generation) {
            return Start::Unchanged;
        }
        match thread_count() {
            Ok(1) => {}
            Ok(n) => {
                self.stats.failed += 1;
                tracing::error!(
                    threads = n,
                    "not forking a checkpoint: the process has more than one thread"
                );
                return Start::Failed;
            }
            Err(e) => {
                self.stats.failed += 1;
                tracing::error!(error = %e, "not forking a checkpoint: cannot count threads");
                return Start::Failed;
            }
        }
        let (report_read, report_write) = match pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK) {
            Ok(p) => p,
            Err(e) => {
                self.stats.failed += 1;
                tracing::error!(error = %e, "cannot create the checkpoint report pipe");
                return Start::Failed;
            }
        };
        // Fork takes the memory map's lock, which the prefault helper holds
        // while it faults a page in: let it finish first (rarely waits).
        crate::prefault::settle();
        let parent = getpid();
        // The child must not inherit (and write a second time) buffered lines.
        crate::log_output::flush();
        // SAFETY: the process has exactly one thread (checked above), so the
        // child inherits no lock held by another thread; it only serialises,
        // writes and _exits.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                drop(report_read);
                run_child(parent, &self.path, report_write, write)
            }
            Ok(ForkResult::Parent { child }) => {
                drop(report_write);
                self.child = Some(Child {
                    pid: child,
                    started: Instant::now(),
                    generation,
                    report: report_read,
                });
                Start::Forked(child)
            }
            Err(e) => {
                self.stats.failed += 1;
                tracing::error!(error = %e, "cannot fork the checkpoint child");
                Start::Failed
            }
        }
    }

    /// Reaps every exited child without blocking (call on SIGCHLD and on
    /// timer ticks, since signals coalesce). Returns our child's outcome if
    /// it ended.
    pub fn reap(&mut self) -> Option<Outcome> {
        let mut ours = None;
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    let Some(pid) = status.pid() else { break };
                    crate::prefault::reaped(pid.as_raw());
                    if self.child.as_ref().is_some_and(|c| c.pid == pid) {
                        if let Some(child) = self.child.take() {
                            ours = Some(self.finish(child, status));
                        }
                    } else {
                        tracing::debug!(%pid, ?status, "reaped a child that was not a checkpoint");
                    }
                }
            }
        }
        ours
    }

    /// Blocks until the running child (if any) ends. For shutdown, so the
    /// final checkpoint never races a child.
    pub fn wait(&mut self) -> Option<Outcome> {
        let child = self.child.take()?;
        loop {
            match waitpid(child.pid, None) {
                Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    return Some(self.finish(child, status));
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "lost the checkpoint child");
                    self.stats.failed += 1;
                    return None;
                }
            }
        }
    }

    /// Writes a checkpoint in this process (shutdown).
    pub fn write_now(
        &mut self,
        generation: u64,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<Duration, WriteError> {
        let started = Instant::now();
        match write_atomically(&self.path, true, write) {
            Ok(()) => {
                let duration = started.elapsed();
                self.record_success(generation, duration);
                Ok(duration)
            }
            Err(e) => {
                self.stats.failed += 1;
                Err(e)
            }
        }
    }

    fn finish(&mut self, child: Child, status: WaitStatus) -> Outcome {
        let duration = child.started.elapsed();
        match status {
            WaitStatus::Exited(_, 0) => {
                self.record_success(child.generation, duration);
                Outcome::Written { duration }
            }
            other => {
                self.stats.failed += 1;
                let mut reason = String::new();
                let _ = File::from(child.report)
                    .take(4096)
                    .read_to_string(&mut reason);
                if reason.is_empty() {
                    reason = format!("child ended with {other:?}");
                }
                Outcome::Failed { duration, reason }
            }
        }
    }

    fn record_success(&mut self, generation: u64, duration: Duration) {
        self.stats.written += 1;
        self.stats.last_duration = Some(duration);
        self.saved_generation = Some(generation);
    }
}

/// The child's whole life. Never returns.
fn run_child(
    parent: Pid,
    path: &Path,
    report: OwnedFd,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> ! {
    // Die with the parent rather than rename an old snapshot over the file a
    // restarted daemon writes; if the parent is already gone, stop now.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    // The parent's prefault helper answers the parent, not us.
    crate::prefault::disown();
    if getppid() != parent {
        exit_child(3);
    }
    // The parent's handlers would write into the signal pipe it shares with
    // us; a signal meant for the process group should just end the child.
    for sig in [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        // SAFETY: SIG_DFL installs no handler code.
        let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    }
    let code = match write_atomically(path, true, write) {
        Ok(()) => 0,
        Err(e) => {
            let mut report = File::from(report);
            let _ = report.write_all(e.to_string().as_bytes());
            1
        }
    };
    exit_child(code)
}

fn exit_child(code: i32) -> ! {
    // SAFETY: _exit ends the process at once, running no destructors and no
    // atexit handlers, and flushing none of the parent's stdio buffers.
    unsafe { nix::libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_fork_while_other_threads_exist() {
        // A second thread, alive until the checks are done (the harness may
        // run this test on the main thread alone). Real forks are tested
        // against the binary.
        let dir = tempfile::tempdir().unwrap();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::spawn(move || wait.recv());
        let mut cp = Checkpointer::new(dir.path().join("state"));
        assert_eq!(cp.start(1, false, |w| w.write_all(b"x")), Start::Failed);
        assert_eq!(cp.stats.failed, 1);
        assert_eq!(cp.child_pid(), None);
        assert!(!dir.path().join("state").exists());
        drop(done);
        handle.join().unwrap().unwrap_err();
    }
}
