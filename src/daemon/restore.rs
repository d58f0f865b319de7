//! Loading the state file at start-up, and moving a bad one aside: a
//! greylister that refuses to start blocks mail, so a file that cannot be
//! used is kept for inspection and the daemon starts empty.

use std::fs;
use std::io;
use std::path::Path;
use std::time::Instant;

use crate::greylist::Engine;
use crate::greylist::clock::{Clock as _, SystemClock};
use crate::greylist::date::rfc3339;

/// Loads the state file. A missing file is normal; a bad one (or a path that
/// is no regular file) is moved aside and the daemon starts empty, because a
/// greylister that refuses to start blocks mail. Returns true when the engine
/// holds the file's state.
pub fn restore(engine: &mut Engine, path: &Path) -> bool {
    // A regular file only: a FIFO would block the start, /dev/zero never end.
    let bytes = match crate::files::read_regular(path, u64::MAX) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::info!(file = %path.display(), "no state file yet; starting with an empty table");
            return false;
        }
        Err(e) => {
            tracing::error!(file = %path.display(), "cannot read the state file: {e}; starting with an empty table");
            move_aside(path);
            return false;
        }
    };
    let started = Instant::now();
    match engine.restore_state(&bytes) {
        Ok(summary) => {
            tracing::info!(
                file = %path.display(),
                ms = started.elapsed().as_millis() as u64,
                pending = summary.pending,
                whitelisted = summary.whitelisted,
                auto_whitelisted = summary.auto_whitelist_records,
                evicted = summary.evicted,
                written_at = %rfc3339(summary.written_at),
                "restored state"
            );
            true
        }
        Err(e) => {
            tracing::error!(file = %path.display(), "the state file is unusable: {e}; starting with an empty table");
            move_aside(path);
            false
        }
    }
}

/// Renames a bad state file to `FILE.bad-<UTC timestamp>` for inspection,
/// adding `-1`, `-2`, … if that name is taken: an earlier bad file (from
/// the same second) is evidence and must not be replaced.
pub fn move_aside(path: &Path) {
    // Our own formatting: humantime's panics on a clock before 1970 or
    // after 9999, and a bad state file must never stop the daemon.
    let stamp: String = rfc3339(SystemClock.now())
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let free = (0..1000)
        .map(|n| {
            let mut candidate = name.clone();
            match n {
                0 => candidate.push(format!(".bad-{stamp}")),
                n => candidate.push(format!(".bad-{stamp}-{n}")),
            }
            path.with_file_name(candidate)
        })
        .find(|p| fs::symlink_metadata(p).is_err());
    let Some(aside) = free else {
        tracing::error!(file = %path.display(), "cannot move the bad state file aside: 1000 names taken");
        return;
    };
    match fs::rename(path, &aside) {
        Ok(()) => tracing::error!(file = %aside.display(), "moved the bad state file aside"),
        Err(e) => {
            tracing::error!(file = %path.display(), "cannot move the bad state file aside: {e}")
        }
    }
}
