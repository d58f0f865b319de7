//! What a reload may change. One table lists the settings that only take
//! effect at start-up; [`keep_restart_only`] both detects that a reloaded
//! configuration changes one of them and puts the running value back, so
//! the configuration in force always says what really runs and the next
//! reload compares against it.

use super::Config;

/// A restart-only setting: its name as the admin writes it, and a function
/// that restores the running value into a reloaded configuration,
/// returning whether the reloaded one differed.
type Keep = fn(running: &Config, reloaded: &mut Config) -> bool;

const RESTART_ONLY: &[(&str, Keep)] = &[
    ("milter.enabled", |r, n| {
        keep(&r.milter.enabled, &mut n.milter.enabled)
    }),
    ("milter.listen", |r, n| {
        keep(&r.milter.listen, &mut n.milter.listen)
    }),
    ("milter.socket_mode", |r, n| {
        keep(&r.milter.socket_mode, &mut n.milter.socket_mode)
    }),
    ("milter.socket_group", |r, n| {
        keep(&r.milter.socket_group, &mut n.milter.socket_group)
    }),
    ("milter.max_connections", |r, n| {
        keep(&r.milter.max_connections, &mut n.milter.max_connections)
    }),
    ("milter.shutdown_timeout", |r, n| {
        keep(&r.milter.shutdown_timeout, &mut n.milter.shutdown_timeout)
    }),
    ("policy.listen", |r, n| {
        keep(&r.policy.listen, &mut n.policy.listen)
    }),
    ("policy.socket_mode", |r, n| {
        keep(&r.policy.socket_mode, &mut n.policy.socket_mode)
    }),
    ("policy.socket_group", |r, n| {
        keep(&r.policy.socket_group, &mut n.policy.socket_group)
    }),
    ("policy.max_connections", |r, n| {
        keep(&r.policy.max_connections, &mut n.policy.max_connections)
    }),
    ("state.file", |r, n| keep(&r.state.file, &mut n.state.file)),
    ("daemon.user", |r, n| {
        keep(&r.daemon.user, &mut n.daemon.user)
    }),
    ("daemon.group", |r, n| {
        keep(&r.daemon.group, &mut n.daemon.group)
    }),
    ("daemon.pidfile", |r, n| {
        keep(&r.daemon.pidfile, &mut n.daemon.pidfile)
    }),
    ("log.format", |r, n| keep(&r.log.format, &mut n.log.format)),
    ("log.target", |r, n| keep(&r.log.target, &mut n.log.target)),
    ("log.facility", |r, n| {
        keep(&r.log.facility, &mut n.log.facility)
    }),
    ("log.syslog_socket", |r, n| {
        keep(&r.log.syslog_socket, &mut n.log.syslog_socket)
    }),
    ("control", |r, n| keep(&r.control, &mut n.control)),
    ("metrics", |r, n| keep(&r.metrics, &mut n.metrics)),
    ("cluster", |r, n| keep(&r.cluster, &mut n.cluster)),
];

fn keep<T: PartialEq + Clone>(running: &T, reloaded: &mut T) -> bool {
    if running == reloaded {
        return false;
    }
    reloaded.clone_from(running);
    true
}

/// Puts every restart-only setting of `reloaded` back to its running value
/// and returns the names of those that the reloaded file changed.
pub fn keep_restart_only(running: &Config, reloaded: &mut Config) -> Vec<&'static str> {
    RESTART_ONLY
        .iter()
        .filter_map(|&(name, keep)| keep(running, reloaded).then_some(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Count, Listen, LogFormat, Seconds, SocketMode};

    #[test]
    fn restart_only_settings_are_reported_and_kept() {
        let running = Config::default();
        let mut reloaded = Config::parse(
            r#"
            [milter]
            listen = "inet:10099@127.0.0.1"
            idle_timeout = "1m"
            [daemon]
            pidfile = "/run/x.pid"
            [log]
            format = "json"
            [greylist]
            delay = "2m"
            "#,
            "t.toml",
        )
        .unwrap();
        let changed = keep_restart_only(&running, &mut reloaded);
        assert_eq!(changed, ["milter.listen", "daemon.pidfile", "log.format"]);
        assert_eq!(reloaded.milter.listen, running.milter.listen);
        assert_eq!(reloaded.daemon, running.daemon);
        assert_eq!(reloaded.log.format, running.log.format);
        // What a reload may change is kept as reloaded.
        assert_eq!(reloaded.milter.idle_timeout.0.as_secs(), 60);
        assert_eq!(reloaded.greylist.delay.0.as_secs(), 120);
        // Nothing differs any more: the next reload starts from here.
        assert!(keep_restart_only(&running, &mut reloaded).is_empty());
    }

    #[test]
    fn every_restart_only_setting_is_detected() {
        let running = Config::default();
        let mut changed = Config::default();
        changed.milter.enabled = false;
        changed.milter.listen = Listen::parse("unix:/tmp/x.sock").unwrap();
        changed.policy.listen = Some(Listen::parse("inet:10023@127.0.0.1").unwrap());
        changed.policy.socket_mode = SocketMode(0o600);
        changed.policy.socket_group = Some("postfix".into());
        changed.policy.max_connections = Count(9);
        changed.milter.socket_mode = SocketMode(0o600);
        changed.milter.socket_group = Some("mail".into());
        changed.milter.max_connections = Count(7);
        changed.milter.shutdown_timeout = Seconds::from_secs(9);
        changed.state.file = Some("/var/lib/x".into());
        changed.daemon.user = Some("u".into());
        changed.daemon.group = Some("g".into());
        changed.daemon.pidfile = Some("/run/p".into());
        changed.log.format = LogFormat::Json;
        changed.log.target = crate::config::LogTarget::Syslog;
        changed.log.facility = crate::config::Facility::Local0;
        changed.log.syslog_socket = "/tmp/log".into();
        changed.control.socket = Some("/run/c.sock".into());
        changed.metrics.listen = Some("127.0.0.1:9134".parse().unwrap());
        changed.cluster = Some(crate::config::cluster::ClusterConfig {
            redis: crate::config::cluster::RedisUrl("redis://127.0.0.1:6379".into()),
            secret_file: "/etc/greymilter/cluster.key".into(),
            timeout: Default::default(),
        });
        assert_eq!(
            keep_restart_only(&running, &mut changed).len(),
            RESTART_ONLY.len()
        );
        assert_eq!(changed, running);
    }
}
