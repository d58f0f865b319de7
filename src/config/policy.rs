//! `[policy]`: Postfix's policy service (`check_policy_service`), the
//! front end beside or instead of the milter. Off until `listen` is set,
//! so a configuration without `[policy]` runs the milter alone, as before.
//!
//! ```toml
//! [policy]
//! listen = "inet:10023@127.0.0.1"    # postgrey's port
//! defer_action = "DEFER_IF_PERMIT"   # or "DEFER"
//! idle_timeout = "10m"
//! ```
//!
//! The milter is switched off with `[milter] enabled = false`; at least
//! one of the two front ends must be on.

use serde::{Deserialize, Serialize};

use super::{Config, Count, KeyAt, Listen, Seconds, SocketMode};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Where Postfix's smtpd connects; `None`: no policy service. The same
    /// spellings as `[milter] listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<Listen>,
    /// For a `unix:` socket, like `[milter] socket_mode`.
    pub socket_mode: SocketMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_group: Option<String>,
    /// Connections served at once; Postfix keeps about one per running
    /// smtpd process.
    pub max_connections: Count,
    /// A connection with no request for this long is closed. Longer than
    /// Postfix's `smtpd_policy_service_max_idle` (300 s), so that Postfix,
    /// which knows when it is done, normally closes first.
    pub idle_timeout: Seconds,
    /// What a greylisted recipient gets.
    pub defer_action: DeferAction,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            listen: None,
            socket_mode: SocketMode(0o660),
            socket_group: None,
            max_connections: Count(1024),
            idle_timeout: Seconds::from_secs(600),
            defer_action: DeferAction::DeferIfPermit,
        }
    }
}

/// `[policy] defer_action`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum DeferAction {
    /// Defer only if the restrictions after the policy check would permit
    /// the recipient: a later reject rule still rejects (postgrey's
    /// default).
    #[default]
    #[serde(rename = "DEFER_IF_PERMIT")]
    DeferIfPermit,
    /// Defer now, whatever follows.
    #[serde(rename = "DEFER")]
    Defer,
}

/// Checks between `[policy]` and `[milter]`: the keys to point at, and
/// the message.
pub(super) fn check(config: &Config) -> Result<(), (&'static [KeyAt], String)> {
    if !config.milter.enabled && config.policy.listen.is_none() {
        return Err((
            &[("milter", "enabled")],
            "[milter] enabled = false leaves nothing to serve: set [policy] listen, or enable the milter".to_string(),
        ));
    }
    if let (true, Some(policy)) = (config.milter.enabled, &config.policy.listen)
        && *policy == config.milter.listen
    {
        return Err((
            &[("policy", "listen"), ("milter", "listen")],
            format!(
                "[policy] listen ({}) is the milter's socket too: give each front end its own, or set [milter] enabled = false",
                policy.spec
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;
    use crate::milter::listener::ListenSpec;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.toml")
    }

    #[test]
    fn off_by_default_so_the_milter_serves_alone() {
        let c = parse("").unwrap();
        assert_eq!(c.policy, PolicyConfig::default());
        assert!(c.policy.listen.is_none());
        assert!(c.milter.enabled);
        // check-config prints no listen for it.
        assert!(!c.to_toml().contains("10023"));
    }

    #[test]
    fn postgrey_port_with_the_milter_listen_spellings() {
        let c = parse(
            "[policy]\nlisten = \"inet:10023@127.0.0.1\"\ndefer_action = \"DEFER\"\nidle_timeout = \"5m\"\n",
        )
        .unwrap();
        assert_eq!(
            c.policy.listen.as_ref().unwrap().spec,
            ListenSpec::Tcp("127.0.0.1:10023".parse().unwrap())
        );
        assert_eq!(c.policy.defer_action, DeferAction::Defer);
        assert_eq!(c.policy.idle_timeout.0.as_secs(), 300);
        let c = parse(
            "[policy]\nlisten = \"unix:/run/greymilter/policy.sock\"\nsocket_mode = \"0600\"\nsocket_group = \"postfix\"\n",
        )
        .unwrap();
        assert_eq!(
            c.policy.listen.as_ref().unwrap().spec,
            ListenSpec::Unix("/run/greymilter/policy.sock".into())
        );
        assert_eq!(c.policy.socket_mode, SocketMode(0o600));
        // What check-config prints reads back the same.
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn the_milter_may_be_off_when_the_policy_service_is_on() {
        let c = parse("[milter]\nenabled = false\n[policy]\nlisten = \"inet:10023@127.0.0.1\"\n")
            .unwrap();
        assert!(!c.milter.enabled);
        let e = parse("[milter]\nenabled = false\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 1));
        assert!(e.message.contains("nothing to serve"), "{e}");
    }

    #[test]
    fn errors_carry_their_position() {
        let e = parse("[policy]\nlisten = \"inet:10023@127.0.0.1\"\ndefer_action = \"REJECT\"\n")
            .unwrap_err();
        assert_eq!((e.line, e.column), (3, 16), "{e}");
        assert!(e.message.contains("DEFER_IF_PERMIT"), "{e}");
        let e = parse("[policy]\nlisten = \"tcp:10023\"\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("inet:PORT@HOST"), "{e}");
        let e =
            parse("[policy]\nlisten = \"inet:10023@127.0.0.1\"\nidle_timeout = 0\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = parse("[policy]\nlisten_on = \"x\"\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn one_socket_cannot_serve_both_front_ends() {
        let e = parse("[milter]\nlisten = \"inet:10023@127.0.0.1\"\n[policy]\nlisten = \"inet:10023@127.0.0.1\"\n")
            .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("its own"), "{e}");
    }
}
