//! `[lists.files]`: list files per (list kind, action).
//!
//! ```toml
//! [lists.files]
//! accept_clients = ["/etc/greymilter/large-senders", "/etc/greymilter/whitelist_clients.local"]
//! accept_recipients = ["/etc/greymilter/whitelist_recipients"]
//! greylist_clients = [{ path = "/etc/greymilter/slow-networks", delay = "30m" }]
//! reject_senders = [{ path = "/etc/greymilter/blocked-senders", optional = true }]
//! max_file_bytes = 33554432
//! ```
//!
//! A file is a path or `{ path, optional, delay }`; `delay` only in the
//! `greylist_*` keys. A missing file is an error unless it is optional:
//! `optional = true`, or, when `optional` is not given, a name ending in
//! `.local` (postgrey's convention for the admin's own additions). A
//! relative path is taken from the configuration file's directory.
//!
//! The files are read by [`crate::config::Config::load`], so a bad line is
//! a configuration error like any other: at start-up greymilter refuses to
//! start, on SIGHUP it keeps the running configuration and lists whole.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::{ConfigError, Count, Seconds};
use crate::greylist::settings::{ListAction, ListSpec};
use crate::lists::{self, Kind, Source, Summary};
use crate::pace::Pacer;

/// Default bound on one list file: 100,000 entries take about 2 MiB.
pub const DEFAULT_MAX_FILE_BYTES: usize = 32 << 20;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListFilesConfig {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accept_clients: Vec<FileRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reject_clients: Vec<FileRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub greylist_clients: Vec<GreylistFileRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accept_senders: Vec<FileRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reject_senders: Vec<FileRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub greylist_senders: Vec<GreylistFileRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accept_recipients: Vec<FileRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reject_recipients: Vec<FileRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub greylist_recipients: Vec<GreylistFileRef>,
    /// Largest list file read, in bytes.
    pub max_file_bytes: Count,
    /// What [`ListFilesConfig::load`] read; not part of the TOML.
    #[serde(skip)]
    pub loaded: Loaded,
}

impl Default for ListFilesConfig {
    fn default() -> Self {
        ListFilesConfig {
            accept_clients: Vec::new(),
            reject_clients: Vec::new(),
            greylist_clients: Vec::new(),
            accept_senders: Vec::new(),
            reject_senders: Vec::new(),
            greylist_senders: Vec::new(),
            accept_recipients: Vec::new(),
            reject_recipients: Vec::new(),
            greylist_recipients: Vec::new(),
            max_file_bytes: Count(DEFAULT_MAX_FILE_BYTES),
            loaded: Loaded::default(),
        }
    }
}

/// The entries of every file, shared (cheap to clone into settings).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    pub spec: Arc<ListSpec>,
    pub summary: Summary,
}

/// A file of an `accept_*` or `reject_*` key.
pub type FileRef = FileEntry<false>;
/// A file of a `greylist_*` key, which may carry a delay.
pub type GreylistFileRef = FileEntry<true>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry<const DELAY: bool> {
    pub path: PathBuf,
    pub optional: Option<bool>,
    pub delay: Option<Seconds>,
}

impl<const DELAY: bool> FileEntry<DELAY> {
    fn is_optional(&self) -> bool {
        self.optional.unwrap_or_else(|| {
            self.path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("local"))
        })
    }
}

