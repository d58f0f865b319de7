//! The TOML configuration: schema, defaults, validation.
//!
//! Every check runs while deserialising, inside the types of this module, so
//! that `toml` reports the position of the offending value and every error
//! reads `file:line:col: message`. The same structs serialise back to TOML:
//! `greymilter check-config` prints the effective configuration with them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::greylist::facts::DnsPolicy;
use crate::greylist::settings::{ListAction, ListSpec, Mode, Settings};

pub(crate) mod cluster;
mod dns;
mod list_files;
mod messages;
mod ops;
pub(crate) mod policy;
mod preflight;
pub(crate) mod reload;
pub(crate) mod values;

pub use dns::{DnsConfig, DynamicWord, NameServer, SpfSetting, ZoneSetting};
pub use list_files::{FileEntry, FileRef, GreylistFileRef, ListFilesConfig, Loaded};
pub use ops::{ControlConfig, Facility, LogTarget, MetricsConfig};
pub use preflight::Findings;

pub use values::{
    Address, ClientName, ClientNet, Count, Domain, Entry, Listen, LogLevel, Prefix, RejectReply,
    Seconds, SocketMode, TempfailReply, exact_network, parse_duration,
};

/// Used when `--config` is not given and this file exists.
pub const DEFAULT_PATH: &str = "/etc/greymilter/greylist.toml";
pub const DEFAULT_LISTEN: &str = "inet:10030@127.0.0.1";

/// Largest configuration file read. Real ones are a few KiB; even lists of
/// tens of thousands of entries stay far below.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// Longest `decision_timeout` accepted: Sendmail's default reply timeout
/// for a milter command.
const MAX_DECISION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub milter: MilterConfig,
    pub greylist: GreylistConfig,
    pub lists: ListsConfig,
    pub state: StateConfig,
    pub stats: StatsConfig,
    pub daemon: DaemonConfig,
    pub log: LogConfig,
    pub control: ControlConfig,
    pub metrics: MetricsConfig,
    pub dns: DnsConfig,
    pub policy: policy::PolicyConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<cluster::ClusterConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MilterConfig {
    /// `false`: no milter socket, Postfix's policy service alone
    /// (`[policy] listen`).
    pub enabled: bool,
    pub listen: Listen,
    pub socket_mode: SocketMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_group: Option<String>,
    pub max_connections: Count,
    pub idle_timeout: Seconds,
    /// The longest a recipient's decision may wait (shared table, DNS)
    /// before it is answered CONTINUE.
    pub decision_timeout: Seconds,
    /// How long SIGTERM waits for sessions in flight.
    pub shutdown_timeout: Seconds,
}

