//! The TOML configuration: schema, defaults, validation.
//!
//! Every check runs while deserialising, inside the types of this module, so
//! that `toml` reports the position of the offending value and every error
//! reads `file:line:col: message`. The same structs serialise back to TOML:
//! `greymilter check-config` prints the effective configuration with them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

pub use ops::{ControlConfig, Facility, LogTarget};

mod ops;

use crate::greylist::settings::{ListAction, ListSpec, Mode, ReplyTemplate, Settings};

/// Used when `--config` is not given and this file exists.
pub const DEFAULT_PATH: &str = "/etc/greymilter/greylist.toml";
pub const DEFAULT_LISTEN: &str = "inet:10030@127.0.0.1";
/// Largest configuration file read. Real ones are a few KiB; even lists of
/// tens of thousands of entries stay far below.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

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
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MilterConfig {
    pub listen: Listen,
    pub socket_mode: SocketMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_group: Option<String>,
    pub max_connections: Count,
    pub idle_timeout: Seconds,
    /// How long SIGTERM waits for sessions in flight.
    pub shutdown_timeout: Seconds,
}

impl Default for MilterConfig {
    fn default() -> Self {
        MilterConfig {
            listen: Listen(DEFAULT_LISTEN.to_string()),
            socket_mode: SocketMode(0o660),
            socket_group: None,
            max_connections: Count(1024),
            idle_timeout: Seconds::from_secs(600),
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
    pub max_tuples: Count,
    pub reply: TempfailReply,
    pub reject_reply: RejectReply,
    pub header: bool,
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
            max_tuples: Count(s.max_tuples),
            reply: TempfailReply(s.reply),
            reject_reply: RejectReply(s.reject_reply),
            header: s.header,
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
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// None: memory only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    pub checkpoint_interval: Seconds,
    pub cleanup_interval: Seconds,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            file: None,
            checkpoint_interval: Seconds::from_secs(600),
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

impl Config {
    /// Reads and validates a configuration file: a regular file (not a
    /// FIFO or a device, which would stall or never end) of at most
    /// [`MAX_CONFIG_BYTES`], in UTF-8.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
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
        Config::parse(&text, &name)
    }

    /// Parses and validates configuration text; `name` is used in errors.
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            ConfigError {
                file: name.to_string(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        config.check_relations().map_err(|message| {
            let (line, column) = find_key(text, "retry_window").unwrap_or((1, 1));
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
    fn check_relations(&self) -> Result<(), String> {
        let g = &self.greylist;
        if g.retry_window.0 <= g.delay.0 {
            return Err(format!(
                "retry_window ({}) must be longer than delay ({}), or no retry could ever pass",
                g.retry_window, g.delay
            ));
        }
        Ok(())
    }

    /// The engine's view of this configuration.
    pub fn settings(&self) -> Settings {
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
            },
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

// ---------------------------------------------------------------------------
// Value types. Each validates itself while deserialising.

/// A positive duration: `"90s"`, `"5m"`, `"24h"`, `"36d"`, or whole seconds.
/// At most u32::MAX seconds: the engine keeps times as 32-bit seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl Seconds {
    pub const fn from_secs(s: u64) -> Seconds {
        Seconds(Duration::from_secs(s))
    }
    fn check(d: Duration) -> Result<Seconds, String> {
        if d.is_zero() {
            return Err("duration must be greater than zero".to_string());
        }
        if d.as_secs() > u64::from(u32::MAX) {
            return Err(format!("duration must be at most {} seconds", u32::MAX));
        }
        Ok(Seconds(d))
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        let (n, unit) = [(86_400, "d"), (3600, "h"), (60, "m")]
            .iter()
            .find(|(u, _)| s.is_multiple_of(*u))
            .map_or((s, "s"), |&(u, name)| (s / u, name));
        if self.0.subsec_nanos() != 0 {
            write!(f, "{}", humantime::format_duration(self.0))
        } else {
            write!(f, "{n}{unit}")
        }
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like \"90s\", \"5m\", \"24h\", \"36d\", or whole seconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                let secs =
                    u64::try_from(v).map_err(|_| E::custom("duration must not be negative"))?;
                Seconds::check(Duration::from_secs(secs)).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Seconds::check(Duration::from_secs(v)).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                let v = v.trim();
                if v.starts_with('-') {
                    return Err(E::custom("duration must not be negative"));
                }
                let d = match v.parse::<u64>() {
                    Ok(secs) => Duration::from_secs(secs),
                    Err(_) => humantime::parse_duration(v)
                        .map_err(|e| E::custom(format!("invalid duration {v:?}: {e}")))?,
                };
                Seconds::check(d).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A prefix length of at most `MAX` bits, and at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Prefix<const MAX: u8>(pub u8);

impl<'de, const MAX: u8> Deserialize<'de> for Prefix<MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        match u8::try_from(v) {
            Ok(p) if (1..=MAX).contains(&p) => Ok(Prefix(p)),
            _ => Err(de::Error::custom(format!(
                "prefix length must be between 1 and {MAX}, found {v}"
            ))),
        }
    }
}

/// A positive count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Count(pub usize);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        match usize::try_from(v) {
            Ok(n) if n > 0 => Ok(Count(n)),
            _ => Err(de::Error::custom(format!(
                "must be a positive number, found {v}"
            ))),
        }
    }
}

/// Unix socket permissions: `"0660"` (octal string) or an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketMode(pub u32);

impl<'de> Deserialize<'de> for SocketMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(i64),
        }
        let mode = match Raw::deserialize(d)? {
            Raw::Text(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).map_err(|_| {
                de::Error::custom(format!(
                    "socket_mode must be octal like \"0660\", found {s:?}"
                ))
            })?,
            Raw::Number(n) => u32::try_from(n)
                .map_err(|_| de::Error::custom("socket_mode must not be negative"))?,
        };
        if mode > 0o777 {
            return Err(de::Error::custom(format!(
                "socket_mode {mode:o} has bits beyond 0777"
            )));
        }
        Ok(SocketMode(mode))
    }
}