impl ListFilesConfig {
    /// Every configured file, in a fixed order, relative paths resolved.
    pub fn sources(&self, base: Option<&Path>) -> Vec<Source> {
        let resolve = |p: &Path| match base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p.to_path_buf(),
        };
        let mut out = Vec::new();
        let plain = [
            (&self.accept_clients, Kind::Clients, ListAction::Accept),
            (&self.reject_clients, Kind::Clients, ListAction::Reject),
            (&self.accept_senders, Kind::Senders, ListAction::Accept),
            (&self.reject_senders, Kind::Senders, ListAction::Reject),
            (
                &self.accept_recipients,
                Kind::Recipients,
                ListAction::Accept,
            ),
            (
                &self.reject_recipients,
                Kind::Recipients,
                ListAction::Reject,
            ),
        ];
        for (files, kind, action) in plain {
            out.extend(files.iter().map(|f| Source {
                path: resolve(&f.path),
                kind,
                action,
                optional: f.is_optional(),
            }));
        }
        let greylist = [
            (&self.greylist_clients, Kind::Clients),
            (&self.greylist_senders, Kind::Senders),
            (&self.greylist_recipients, Kind::Recipients),
        ];
        for (files, kind) in greylist {
            out.extend(files.iter().map(|f| Source {
                path: resolve(&f.path),
                kind,
                action: ListAction::Greylist {
                    delay: f.delay.map(|d| d.0),
                },
                optional: f.is_optional(),
            }));
        }
        out
    }

    /// Every configured path as written, in the order of [`Self::sources`].
    fn written_paths(&self) -> Vec<&Path> {
        let plain = [
            &self.accept_clients,
            &self.reject_clients,
            &self.accept_senders,
            &self.reject_senders,
            &self.accept_recipients,
            &self.reject_recipients,
        ];
        let greylist = [
            &self.greylist_clients,
            &self.greylist_senders,
            &self.greylist_recipients,
        ];
        plain
            .into_iter()
            .flat_map(|files| files.iter().map(|f| f.path.as_path()))
            .chain(
                greylist
                    .into_iter()
                    .flat_map(|files| files.iter().map(|f| f.path.as_path())),
            )
            .collect()
    }

    /// Reads every file; on error `self` is unchanged. The error is the
    /// list file's (`file:line:col: message`); with `config` (the
    /// configuration's name and text) it is placed first at the line of
    /// the configuration that names the file.
    pub fn load(
        &mut self,
        base: Option<&Path>,
        config: Option<(&str, &str)>,
    ) -> Result<(), ConfigError> {
        crate::pace::run_now(self.load_paced(base, config, &mut Pacer::unpaced()))
    }

    /// [`Self::load`] in slices of lines, pausing with `pacer` between them.
    pub async fn load_paced(
        &mut self,
        base: Option<&Path>,
        config: Option<(&str, &str)>,
        pacer: &mut Pacer<'_>,
    ) -> Result<(), ConfigError> {
        let limit = u64::try_from(self.max_file_bytes.0).unwrap_or(u64::MAX);
        let sources = self.sources(base);
        let loaded = lists::load_paced(&sources, limit, pacer).await;
        let (spec, summary) = loaded.map_err(|e| {
            let own = ConfigError {
                file: e.file.clone(),
                line: e.line,
                column: e.column,
                message: e.message,
            };
            let Some((name, text)) = config else {
                return own;
            };
            let written = sources
                .iter()
                .position(|s| s.path.display().to_string() == e.file)
                .and_then(|i| self.written_paths().get(i).map(|p| p.display().to_string()));
            let (line, column) = written
                .and_then(|w| super::find_string_value(text, &w))
                .unwrap_or((0, 0));
            ConfigError {
                file: name.to_string(),
                line,
                column,
                message: own.to_string(),
            }
        })?;
        self.loaded = Loaded {
            spec: Arc::new(spec),
            summary,
        };
        Ok(())
    }

    /// Appends the loaded entries to the `[lists]` tables' entries.
    pub fn add_to(&self, spec: &mut ListSpec) {
        crate::pace::run_now(self.add_to_paced(spec, &mut Pacer::unpaced()));
    }

    /// [`Self::add_to`], one step of `pacer` per entry copied.
    pub async fn add_to_paced(&self, spec: &mut ListSpec, pacer: &mut Pacer<'_>) {
        let f = &*self.loaded.spec;
        extend_paced(&mut spec.clients, &f.clients, pacer).await;
        extend_paced(&mut spec.client_names, &f.client_names, pacer).await;
        extend_paced(&mut spec.senders, &f.senders, pacer).await;
        extend_paced(&mut spec.sender_domains, &f.sender_domains, pacer).await;
        extend_paced(&mut spec.recipients, &f.recipients, pacer).await;
        extend_paced(&mut spec.recipient_domains, &f.recipient_domains, pacer).await;
        extend_paced(&mut spec.sender_locals, &f.sender_locals, pacer).await;
        extend_paced(&mut spec.recipient_locals, &f.recipient_locals, pacer).await;
        // Only files have regular expressions.
        spec.client_name_patterns = f.client_name_patterns.clone();
        spec.sender_patterns = f.sender_patterns.clone();
        spec.recipient_patterns = f.recipient_patterns.clone();
    }
}

/// Appends clones of `from` to `to`, room reserved once (a vector that
/// doubles at 65,536 entries copies megabytes in one step).
async fn extend_paced<T: Clone>(to: &mut Vec<T>, from: &[T], pacer: &mut Pacer<'_>) {
    to.reserve(from.len());
    for item in from {
        to.push(item.clone());
        pacer.step().await;
    }
}

impl<'de, const DELAY: bool> Deserialize<'de> for FileEntry<DELAY> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const DELAY: bool>;
        impl<'de, const DELAY: bool> Visitor<'de> for V<DELAY> {
            type Value = FileEntry<DELAY>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if DELAY {
                    f.write_str("a path, or { path = \"...\", optional = true, delay = \"10m\" }")
                } else {
                    f.write_str("a path, or { path = \"...\", optional = true }")
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                path(v).map_err(E::custom).map(|path| FileEntry {
                    path,
                    optional: None,
                    delay: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entry = FileEntry {
                    path: PathBuf::new(),
                    optional: None,
                    delay: None,
                };
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "path" => {
                            entry.path =
                                path(&map.next_value::<String>()?).map_err(de::Error::custom)?;
                        }
                        "optional" => entry.optional = Some(map.next_value()?),
                        "delay" if DELAY => entry.delay = Some(map.next_value()?),
                        "delay" => {
                            return Err(de::Error::custom(
                                "`delay` applies only to greylist_* files",
                            ));
                        }
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown key `{other}` in a list file, expected `path`, `optional`{}",
                                if DELAY { " or `delay`" } else { "" }
                            )));
                        }
                    }
                }
                if entry.path.as_os_str().is_empty() {
                    return Err(de::Error::custom("a list file needs a `path`"));
                }
                Ok(entry)
            }
        }
        d.deserialize_any(V::<DELAY>)
    }
}

fn path(s: &str) -> Result<PathBuf, String> {
    if s.trim().is_empty() {
        return Err("a list file path must not be empty".to_string());
    }
    Ok(PathBuf::from(s))
}

impl<const DELAY: bool> Serialize for FileEntry<DELAY> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.optional.is_none() && self.delay.is_none() {
            return s.collect_str(&self.path.display());
        }
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("path", &self.path)?;
        if let Some(o) = self.optional {
            m.serialize_entry("optional", &o)?;
        }
        if let Some(d) = &self.delay {
            m.serialize_entry("delay", d)?;
        }
        m.end()
    }
}
