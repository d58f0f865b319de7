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
    /// `redis://[user:password@]host:port[/db]`, `unix:/path[?db=N]` or
    /// `redis+sentinel://[user:password@]IP:PORT[,IP:PORT…]/MASTER[/DB]`.
    pub redis: RedisUrl,
    /// The hashing secret every node shares.
    pub secret_file: PathBuf,
    /// Budget of one Redis call; past it the recipient is decided locally.
    #[serde(default)]
    pub timeout: Timeout,
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
    fn errors_point_at_the_value() {
        let cases = [
            (
                "[cluster]\nredis = \"redis+sentinel://localhost:26379/mymaster\"\nsecret_file = \"k\"\n",
                2,
                9,
                "must be IP:PORT",
            ),
            (
                "[cluster]\nredis = \"rediss://127.0.0.1:6379\"\nsecret_file = \"k\"\n",
                2,
                9,
                "only redis://",
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
