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

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid, getppid, pipe2};

/// Which step of an atomic write failed, and the OS error.
#[derive(Debug)]
pub struct WriteError {
    pub step: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.step, self.path.display(), self.source)
    }
}

impl std::error::Error for WriteError {}

/// The temp file a process writes before renaming it over `path`.
pub fn temp_path(path: &Path, pid: Pid) -> PathBuf {
    let mut name = path.file_name().map_or_else(OsString::new, OsString::from);
    name.push(format!(".tmp.{pid}"));
    path.with_file_name(name)
}

fn fail<'a>(step: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WriteError + 'a {
    move |source| WriteError {
        step,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `path` so that it is always either the old or the new content:
/// temp file in the same directory, fsync, rename, fsync of the directory.
/// `durable = false` skips both fsyncs (for reports nobody needs after a
/// power cut); the rename still makes the replacement atomic.
pub fn write_atomically(
    path: &Path,
    durable: bool,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), WriteError> {
    let tmp = temp_path(path, getpid());
    // Whatever is at the temp name (our own leftover from before a restart
    // with the same pid, or something planted there) is unlinked, which
    // never follows a symlink; then the file is created only if nothing is
    // there, and never through a symlink: the name is predictable.
    let _ = fs::remove_file(&tmp);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .mode(0o600)
        .open(&tmp)
        .map_err(fail("cannot create", &tmp))?;
    let result = (|| {
        let mut out = BufWriter::with_capacity(1 << 20, file);
        write(&mut out).map_err(fail("cannot write", &tmp))?;
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .map_err(fail("cannot write", &tmp))?;
        if durable {
            file.sync_all().map_err(fail("cannot fsync", &tmp))?;
        }
        drop(file);
        fs::rename(&tmp, path).map_err(fail("cannot rename into place", path))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    if durable {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(fail("cannot fsync directory", dir))?;
    }
    Ok(())
}

/// Removes temp files left by writers that no longer exist (a crash between
/// create and rename). A temp file of a live process is left alone; the
/// daemon calls this at start and after every checkpoint it writes, so the
/// temp of a child that was still dying at the start goes too.
pub fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.tmp.", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        let Some(pid) = file_name
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if !writer_alive(pid) && fs::remove_file(entry.path()).is_ok() {
            tracing::info!(file = %entry.path().display(), "removed an unfinished checkpoint left by a crash");
        }
    }
}

/// Whether process `pid` can still write: it exists and is not a zombie (a
/// writer killed with its parent may wait a while for init to reap it).
fn writer_alive(pid: i32) -> bool {
    if pid <= 0 || nix::sys::signal::kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    let state = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // "pid (comm) state ...": comm may hold anything, so split after ')'.
            stat.rsplit_once(')')
                .and_then(|(_, after)| after.trim_start().chars().next())
        });
    !matches!(state, Some('Z' | 'X'))
}

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
        let parent = getpid();
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
    fn atomic_write_replaces_the_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write_atomically(&path, true, |w| w.write_all(b"one")).unwrap();
        write_atomically(&path, true, |w| w.write_all(b"two")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("state")]);
    }

    #[test]
    fn a_symlink_at_the_temp_name_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let tmp = temp_path(&path, getpid());
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        write_atomically(&path, true, |w| w.write_all(b"new")).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert!(fs::symlink_metadata(&tmp).is_err());
        // A leftover temp file of the same pid does not stop the next write.
        fs::write(&tmp, b"leftover").unwrap();
        write_atomically(&path, true, |w| w.write_all(b"newer")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"newer");
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_the_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write_atomically(&path, true, |w| w.write_all(b"old")).unwrap();
        let err = write_atomically(&path, true, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.step, "cannot write");
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_directory_is_reported_with_the_path() {
        let err = write_atomically(Path::new("/nonexistent-dir/state"), true, |w| {
            w.write_all(b"x")
        })
        .unwrap_err();
        assert_eq!(err.step, "cannot create");
        assert!(
            err.to_string().contains("/nonexistent-dir/state.tmp."),
            "{err}"
        );
    }

    #[test]
    fn stale_temps_of_dead_writers_are_removed_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        // pid_max on Linux is at most 2^22, so this pid cannot exist.
        let dead = dir.path().join("state.tmp.99999999");
        let live = temp_path(&path, getpid());
        let other = dir.path().join("state.tmp.notapid");
        for p in [&dead, &live, &other] {
            fs::write(p, b"x").unwrap();
        }
        remove_stale_temps(&path);
        assert!(!dead.exists());
        assert!(live.exists());
        assert!(other.exists());
    }

    #[test]
    fn the_temp_of_a_zombie_writer_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        // Exits at once and stays a zombie until wait(): like a checkpoint
        // child killed with its parent that init has not reaped yet.
        let mut zombie = std::process::Command::new("true").spawn().unwrap();
        let pid = Pid::from_raw(zombie.id() as i32);
        while !fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap()
            .contains(") Z")
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        let temp = temp_path(&path, pid);
        fs::write(&temp, b"x").unwrap();
        remove_stale_temps(&path);
        assert!(!temp.exists());
        zombie.wait().unwrap();
    }

    #[test]
    fn refuses_to_fork_while_other_threads_exist() {
        // The test harness runs tests on threads, which is exactly the case
        // the guard exists for. (Real forks are tested against the binary.)
        let dir = tempfile::tempdir().unwrap();
        let handle = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(200)));
        let mut cp = Checkpointer::new(dir.path().join("state"));
        assert_eq!(cp.start(1, false, |w| w.write_all(b"x")), Start::Failed);
        assert_eq!(cp.stats.failed, 1);
        assert_eq!(cp.child_pid(), None);
        assert!(!dir.path().join("state").exists());
        handle.join().unwrap();
    }
}
