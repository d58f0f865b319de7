//! List files as admins write them: postgrey's `whitelist_clients` and
//! `whitelist_recipients` forms matched (and not matched) as postgrey
//! matches them, greymilter's per-line actions, optional `.local` files,
//! 100,000 lines, and files refused with file:line:col.

#[path = "support/greylist/mod.rs"]
mod greylist_support;

use std::fmt::Write as _;
use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use greylist_support::{engine, rcpt};
use greymilter::config::Config;
use greymilter::greylist::Action;
use greymilter::greylist::lists::{ListName, Lists};
use greymilter::greylist::settings::ListAction;

const A: ListAction = ListAction::Accept;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Writes `files` and a config naming them, and loads it.
fn load(dir: &Path, config: &str, files: &[(&str, &str)]) -> Result<Config, String> {
    for (name, text) in files {
        fs::write(dir.join(name), text).unwrap();
    }
    let path = dir.join("greymilter.toml");
    fs::write(&path, config).unwrap();
    Config::load(&path).map_err(|e| {
        // A list file's error comes after the configuration line naming
        // the file: checked here, the list file's part returned.
        let e = e.to_string();
        let cfg = format!("{}:", path.display());
        match e.strip_prefix(&cfg) {
            Some(rest) if rest.contains(": /") => {
                let (at, file_part) = rest.split_once(": ").unwrap();
                let (line, column) = at.split_once(':').unwrap();
                let line: usize = line.parse().unwrap();
                let column: usize = column.parse().unwrap();
                let named = config.lines().nth(line - 1).unwrap();
                assert!(
                    named.get(column - 1..).unwrap().starts_with('"'),
                    "{e}: column {column} of {named:?} is no quoted path"
                );
                file_part.to_string()
            }
            _ => e,
        }
    })
}

fn lists(config: &Config) -> Lists {
    Lists::compile(&config.settings().lists, true)
}

const CLIENTS: &str = "\
# whitelist_clients as postgrey documents it
example.com            # the name and its subdomains
195.235.39             # a partial IPv4 address: whole octets
10.20
192.0.2.7
198.51.100.0/25
2001:db8:1234          # postgrey's IPv6 prefix, whole groups
2001:db8:ffff::25
2001:db8:aaaa::/48
/^mail[0-9]+\\.outbound\\.example\\.net$/
/\\.mta\\.example\\.org$/
";

const RECIPIENTS: &str = "\
# whitelist_recipients as postgrey documents it
postmaster@
abuse@
user@example.net
example.org
/^bounce-[0-9]+@lists\\.example\\.com$/
";

#[test]
fn postgrey_client_forms_match_as_postgrey_matches_them() {
    let dir = tempfile::tempdir().unwrap();
    let c = load(
        dir.path(),
        "[lists.files]\naccept_clients = [\"whitelist_clients\"]\n",
        &[("whitelist_clients", CLIENTS)],
    )
    .unwrap();
    let l = lists(&c);
    let by_ip = |a: &str| l.client(ip(a));
    for yes in [
        "195.235.39.200",
        "10.20.5.5",
        "192.0.2.7",
        "198.51.100.127",
        "2001:db8:1234:5::1",
        "2001:db8:ffff::25",
        "2001:db8:aaaa:1::9",
        "::ffff:195.235.39.1",
    ] {
        assert_eq!(by_ip(yes), Some(A), "{yes}");
    }
    // postgrey's prefix stops at an octet boundary: 10.20 is not 10.200.
    for no in [
        "195.235.40.1",
        "195.235.3.1",
        "10.200.1.1",
        "10.2.0.1",
        "192.0.2.70",
        "198.51.100.128",
        "2001:db8:12::1",
        "2001:db8:ffff::26",
    ] {
        assert_eq!(by_ip(no), None, "{no}");
    }
    for yes in [
        "example.com",
        "mx.example.com",
        "MX.EXAMPLE.COM.",
        "mail12.outbound.example.net",
        "MAIL12.Outbound.Example.NET",
        "a.mta.example.org",
    ] {
        assert_eq!(l.client_name(yes.as_bytes()), Some(A), "{yes}");
    }
    for no in [
        "notexample.com",
        "example.com.evil.test",
        "xmail12.outbound.example.net",
        "mail.outbound.example.net",
        "mta.example.org",
        "[192.0.2.99]",
    ] {
        assert_eq!(l.client_name(no.as_bytes()), None, "{no}");
    }
    assert_eq!(
        l.lookup_client(ip("203.0.113.1"), b"mail7.outbound.example.net"),
        Some((ListName::ClientNames, A))
    );
}

