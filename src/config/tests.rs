use std::time::Duration;

use super::*;
use crate::milter::listener::ListenSpec;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "test.toml")
}

#[test]
fn empty_file_gives_the_documented_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.milter.listen, Listen::parse(DEFAULT_LISTEN).unwrap());
    assert_eq!(
        c.milter.listen.spec,
        ListenSpec::Tcp("127.0.0.1:10030".parse().unwrap())
    );
    let s = c.settings();
    assert_eq!(s, Settings::default());
    assert_eq!(c.state.file, None);
    assert_eq!(c.milter.max_connections.0, 1024);
    assert_eq!(c.milter.idle_timeout.0, Duration::from_secs(600));
}

#[test]
fn the_default_listen_address_is_loopback_only() {
    let example = parse(include_str!("../../greylist.toml.example")).unwrap();
    for listen in [&Config::default().milter.listen, &example.milter.listen] {
        match &listen.spec {
            ListenSpec::Tcp(addr) => assert!(addr.ip().is_loopback(), "{addr}"),
            other => panic!("default listen gives {other:?}"),
        }
    }
}

#[test]
fn the_shipped_example_parses_to_the_defaults_plus_its_list_examples() {
    let text = include_str!("../../greylist.toml.example");
    let c = parse(text).unwrap();
    let d = Config::default();
    assert_eq!(c.milter, d.milter);
    assert_eq!(c.greylist, d.greylist);
    assert_eq!(c.log, d.log);
    assert_eq!(c.state.checkpoint_interval, d.state.checkpoint_interval);
}

#[test]
fn durations_accept_units_and_seconds() {
    let c =
        parse("[greylist]\ndelay = \"90s\"\nretry_window = 7200\nwhitelist_lifetime = \"36d\"\n")
            .unwrap();
    assert_eq!(c.greylist.delay.0, Duration::from_secs(90));
    assert_eq!(c.greylist.retry_window.0, Duration::from_secs(7200));
    assert_eq!(
        c.greylist.whitelist_lifetime.0,
        Duration::from_secs(36 * 86400)
    );
    let c = parse("[greylist]\ndelay = \"5m\"\nretry_window = \"24h\"\n").unwrap();
    assert_eq!(c.greylist.delay.0, Duration::from_secs(300));
}

#[test]
fn lists_parse_into_engine_entries() {
    let c = parse(
        r#"
[lists]
clients = { "192.0.2.0/24" = "accept", "2001:db8::/32" = "reject", "198.51.100.1" = { action = "greylist", delay = "1m" } }
client_names = { ".Example.COM" = "accept" }
senders = { "<Alice@Example.org>" = "accept", "<>" = "greylist" }
sender_domains = { "bad.test" = "reject" }
recipients = { "postmaster@example.net" = "accept" }
recipient_domains = { "@example.net" = "greylist" }
"#,
    )
    .unwrap();
    let s = c.settings().lists;
    assert!(
        s.clients
            .contains(&("192.0.2.0/24".parse().unwrap(), ListAction::Accept))
    );
    assert!(
        s.clients
            .contains(&("2001:db8::/32".parse().unwrap(), ListAction::Reject))
    );
    assert!(s.clients.contains(&(
        "198.51.100.1/32".parse().unwrap(),
        ListAction::Greylist {
            delay: Some(Duration::from_secs(60))
        }
    )));
    assert_eq!(
        s.client_names,
        vec![(".example.com".to_string(), ListAction::Accept)]
    );
    assert!(
        s.senders
            .contains(&("alice@example.org".to_string(), ListAction::Accept))
    );
    assert!(
        s.senders
            .contains(&(String::new(), ListAction::Greylist { delay: None }))
    );
    assert_eq!(
        s.sender_domains,
        vec![("bad.test".to_string(), ListAction::Reject)]
    );
    assert_eq!(
        s.recipient_domains,
        vec![(
            "example.net".to_string(),
            ListAction::Greylist { delay: None }
        )]
    );
}

