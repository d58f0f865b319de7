//! Value types of the configuration. Each validates itself while
//! deserialising, so that errors carry the value's position.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::greylist::settings::{ListAction, ReplyTemplate};
use crate::milter::listener::ListenSpec;

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
            // Durations are written to the millisecond at most; whole
            // milliseconds read back whatever the length (humantime would
            // write months and years, which `parse_duration` refuses).
            write!(f, "{}ms", self.0.as_millis())
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
                Seconds::check(parse_duration(v).map_err(E::custom)?).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// The units a duration may use. Months and years are not among them: a
/// greylisting delay is never that long, and `"5M"` is far more likely a
/// mistyped five minutes than five months (humantime reads it as months).
const DURATION_UNITS: [&str; 23] = [
    "ms", "msec", "s", "sec", "secs", "second", "seconds", "m", "min", "mins", "minute", "minutes",
    "h", "hr", "hrs", "hour", "hours", "d", "day", "days", "w", "week", "weeks",
];

/// A duration as written in the configuration and on the command line:
/// whole seconds (`"300"`), or numbers with units (`"90s"`, `"5m"`,
/// `"1h 30m"`, `"36d"`, `"500ms"`). Units are case-sensitive: `"5M"` is
/// refused with a hint rather than read as months.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    for unit in text
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
    {
        if DURATION_UNITS.contains(&unit) {
            continue;
        }
        if unit.eq_ignore_ascii_case("m") || unit.eq_ignore_ascii_case("min") {
            return Err(format!(
                "invalid duration {text:?}: units are lower case: write \"m\" for minutes"
            ));
        }
        return Err(format!(
            "invalid duration {text:?}: unknown unit {unit:?}; use ms, s, m, h, d or w (like \"90s\", \"5m\", \"36d\")"
        ));
    }
    humantime::parse_duration(text).map_err(|e| format!("invalid duration {text:?}: {e}"))
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
                de::Error::custom(format!("a socket mode is octal like \"0660\", found {s:?}"))
            })?,
            Raw::Number(n) => u32::try_from(n)
                .map_err(|_| de::Error::custom("a socket mode must not be negative"))?,
        };
        if mode > 0o777 {
            return Err(de::Error::custom(format!(
                "socket mode {mode:o} has bits beyond 0777"
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

/// The `listen` socket, parsed into its typed form while loading (a host
/// name is resolved then, once), so a bad value is reported with its
/// position by `check-config` and `run` alike. The text is kept as
/// written, for `check-config` to print back.
#[derive(Debug, Clone)]
pub struct Listen {
    pub spec: ListenSpec,
    text: String,
}

impl Listen {
    /// [`super::DEFAULT_LISTEN`]: `inet:10030@127.0.0.1`.
    pub fn loopback_default() -> Listen {
        Listen {
            spec: ListenSpec::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], 10030))),
            text: super::DEFAULT_LISTEN.to_string(),
        }
    }

    pub fn parse(text: &str) -> Result<Listen, String> {
        let known = ["inet:", "inet6:", "unix:", "local:"];
        if !known
            .iter()
            .any(|p| text.starts_with(p) && text.len() > p.len())
        {
            return Err(format!(
                "listen must look like inet:PORT@HOST, inet6:PORT@HOST, inet:HOST:PORT, unix:/path or local:/path, found {text:?}"
            ));
        }
        Ok(Listen {
            spec: text.parse()?,
            text: text.to_string(),
        })
    }
}

/// The same socket, however it is spelled.
impl PartialEq for Listen {
    fn eq(&self, other: &Listen) -> bool {
        self.spec == other.spec
    }
}

impl Eq for Listen {}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Listen::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

impl Serialize for Listen {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
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

/// A log level: syslog's names (`debug`, `info`, `notice`, `warning`,
/// `err`, `crit`, `alert`, `emerg`), `tracing`'s (`trace`, `warn`,
/// `error`, `off`), or `tracing` directives with a target
/// (`"info,greymilter::control=debug"`). Kept as written; [`LogLevel::directive`]
/// gives the filter. A bare word that is not a level is refused: `tracing`
/// would read it as a target name and log nothing at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct LogLevel(pub String);

/// The levels a directive may name, and what `tracing` calls them. syslog
/// has more severities than `tracing`: `notice` logs as `info`, `crit`,
/// `alert` and `emerg` as `error`.
const LEVEL_NAMES: [(&str, &str); 12] = [
    ("trace", "trace"),
    ("debug", "debug"),
    ("info", "info"),
    ("notice", "info"),
    ("warn", "warn"),
    ("warning", "warn"),
    ("error", "error"),
    ("err", "error"),
    ("crit", "error"),
    ("alert", "error"),
    ("emerg", "error"),
    ("off", "off"),
];

impl LogLevel {
    /// Checks and translates `text` into a `tracing` filter directive.
    pub fn parse(text: &str) -> Result<String, String> {
        let level = |word: &str| {
            LEVEL_NAMES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(word.trim()))
                .map(|(_, tracing)| *tracing)
                .ok_or_else(|| {
                    format!(
                        "unknown log level {word:?}: use debug, info, notice, warning, err or crit (or TARGET=LEVEL)"
                    )
                })
        };
        let mut out = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            match part.rsplit_once('=') {
                Some((target, word)) => out.push(format!("{}={}", target.trim(), level(word)?)),
                None => out.push(level(part)?.to_string()),
            }
        }
        if out.is_empty() {
            return Err(
                "empty log level: use debug, info, notice, warning, err or crit".to_string(),
            );
        }
        let directive = out.join(",");
        tracing_subscriber::EnvFilter::try_new(&directive)
            .map_err(|e| format!("invalid log level {text:?}: {e}"))?;
        Ok(directive)
    }

    /// The `tracing` filter directive.
    pub fn directive(&self) -> String {
        LogLevel::parse(&self.0).unwrap_or_else(|_| "info".to_string())
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LogLevel::parse(&s).map_err(de::Error::custom)?;
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
            Ok(net) => exact_network(net).map_err(de::Error::custom)?,
            Err(_) => s.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
                de::Error::custom(format!(
                    "{s:?} is not an IP address or CIDR network (like 192.0.2.0/24)"
                ))
            })?,
        };
        Ok(ClientNet(net))
    }
}

/// A network as written, refused when bits past the prefix are set:
/// `10.0.0.1/8` is more likely a typo for `10.0.0.1/32` than a way to
/// write `10.0.0.0/8`, so neither is guessed.
pub fn exact_network(net: IpNet) -> Result<IpNet, String> {
    if net.trunc() == net {
        return Ok(net);
    }
    let single = match net {
        IpNet::V4(n) => format!("{}/32", n.addr()),
        IpNet::V6(n) => format!("{}/128", n.addr()),
    };
    Err(format!(
        "{net} has bits set past the /{} prefix: write {} for the network, or {single} for the one address",
        net.prefix_len(),
        net.trunc()
    ))
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
                                "unknown key `{other}` in list entry, expected `action` or `delay`"
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
            // A runtime allowance is no configuration entry; as an accept.
            ListAction::Accept | ListAction::Allow => s.serialize_str("accept"),
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