#[test]
fn postgrey_recipient_forms_match_as_postgrey_matches_them() {
    let dir = tempfile::tempdir().unwrap();
    let c = load(
        dir.path(),
        "[lists.files]\naccept_recipients = [\"whitelist_recipients\"]\n",
        &[("whitelist_recipients", RECIPIENTS)],
    )
    .unwrap();
    let l = lists(&c);
    for yes in [
        "postmaster@anything.test",
        "postmaster+tag@x.test",
        "abuse@example.com",
        "user@example.net",
        "user+foo@example.net",
        "anyone@example.org",
        "x@sub.example.org",
        "bounce-123@lists.example.com",
    ] {
        assert!(l.lookup_recipient(yes.as_bytes()).is_some(), "{yes}");
    }
    for no in [
        "xpostmaster@x.test",
        "postmasters@x.test",
        "user@sub.example.net",
        "otheruser@example.net",
        "x@notexample.org",
        "bounce-abc@lists.example.com",
        "",
    ] {
        assert_eq!(l.lookup_recipient(no.as_bytes()), None, "{no}");
    }
    // Through the engine, with the address as the MTA sends it.
    let (mut e, _) = engine(c.settings());
    let d = rcpt(&mut e, "192.0.2.1", "<a@b.test>", "<User+X@Example.NET>");
    assert_eq!(d.action, Action::Accept);
    let d = rcpt(&mut e, "192.0.2.1", "<a@b.test>", "<user@elsewhere.test>");
    assert_eq!(d.action, Action::Greylist);
}

#[test]
fn per_line_actions_file_delays_and_the_most_restrictive_entry() {
    let dir = tempfile::tempdir().unwrap();
    let c = load(
        dir.path(),
        "[lists]\nclients = { \"192.0.2.0/24\" = \"accept\" }\n\
         [lists.files]\n\
         accept_clients = [\"mixed\"]\n\
         greylist_clients = [{ path = \"slow\", delay = \"30m\" }]\n\
         reject_senders = [\"senders\"]\n",
        &[
            (
                "mixed",
                "example.com\nbad.example.com reject\n198.51.100.0/24 greylist 2m\n",
            ),
            ("slow", "203.0.113.0/24\n192.0.2.0/24\n"),
            ("senders", "<>  accept\nspammer@\n/^[0-9]+@/\nspam.test\n"),
        ],
    )
    .unwrap();
    let l = lists(&c);
    let g = |secs| ListAction::Greylist {
        delay: Some(Duration::from_secs(secs)),
    };
    assert_eq!(l.client_name(b"mx.example.com"), Some(A));
    assert_eq!(l.client_name(b"bad.example.com"), Some(ListAction::Reject));
    assert_eq!(
        l.client_name(b"a.bad.example.com"),
        Some(ListAction::Reject)
    );
    assert_eq!(l.client(ip("198.51.100.1")), Some(g(120)));
    assert_eq!(l.client(ip("203.0.113.1")), Some(g(1800)));
    // The same network accepted inline and greylisted by a file: greylist.
    assert_eq!(l.client(ip("192.0.2.1")), Some(g(1800)));
    assert_eq!(l.lookup_sender(b""), Some((ListName::Senders, A)));
    let r = Some(ListAction::Reject);
    assert_eq!(l.lookup_sender(b"spammer@x.test").map(|h| h.1), r);
    assert_eq!(l.lookup_sender(b"123@x.test").map(|h| h.1), r);
    assert_eq!(l.lookup_sender(b"a@mail.spam.test").map(|h| h.1), r);
    assert_eq!(l.lookup_sender(b"a@ok.test"), None);
}