#[test]
fn effective_config_round_trips_through_toml() {
    let c = parse(
        r#"
[milter]
listen = "unix:/run/greymilter/sock"
socket_mode = "0600"
[greylist]
delay = 120
reply = "450 4.7.1 Try again in {remaining}s, 100% sure"
[lists]
clients = { "10.0.0.0/8" = { action = "greylist", delay = "1h" } }
[state]
file = "/var/lib/greymilter/state"
[log]
format = "json"
"#,
    )
    .unwrap();
    let printed = c.to_toml();
    let again = parse(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
    assert_eq!(again, c);
    assert!(printed.contains("delay = \"2m\""), "{printed}");
    assert!(printed.contains("socket_mode = \"0600\""), "{printed}");
}

/// Each broken configuration names the line and column of its fault.
#[test]
fn broken_configs_fail_with_line_and_column() {
    let cases: &[(&str, &str, (usize, usize))] = &[
        ("[greylist\ndelay = 1\n", "", (1, 10)),
        (
            "[greylist]\ndelai = \"5m\"\n",
            "unknown key `delai`",
            (2, 1),
        ),
        ("[grey]\n", "unknown key `grey`", (1, 2)),
        (
            "[lists]\nclients = { \"192.0.2.300/24\" = \"accept\" }\n",
            "not an IP address",
            (2, 13),
        ),
        (
            "[lists]\nclients = { \"192.0.2.0/33\" = \"accept\" }\n",
            "not an IP address",
            (2, 13),
        ),
        (
            "[greylist]\nipv4_prefix = 33\n",
            "between 1 and 32",
            (2, 15),
        ),
        (
            "[greylist]\nipv6_prefix = 129\n",
            "between 1 and 128",
            (2, 15),
        ),
        ("[greylist]\nipv4_prefix = 0\n", "between 1 and 32", (2, 15)),
        ("[greylist]\ndelay = -5\n", "negative", (2, 9)),
        ("[greylist]\ndelay = \"-5m\"\n", "negative", (2, 9)),
        ("[greylist]\ndelay = 0\n", "greater than zero", (2, 9)),
        ("[greylist]\ndelay = \"0s\"\n", "greater than zero", (2, 9)),
        ("[greylist]\ndelay = \"soon\"\n", "invalid duration", (2, 9)),
        (
            "[greylist]\nreply = \"Greylisted, go away\"\n",
            "invalid reply",
            (2, 9),
        ),
        ("[greylist]\nreply = \"550 5.7.1 no\"\n", "4xx", (2, 9)),
        (
            "[greylist]\nreply = \"451 4.7.1 a\\r\\nb\"\n",
            "printable ASCII",
            (2, 9),
        ),
        (
            "[greylist]\nreply = \"421 4.7.0 bye\"\n",
            "disconnect",
            (2, 9),
        ),
        (
            "[greylist]\nreply = \"451 4.7.1 wait {minutes}\"\n",
            "unknown placeholder",
            (2, 9),
        ),
        (
            "[greylist]\nreject_reply = \"451 4.7.1 later\"\n",
            "5xx",
            (2, 16),
        ),
        (
            "[greylist]\ndelay = \"2h\"\nretry_window = \"1h\"\n",
            "retry_window",
            (3, 1),
        ),
        ("[greylist]\nmax_tuples = 0\n", "positive", (2, 14)),
        (
            "[milter]\nidle_timeout = 60\ndecision_timeout = \"11s\"\n",
            "must be at most 10s",
            (3, 1),
        ),
        (
            "[milter]\nlisten = \"10030\"\n",
            "listen must look like",
            (2, 10),
        ),
        (
            "[milter]\nlisten = \"inet:99999@127.0.0.1\"\n",
            "is not a port number",
            (2, 10),
        ),
        (
            "[milter]\nlisten = \"inet6:10030@192.0.2.1\"\n",
            "not an IPv6 address",
            (2, 10),
        ),
        (
            "[milter]\nlisten = \"inet:[::1:10030\"\n",
            "expected [ADDRESS]:PORT",
            (2, 10),
        ),
        ("[milter]\nsocket_mode = \"rw\"\n", "octal", (2, 15)),
        (
            "[milter]\nsocket_mode = \"01777\"\n",
            "beyond 0777",
            (2, 15),
        ),
        (
            "[lists]\nsenders = { \"not an address\" = \"accept\" }\n",
            "not an address",
            (2, 13),
        ),
        (
            "[lists]\nsender_domains = { \"bad domain\" = \"reject\" }\n",
            "not a domain",
            (2, 20),
        ),
        (
            "[lists]\nclient_names = { \"[192.0.2.1]\" = \"accept\" }\n",
            "not a host name",
            (2, 18),
        ),
        (
            "[lists]\nrecipients = { \"a@b.test\" = \"maybe\" }\n",
            "unknown action",
            (2, 29),
        ),
        (
            "[lists]\nrecipients = { \"a@b.test\" = { action = \"accept\", delay = \"1m\" } }\n",
            "only to action",
            (2, 29),
        ),
        (
            "[lists]\nrecipients = { \"a@b.test\" = { delay = \"1m\" } }\n",
            "needs an `action`",
            (2, 29),
        ),
        ("[log]\nlevel = \"loud=[\"\n", "unknown log level", (2, 9)),
        (
            "[log]\nformat = \"xml\"\n",
            "unknown value \"xml\"",
            (2, 10),
        ),
        (
            "[greylist]\nheader = \"yes\"\n",
            "expected true or false",
            (2, 10),
        ),
    ];
    for (text, needle, (line, column)) in cases {
        let err = parse(text)
            .err()
            .unwrap_or_else(|| panic!("accepted broken config:\n{text}"));
        assert!(err.message.contains(needle), "{text:?}: {err}");
        assert_eq!((err.line, err.column), (*line, *column), "{text:?}: {err}");
        assert!(
            err.to_string()
                .starts_with(&format!("test.toml:{line}:{column}: ")),
            "{err}"
        );
    }
    assert!(cases.len() >= 20);
}

#[test]
fn unreadable_file_is_an_error_naming_the_file() {
    let err = Config::load(Path::new("/nonexistent/greymilter.toml")).unwrap_err();
    assert_eq!(err.line, 0);
    assert!(
        err.to_string()
            .starts_with("/nonexistent/greymilter.toml: cannot read:"),
        "{err}"
    );
}

#[test]
fn reply_texts_cannot_inject_lines_or_control_bytes() {
    for (key, code, enhanced) in [("reply", "451", "4.7.1"), ("reject_reply", "550", "5.7.1")] {
        let mut texts: Vec<String> = [
            "\\r\\n250 2.0.0 ok",
            "\\n",
            "\\r",
            "\\u0000",
            "a\\tb",
            "\\u0085",
            "\\u2028",
            "{recipient}\\r\\n",
        ]
        .iter()
        .map(|evil| format!("{key} = \"{code} {enhanced} x{evil}\""))
        .collect();
        texts.push(format!("{key} = \"\"\"{code} {enhanced} two\nlines\"\"\""));
        texts.push(format!("{key} = \"{code}\\r\\n{enhanced} x\""));
        for line in texts {
            let err = parse(&format!("[greylist]\n{line}\n")).unwrap_err();
            assert!(err.message.contains("printable ASCII"), "{line}: {err}");
            assert_eq!(err.line, 2, "{line}: {err}");
        }
    }
}

#[test]
fn syslog_level_names_are_accepted_and_other_words_refused() {
    for (word, directive) in [
        ("debug", "debug"),
        ("info", "info"),
        ("notice", "info"),
        ("warning", "warn"),
        ("WARNING", "warn"),
        ("err", "error"),
        ("crit", "error"),
        ("warn", "warn"),
        (
            "info,greymilter::control=warning",
            "info,greymilter::control=warn",
        ),
    ] {
        let c = parse(&format!("[log]\nlevel = \"{word}\"\n")).unwrap();
        assert_eq!(c.log.level.directive(), directive, "{word}");
        // Printed back as written.
        assert!(c.to_toml().contains(&format!("level = \"{word}\"")));
    }
    // `tracing` would take a bare word for a target and log nothing.
    for word in ["verbose", "loud", "warnings"] {
        let e = parse(&format!("[log]\nlevel = \"{word}\"\n")).unwrap_err();
        assert!(e.message.starts_with("unknown log level"), "{e}");
        assert_eq!((e.line, e.column), (2, 9), "{e}");
    }
}

#[test]
fn errors_between_keys_point_at_the_key_the_file_sets() {
    for (text, at) in [
        // retry_window left at its default: the delay is what to change.
        ("# comment\n[greylist]\ndelay = \"2d\"\n", (3, 1)),
        (
            "[greylist]\ndelay = \"1h\"\n  retry_window = \"30m\"\n",
            (3, 3),
        ),
        // `timeout` of [cluster] comes first in the file, [dns]'s is meant.
        (
            "[greylist]\nspf = \"key\"\n[cluster]\nredis = \"redis://127.0.0.1:6379\"\nsecret_file = \"k\"\ntimeout = \"1s\"\n[dns]\ntimeout = \"5s\"\n",
            (8, 1),
        ),
        ("[milter]\ndecision_timeout = \"20s\"\n", (2, 1)),
    ] {
        let e = parse(text).unwrap_err();
        assert_eq!((e.line, e.column), at, "{text:?}: {e}");
    }
}

#[test]
fn durations_refuse_months_and_unknown_units() {
    let e = parse("[greylist]\ndelay = \"5M\"\n").unwrap_err();
    assert_eq!((e.line, e.column), (2, 9), "{e}");
    assert!(e.message.contains("write \"m\" for minutes"), "{e}");
    for bad in ["1y", "2months", "3 fortnights", "10us"] {
        let e = parse(&format!("[greylist]\nwhitelist_lifetime = \"{bad}\"\n")).unwrap_err();
        assert!(e.message.contains("unknown unit"), "{bad}: {e}");
    }
    let c = parse("[greylist]\ndelay = \"1h 30m\"\nretry_window = \"2w\"\n").unwrap();
    assert_eq!(c.greylist.delay.0, Duration::from_secs(5400));
    assert_eq!(c.greylist.retry_window.0, Duration::from_secs(14 * 86400));
}

#[test]
fn value_errors_are_worded_for_an_admin() {
    for (text, wanted, at) in [
        (
            "[greylist]\nmax_tuples = 99999999999999999999\n",
            "99999999999999999999 is too large",
            (2, 14),
        ),
        (
            "[greylist]\nauto_whitelist_after = -1\n",
            "-1 is out of range: expected a whole number from 0 to 4294967295",
            (2, 24),
        ),
        (
            "[greylist]\nmax_tuples = 1.5\n",
            "expected a whole number, found 1.5",
            (2, 14),
        ),
        (
            "[control]\nmode = 0660\n",
            "write an octal mode as a string, like mode = \"0660\"",
            (2, 8),
        ),
        (
            "[control]\nmode = \"0999\"\n",
            "a socket mode is octal like \"0660\", found \"0999\"",
            (2, 8),
        ),
        (
            "[metrics]\nlisten = \"localhost:9134\"\n",
            "\"localhost:9134\" is not an IP address and port like \"127.0.0.1:9134\"",
            (2, 10),
        ),
        (
            "[greylist]\ndelay = \"1m\"\ndelay = \"2m\"\n",
            "duplicate key `delay`: set each key once",
            (3, 1),
        ),
        (
            "[lists]\nclients = { \"10.0.0.1/8\" = \"accept\" }\n",
            "10.0.0.1/8 has bits set past the /8 prefix: write 10.0.0.0/8 for the network, or 10.0.0.1/32 for the one address",
            (2, 13),
        ),
    ] {
        let e = parse(text).unwrap_err();
        assert!(e.message.contains(wanted), "{text:?}: {e}");
        assert_eq!((e.line, e.column), at, "{text:?}: {e}");
        for jargon in ["i64", "i128", "u32", "socket_mode", "syntax"] {
            assert!(!e.message.contains(jargon), "{text:?}: {e}");
        }
    }
}

#[test]
fn a_list_file_error_names_the_config_line_then_the_file_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("greylist.toml");
    std::fs::write(dir.path().join("clients"), "192.0.2.0/24\nbogus entry!!\n").unwrap();
    std::fs::write(
        &config,
        "[lists.files]\naccept_senders = [{ path = \"gone\" }]\naccept_recipients = [\"clients\"]\n",
    )
    .unwrap();
    let e = Config::load(&config).unwrap_err();
    let cfg = config.display();
    let gone = dir.path().join("gone");
    assert!(
        e.to_string().starts_with(&format!(
            "{cfg}:2:28: {}: cannot read list file: ",
            gone.display()
        )),
        "{e}"
    );
    std::fs::write(
        &config,
        "[lists.files]\n# accept_clients = [\"clients\"]\naccept_clients = [\"clients\"]\n",
    )
    .unwrap();
    let e = Config::load(&config).unwrap_err();
    let list = dir.path().join("clients");
    assert!(
        e.to_string()
            .starts_with(&format!("{cfg}:3:19: {}:2:7: ", list.display())),
        "{e}"
    );
}