impl Default for MilterConfig {
    fn default() -> Self {
        MilterConfig {
            enabled: true,
            listen: Listen::loopback_default(),
            socket_mode: SocketMode(0o660),
            socket_group: None,
            max_connections: Count(1024),
            idle_timeout: Seconds::from_secs(600),
            decision_timeout: Seconds(crate::milter::decision::DEFAULT_DECISION_TIMEOUT),
            shutdown_timeout: Seconds::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GreylistConfig {
    pub mode: Mode,
    pub delay: Seconds,
    pub retry_window: Seconds,
    pub whitelist_lifetime: Seconds,
    pub ipv4_prefix: Prefix<32>,
    pub ipv6_prefix: Prefix<128>,
    pub normalize_sender: bool,
    pub auto_whitelist_after: u32,
    pub skip_authenticated: bool,
    pub skip_loopback: bool,
    pub max_tuples: Count,
    pub reply: TempfailReply,
    pub reject_reply: RejectReply,
    pub header: bool,
    pub spf: SpfSetting,
    pub allow_zones: Vec<ZoneSetting>,
    pub block_zones: Vec<ZoneSetting>,
    pub block_delay: Seconds,
    pub selective: bool,
    /// Words that make a client name look dynamic (selective mode).
    pub dynamic_words: Vec<DynamicWord>,
}

impl Default for GreylistConfig {
    fn default() -> Self {
        let s = Settings::default();
        GreylistConfig {
            mode: s.mode,
            delay: Seconds(s.delay),
            retry_window: Seconds(s.retry_window),
            whitelist_lifetime: Seconds(s.whitelist_lifetime),
            ipv4_prefix: Prefix(s.ipv4_prefix),
            ipv6_prefix: Prefix(s.ipv6_prefix),
            normalize_sender: s.normalize_sender,
            auto_whitelist_after: s.auto_whitelist_after,
            skip_authenticated: s.skip_authenticated,
            skip_loopback: s.skip_loopback,
            max_tuples: Count(s.max_tuples),
            reply: TempfailReply(s.reply),
            reject_reply: RejectReply(s.reject_reply),
            header: s.header,
            spf: SpfSetting(s.dns.spf),
            allow_zones: Vec::new(),
            block_zones: Vec::new(),
            block_delay: Seconds(s.dns.block_delay),
            selective: s.dns.selective,
            dynamic_words: dns::default_dynamic_words(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListsConfig {
    pub clients: BTreeMap<ClientNet, Entry>,
    pub client_names: BTreeMap<ClientName, Entry>,
    pub senders: BTreeMap<Address, Entry>,
    pub sender_domains: BTreeMap<Domain, Entry>,
    pub recipients: BTreeMap<Address, Entry>,
    pub recipient_domains: BTreeMap<Domain, Entry>,
    pub files: ListFilesConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// None: memory only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    pub checkpoint_interval: Seconds,
    pub cleanup_interval: Seconds,
    /// Back the table with transparent huge pages (`crate::memory`): a
    /// checkpoint's fork then stalls the daemon far less.
    pub huge_pages: bool,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            file: None,
            checkpoint_interval: Seconds::from_secs(600),
            huge_pages: true,
            cleanup_interval: Seconds::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pidfile: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: LogLevel,
    pub format: LogFormat,
    pub target: LogTarget,
    /// Syslog facility (`target = "syslog"` only).
    pub facility: Facility,
    /// The local syslog datagram socket.
    pub syslog_socket: PathBuf,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: LogLevel("info".to_string()),
            format: LogFormat::Text,
            target: LogTarget::Stderr,
            facility: Facility::Mail,
            syslog_socket: ops::default_syslog_socket(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A key of a table, `("greylist", "delay")`, where an error points.
type KeyAt = (&'static str, &'static str);

/// A configuration error with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the error concerns the whole file (unreadable).
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// An error about the value of `key` in the file at `path` that only
    /// shows after loading (what a named file holds): placed at the line
    /// that assigns `key`, or at the whole file if that line is not found.
    pub fn at_key(path: &Path, key: &str, message: String) -> ConfigError {
        ConfigError::at_found(path, |text| find_key(text, key), message)
    }

    /// [`ConfigError::at_key`] for a key of the table `[table]`.
    pub fn at_table_key(path: &Path, table: &str, key: &str, message: String) -> ConfigError {
        ConfigError::at_found(path, |text| find_key_in(text, table, key), message)
    }

    /// An error at what `find` finds in the file's text.
    fn at_found(
        path: &Path,
        find: impl FnOnce(&str) -> Option<(usize, usize)>,
        message: String,
    ) -> ConfigError {
        let at = crate::files::read_regular(path, MAX_CONFIG_BYTES)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| find(&text));
        let (line, column) = at.unwrap_or((0, 0));
        ConfigError {
            file: path.display().to_string(),
            line,
            column,
            message,
        }
    }
}

impl Config {
    /// Reads and validates a configuration file: a regular file (not a
    /// FIFO or a device, which would stall or never end) of at most
    /// [`MAX_CONFIG_BYTES`], in UTF-8; then the list files it names.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        crate::pace::run_now(Config::load_paced(path, &mut crate::pace::Pacer::unpaced()))
    }

    /// [`Config::load`] with the list files parsed in slices, pausing with
    /// `pacer` between them (a reload on the running loop).
    pub async fn load_paced(
        path: &Path,
        pacer: &mut crate::pace::Pacer<'_>,
    ) -> Result<Config, ConfigError> {
        let (mut config, name, text) = Config::read(path)?;
        config
            .lists
            .files
            .load_paced(path.parent(), Some((&name, &text)), pacer)
            .await?;
        Ok(config)
    }

    /// [`Config::load`] without reading the list files: what the control
    /// commands need (where the socket is), so that a broken list file
    /// still lets the admin reach the daemon and ask it to reload.
    pub fn load_without_lists(path: &Path) -> Result<Config, ConfigError> {
        Config::read(path).map(|(config, _, _)| config)
    }

    /// The file read and parsed: the configuration, its name and its text.
    fn read(path: &Path) -> Result<(Config, String, String), ConfigError> {
        let name = path.display().to_string();
        let bytes =
            crate::files::read_regular(path, MAX_CONFIG_BYTES).map_err(|e| ConfigError {
                file: name.clone(),
                line: 0,
                column: 0,
                message: format!("cannot read: {e}"),
            })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = e.utf8_error().valid_up_to();
            let before = std::str::from_utf8(e.as_bytes().get(..valid).unwrap_or_default())
                .unwrap_or_default();
            let (line, column) = line_column(before, before.len());
            ConfigError {
                file: name.clone(),
                line,
                column,
                message: "invalid UTF-8".to_string(),
            }
        })?;
        let config = Config::parse(&text, &name)?;
        Ok((config, name, text))
    }

    /// Parses and validates configuration text; `name` is used in errors.
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            let span_text = e.span().and_then(|span| text.get(span)).unwrap_or_default();
            ConfigError {
                file: name.to_string(),
                line,
                column,
                message: messages::plain(e.message(), span_text),
            }
        })?;
        config.check_relations().map_err(|(keys, message)| {
            // The first of the keys the file sets: the one to change.
            let (line, column) = keys
                .iter()
                .find_map(|(table, key)| find_key_in(text, table, key))
                .unwrap_or((1, 1));
            ConfigError {
                file: name.to_string(),
                line,
                column,
                message,
            }
        })?;
        Ok(config)
    }

    /// Checks between fields that single values cannot see.
    /// On error: the keys to point at, the likeliest cause
    /// first, and the message.
    fn check_relations(&self) -> Result<(), (&'static [KeyAt], String)> {
        policy::check(self)?;
        let g = &self.greylist;
        if g.retry_window.0 <= g.delay.0 {
            return Err((
                &[("greylist", "retry_window"), ("greylist", "delay")],
                format!(
                    "retry_window ({}) must be longer than delay ({}), or no retry could ever pass",
                    g.retry_window, g.delay
                ),
            ));
        }
        if self.dns_settings().wanted() && self.dns.timeout.0 >= self.milter.decision_timeout.0 {
            return Err((
                &[("dns", "timeout"), ("milter", "decision_timeout")],
                format!(
                    "[dns] timeout ({}) must be shorter than [milter] decision_timeout ({}), or a slow resolver would make every waiting recipient expire",
                    self.dns.timeout, self.milter.decision_timeout
                ),
            ));
        }
        if let Some(cluster) = &self.cluster {
            cluster.check_relations()?;
        }
        // A cluster node asks Redis after the lookups, in the same wait.
        if let Some(cluster) = &self.cluster
            && self.dns_settings().wanted()
            && self.dns.timeout.0 + cluster.timeout.0 >= self.milter.decision_timeout.0
        {
            return Err((
                &[
                    ("dns", "timeout"),
                    ("cluster", "timeout"),
                    ("milter", "decision_timeout"),
                ],
                format!(
                    "[dns] timeout ({}) plus [cluster] timeout ({}) must be shorter than [milter] decision_timeout ({}): a recipient may wait for both in turn",
                    self.dns.timeout, cluster.timeout, self.milter.decision_timeout
                ),
            ));
        }
        if self.milter.decision_timeout.0 > MAX_DECISION_TIMEOUT {
            return Err((
                &[("milter", "decision_timeout")],
                format!(
                    "decision_timeout ({}) must be at most {}s: the MTA stops waiting for the milter before that (Sendmail after 10 s, Postfix after 30 s)",
                    self.milter.decision_timeout,
                    MAX_DECISION_TIMEOUT.as_secs()
                ),
            ));
        }
        Ok(())
    }

    /// The engine's view of this configuration.
    pub fn settings(&self) -> Settings {
        let mut settings = self.own_settings();
        self.lists.files.add_to(&mut settings.lists);
        settings
    }

    /// [`Config::settings`] with the list files' entries copied in slices
    /// of `pacer` (a reload: 110,000 entries take 2–3 ms to copy).
    pub async fn settings_paced(&self, pacer: &mut crate::pace::Pacer<'_>) -> Settings {
        let mut settings = self.own_settings();
        self.lists
            .files
            .add_to_paced(&mut settings.lists, pacer)
            .await;
        settings
    }

    /// The settings with the `[lists]` tables' entries but not the files'.
    fn own_settings(&self) -> Settings {
        let g = &self.greylist;
        let l = &self.lists;
        Settings {
            mode: g.mode,
            delay: g.delay.0,
            retry_window: g.retry_window.0,
            whitelist_lifetime: g.whitelist_lifetime.0,
            ipv4_prefix: g.ipv4_prefix.0,
            ipv6_prefix: g.ipv6_prefix.0,
            normalize_sender: g.normalize_sender,
            auto_whitelist_after: g.auto_whitelist_after,
            skip_authenticated: g.skip_authenticated,
            skip_loopback: g.skip_loopback,
            max_tuples: g.max_tuples.0,
            reply: g.reply.0.clone(),
            reject_reply: g.reject_reply.0.clone(),
            header: g.header,
            cleanup_interval: self.state.cleanup_interval.0,
            lists: ListSpec {
                clients: l.clients.iter().map(|(k, v)| (k.0, v.0)).collect(),
                client_names: entries(&l.client_names, |k| &k.0),
                senders: entries(&l.senders, |k| &k.0),
                sender_domains: entries(&l.sender_domains, |k| &k.0),
                recipients: entries(&l.recipients, |k| &k.0),
                recipient_domains: entries(&l.recipient_domains, |k| &k.0),
                ..ListSpec::default()
            },
            dns: DnsPolicy {
                spf: g.spf.0,
                block_delay: g.block_delay.0,
                selective: g.selective,
            },
        }
    }

    /// What `crate::dns` needs: resolver, zones, name heuristic.
    pub fn dns_settings(&self) -> crate::dns::DnsSettings {
        let g = &self.greylist;
        crate::dns::DnsSettings {
            servers: self.dns.servers.iter().map(|s| s.0).collect(),
            timeout: self.dns.timeout.0,
            cache_size: self.dns.cache_size,
            spf: g.spf.0 != crate::greylist::facts::SpfMode::Off,
            allow_zones: g.allow_zones.iter().map(|z| z.0.clone()).collect(),
            block_zones: g.block_zones.iter().map(|z| z.0.clone()).collect(),
            selective: g.selective,
            dynamic_words: g.dynamic_words.iter().map(|w| w.0.clone()).collect(),
        }
    }

    /// The effective configuration as TOML, defaults filled in.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
    }
}

