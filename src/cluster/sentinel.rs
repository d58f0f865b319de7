//! Following a Redis Sentinel failover: `redis+sentinel://` URLs.
//!
//! `redis+sentinel://[user:password@]IP:PORT[,IP:PORT…]/MASTER[/DB]`
//! (`rediss+sentinel://`: TLS to the sentinels and the primary): the
//! sentinels (IP literals only, so nothing is ever resolved) are asked
//! `SENTINEL get-master-addr-by-name MASTER` in turn; the credentials and
//! database apply to the primary. The client asks at start and again before
//! every breaker probe, so after a failover the node finds the new primary
//! within one breaker period (the old primary, demoted to a replica, refuses
//! the script's writes with READONLY, which counts as a failure).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, Value};

use super::link;
use super::tls::TlsSetup;

pub const SCHEME: &str = "redis+sentinel://";
/// The same with TLS to the sentinels and to the primary.
pub const TLS_SCHEME: &str = "rediss+sentinel://";

#[derive(Debug, Clone)]
pub struct SentinelSpec {
    pub sentinels: Vec<SocketAddr>,
    pub master: String,
    /// Credentials and database for the primary.
    pub redis: RedisConnectionInfo,
}

/// Parses a `redis+sentinel://` URL (no resolution).
pub fn parse(url: &str) -> Result<SentinelSpec, String> {
    let (creds, rest) = credentials_and_rest(url, SCHEME, TLS_SCHEME)?;
    let (hosts, path) = rest
        .split_once('/')
        .ok_or_else(|| format!("{url:?}: the primary's name is missing (…/MASTER[/DB])"))?;
    let (master, db) = match path.split_once('/') {
        Some((m, d)) => (m, Some(d)),
        None => (path, None),
    };
    if master.is_empty() {
        return Err(format!(
            "{url:?}: the primary's name is missing (…/MASTER[/DB])"
        ));
    }
    Ok(SentinelSpec {
        sentinels: addresses(url, "sentinel", hosts)?,
        master: master.to_string(),
        redis: settings(url, creds, db.unwrap_or("0"))?,
    })
}

/// The URL after its scheme (`scheme` or `tls_scheme`), split at the last
/// `@` into the credentials (if any) and the rest.
pub(super) fn credentials_and_rest<'u>(
    url: &'u str,
    scheme: &str,
    tls_scheme: &str,
) -> Result<(Option<&'u str>, &'u str), String> {
    let rest = url
        .strip_prefix(scheme)
        .or_else(|| url.strip_prefix(tls_scheme))
        .ok_or_else(|| format!("{url:?}: not a {scheme} URL"))?;
    Ok(match rest.rsplit_once('@') {
        Some((c, r)) => (Some(c), r),
        None => (None, rest),
    })
}

/// `IP:PORT[,IP:PORT…]`, IP literals only (`what`: how the URL calls them).
pub(super) fn addresses(url: &str, what: &str, hosts: &str) -> Result<Vec<SocketAddr>, String> {
    hosts
        .split(',')
        .map(|h| {
            h.parse::<SocketAddr>().map_err(|_| {
                format!("{url:?}: {what} {h:?} must be IP:PORT (an IP literal; [v6]:PORT for IPv6)")
            })
        })
        .collect()
}

/// The credentials and database, parsed as redis-rs parses a plain URL.
pub(super) fn settings(
    url: &str,
    creds: Option<&str>,
    db: &str,
) -> Result<RedisConnectionInfo, String> {
    let template = match creds {
        Some(c) => format!("redis://{c}@127.0.0.1:6379/{db}"),
        None => format!("redis://127.0.0.1:6379/{db}"),
    };
    let info = template
        .as_str()
        .into_connection_info()
        .map_err(|e| format!("{url:?}: {e}"))?;
    Ok(info.redis_settings().clone())
}

impl SentinelSpec {
    /// The primary's connection info, given its address.
    pub fn info_for(&self, addr: SocketAddr) -> Result<ConnectionInfo, String> {
        ConnectionAddr::Tcp(addr.ip().to_string(), addr.port())
            .into_connection_info()
            .map(|i| i.set_redis_settings(self.redis.clone()))
            .map_err(|e| e.to_string())
    }

    /// Asks the sentinels in turn for the primary's address, each within
    /// `per_sentinel` (over TLS with `tls`: a sentinel's certificate must
    /// name its IP address). `None`: no sentinel knew.
    pub async fn primary(
        &self,
        per_sentinel: Duration,
        tls: Option<&TlsSetup>,
    ) -> Option<SocketAddr> {
        for s in &self.sentinels {
            let ask = async {
                let info = ConnectionAddr::Tcp(s.ip().to_string(), s.port())
                    .into_connection_info()
                    .ok()?;
                let mut ask = redis::cmd("SENTINEL");
                ask.arg("get-master-addr-by-name").arg(&self.master);
                let v: Value = match tls {
                    Some(t) => {
                        let name = s.ip().to_string();
                        let mut c = link::open(info, Some((t, name.as_str()))).ok()?;
                        ask.query_async(&mut c).await.ok()?
                    }
                    None => {
                        let client = redis::Client::open(info).ok()?;
                        let mut c = client.get_multiplexed_async_connection().await.ok()?;
                        ask.query_async(&mut c).await.ok()?
                    }
                };
                address(&v)
            };
            if let Ok(Some(a)) = tokio::time::timeout(per_sentinel, ask).await {
                return Some(a);
            }
        }
        None
    }
}

/// `[ip, port]` as a sentinel sends it; anything else is `None`.
fn address(v: &Value) -> Option<SocketAddr> {
    let Value::Array(items) = v else {
        return None;
    };
    let [Value::BulkString(ip), Value::BulkString(port)] = items.as_slice() else {
        return None;
    };
    let ip = std::str::from_utf8(ip).ok()?.parse::<IpAddr>().ok()?;
    let port = std::str::from_utf8(port).ok()?.parse::<u16>().ok()?;
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sentinels_name_credentials_and_db() {
        let s = parse("redis+sentinel://u:p@127.0.0.1:26379,[::1]:26380/mymaster/2").unwrap();
        assert_eq!(s.sentinels.len(), 2);
        assert_eq!(s.master, "mymaster");
        assert_eq!(s.redis.db(), 2);
        assert_eq!(s.redis.password(), Some("p"));
        let s = parse("redis+sentinel://127.0.0.1:26379/gm").unwrap();
        assert_eq!((s.redis.db(), s.redis.password()), (0, None));
        assert!(parse("redis+sentinel://localhost:26379/gm").is_err());
        assert!(parse("redis+sentinel://127.0.0.1:26379").is_err());
        assert!(parse("redis+sentinel://127.0.0.1:26379/").is_err());
        let ok = Value::Array(vec![
            Value::BulkString(b"127.0.0.1".to_vec()),
            Value::BulkString(b"6380".to_vec()),
        ]);
        assert_eq!(address(&ok), "127.0.0.1:6380".parse().ok());
        assert_eq!(address(&Value::Nil), None);
    }
}
