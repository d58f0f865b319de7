//! Dropping root after the sockets, state directory and pidfile exist.

use std::fmt;
use std::path::Path;

use nix::unistd::{Gid, Group, Uid, User, chown, geteuid, setgid, setgroups, setuid};

use crate::config::DaemonConfig;

/// The user and group to become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub uid: Uid,
    pub gid: Gid,
}

#[derive(Debug)]
pub struct PrivilegeError(pub String);

impl fmt::Display for PrivilegeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PrivilegeError {}

/// Resolves `[daemon] user/group`. `None` when no user is configured, or
/// when not running as root (nothing to drop; a configured user is then
/// ignored with a warning by the caller).
pub fn resolve(config: &DaemonConfig) -> Result<Option<Identity>, PrivilegeError> {
    let Some(name) = &config.user else {
        return Ok(None);
    };
    let user = User::from_name(name)
        .map_err(|e| PrivilegeError(format!("cannot look up user {name:?}: {e}")))?
        .ok_or_else(|| PrivilegeError(format!("no such user {name:?}")))?;
    let gid = match &config.group {
        Some(group) => {
            Group::from_name(group)
                .map_err(|e| PrivilegeError(format!("cannot look up group {group:?}: {e}")))?
                .ok_or_else(|| PrivilegeError(format!("no such group {group:?}")))?
                .gid
        }
        None => user.gid,
    };
    Ok(Some(Identity { uid: user.uid, gid }))
}

pub fn is_root() -> bool {
    geteuid().is_root()
}

/// Gives `path` to the identity, so it can keep writing there.
pub fn give(path: &Path, who: Identity) -> Result<(), PrivilegeError> {
    chown(path, Some(who.uid), Some(who.gid))
        .map_err(|e| PrivilegeError(format!("cannot chown {}: {e}", path.display())))
}

/// Drops supplementary groups, then the group, then the user: in that order,
/// because after setuid we could no longer change the groups.
pub fn drop_to(who: Identity) -> Result<(), PrivilegeError> {
    setgroups(&[who.gid]).map_err(|e| PrivilegeError(format!("setgroups: {e}")))?;
    setgid(who.gid).map_err(|e| PrivilegeError(format!("setgid({}): {e}", who.gid)))?;
    setuid(who.uid).map_err(|e| PrivilegeError(format!("setuid({}): {e}", who.uid)))?;
    if setuid(Uid::from_raw(0)).is_ok() && who.uid != Uid::from_raw(0) {
        return Err(PrivilegeError(
            "could regain root after dropping privileges".to_string(),
        ));
    }
    Ok(())
}
