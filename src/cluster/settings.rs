//! The cluster's timing settings, kept in Redis beside the secret's
//! fingerprint (`gm:settings`), so that a host deciding by other rules on
//! the same records is noticed.
//!
//! Every call carries the host's own `delay`, `retry_window`,
//! `whitelist_lifetime` and `auto_whitelist_after`, and the prefixes,
//! `normalize_sender` and `spf` shape the keys: hosts that differ decide by
//! their own values on shared records, silently. The values (not a hash:
//! the warning names the keys that differ) are stored by the first host to
//! reach Redis and stay the cluster's until `greymilter cluster
//! adopt-settings` makes another host's values the cluster's. A host whose
//! values differ warns at start and on every reload and counts the keys in
//! `Redis-Drift-Keys`; it keeps deciding (warn, never refuse: a rolling
//! change of a value passes through a moment where hosts differ).

use std::time::Duration;

use redis::Value;
use tracing::{info, warn};

use super::client::{Cluster, START_CHECK};

pub const SETTINGS_KEY: &str = "gm:settings";
/// A settings value is a few lines; more is not ours.
const MAX_BYTES: usize = 4096;
const MAX_LINES: usize = 64;
/// How often a check that found Redis unreachable tries again.
const RETRY: Duration = Duration::from_secs(10);

/// `key = value` pairs, values as TOML writes them (`"5m"`, `24`, `true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSettings(Vec<(String, String)>);

/// One key whose value differs; `None`: the key is absent on that side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub key: String,
    pub ours: Option<String>,
    pub cluster: Option<String>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".to_string());
        write!(
            f,
            "{} (this host {}, cluster {})",
            self.key,
            show(&self.ours),
            show(&self.cluster)
        )
    }
}

impl SharedSettings {
    pub fn new(pairs: Vec<(String, String)>) -> SharedSettings {
        SharedSettings(pairs)
    }

    pub fn encode(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
    }

    /// `None`: not something a greymilter wrote.
    pub fn decode(bytes: &[u8]) -> Option<SharedSettings> {
        if bytes.len() > MAX_BYTES {
            return None;
        }
        let text = std::str::from_utf8(bytes).ok()?;
        let mut pairs = Vec::new();
        for line in text.lines() {
            let (k, v) = line.split_once(" = ")?;
            if k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
            {
                return None;
            }
            pairs.push((k.to_string(), v.to_string()));
            if pairs.len() > MAX_LINES {
                return None;
            }
        }
        Some(SharedSettings(pairs))
    }

    fn get(&self, key: &str) -> Option<&String> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The keys whose values differ, ours first, then keys only the
    /// cluster has (written by another release).
    pub fn differences(&self, cluster: &SharedSettings) -> Vec<Difference> {
        let mut out: Vec<Difference> = self
            .0
            .iter()
            .filter(|(k, v)| cluster.get(k) != Some(v))
            .map(|(k, v)| Difference {
                key: k.clone(),
                ours: Some(v.clone()),
                cluster: cluster.get(k).cloned(),
            })
            .collect();
        out.extend(
            cluster
                .0
                .iter()
                .filter(|(k, _)| self.get(k).is_none())
                .map(|(k, v)| Difference {
                    key: k.clone(),
                    ours: None,
                    cluster: Some(v.clone()),
                }),
        );
        out
    }
}

fn cluster_value(v: &Value) -> Result<Option<SharedSettings>, String> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => SharedSettings::decode(b)
            .map(Some)
            .ok_or_else(|| format!("{SETTINGS_KEY} holds something greymilter did not write")),
        other => Err(format!("{SETTINGS_KEY}: unexpected reply {other:?}")),
    }
}