#[test]
fn preflight_finds_missing_users_and_groups_and_open_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("greylist.toml");
    std::fs::write(
        &config,
        "[milter]\nlisten = \"inet:10030@0.0.0.0\"\n[daemon]\nuser = \"nosuchuser-gm\"\ngroup = \"nosuchgroup-gm\"\n[control]\nsocket = \"/run/x.sock\"\ngroup = \"nosuchgroup-gm2\"\n[metrics]\nlisten = \"0.0.0.0:9134\"\n",
    )
    .unwrap();
    let c = Config::load(&config).unwrap();
    let found = c.preflight(&config);
    let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
    let cfg = config.display();
    assert_eq!(
        errors,
        [
            format!(
                "{cfg}:4:1: no such user \"nosuchuser-gm\": create it (adduser --system nosuchuser-gm) or name another"
            ),
            format!("{cfg}:5:1: no such group \"nosuchgroup-gm\""),
            format!("{cfg}:8:1: no such group \"nosuchgroup-gm2\""),
        ]
    );
    let warnings: Vec<(usize, usize)> = found.warnings.iter().map(|w| (w.line, w.column)).collect();
    assert_eq!(warnings, [(2, 1), (10, 1)]);
    assert!(
        found.warnings[0]
            .message
            .contains("0.0.0.0:10030, reachable from the network")
    );
    // The milter off: its listen is no listener; the policy service's is.
    std::fs::write(&config, "[milter]\nenabled = false\nlisten = \"inet:10030@0.0.0.0\"\n[policy]\nlisten = \"inet:10023@0.0.0.0\"\nsocket_group = \"nosuchgroup-gm3\"\n").unwrap();
    let c = Config::load(&config).unwrap();
    let found = c.preflight(&config);
    assert_eq!(found.errors.len(), 1, "{:?}", found.errors);
    assert_eq!((found.errors[0].line, found.errors[0].column), (6, 1));
    assert_eq!(found.warnings.len(), 1, "{:?}", found.warnings);
    assert!(
        found.warnings[0]
            .message
            .contains("the policy service listens on 0.0.0.0:10023"),
        "{:?}",
        found.warnings
    );
    assert_eq!((found.warnings[0].line, found.warnings[0].column), (5, 1));
    let c = parse("[daemon]\nuser = \"root\"\n").unwrap();
    let found = c.preflight(&config);
    assert!(found.errors.is_empty() && found.warnings.is_empty());
}
