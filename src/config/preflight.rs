//! What `greymilter check-config` checks beyond the file itself: every
//! check `run` makes that needs no privileges and binds no socket (the
//! users and groups named exist), and warnings about listeners reachable
//! from the network (milter, policy service, metrics) and a control socket
//! open to every local user. Each finding is placed at the key that caused it.

use std::path::Path;

use super::{Config, ConfigError};
use crate::milter::listener::ListenSpec;

/// What the checks found: errors (`run` would refuse to start) and
/// warnings (it would start, but an admin should look).
#[derive(Debug, Default)]
pub struct Findings {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
}

impl Config {
    /// Runs the checks; `path` is the file the configuration came from.
    pub fn preflight(&self, path: &Path) -> Findings {
        let mut out = Findings::default();
        let at = |table: &str, key: &str, message: String| {
            ConfigError::at_table_key(path, table, key, message)
        };
        if let Some(name) = &self.daemon.user {
            match nix::unistd::User::from_name(name) {
                Ok(Some(_)) => {}
                Ok(None) => out.errors.push(at(
                    "daemon",
                    "user",
                    format!(
                        "no such user {name:?}: create it (adduser --system {name}) or name another"
                    ),
                )),
                Err(e) => out.errors.push(at(
                    "daemon",
                    "user",
                    format!("cannot look up user {name:?}: {e}"),
                )),
            }
        }
        let groups = [
            ("daemon", "group", &self.daemon.group),
            ("milter", "socket_group", &self.milter.socket_group),
            ("policy", "socket_group", &self.policy.socket_group),
            ("control", "group", &self.control.group),
        ];
        for (table, key, name) in groups {
            let Some(name) = name else { continue };
            match nix::unistd::Group::from_name(name) {
                Ok(Some(_)) => {}
                Ok(None) => out
                    .errors
                    .push(at(table, key, format!("no such group {name:?}"))),
                Err(e) => out.errors.push(at(
                    table,
                    key,
                    format!("cannot look up group {name:?}: {e}"),
                )),
            }
        }
        let listeners = [
            (
                "milter",
                "the milter",
                self.milter.enabled.then_some(&self.milter.listen),
            ),
            ("policy", "the policy service", self.policy.listen.as_ref()),
        ];
        for (table, what, listen) in listeners {
            if let Some(ListenSpec::Tcp(addr)) = listen.map(|l| &l.spec)
                && !addr.ip().is_loopback()
            {
                out.warnings.push(at(
                    table,
                    "listen",
                    format!(
                        "warning: {what} listens on {addr}, reachable from the network: anyone who reaches it can ask for verdicts and tie up sessions; listen on 127.0.0.1 or a unix: socket, or firewall the port"
                    ),
                ));
            }
        }
        if let Some(addr) = &self.metrics.listen
            && !addr.ip().is_loopback()
        {
            out.warnings.push(at(
                "metrics",
                "listen",
                format!(
                    "warning: the metrics endpoint listens on {addr}, reachable from the network; listen on 127.0.0.1 or firewall the port"
                ),
            ));
        }
        if self.control.socket.is_some() && self.control.mode.0 & 0o006 != 0 {
            out.warnings.push(at(
                "control",
                "mode",
                format!(
                    "warning: control socket mode {:04o} lets every local user edit the allowances; use 0600, or 0660 with [control] group",
                    self.control.mode.0
                ),
            ));
        }
        out
    }
}
