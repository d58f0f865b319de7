//! Runtime allowances for client networks and sender domains, made with
//! `greymilter allow network=… | sender-domain=…` and kept until they
//! expire.
//!
//! The engine looks them up beside its static lists, as `accept` entries
//! (an allowance replaces a configured entry with the same key; a more
//! specific configured entry still wins, as in the lists): a change costs
//! the allowances' compile, never the lists'. The state file format is
//! unchanged: allowances live in their own small text file next to it
//! (`STATE.allows`), rewritten atomically on every change, one
//! `network CIDR UNTIL` or `sender-domain DOMAIN UNTIL` per line (UNTIL in
//! unix seconds). Tuples allowed one by one are whitelisted in the table
//! and saved with it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use crate::greylist::lists::Allowed;

/// Most allowances kept; more are refused (the file and the lists stay small).
pub const MAX_ALLOWS: usize = 10_000;
/// Largest allowances file read.
const MAX_FILE: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allow {
    Network(IpNet),
    SenderDomain(String),
}

/// As the control protocol and `state.allows` name it: `network
/// 203.0.113.0/24`, `sender-domain example.org`.
impl std::fmt::Display for Allow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Allow::Network(n) => write!(f, "network {n}"),
            Allow::SenderDomain(d) => write!(f, "sender-domain {d}"),
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Allows {
    entries: Vec<(Allow, u64)>,
    path: Option<PathBuf>,
}

impl Allows {
    /// The allowances file that goes with a state file.
    pub fn path_for(state: &Path) -> PathBuf {
        let mut name = state.as_os_str().to_os_string();
        name.push(".allows");
        PathBuf::from(name)
    }