#[test]
fn optional_files_may_be_missing_others_may_not() {
    let dir = tempfile::tempdir().unwrap();
    let ok = load(
        dir.path(),
        "[lists.files]\naccept_clients = [\"whitelist_clients.local\", { path = \"extra\", optional = true }]\n",
        &[],
    )
    .unwrap();
    assert_eq!(ok.lists.files.loaded.summary.missing_optional.len(), 2);
    let missing = dir.path().join("whitelist_clients");
    let e = load(
        dir.path(),
        "[lists.files]\naccept_clients = [\"whitelist_clients\"]\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(
        e,
        format!(
            "{}: cannot read list file: No such file or directory (os error 2)",
            missing.display()
        )
    );
    let e = load(
        dir.path(),
        "[lists.files]\naccept_clients = [{ path = \"x.local\", optional = false }]\n",
        &[],
    )
    .unwrap_err();
    assert!(e.contains("x.local: cannot read list file"), "{e}");
    let e = load(
        dir.path(),
        "[lists.files]\naccept_clients = [{ path = \"x\", delay = \"5m\" }]\n",
        &[],
    )
    .unwrap_err();
    assert!(
        e.contains(":2:") && e.contains("`delay` applies only to greylist_* files"),
        "{e}"
    );
}

#[test]
fn bad_files_are_refused_with_file_line_column() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fifo = d.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let refused = |config: &str, files: &[(&str, &str)]| load(d, config, files).unwrap_err();
    let at = |name: &str, rest: &str| format!("{}{rest}", d.join(name).display());

    let e = refused("[lists.files]\naccept_clients = [\"fifo\"]\n", &[]);
    assert_eq!(
        e,
        at(
            "fifo",
            ": cannot read list file: not a regular file (a FIFO)"
        )
    );
    let e = refused("[lists.files]\naccept_clients = [\"/dev/zero\"]\n", &[]);
    assert_eq!(
        e,
        "/dev/zero: cannot read list file: not a regular file (a character device)"
    );
    // Unreadable: a directory at the path (root reads a mode-000 file, so
    // permissions cannot make one unreadable in CI).
    fs::create_dir(d.join("a-directory")).unwrap();
    let e = refused("[lists.files]\naccept_clients = [\"a-directory\"]\n", &[]);
    assert_eq!(
        e,
        at(
            "a-directory",
            ": cannot read list file: not a regular file (a directory)"
        )
    );
    let e = refused(
        "[lists.files]\naccept_clients = [\"big\"]\nmax_file_bytes = 10\n",
        &[("big", "192.0.2.1\n#\n")],
    );
    assert_eq!(
        e,
        at("big", ": cannot read list file: larger than 10 bytes")
    );
    let config = "[lists.files]\naccept_clients = [\"c\"]\n";
    let cases: &[(&str, &str)] = &[
        (
            "192.0.2.1\n\n  192.0.300.1\n",
            ":3:9: 300 is not an IPv4 address part",
        ),
        (
            "# ok\n/a(b/\n",
            ":2:3: invalid regular expression: unclosed group",
        ),
        (
            "x.test\n/(\\w{100}){100}/\n",
            ":2:2: regular expression too large",
        ),
        (
            "/(?=x)y/\n",
            ":1:2: invalid regular expression: look-around",
        ),
        ("ok.test\nbad\u{1}name\n", ":2:4: '\\u{1}' is not allowed"),
        ("caf\u{e9}.test\n", ":1:4: 'é' is not allowed"),
        (
            "192.0.2.1 whitelist\n",
            ":1:11: unknown action \"whitelist\"",
        ),
    ];
    for (text, want) in cases {
        let e = refused(config, &[("c", text)]);
        assert!(e.starts_with(&at("c", want)), "{text:?}: {e}");
    }
    fs::write(d.join("c"), b"ok.test\nab\xffc\n").unwrap();
    let cfg = d.join("greymilter.toml");
    let e = Config::load(&cfg).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("{}:2:19: {}", cfg.display(), at("c", ":2:3: invalid UTF-8"))
    );
}

#[test]
fn a_100k_line_file_loads_and_matches() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("# 100,000 networks\n");
    let dotted = |n: u32| std::net::Ipv4Addr::from(n).to_string();
    for i in 0..100_000u32 {
        // /28s through 10/8; every tenth line a host in 172.16/12 instead.
        if i % 10 == 0 {
            let _ = writeln!(text, "{}", dotted(0xac10_0000 + i));
        } else {
            let _ = writeln!(text, "{}/28", dotted(0x0a00_0000 + i * 16));
        }
    }
    let c = load(
        dir.path(),
        "[lists.files]\nreject_clients = [\"nets\"]\n",
        &[("nets", &text)],
    )
    .unwrap();
    assert_eq!(c.lists.files.loaded.summary.entries, 100_000);
    let l = lists(&c);
    let r = Some(ListAction::Reject);
    assert_eq!(l.client(ip("10.0.0.17")), r);
    assert_eq!(l.client(ip("10.0.0.1")), None, "line 0 is a host elsewhere");
    assert_eq!(l.client(ip("10.24.105.250")), r);
    assert_eq!(l.client(ip("10.24.105.100")), None);
    assert_eq!(l.client(ip("172.16.0.10")), r);
    assert_eq!(l.client(ip("172.16.0.11")), None);
    assert_eq!(l.client(ip("11.0.0.1")), None);
}