fn join(d: &[Difference]) -> String {
    d.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Cluster {
    /// Stores `ours` if Redis holds no settings yet, else compares: the
    /// keys that differ from the cluster's (counted in the statistics).
    pub async fn compare_settings(&self, ours: &SharedSettings) -> Result<Vec<Difference>, String> {
        let mut conn = self.admin_connection().await?;
        let old: Value = redis::cmd("SET")
            .arg(SETTINGS_KEY)
            .arg(ours.encode())
            .arg("NX")
            .arg("GET")
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let diffs = match cluster_value(&old)? {
            None => Vec::new(),
            Some(theirs) => ours.differences(&theirs),
        };
        self.note_settings_differ(diffs.len());
        Ok(diffs)
    }

    /// `greymilter cluster adopt-settings`: `ours` become the cluster's;
    /// returns what changed (empty: they already were).
    pub async fn adopt_settings(&self, ours: &SharedSettings) -> Result<Vec<Difference>, String> {
        let mut conn = self.admin_connection().await?;
        let old: Value = redis::cmd("SET")
            .arg(SETTINGS_KEY)
            .arg(ours.encode())
            .arg("GET")
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let changed = match cluster_value(&old) {
            Ok(Some(theirs)) => ours.differences(&theirs),
            Ok(None) | Err(_) => Vec::new(),
        };
        self.note_settings_differ(0);
        Ok(changed)
    }

    /// At start and after each reload: compares in the background (never
    /// delaying mail), warning about each key that differs; while Redis
    /// cannot be asked, tries again every 10 s. A later call supersedes an
    /// earlier one still retrying.
    pub fn watch_settings(&self, ours: SharedSettings) {
        let generation = self.settings_generation();
        let mine = generation.get() + 1;
        generation.set(mine);
        let this = self.clone();
        tokio::task::spawn_local(async move {
            while generation.get() == mine && !this.refused() {
                match tokio::time::timeout(START_CHECK, this.compare_settings(&ours)).await {
                    Ok(Ok(d)) if d.is_empty() => {
                        info!("cluster settings match the cluster's ({SETTINGS_KEY})");
                        return;
                    }
                    Ok(Ok(d)) => {
                        warn!(
                            "cluster settings differ from the cluster's ({SETTINGS_KEY}): {}; this \
                             host decides by its own values on the shared records: align its \
                             configuration, or run `greymilter cluster adopt-settings` on the host \
                             whose values should become the cluster's",
                            join(&d)
                        );
                        return;
                    }
                    Ok(Err(e)) => warn!("cannot compare the cluster settings yet: {e}"),
                    Err(_) => {
                        warn!("cannot compare the cluster settings yet: redis did not answer")
                    }
                }
                tokio::time::sleep(RETRY).await;
            }
        });
    }
}

/// What `adopt-settings` answers.
pub fn adopted_message(changed: &[Difference]) -> String {
    if changed.is_empty() {
        "the cluster's settings already were this host's".to_string()
    } else {
        format!(
            "this host's settings are now the cluster's; changed: {}",
            join(changed)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pairs: &[(&str, &str)]) -> SharedSettings {
        SharedSettings::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn round_trips_names_differences_and_refuses_junk() {
        let ours = s(&[
            ("delay", "\"5m\""),
            ("ipv4_prefix", "24"),
            ("spf", "\"off\""),
        ]);
        assert_eq!(
            SharedSettings::decode(ours.encode().as_bytes()),
            Some(ours.clone())
        );
        assert!(ours.differences(&ours).is_empty());
        let theirs = s(&[("delay", "\"10m\""), ("ipv4_prefix", "24"), ("newer", "1")]);
        let d = ours.differences(&theirs);
        let keys: Vec<&str> = d.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["delay", "spf", "newer"]);
        assert_eq!(
            d[0].to_string(),
            "delay (this host \"5m\", cluster \"10m\")"
        );
        assert_eq!(d[1].cluster, None);
        assert_eq!(d[2].ours, None);
        assert_eq!(SharedSettings::decode(b"not settings"), None);
        assert_eq!(SharedSettings::decode(b"Bad Key = 1\n"), None);
        assert_eq!(SharedSettings::decode(&[0xff, 0xfe]), None);
        assert_eq!(SharedSettings::decode(&vec![b'a'; MAX_BYTES + 1]), None);
    }
}
