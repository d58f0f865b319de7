//! Imported entries merged into the state file of a stopped daemon.
//!
//! The existing state (if any) is read and checked as a restart would read
//! it, its secret kept (keys are only meaningful with it; a new file gets a
//! fresh one), the imported entries merged in (a whitelisted tuple beats a
//! pending one; one tuple keeps its earliest first sighting and its latest
//! use), and the result written like a checkpoint: temp file, fsync,
//! rename, fsync of the directory.

use std::collections::HashMap;
use std::path::Path;

use super::keyed::{Keyed, merge};
use crate::files::atomic::write_atomically;
use crate::greylist::awl::AwlRecord;
use crate::greylist::key::{NetKey, Secret, TupleKey};
use crate::greylist::state;
use crate::greylist::table::Times;

/// Largest state file read (as the daemon's restore allows for 10M
/// tuples, with room).
const MAX_STATE_BYTES: u64 = 4 << 30;

/// A state file's content, owned.
#[derive(Debug, Default)]
pub struct State {
    pub secret: Option<Secret>,
    pub pending: HashMap<TupleKey, Times>,
    pub white: HashMap<TupleKey, Times>,
    pub awl: HashMap<NetKey, AwlRecord>,
}

/// Reads the state at `path`; an absent file is an empty state.
pub fn load(path: &Path) -> Result<State, String> {
    let bytes = match crate::files::read_regular(path, MAX_STATE_BYTES) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
        Err(e) => {
            return Err(format!(
                "cannot read the state file {}: {e}",
                path.display()
            ));
        }
    };
    let parsed = state::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(State {
        secret: Some(parsed.secret),
        pending: parsed.pending().collect(),
        white: parsed.white().collect(),
        awl: parsed.awl().collect(),
    })
}

/// What a merge changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Merged {
    pub new_white: u64,
    pub new_pending: u64,
    pub new_networks: u64,
    /// Entries already in the state (times merged).
    pub known: u64,
}

pub fn merge_into(state: &mut State, keyed: &Keyed) -> Merged {
    let mut m = Merged::default();
    for (key, times) in &keyed.white {
        let mut times = *times;
        if let Some(p) = state.pending.remove(key) {
            merge(&mut times, p);
        }
        match state.white.get_mut(key) {
            Some(t) => {
                merge(t, times);
                m.known += 1;
            }
            None => {
                state.white.insert(*key, times);
                m.new_white += 1;
            }
        }
    }
    for (key, times) in &keyed.pending {
        if state.white.contains_key(key) {
            m.known += 1;
        } else if let Some(t) = state.pending.get_mut(key) {
            merge(t, *times);
            m.known += 1;
        } else {
            state.pending.insert(*key, *times);
            m.new_pending += 1;
        }
    }
    for (net, rec) in &keyed.awl {
        match state.awl.get_mut(net) {
            Some(r) => {
                r.passes = r.passes.max(rec.passes);
                r.last_counted = r.last_counted.max(rec.last_counted);
                r.last_use = r.last_use.max(rec.last_use);
                m.known += 1;
            }
            None => {
                state.awl.insert(*net, *rec);
                m.new_networks += 1;
            }
        }
    }
    m
}

/// Writes `state` to `path` atomically and durably.
pub fn write(path: &Path, state: &State, secret: Secret, now: u64) -> Result<(), String> {
    write_atomically(path, true, |out| {
        state::write(
            out,
            secret,
            now,
            state.pending.iter(),
            state.white.iter(),
            state.awl.iter(),
        )
    })
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::greylist::Engine;
    use crate::greylist::clock::ManualClock;
    use crate::greylist::settings::Settings;

    #[test]
    fn a_merged_state_is_read_back_by_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let now = 1_800_000_000;
        assert!(load(&path).unwrap().secret.is_none());
        let mut state = State::default();
        let secret = Secret { k0: 9, k1: 8 };
        let key = TupleKey([1, 2]);
        let older = TupleKey([3, 4]);
        state.pending.insert(
            key,
            Times {
                first_seen: 100,
                last: 100,
            },
        );
        state.white.insert(
            older,
            Times {
                first_seen: 50,
                last: 1_799_999_000,
            },
        );
        let mut keyed = Keyed::default();
        keyed.white.insert(
            key,
            Times {
                first_seen: 200,
                last: 1_799_999_990,
            },
        );
        keyed.pending.insert(
            older,
            Times {
                first_seen: 10,
                last: 10,
            },
        );
        let m = merge_into(&mut state, &keyed);
        assert_eq!(
            m,
            Merged {
                new_white: 1,
                known: 1,
                ..Merged::default()
            }
        );
        assert_eq!(
            state.white[&key],
            Times {
                first_seen: 100,
                last: 1_799_999_990
            }
        );
        assert!(state.pending.is_empty());
        write(&path, &state, secret, now).unwrap();

        let back = load(&path).unwrap();
        assert_eq!(back.secret, Some(secret));
        assert_eq!(back.white, state.white);
        let mut engine = Engine::new(Settings::default(), Box::new(ManualClock::new(now)));
        let summary = engine
            .restore_state(&std::fs::read(&path).unwrap())
            .unwrap();
        assert_eq!(summary.whitelisted, 2);
        assert!(
            std::fs::read_dir(dir.path()).unwrap().count() == 1,
            "no temp file left"
        );
    }

    #[test]
    fn a_corrupt_state_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        std::fs::write(&path, b"GREYMLTRjunk").unwrap();
        let e = load(&path).unwrap_err();
        assert!(e.contains("state"), "{e}");
    }
}