#[test]
fn the_shipped_large_senders_list_loads_from_the_example_config() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    fs::copy(
        root.join("contrib/large-senders"),
        dir.path().join("large-senders"),
    )
    .unwrap();
    // The example names its files relative to its own directory, as the
    // package installs them: /etc/greymilter/{greylist.toml,large-senders}.
    let config = fs::read_to_string(root.join("greylist.toml.example")).unwrap();
    let c = load(dir.path(), &config, &[]).unwrap();
    let summary = &c.lists.files.loaded.summary;
    assert!(summary.entries > 60, "{summary:?}");
    assert_eq!(summary.missing_optional.len(), 1, "whitelist_clients.local");
    let l = lists(&c);
    for name in [
        "mail-wr1-f54.google.com",
        "mail-db8eur05on2101.outbound.protection.outlook.com",
        "a8-31.smtp-out.amazonses.com",
        "sonic301-20.consmr.mail.ne1.yahoo.com",
        "mout.gmx.net",
    ] {
        assert_eq!(l.client_name(name.as_bytes()), Some(A), "{name}");
    }
    for addr in [
        "209.85.128.5",
        "40.107.22.101",
        "54.240.8.1",
        "2a00:1450:4864::1",
    ] {
        assert_eq!(l.client(ip(addr)), Some(A), "{addr}");
    }
    for name in ["google.com.attacker.test", "notgoogle.com", "outlook.com"] {
        assert_eq!(l.client_name(name.as_bytes()), None, "{name}");
    }
    assert_eq!(l.client(ip("192.0.2.1")), None);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// Any line, for any kind: an entry or an error with a column inside
    /// the line, never a panic.
    #[test]
    fn any_line_parses_or_names_a_column(
        line in "[ -~\\t/\\\\.:@#0-9a-f\u{e9}]{0,40}",
        kind in 0..3u8,
    ) {
        use greymilter::lists::Kind;
        let kind = [Kind::Clients, Kind::Senders, Kind::Recipients][usize::from(kind)];
        if let Err(e) = greymilter::lists::parse::parse_line(kind, &line) {
            proptest::prop_assert!(e.column >= 1 && e.column <= line.chars().count() + 1, "{e:?}");
        }
    }
}

/// A cron job can check the files before it signals the daemon.
#[test]
fn check_config_reads_the_list_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("clients"), "192.0.2.0/24\nexample.com\n").unwrap();
    let config = dir.path().join("greymilter.toml");
    fs::write(
        &config,
        "[lists.files]\naccept_clients = [\"clients\", \"clients.local\"]\n",
    )
    .unwrap();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_greymilter"))
            .args(["check-config", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("# list files: 1 read, 2 entries"),
        "{stdout}"
    );
    assert!(
        stdout.contains("clients.local: missing, optional"),
        "{stdout}"
    );
    fs::write(dir.path().join("clients"), "192.0.2.0/24\nexample..com\n").unwrap();
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let want = format!("{}:2:9: empty label", dir.path().join("clients").display());
    assert!(stderr.contains(&want), "{stderr}");
}

#[test]
fn check_config_output_parses_back_to_the_same_files() {
    let text = "[lists.files]\n\
        accept_clients = [\"/etc/greymilter/large-senders\", \"x.local\"]\n\
        reject_senders = [{ path = \"blocked\", optional = true }]\n\
        greylist_recipients = [{ path = \"slow\", delay = \"30m\" }, { path = \"s2\", optional = false, delay = \"90s\" }]\n\
        max_file_bytes = 1000\n";
    let c = Config::parse(text, "t.toml").unwrap();
    let printed = c.to_toml();
    let again = Config::parse(&printed, "printed.toml").unwrap();
    assert_eq!(again, c, "{printed}");
    assert_eq!(c.lists.files.greylist_recipients.len(), 2);
    assert!(printed.contains("delay = \"30m\""), "{printed}");
}
