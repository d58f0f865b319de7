//! Broken configurations applied by SIGHUP keep the running one, and the error names the
//! file, line and column.
//!
//! The daemon runs an "old" configuration: a recipient on the accept list
//! (`vip@old.example`) and a tempfail reply saying "OLD config". Each broken
//! file is the "new" configuration (another accept entry, a reply saying
//! "NEW config") plus one fault. After every SIGHUP: the log names the
//! file, line and column (the exact position is asserted where the fault
//! has one), and a milter conversation shows the old configuration still
//! applies, whole: vip@old passes, vip@new is greylisted, the reply says
//! OLD. The healthy client runs beside it all along. At the end a good new
//! configuration is loaded, so the reloads were not simply dead.

mod support;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use greymilter::milter::client::{ConnectAddr, Response};
use nix::sys::signal::Signal;
use support::Daemon;
use support::healthy::{Healthy, Plan, is_greylisted, negotiated};
use support::watch::assert_alive;

/// The configuration file, with `{reply}` and the extra lines filled in.
struct Text<'a> {
    milter: &'a str,
    greylist: &'a str,
    reply: &'a str,
    lists: &'a str,
    tail: &'a str,
}

const NEW: Text<'static> = Text {
    milter: "",
    greylist: "",
    reply: "451 4.7.1 Greylisted by the NEW config",
    lists: "",
    tail: "",
};

