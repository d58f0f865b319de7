//! `[dns]` and the DNS settings of `[greylist]` (issue 12): resolver,
//! SPF mode, allow/block zones, selective greylisting. Every value is
//! checked while deserialising, so errors carry `file:line:col`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use super::Seconds;
use crate::dns::zones::Zone;
use crate::greylist::facts::SpfMode;

/// `[dns]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Empty: the nameservers of /etc/resolv.conf.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<NameServer>,
    /// Budget of one lookup set (the client's zones, or one SPF check):
    /// past it the recipient is decided without that information.
    pub timeout: Seconds,
    /// Records the resolver's TTL-honouring cache holds (and, apart,
    /// parsed SPF records); 0: no cache.
    pub cache_size: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            servers: Vec::new(),
            timeout: Seconds(Duration::from_secs(2)),
            cache_size: 4096,
        }
    }
}

/// A nameserver: `127.0.0.1`, `127.0.0.1:5353`, `::1`, `[::1]:53`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameServer(pub SocketAddr);

impl<'de> Deserialize<'de> for NameServer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let t = s.trim();
        if let Ok(a) = t.parse::<SocketAddr>() {
            return Ok(NameServer(a));
        }
        t.parse::<IpAddr>()
            .map(|ip| NameServer(SocketAddr::new(ip, 53)))
            .map_err(|_| {
                de::Error::custom(format!(
                    "{s:?} is not a nameserver address (like 127.0.0.1, 127.0.0.1:53 or [::1]:53)"
                ))
            })
    }
}

impl Serialize for NameServer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// `[greylist] spf`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpfSetting(pub SpfMode);

impl<'de> Deserialize<'de> for SpfSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "off" => Ok(SpfSetting(SpfMode::Off)),
            "key" => Ok(SpfSetting(SpfMode::Key)),
            "skip" => Ok(SpfSetting(SpfMode::Skip)),
            _ => Err(de::Error::custom(format!(
                "spf must be \"off\", \"key\" or \"skip\", not {s:?}"
            ))),
        }
    }
}

impl Serialize for SpfSetting {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

/// An allow or block zone: `list.dnswl.org`, or with the accepted answers
/// `list.dnswl.org=127.0.0.2,127.0.10.0/24`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSetting(pub Zone);

impl<'de> Deserialize<'de> for ZoneSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<Zone>()
            .map(ZoneSetting)
            .map_err(de::Error::custom)
    }
}

impl Serialize for ZoneSetting {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A word of the dynamic-name heuristic: letters and digits only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DynamicWord(pub String);

impl<'de> Deserialize<'de> for DynamicWord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?.to_ascii_lowercase();
        if s.is_empty() || s.len() > 63 || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(de::Error::custom(format!(
                "{s:?} is not a word (letters and digits, like \"dsl\")"
            )));
        }
        Ok(DynamicWord(s))
    }
}

impl fmt::Display for DynamicWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn default_dynamic_words() -> Vec<DynamicWord> {
    crate::dns::rdns::DEFAULT_WORDS
        .iter()
        .map(|w| DynamicWord((*w).to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use crate::greylist::facts::SpfMode;

    #[test]
    fn defaults_ask_for_no_dns() {
        let c = Config::parse("", "t.toml").unwrap();
        assert!(!c.dns_settings().wanted());
        assert_eq!(c.settings().dns.spf, SpfMode::Off);
        assert_eq!(c.dns.timeout.0.as_secs(), 2);
    }

    #[test]
    fn the_issue_example_parses() {
        let text = "[dns]\nservers = [\"127.0.0.1:53\", \"::1\"]\ntimeout = \"2s\"\n\
                    [greylist]\nspf = \"key\"\nallow_zones = [\"list.dnswl.org\"]\n\
                    block_zones = []\nblock_delay = \"30m\"\nselective = false\n";
        let c = Config::parse(text, "t.toml").unwrap();
        let d = c.dns_settings();
        assert_eq!(d.servers.len(), 2);
        assert_eq!(d.servers[1].port(), 53);
        assert!(d.spf && d.wanted());
        assert_eq!(d.allow_zones[0].name, "list.dnswl.org");
        assert_eq!(c.settings().dns.spf, SpfMode::Key);
        assert_eq!(c.settings().dns.block_delay.as_secs(), 1800);
        // Printed and read back, the same.
        assert_eq!(Config::parse(&c.to_toml(), "t.toml").unwrap(), c);
    }

    #[test]
    fn errors_point_at_the_value() {
        let cases: &[(&str, &str, (usize, usize))] = &[
            ("[greylist]\nspf = \"on\"\n", "spf must be", (2, 7)),
            (
                "[greylist]\nallow_zones = [\"a..b\"]\n",
                "not a DNS zone",
                (2, 15),
            ),
            (
                "[greylist]\nblock_zones = [\"bl.x=::1\"]\n",
                "IPv4 answer code",
                (2, 15),
            ),
            (
                "[greylist]\ndynamic_words = [\"d-s\"]\n",
                "not a word",
                (2, 17),
            ),
            (
                "[dns]\nservers = [\"localhost\"]\n",
                "not a nameserver",
                (2, 11),
            ),
            ("[dns]\ntimeout = \"0s\"\n", "greater than zero", (2, 11)),
            (
                "[greylist]\nspf = \"key\"\n[dns]\ntimeout = \"6s\"\n",
                "shorter than [milter] decision_timeout",
                (4, 1),
            ),
            (
                "[greylist]\nspf = \"key\"\n[dns]\ntimeout = \"4s\"\n[cluster]\n\
                 redis = \"redis://127.0.0.1:6379\"\nsecret_file = \"k\"\ntimeout = \"1s\"\n",
                "plus [cluster] timeout",
                (4, 1),
            ),
        ];
        for (text, needle, pos) in cases {
            let e = Config::parse(text, "t.toml")
                .err()
                .unwrap_or_else(|| panic!("{text}"));
            assert!(e.message.contains(needle), "{text:?}: {e}");
            assert_eq!((e.line, e.column), *pos, "{text:?}: {e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("t.toml:{}:{}: ", pos.0, pos.1))
            );
        }
    }
}