impl Serialize for SocketMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:04o}", self.0))
    }
}

/// The `listen` socket specification, syntax-checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Listen(pub String);

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        check_listen(&s).map_err(de::Error::custom)?;
        Ok(Listen(s))
    }
}

fn check_listen(s: &str) -> Result<(), String> {
    let known = ["inet:", "inet6:", "unix:", "local:"];
    if known.iter().any(|p| s.starts_with(p) && s.len() > p.len()) {
        Ok(())
    } else {
        Err(format!(
            "listen must look like inet:PORT@HOST, inet6:PORT@HOST, inet:HOST:PORT, unix:/path or local:/path, found {s:?}"
        ))
    }
}

/// A tempfail reply template (4xx).
#[derive(Debug, Clone, PartialEq)]
pub struct TempfailReply(pub ReplyTemplate);
/// A reject reply template (5xx).
#[derive(Debug, Clone, PartialEq)]
pub struct RejectReply(pub ReplyTemplate);

impl Default for TempfailReply {
    fn default() -> Self {
        TempfailReply(ReplyTemplate::default_reply())
    }
}
impl Default for RejectReply {
    fn default() -> Self {
        RejectReply(ReplyTemplate::default_reject_reply())
    }
}

fn template<'de, D: Deserializer<'de>>(d: D, class: u8) -> Result<ReplyTemplate, D::Error> {
    let s = String::deserialize(d)?;
    ReplyTemplate::parse(&s, class)
        .map_err(|e| de::Error::custom(format!("invalid reply {s:?}: {e}")))
}

impl<'de> Deserialize<'de> for TempfailReply {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        template(d, 4).map(TempfailReply)
    }
}
impl<'de> Deserialize<'de> for RejectReply {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        template(d, 5).map(RejectReply)
    }
}
impl Serialize for TempfailReply {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.source())
    }
}
impl Serialize for RejectReply {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.source())
    }
}

/// A log level or `tracing` filter directive (`"info"`, `"greymilter=debug"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct LogLevel(pub String);

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        tracing_subscriber::EnvFilter::try_new(&s)
            .map_err(|e| de::Error::custom(format!("invalid log level {s:?}: {e}")))?;
        Ok(LogLevel(s))
    }
}

