//! `[cluster]`: shared greylist state in Redis (see `crate::cluster`).
//! Absent: every node keeps its own table, as without it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

/// Longest accepted `timeout`: past it mail would wait on Redis for long.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port[/db]`, `unix:/path[?db=N]`,
    /// `redis+sentinel://[user:password@]IP:PORT[,IP:PORT…]/MASTER[/DB]` or
    /// `redis+cluster://[user:password@]IP:PORT[,IP:PORT…][/0]`;
    /// `rediss://`, `rediss+sentinel://` and `rediss+cluster://` for TLS.
    pub redis: RedisUrl,
    /// The hashing secret every node shares.
    pub secret_file: PathBuf,
    /// Budget of one Redis call; past it the recipient is decided locally.
    #[serde(default)]
    pub timeout: Timeout,
    /// TLS: the CA certificates (PEM) that sign Redis' certificate;
    /// absent: the platform's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// TLS: this host's client certificate (PEM), with `key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// TLS without certificate checks: tests only, warned about at start.
    #[serde(default)]
    pub tls_insecure: bool,
}

impl ClusterConfig {
    /// Whether `redis` asks for TLS.
    pub fn tls(&self) -> bool {
        crate::cluster::client::wants_tls(&self.redis.0)
    }

    /// The TLS files and switch, as `cluster::tls` takes them.
    pub fn tls_files(&self) -> crate::cluster::tls::TlsFiles {
        crate::cluster::tls::TlsFiles {
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            insecure: self.tls_insecure,
        }
    }

    /// Checks between the keys: the keys to point at, and the message.
    pub fn check_relations(&self) -> Result<(), (&'static [super::KeyAt], String)> {
        const CA: &[super::KeyAt] = &[("cluster", "ca_file")];
        const CERT: &[super::KeyAt] = &[("cluster", "cert_file")];
        const KEY: &[super::KeyAt] = &[("cluster", "key_file")];
        const INSECURE: &[super::KeyAt] = &[("cluster", "tls_insecure")];
        if !self.tls() {
            let set = [
                (CA, "ca_file", self.ca_file.is_some()),
                (CERT, "cert_file", self.cert_file.is_some()),
                (KEY, "key_file", self.key_file.is_some()),
                (INSECURE, "tls_insecure", self.tls_insecure),
            ];
            if let Some((at, name, _)) = set.iter().find(|(_, _, on)| *on) {
                return Err((
                    at,
                    format!(
                        "{} is a TLS setting, but redis = {:?} does not use TLS: write \
                         rediss:// (or rediss+sentinel://)",
                        name, self.redis.0
                    ),
                ));
            }
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Err((
                CERT,
                "cert_file needs key_file (the client certificate's private key)".to_string(),
            )),
            (None, Some(_)) => Err((
                KEY,
                "key_file needs cert_file (the client certificate)".to_string(),
            )),
            _ if self.tls_insecure && self.ca_file.is_some() => Err((
                INSECURE,
                "tls_insecure = true checks no certificate, so ca_file would be ignored: \
                 remove tls_insecure"
                    .to_string(),
            )),
            _ => Ok(()),
        }
    }
}

/// The `[greylist]` keys every host of a cluster must agree on: sent with
/// each call or shaping the keys (`crate::cluster::settings`).
pub const SHARED_KEYS: &[&str] = &[
    "delay",
    "retry_window",
    "whitelist_lifetime",
    "auto_whitelist_after",
    "ipv4_prefix",
    "ipv6_prefix",
    "normalize_sender",
    "spf",
];

/// This host's values of [`SHARED_KEYS`], as TOML writes them.
pub fn shared_settings(config: &super::Config) -> Vec<(String, String)> {
    let Ok(toml::Value::Table(t)) = toml::Value::try_from(&config.greylist) else {
        return Vec::new();
    };
    SHARED_KEYS
        .iter()
        .filter_map(|k| t.get(*k).map(|v| (k.to_string(), v.to_string())))
        .collect()
}

/// A Redis URL that parses (nothing is resolved when checking it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct RedisUrl(pub String);

impl<'de> Deserialize<'de> for RedisUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        crate::cluster::client::parse_url(&s).map_err(de::Error::custom)?;
        Ok(RedisUrl(s))
    }
}

/// A positive duration of at most [`MAX_TIMEOUT`], milliseconds allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Duration);

impl Default for Timeout {
    fn default() -> Self {
        Timeout(DEFAULT_TIMEOUT)
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let v = s.trim();
        let t = super::parse_duration(v).map_err(de::Error::custom)?;
        if t.is_zero() || t > MAX_TIMEOUT {
            return Err(de::Error::custom(format!(
                "timeout must be greater than zero and at most {}",
                humantime::format_duration(MAX_TIMEOUT)
            )));
        }
        Ok(Timeout(t))
    }
}

