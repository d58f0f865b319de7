//! A child process that leads its own process group, so that stopping it also stops
//! everything it started (Postfix's master and its services, Sendmail and its forks).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use super::poll_until;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessGroup {
    /// The harness puts the child into a new process group.
    New,
    /// The child makes itself a session and group leader.
    Itself,
}

pub struct GroupChild {
    name: String,
    child: Child,
    exited: Option<ExitStatus>,
}

impl GroupChild {
    /// Starts `command` as a process-group leader, stdin from /dev/null and stdout+stderr
    /// appended to `output` (never the test runner's pipes: gotcha 6).
    ///
    /// `ProcessGroup::Itself`: the program calls setsid() itself (Postfix's master), which fails if
    /// it already leads a process group, so the harness must not make it one.
    pub fn spawn(
        name: &str,
        command: &mut Command,
        output: &Path,
        group: ProcessGroup,
    ) -> GroupChild {
        let log = File::options()
            .create(true)
            .append(true)
            .open(output)
            .unwrap_or_else(|e| panic!("open {}: {e}", output.display()));
        let log2 = log
            .try_clone()
            .unwrap_or_else(|e| panic!("dup {}: {e}", output.display()));
        if group == ProcessGroup::New {
            command.process_group(0);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({command:?}): {e}"));
        GroupChild {
            name: name.to_string(),
            child,
            exited: None,
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// The exit status if the leader has exited, without blocking.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Waits up to `timeout` for the leader to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll_until(timeout, || self.try_status())
    }

    /// SIGTERM to the whole group, then SIGKILL for anything left after `grace`; reaps the
    /// leader. Idempotent.
    pub fn stop_group(&mut self, grace: Duration) {
        let group = self.pid();
        let _ = signal::killpg(group, Signal::SIGTERM);
        let leader_gone = self.wait_exit(grace).is_some();
        // Children that outlive the leader (or ignore SIGTERM) would keep ports and files.
        let _ = signal::killpg(group, Signal::SIGKILL);
        if !leader_gone {
            let _ = self.child.wait().map(|status| self.exited = Some(status));
        }
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        self.stop_group(Duration::from_secs(5));
    }
}