impl Text<'_> {
    fn render(&self, vip: &str, dir: &Path) -> String {
        let mut out = String::new();
        for line in [
            "[milter]",
            "listen = \"inet:0@127.0.0.1\"",
            self.milter,
            "[greylist]",
            "delay = \"2s\"",
            &format!("reply = \"{}\"", self.reply),
            self.greylist,
            "[lists.recipients]",
            &format!("\"{vip}\" = \"accept\""),
            self.lists,
            "[stats]",
            &format!("file = \"{}/stats\"", dir.display()),
            self.tail,
        ] {
            if !line.is_empty() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

/// One broken configuration: what to write, where the error must point
/// (`at`: the first line holding the first text, at the column where the
/// second starts in it), and words of the message.
struct Case {
    name: &'static str,
    text: Text<'static>,
    at: Option<(&'static str, &'static str)>,
    message: &'static str,
}

const fn case(
    name: &'static str,
    text: Text<'static>,
    at: Option<(&'static str, &'static str)>,
    message: &'static str,
) -> Case {
    Case {
        name,
        text,
        at,
        message,
    }
}

const fn greylist(extra: &'static str) -> Text<'static> {
    Text {
        greylist: extra,
        ..NEW
    }
}

const fn lists(extra: &'static str) -> Text<'static> {
    Text {
        lists: extra,
        ..NEW
    }
}

const fn milter(extra: &'static str) -> Text<'static> {
    Text {
        milter: extra,
        ..NEW
    }
}

const fn tail(extra: &'static str) -> Text<'static> {
    Text { tail: extra, ..NEW }
}

const fn reply(text: &'static str) -> Text<'static> {
    Text { reply: text, ..NEW }
}

#[rustfmt::skip]
const CASES: &[Case] = &[
    case("bad TOML: unterminated string", greylist("header = \"yes"), None, "invalid basic string"),
    case("bad TOML: no value", greylist("header ="), None, "string values must be quoted"),
    case("bad TOML: unclosed table header", tail("[log"), None, "unclosed table"),
    case("duplicate key", greylist("delay = \"3s\""), Some(("delay = \"3s\"", "delay")), "duplicate key"),
    case("unknown key", greylist("delai = \"5m\""), Some(("delai", "delai")), "unknown key"),
    case("unknown section", tail("[greylisting]\ndelay = \"5m\""), Some(("[greylisting]", "greylisting")), "unknown key"),
    case("invalid CIDR", tail("[lists.clients]\n\"192.0.2.0/xx\" = \"accept\""), Some(("/xx", "\"192")), "CIDR"),
    case("IPv4 prefix 33", greylist("ipv4_prefix = 33"), Some(("ipv4_prefix", "33")), "between 1 and 32, found 33"),
    case("IPv6 prefix 129", greylist("ipv6_prefix = 129"), Some(("ipv6_prefix", "129")), "between 1 and 128"),
    case("prefix 0", greylist("ipv4_prefix = 0"), Some(("ipv4_prefix", "0")), "between 1 and 32, found 0"),
    case("negative duration (number)", greylist("retry_window = -5"), Some(("retry_window", "-5")), "negative"),
    case("negative duration (text)", greylist("whitelist_lifetime = \"-5m\""), Some(("whitelist_lifetime", "\"-5m\"")), "negative"),
    case("zero duration (text)", greylist("retry_window = \"0s\""), Some(("retry_window", "\"0s\"")), "greater than zero"),
    case("zero duration (number)", greylist("whitelist_lifetime = 0"), Some(("whitelist_lifetime", "0")), "greater than zero"),
    case("invalid duration", milter("idle_timeout = \"soon\""), Some(("idle_timeout", "\"soon\"")), "invalid duration"),
    case("retry window not longer than the delay", greylist("retry_window = \"1s\""), Some(("retry_window", "retry_window")), "longer than delay"),
    case("reply without a code", reply("Greylisted, come back later"), Some(("reply =", "\"Greylisted")), "invalid reply"),
    case("2xx reply", reply("250 2.0.0 fine"), Some(("reply =", "\"250")), "invalid reply"),
    case("5xx reply for a tempfail", reply("550 5.7.1 refused"), Some(("reply =", "\"550")), "invalid reply"),
    case("CR/LF in the reply", reply("451 4.7.1 two\\r\\n451 4.7.1 lines"), Some(("reply =", "\"451")), "invalid reply"),
    case("reject reply with a 4xx code", greylist("reject_reply = \"451 4.7.1 not a reject\""), Some(("reject_reply", "\"451")), "5xx"),
    case("unknown list action", lists("\"x@new.example\" = \"maybe\""), Some(("maybe", "\"maybe\"")), "unknown action"),
    case("delay on an accept entry", lists("\"y@new.example\" = { action = \"accept\", delay = \"1m\" }"), Some(("y@new", "{")), "only to action"),
    case("invalid address", lists("\"not an address\" = \"accept\""), Some(("not an address", "\"not")), "not an address"),
    case("invalid domain", tail("[lists.recipient_domains]\n\"exa mple.com\" = \"accept\""), Some(("exa mple", "\"exa")), "not a domain"),
    case("zero max_connections", milter("max_connections = 0"), Some(("max_connections", "0")), "positive"),
    case("socket_mode not octal", milter("socket_mode = \"0999\""), Some(("socket_mode", "\"0999\"")), "octal"),
    case("invalid log level", tail("[log]\nlevel = \"loud[\""), Some(("loud", "\"loud[\"")), "unknown log level"),
    case("wrong type", greylist("header = \"yes\""), Some(("header", "\"yes\"")), "expected true or false"),
];

/// A conversation that shows which configuration runs: the old one, or
/// (`old = false`) the good new one loaded at the end.
async fn assert_config_in_force(d: &Daemon, n: usize, old: bool, what: &str) {
    let mut c = negotiated(d.milter_addr()).await;
    let ip = "192.0.2.77".parse().unwrap();
    let r = c
        .connect("mx.config.example", &ConnectAddr::Ip(ip, 25))
        .await;
    assert_eq!(r.unwrap(), Response::Continue, "{what}");
    assert_eq!(
        c.mail(&["<s@config.example>"]).await.unwrap(),
        Response::Continue
    );
    let (pass, grey, marker) = if old {
        ("<vip@old.example>", "<vip@new.example>", "OLD config")
    } else {
        ("<vip@new.example>", "<vip@old.example>", "NEW config")
    };
    let r = c.rcpt(&[pass]).await.unwrap();
    assert_eq!(r, Response::Continue, "{what}: {pass} must be accepted");
    let r = c.rcpt(&[grey]).await.unwrap();
    assert!(
        is_greylisted(&r),
        "{what}: {grey} must be greylisted: {r:?}"
    );
    let r = c
        .rcpt(&[&format!("<fresh{n}@config.example>")])
        .await
        .unwrap();
    match &r {
        Response::ReplyCode {
            code: 451, text, ..
        } if text.contains(marker) => {}
        other => panic!("{what}: expected the {marker} reply, got {other:?}"),
    }
    c.quit().await.unwrap();
}

/// SIGHUP, then the line that says how the reload went.
fn reload(d: &Daemon) -> String {
    let mark = d.log_len();
    d.signal(Signal::SIGHUP);
    d.wait_for_log_after(mark, |l| {
        l.contains("reload failed") || l.contains("configuration reloaded")
    })
}

/// 1-based line and column of `token` in the first line of `text` that
/// holds `context`.
fn position(text: &str, (context, token): (&str, &str)) -> (usize, usize) {
    text.lines()
        .enumerate()
        .find(|(_, l)| l.contains(context))
        .and_then(|(i, l)| l.find(token).map(|c| (i + 1, c + 1)))
        .unwrap_or_else(|| panic!("{token:?} in a line with {context:?} not in\n{text}"))
}

/// Ways to make the configuration path unreadable, even for root.
enum Unreadable {
    Directory,
    Missing,
    Fifo,
    EndlessDevice,
    Huge,
    InvalidUtf8,
}

fn make_unreadable(path: &Path, how: &Unreadable) {
    let _ = fs::remove_file(path);
    match how {
        Unreadable::Directory => fs::create_dir(path).unwrap(),
        Unreadable::Missing => {}
        Unreadable::Fifo => {
            nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap()
        }
        Unreadable::EndlessDevice => symlink("/dev/zero", path).unwrap(),
        Unreadable::Huge => {
            // 64 MiB of comment lines: valid TOML, absurd as a configuration.
            let file = fs::File::create(path).unwrap();
            file.set_len(64 << 20).unwrap();
        }
        Unreadable::InvalidUtf8 => {
            let mut bytes = NEW
                .render("vip@new.example", path.parent().unwrap())
                .into_bytes();
            bytes.extend_from_slice(b"# caf\xe9\n");
            fs::write(path, bytes).unwrap();
        }
    }
}

fn restore_file(path: &Path) {
    if path.is_dir() {
        fs::remove_dir(path).unwrap();
    } else {
        let _ = fs::remove_file(path);
    }
}

#[test]
fn broken_configs_on_sighup_keep_the_old_one_running() {
    let dir = tempfile::tempdir().unwrap();
    let old = Text {
        reply: "451 4.7.1 Greylisted by the OLD config",
        ..NEW
    };
    let mut d = Daemon::start_in(dir.path(), &old.render("vip@old.example", dir.path()));
    assert_ne!(d.port, 0, "{}", d.log_text());
    let healthy = Healthy::start(d.milter_addr(), Plan::beside());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(assert_config_in_force(&d, 0, true, "before any reload"));
    let config = d.config.clone();
    let prefix = config.display().to_string();

    // Positions and messages are gathered, so one run shows every mismatch.
    let mut wrong = Vec::new();
    for (n, c) in CASES.iter().enumerate() {
        let text = c.text.render("vip@new.example", dir.path());
        fs::write(&config, &text).unwrap();
        let line = reload(&d);
        let what = format!("case {n} ({}):\n{text}", c.name);
        assert!(
            line.contains("reload failed, keeping the running configuration"),
            "{what}\n{line}"
        );
        let after = line
            .split(&format!("{prefix}:"))
            .nth(1)
            .unwrap_or_else(|| panic!("{what}\nno file name: {line}"));
        let mut fields = after.splitn(3, ':');
        let (l, col): (usize, usize) = (
            fields
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{what}\nno line: {line}")),
            fields
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{what}\nno column: {line}")),
        );
        if let Some(token) = c.at
            && (l, col) != position(&text, token)
        {
            wrong.push(format!(
                "{what}\nexpected at {:?}: {line}",
                position(&text, token)
            ));
        }
        if !line.contains(c.message) {
            wrong.push(format!("{what}\nmessage lacks {:?}: {line}", c.message));
        }
        runtime.block_on(assert_config_in_force(&d, n + 1, true, &what));
    }

    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));

    let unreadable = [
        (Unreadable::Directory, "not a regular file"),
        (Unreadable::Missing, "No such file"),
        (Unreadable::Fifo, "not a regular file"),
        (Unreadable::EndlessDevice, "not a regular file"),
        (Unreadable::Huge, "larger than"),
        (Unreadable::InvalidUtf8, "UTF-8"),
    ];
    for (n, (how, message)) in unreadable.iter().enumerate() {
        make_unreadable(&config, how);
        let line = reload(&d);
        let what = format!("unreadable config {n}");
        assert!(
            line.contains("reload failed, keeping the running configuration"),
            "{what}: {line}"
        );
        assert!(
            line.contains(&prefix) && line.contains(message),
            "{what}: {line}"
        );
        runtime.block_on(assert_config_in_force(&d, 100 + n, true, &what));
        restore_file(&config);
    }
    // Invalid UTF-8 has a position too: the line and column of the bad byte.
    make_unreadable(&config, &Unreadable::InvalidUtf8);
    let line = reload(&d);
    let lines = NEW.render("vip@new.example", dir.path()).lines().count();
    assert!(
        line.contains(&format!("{prefix}:{}:6: ", lines + 1)),
        "{line}"
    );

    fs::write(&config, NEW.render("vip@new.example", dir.path())).unwrap();
    let line = reload(&d);
    assert!(line.contains("configuration reloaded"), "{line}");
    runtime.block_on(assert_config_in_force(
        &d,
        200,
        false,
        "after a good reload",
    ));

    healthy.finish().assert_all_served(&d.log_text());
    assert_alive(&mut d);
}