impl Serialize for Timeout {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};
    use std::time::Duration;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.toml")
    }

    #[test]
    fn absent_means_no_cluster_and_defaults_fill_in() {
        assert_eq!(parse("").unwrap().cluster, None);
        let c = parse(
            "[cluster]\nredis = \"redis://127.0.0.1:6379/0\"\nsecret_file = \"/etc/greymilter/cluster.key\"\n",
        )
        .unwrap();
        let cl = c.cluster.clone().unwrap();
        assert_eq!(cl.timeout.0, Duration::from_millis(50));
        assert_eq!(cl.redis.0, "redis://127.0.0.1:6379/0");
        // Round trip through check-config's printout.
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        let u = parse(
            "[cluster]\nredis = \"unix:/run/redis/redis.sock?db=2\"\nsecret_file = \"k\"\ntimeout = \"120ms\"\n",
        )
        .unwrap();
        assert_eq!(u.cluster.unwrap().timeout.0, Duration::from_millis(120));
    }

    #[test]
    fn shared_settings_are_the_greylist_keys_as_toml_writes_them() {
        let c = parse("[greylist]\ndelay = \"10m\"\nipv4_prefix = 32\n").unwrap();
        let s = super::shared_settings(&c);
        let keys: Vec<&str> = s.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, super::SHARED_KEYS);
        assert!(
            s.contains(&("delay".to_string(), "\"10m\"".to_string())),
            "{s:?}"
        );
        assert!(
            s.contains(&("ipv4_prefix".to_string(), "32".to_string())),
            "{s:?}"
        );
    }

    #[test]
    fn tls_urls_and_files_parse_and_round_trip() {
        let c = parse(
            "[cluster]\nredis = \"rediss://user:pw@redis.example.net:6380/1\"\nsecret_file = \"k\"\n\
             ca_file = \"/etc/greymilter/redis-ca.pem\"\ncert_file = \"/etc/greymilter/mx1.crt\"\n\
             key_file = \"/etc/greymilter/mx1.key\"\n",
        )
        .unwrap();
        let cl = c.cluster.clone().unwrap();
        assert!(cl.tls());
        assert_eq!(
            cl.tls_files().ca_file.unwrap().to_str(),
            Some("/etc/greymilter/redis-ca.pem")
        );
        assert!(!cl.tls_insecure);
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        let s = parse(
            "[cluster]\nredis = \"rediss+sentinel://127.0.0.1:26379,127.0.0.2:26379/gm/0\"\nsecret_file = \"k\"\ntls_insecure = true\n",
        )
        .unwrap();
        let cl = s.cluster.clone().unwrap();
        assert!(cl.tls() && cl.tls_insecure);
        assert!(s.to_toml().contains("tls_insecure = true"));
        // Plain URLs print no TLS files.
        let p =
            parse("[cluster]\nredis = \"redis://127.0.0.1:6379\"\nsecret_file = \"k\"\n").unwrap();
        assert!(p.to_toml().contains("tls_insecure = false") && !p.to_toml().contains("ca_file"));
    }

    #[test]
    fn errors_point_at_the_value() {
        let cases = [
            (
                "[cluster]\nredis = \"redis+sentinel://localhost:26379/mymaster\"\nsecret_file = \"k\"\n",
                2,
                9,
                "must be IP:PORT",
            ),
            (
                "[cluster]\nredis = \"http://127.0.0.1:6379\"\nsecret_file = \"k\"\n",
                2,
                9,
                "only redis[s]://",
            ),
            (
                "[cluster]\nredis = \"redis://127.0.0.1:6379\"\nsecret_file = \"k\"\ntimeout = \"0ms\"\n",
                4,
                11,
                "greater than zero",
            ),
            (
                "[cluster]\nredis = \"redis://127.0.0.1:6379\"\nsecret_file = \"k\"\ntimeout = \"soon\"\n",
                4,
                11,
                "invalid duration",
            ),
            (
                "[cluster]\nredis = \"redis://127.0.0.1:6379\"\nsecret_file = \"k\"\ntimeout = \"10s\"\n",
                4,
                11,
                "at most 5s",
            ),
            (
                "[cluster]\nredis = \"redis://127.0.0.1:6379\"\nsecret = \"k\"\n",
                3,
                1,
                "unknown key",
            ),
            (
                "[cluster]\nredis = \"redis://127.0.0.1:6379\"\n",
                1,
                1,
                "secret_file",
            ),
            (
                "[cluster]\nredis = \"redis://127.0.0.1:6379\"\nsecret_file = \"k\"\nca_file = \"ca.pem\"\n",
                4,
                1,
                "write rediss://",
            ),
            (
                "[cluster]\nredis = \"redis+sentinel://127.0.0.1:26379/gm\"\nsecret_file = \"k\"\ntls_insecure = true\n",
                4,
                1,
                "does not use TLS",
            ),
            (
                "[cluster]\nredis = \"rediss://r.example:6380\"\nsecret_file = \"k\"\ncert_file = \"c.pem\"\n",
                4,
                1,
                "needs key_file",
            ),
            (
                "[cluster]\nredis = \"rediss://r.example:6380\"\nsecret_file = \"k\"\nkey_file = \"c.key\"\n",
                4,
                1,
                "needs cert_file",
            ),
            (
                "[cluster]\nredis = \"rediss://r.example:6380\"\nsecret_file = \"k\"\nca_file = \"ca.pem\"\ntls_insecure = true\n",
                5,
                1,
                "ca_file would be ignored",
            ),
            (
                "[cluster]\nredis = \"rediss://r.example:6380\"\nsecret_file = \"k\"\ntls_insecure = \"yes\"\n",
                4,
                16,
                "expected true or false",
            ),
        ];
        for (text, line, column, words) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!((e.line, e.column), (line, column), "{e}");
            assert!(e.message.contains(words), "{e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("test.toml:{line}:{column}: ")),
                "{e}"
            );
        }
    }
}
