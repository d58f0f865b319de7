//! Replacing a file atomically: a reader (or a restart after a crash)
//! always finds the complete old or the complete new content. Checkpoints,
//! the pidfile and the statistics report are all written through here.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::unistd::{Pid, getpid};

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
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let temp = temp_path(&path, pid);
        fs::write(&temp, b"x").unwrap();
        remove_stale_temps(&path);
        assert!(!temp.exists());
        zombie.wait().unwrap();
    }
}
