//! Configuration of the operations features: where logs go (`[log]
//! target`, `facility`, `syslog_socket`), the `[control]` socket and the
//! `[metrics]` endpoint.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[log] target`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    /// stderr (journald under systemd).
    #[default]
    Stderr,
    /// The local syslog socket, so decision lines land in mail.log.
    Syslog,
}

/// `[log] facility`: the syslog facilities a mail daemon may sensibly use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Facility {
    #[default]
    Mail,
    Daemon,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl Facility {
    /// The facility number of RFC 5424 §6.2.1.
    pub fn code(self) -> u8 {
        match self {
            Facility::Mail => 2,
            Facility::Daemon => 3,
            Facility::Local0 => 16,
            Facility::Local1 => 17,
            Facility::Local2 => 18,
            Facility::Local3 => 19,
            Facility::Local4 => 20,
            Facility::Local5 => 21,
            Facility::Local6 => 22,
            Facility::Local7 => 23,
        }
    }
}

pub fn default_syslog_socket() -> PathBuf {
    PathBuf::from("/dev/log")
}

/// `[control]`: the administration socket (off unless `socket` is set).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// 0600 (root and the daemon's user) or 0660 with `group`.
    pub mode: super::SocketMode,
    /// Members of this group may use the socket too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: None,
            mode: super::SocketMode(0o600),
            group: None,
        }
    }
}

/// `[metrics]`: the Prometheus endpoint (off unless `listen` is set).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// An address and port (`127.0.0.1:9134`); no host names, which would
    /// need a resolver thread.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "metrics_listen"
    )]
    pub listen: Option<std::net::SocketAddr>,
}

/// `[metrics] listen`: an address and port, said so when it is not one.
fn metrics_listen<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::net::SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    text.trim().parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not an IP address and port like \"127.0.0.1:9134\" or \"[::1]:9134\" (no host names)"
        ))
    })
}