fn entries<K>(map: &BTreeMap<K, Entry>, key: impl Fn(&K) -> &String) -> Vec<(String, ListAction)> {
    map.iter().map(|(k, v)| (key(k).clone(), v.0)).collect()
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Position of the line that assigns `key` in the table `[table]` (or as
/// `table.key` at the top level), for errors between fields.
fn find_key_in(text: &str, table: &str, key: &str) -> Option<(usize, usize)> {
    let dotted = format!("{table}.{key}");
    let mut current = String::new();
    text.lines().enumerate().find_map(|(i, l)| {
        let trimmed = l.trim_start();
        if let Some(header) = trimmed.strip_prefix('[') {
            let name = header.split(']').next().unwrap_or_default();
            current = name.trim().trim_matches('[').trim().to_string();
            return None;
        }
        let column = l.len() - trimmed.len() + 1;
        let assigns = |k: &str| {
            trimmed
                .strip_prefix(k)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        };
        ((current == table && assigns(key)) || (current.is_empty() && assigns(&dotted)))
            .then_some((i + 1, column))
    })
}

/// Position of the first quoted string `value` (`"value"` or `'value'`),
/// for errors about what a named file holds.
fn find_string_value(text: &str, value: &str) -> Option<(usize, usize)> {
    // Not in a comment (an example line commented out above the real one).
    let in_comment = |offset: usize| {
        let line_start = text
            .get(..offset)
            .and_then(|t| t.rfind('\n'))
            .map_or(0, |i| i + 1);
        text.get(line_start..offset)
            .is_some_and(|before| before.contains('#'))
    };
    [format!("\"{value}\""), format!("'{value}'")]
        .iter()
        .filter_map(|quoted| {
            text.match_indices(quoted.as_str())
                .map(|(offset, _)| offset)
                .find(|offset| !in_comment(*offset))
        })
        .min()
        .map(|offset| line_column(text, offset))
}

/// Position of the first line that assigns `key`, for errors between fields.
fn find_key(text: &str, key: &str) -> Option<(usize, usize)> {
    text.lines().enumerate().find_map(|(i, l)| {
        let trimmed = l.trim_start();
        let rest = trimmed.strip_prefix(key)?;
        rest.trim_start()
            .starts_with('=')
            .then(|| (i + 1, l.len() - trimmed.len() + 1))
    })
}

#[cfg(test)]
mod tests;
