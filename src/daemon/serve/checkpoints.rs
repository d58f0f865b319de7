//! The state file: its directory at start-up, the forked checkpoints of
//! the timer and SIGUSR2, reaping them at SIGCHLD, the final write at
//! shutdown.

use std::fs;
use std::path::Path;
use std::time::Instant;

use super::Daemon;
use crate::daemon::checkpoint::{Outcome, Start};
use crate::daemon::privileges::{self, Identity};
use crate::files::atomic::remove_stale_temps;

impl Daemon {
    /// Timer tick (`force = false`: only if something changed) or SIGUSR2.
    pub(super) fn checkpoint(&mut self, force: bool) {
        let Some(cp) = &mut self.checkpointer else {
            if force {
                tracing::info!("SIGUSR2: no [state] file configured, nothing to write");
            }
            return;
        };
        let engine = self.engine.borrow();
        let generation = engine.generation();
        match cp.start(generation, force, |w| engine.write_state(w)) {
            Start::Forked(pid) => tracing::debug!(%pid, "checkpoint child started"),
            Start::Busy => {
                tracing::info!("checkpoint skipped: the previous one is still being written")
            }
            Start::Unchanged | Start::Failed => {}
        }
    }

    /// SIGCHLD (and every checkpoint tick, since signals coalesce).
    pub(super) fn reap(&mut self) {
        let Some(cp) = &mut self.checkpointer else {
            return;
        };
        match cp.reap() {
            Some(Outcome::Written { duration }) => {
                tracing::info!(file = %cp.path().display(), ms = duration.as_millis() as u64, "checkpoint written");
                // A child orphaned by a crash may still have been dying at
                // start-up; its temp file is stale by now.
                remove_stale_temps(cp.path());
            }
            Some(Outcome::Failed { duration, reason }) => tracing::error!(
                file = %cp.path().display(),
                ms = duration.as_millis() as u64,
                "checkpoint failed, the previous file is unchanged: {reason}"
            ),
            None => {}
        }
    }

    /// At shutdown: wait for a child in flight, then write synchronously.
    pub(super) fn final_checkpoint(&mut self) {
        let Some(cp) = &mut self.checkpointer else {
            return;
        };
        cp.wait();
        let engine = self.engine.borrow();
        let started = Instant::now();
        match cp.write_now(engine.generation(), |w| engine.write_state(w)) {
            Ok(_) => tracing::info!(
                file = %cp.path().display(),
                ms = started.elapsed().as_millis() as u64,
                "final checkpoint written"
            ),
            Err(e) => {
                tracing::error!("final checkpoint failed, the previous file is unchanged: {e}")
            }
        }
    }
}

/// Creates the state file's directory if needed (owned by the daemon's user
/// when dropping privileges).
pub(super) fn prepare_state_dir(path: &Path, identity: Option<Identity>) -> Result<(), String> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if !dir.exists() {
        fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create state directory {}: {e}", dir.display()))?;
        if let Some(who) = identity {
            privileges::give(dir, who).map_err(|e| e.to_string())?;
        }
        tracing::info!(dir = %dir.display(), "created the state directory");
    }
    Ok(())
}