    /// Loads `path` (missing: empty). Bad lines are skipped and counted in
    /// the second value; expired ones are dropped.
    pub fn load(path: Option<PathBuf>, now: u64) -> (Allows, Result<usize, String>) {
        let mut allows = Allows {
            entries: Vec::new(),
            path,
        };
        let Some(p) = allows.path.clone() else {
            return (allows, Ok(0));
        };
        let text = match crate::files::read_regular(&p, MAX_FILE) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (allows, Ok(0)),
            Err(e) => return (allows, Err(format!("cannot read {}: {e}", p.display()))),
        };
        let mut bad = 0;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_line(line) {
                Some((a, until)) if allows.entries.len() < MAX_ALLOWS => {
                    if until > now {
                        allows.put(a, until);
                    }
                }
                _ => bad += 1,
            }
        }
        (allows, Ok(bad))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[(Allow, u64)] {
        &self.entries
    }

    /// Adds or replaces an allowance. Err when the list is full.
    pub fn add(&mut self, allow: Allow, until: u64) -> Result<(), String> {
        if self.entries.len() >= MAX_ALLOWS && !self.entries.iter().any(|(a, _)| *a == allow) {
            return Err(format!(
                "{MAX_ALLOWS} allowances already; forget some first"
            ));
        }
        self.put(allow, until);
        Ok(())
    }

    fn put(&mut self, allow: Allow, until: u64) {
        match self.entries.iter_mut().find(|(a, _)| *a == allow) {
            Some(e) => e.1 = until,
            None => self.entries.push((allow, until)),
        }
    }

    /// Replaces every allowance with the shared ones (`member until`, as
    /// Redis holds them: `network CIDR` / `sender-domain DOMAIN`); unusable
    /// members are skipped and counted.
    pub fn replace(&mut self, shared: &[(String, u64)], now: u64) -> usize {
        self.entries.clear();
        let mut bad = 0;
        for (member, until) in shared.iter().take(MAX_ALLOWS) {
            match parse_line(&format!("{member} {until}")) {
                Some((a, until)) if until > now => self.put(a, until),
                Some(_) => {}
                None => bad += 1,
            }
        }
        bad
    }

    /// Removes an allowance; true if there was one.
    pub fn remove(&mut self, allow: &Allow) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(a, _)| a != allow);
        before != self.entries.len()
    }

    /// Drops what has expired at `now`; returns the dropped ones.
    pub fn expire(&mut self, now: u64) -> Vec<Allow> {
        let (gone, kept) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|(_, until)| *until <= now);
        self.entries = kept;
        gone.into_iter().map(|(a, _)| a).collect()
    }

    /// The allowances compiled for the engine, which looks them up beside
    /// its lists (`greylist::lists::Allowed`): at most [`MAX_ALLOWS`]
    /// entries, whatever the lists hold.
    pub fn compiled(&self) -> Allowed {
        let nets = self.entries.iter().filter_map(|(a, _)| match a {
            Allow::Network(net) => Some(*net),
            Allow::SenderDomain(_) => None,
        });
        let domains = self.entries.iter().filter_map(|(a, _)| match a {
            Allow::SenderDomain(d) => Some(d.as_str()),
            Allow::Network(_) => None,
        });
        Allowed::new(nets, domains)
    }

    /// Rewrites the file (atomically); no file configured: nothing to do.
    pub fn save(&self) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut text = String::from("# greymilter runtime allowances: KIND VALUE UNTIL(unix s)\n");
        for (a, until) in &self.entries {
            let _ = match a {
                Allow::Network(n) => writeln!(text, "network {n} {until}"),
                Allow::SenderDomain(d) => writeln!(text, "sender-domain {d} {until}"),
            };
        }
        crate::files::atomic::write_atomically(path, true, |w| w.write_all(text.as_bytes()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

fn parse_line(line: &str) -> Option<(Allow, u64)> {
    let mut w = line.split_ascii_whitespace();
    let (kind, value, until) = (w.next()?, w.next()?, w.next()?.parse().ok()?);
    if w.next().is_some() {
        return None;
    }
    let allow = match kind {
        "network" => Allow::Network(value.parse::<IpNet>().ok()?.trunc()),
        "sender-domain" => {
            let line = format!("allow sender-domain={value} for=1s");
            match super::protocol::parse(line.as_bytes()).ok()? {
                super::protocol::Command::AllowSenderDomain { domain, .. } => {
                    Allow::SenderDomain(domain)
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    Some((allow, until))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::greylist::lists::{ListName, Lists};
    use crate::greylist::settings::{ListAction, ListSpec};

    #[test]
    fn save_load_expire_apply() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.allows");
        let (mut a, bad) = Allows::load(Some(path.clone()), 100);
        assert_eq!(bad, Ok(0));
        a.add(Allow::Network("192.0.2.0/24".parse().unwrap()), 200)
            .unwrap();
        a.add(Allow::SenderDomain("example.org".into()), 150)
            .unwrap();
        a.add(Allow::SenderDomain("example.org".into()), 300)
            .unwrap();
        a.save().unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("network nonsense 1\nsender-domain x..y 500\nbogus\n");
        std::fs::write(&path, text).unwrap();
        let (mut b, bad) = Allows::load(Some(path), 100);
        assert_eq!(bad, Ok(3));
        assert_eq!(b.entries(), a.entries());
        // An allowance replaces the configured entries for its network or
        // domain and leaves the others.
        let (net, other) = (
            "192.0.2.0/24".parse().unwrap(),
            "198.51.100.0/24".parse().unwrap(),
        );
        let spec = ListSpec {
            clients: vec![(net, ListAction::Reject), (other, ListAction::Reject)],
            sender_domains: vec![("example.org".into(), ListAction::Reject)],
            ..ListSpec::default()
        };
        let mut lists = Lists::compile(&spec, true);
        lists.set_allowed(b.compiled());
        let client = |a: [u8; 4]| lists.client(std::net::IpAddr::from(a));
        assert_eq!(client([192, 0, 2, 9]), Some(ListAction::Allow));
        assert_eq!(client([198, 51, 100, 9]), Some(ListAction::Reject));
        assert_eq!(
            lists.lookup_sender(b"a@example.org"),
            Some((ListName::SenderDomains, ListAction::Allow))
        );
        assert_eq!(
            b.expire(200),
            vec![Allow::Network("192.0.2.0/24".parse().unwrap())]
        );
        assert_eq!(b.len(), 1);
    }
}