// ---------------------------------------------------------------------------
// List keys and entries.

/// An IP address or CIDR network; host bits are cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClientNet(pub IpNet);

impl<'de> Deserialize<'de> for ClientNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let net = match s.parse::<IpNet>() {
            Ok(net) => net.trunc(),
            Err(_) => s.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
                de::Error::custom(format!(
                    "{s:?} is not an IP address or CIDR network (like 192.0.2.0/24)"
                ))
            })?,
        };
        Ok(ClientNet(net))
    }
}

impl Serialize for ClientNet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A client host name: `mx.example.com` (exact) or `.example.com` (suffix).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ClientName(pub String);

impl<'de> Deserialize<'de> for ClientName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?.to_ascii_lowercase();
        let body = s.strip_prefix('.').unwrap_or(&s);
        if !is_domain(body) {
            return Err(de::Error::custom(format!(
                "{s:?} is not a host name (like mx.example.com) or suffix (like .example.com)"
            )));
        }
        Ok(ClientName(s))
    }
}

/// A domain; it matches itself and its subdomains.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Domain(pub String);

impl<'de> Deserialize<'de> for Domain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?.to_ascii_lowercase();
        let body = s.trim_start_matches(['.', '@']);
        if !is_domain(body) {
            return Err(de::Error::custom(format!(
                "{s:?} is not a domain (like example.com)"
            )));
        }
        Ok(Domain(body.to_string()))
    }
}

/// An envelope address `local@domain` (or `<>` for the null sender),
/// lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Address(pub String);

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        let s = raw.trim();
        let s = s
            .strip_prefix('<')
            .and_then(|x| x.strip_suffix('>'))
            .unwrap_or(s)
            .to_lowercase();
        if s.is_empty() {
            return Ok(Address(String::new()));
        }
        let valid = match s.rsplit_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && is_domain(domain)
                    && !local.chars().any(|c| c.is_whitespace() || c.is_control())
            }
            None => false,
        };
        if !valid {
            return Err(de::Error::custom(format!(
                "{raw:?} is not an address (like user@example.com, or \"<>\" for the null sender)"
            )));
        }
        Ok(Address(s))
    }
}

fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A list entry: `"accept"`, `"reject"`, `"greylist"`, or
/// `{ action = "greylist", delay = "1m" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry(pub ListAction);

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"accept\", \"reject\", \"greylist\" or { action = \"greylist\", delay = \"1m\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Entry, E> {
                action(v, None).map(Entry).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
                let mut act: Option<String> = None;
                let mut delay: Option<Seconds> = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "action" => act = Some(map.next_value()?),
                        "delay" => delay = Some(map.next_value()?),
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown field `{other}` in list entry, expected `action` or `delay`"
                            )));
                        }
                    }
                }
                let act = act.ok_or_else(|| de::Error::custom("list entry needs an `action`"))?;
                action(&act, delay).map(Entry).map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

fn action(word: &str, delay: Option<Seconds>) -> Result<ListAction, String> {
    match (word, delay) {
        ("accept", None) => Ok(ListAction::Accept),
        ("reject", None) => Ok(ListAction::Reject),
        ("greylist", d) => Ok(ListAction::Greylist {
            delay: d.map(|s| s.0),
        }),
        ("accept" | "reject", Some(_)) => {
            Err("`delay` applies only to action = \"greylist\"".to_string())
        }
        (other, _) => Err(format!(
            "unknown action {other:?}, expected \"accept\", \"reject\" or \"greylist\""
        )),
    }
}

impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self.0 {
            ListAction::Accept => s.serialize_str("accept"),
            ListAction::Reject => s.serialize_str("reject"),
            ListAction::Greylist { delay: None } => s.serialize_str("greylist"),
            ListAction::Greylist { delay: Some(d) } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("action", "greylist")?;
                m.serialize_entry("delay", &Seconds(d))?;
                m.end()
            }
        }
    }
}

#[cfg(test)]
mod tests;
