//! The admin's surface against the real binary: allowances an
//! admin cannot make by mistake and can always undo, one flag vocabulary
//! and one null sender, `stats --socket`, a control reload that the
//! daemon logs, what the log says at start and reload, a failed start
//! that leaves no socket behind, and verbs whose reader goes away.

mod support;

use std::process::{Command, Stdio};

use nix::sys::signal::Signal;
use support::{BIN, Daemon, cli, cli_ok as ok, query};

const CONFIG: &str = "[greylist]\ndelay = \"1h\"\n\
[state]\nfile = \"{dir}/state\"\n\
[control]\nsocket = \"{dir}/control.sock\"\n";

/// 0.0.0.0/0 and ::/0 need --force, --for is required and not 0,
/// and `forget` undoes what `allow --force` did.
#[test]
fn wide_allowances_need_force_and_forget_undoes_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), CONFIG);
    d.wait_for_log(|l| l.contains("control socket ready"));
    for net in ["0.0.0.0/0", "::/0", "10.0.0.0/7", "2001:db8::/31"] {
        let (status, _, err) = cli(&d, &["allow", "--network", net, "--for", "1h"]);
        assert_eq!(status, 1, "{net}: {err}");
        assert!(err.contains("add force=yes (--force)"), "{net}: {err}");
    }
    let (status, _, err) = cli(&d, &["allow", "--network", "192.0.2.0/24", "--for", "0"]);
    assert_eq!(
        (status, err.as_str()),
        (1, "greymilter: --for must be at least 1s\n")
    );
    let (status, _, err) = cli(&d, &["allow", "--network", "192.0.2.0/24"]);
    assert_eq!(status, 1, "{err}");
    assert!(err.contains("--for is required with --network"), "{err}");
    let (status, _, err) = cli(&d, &["allow", "--network", "10.0.0.1/8", "--for", "1h"]);
    assert_eq!(status, 1, "{err}");
    assert!(err.contains("write 10.0.0.0/8"), "{err}");
    // Nothing above took effect.
    let q = d.query("198.51.100.1", "a@example.org", &["b@example.net"]);
    assert_eq!(q.status, 4, "{q:?}");

    let out = ok(
        &d,
        &["allow", "--network", "0.0.0.0/0", "--for", "1h", "--force"],
    );
    assert!(out.starts_with("network 0.0.0.0/0 allowed until "), "{out}");
    let q = d.query("198.51.100.2", "a@example.org", &["b@example.net"]);
    assert_eq!(q.status, 0, "{q:?}");
    let out = ok(&d, &["forget", "--network", "0.0.0.0/0"]);
    assert!(out.ends_with("allowance removed\n"), "{out}");
    assert!(out.contains("tuples not forgotten"), "{out}");
    let q = d.query("198.51.100.3", "a@example.org", &["b@example.net"]);
    assert_eq!(q.status, 4, "{q:?}");
    // Without an allowance, too wide a forget is still refused.
    let (status, _, err) = cli(&d, &["forget", "--network", "::/0"]);
    assert_eq!(status, 1, "{err}");
    assert!(err.contains("at most 65536 at once"), "{err}");
}

/// `check`, `query`, `allow`, `forget` share --client,
/// --client-name, --from, --to, --auth USER; "" and <> are the null sender.
#[test]
fn one_flag_vocabulary_and_one_null_sender() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(
        dir.path(),
        &format!("{CONFIG}[lists]\nclient_names = {{ \"mx.partner.example\" = \"accept\" }}\n"),
    );
    d.wait_for_log(|l| l.contains("control socket ready"));
    let check = |extra: &[&str]| {
        let mut args = vec!["check", "--client", "192.0.2.1", "--to", "b@example.net"];
        args.extend(extra);
        ok(&d, &args)
    };
    let null = check(&["--from", "<>"]);
    assert!(null.contains("action: greylist\n"), "{null}");
    assert_eq!(check(&["--from", ""]), null);
    let named = check(&["--from", "", "--client-name", "mx.partner.example"]);
    assert!(named.contains("reason: list:client_names\n"), "{named}");
    assert_eq!(
        check(&["--from", "", "--name", "mx.partner.example"]),
        named
    );
    let auth = check(&["--from", "a@example.org", "--auth", "alice"]);
    assert_eq!(check(&["--from", "a@example.org", "--authenticated"]), auth);

    // query: <> is sent as MAIL FROM:<>, never <<>>; brackets are optional.
    let q = query(&d.socket(), "192.0.2.1", "<>", &["<b@example.net>"], &[]);
    assert_eq!(q.status, 4, "{q:?}");
    assert!(
        q.stdout.contains("MAIL FROM:<>: pass") && q.stdout.contains("RCPT TO:<b@example.net>: "),
        "{q:?}"
    );
    let line = d.wait_for_log(|l| l.contains("action=greylist"));
    assert!(line.contains("from=<>") && !line.contains("<<"), "{line}");
    // The null sender's tuple is the same for "" and <>, at every verb.
    let allow = [
        "allow",
        "--client",
        "192.0.2.1",
        "--from",
        "",
        "--to",
        "b@example.net",
    ];
    assert!(ok(&d, &allow).starts_with("tuple whitelisted until "));
    assert!(check(&["--from", "<>"]).contains("reason: whitelisted\n"));
    let q = query(&d.socket(), "192.0.2.1", "", &["b@example.net"], &[]);
    assert_eq!(q.status, 0, "{q:?}");
    let forget = [
        "forget",
        "--client",
        "192.0.2.1",
        "--from",
        "<>",
        "--to",
        "b@example.net",
    ];
    assert_eq!(ok(&d, &forget), "tuple forgotten\n");
}

/// `stats --socket` like the other verbs; without any way to reach
/// the daemon, the error says every way there is.
#[test]
fn stats_takes_a_socket_and_says_how_to_reach_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), CONFIG);
    d.wait_for_log(|l| l.contains("control socket ready"));
    let bare = dir.path().join("bare.toml");
    std::fs::write(&bare, "[greylist]\ndelay = \"1m\"\n").unwrap();
    let stats = |args: &[&str]| {
        Command::new(BIN)
            .arg("--config")
            .arg(&bare)
            .arg("stats")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let socket = dir.path().join("control.sock");
    let out = stats(&["--socket", socket.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\nRequests "));
    let out = stats(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "greymilter: no way to reach the daemon: pass --socket PATH or set [control] socket, or set both [daemon] pidfile and [stats] file\n"
    );
}

/// `greymilter reload` with a broken list file reaches the daemon
/// (the CLI does not read list files), which logs the failure as SIGHUP does.
#[test]
fn a_control_reload_that_fails_is_logged_by_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clients"), "192.0.2.0/24\n").unwrap();
    let d = Daemon::start_in(
        dir.path(),
        &format!("{CONFIG}[lists.files]\naccept_clients = [\"clients\"]\n"),
    );
    d.wait_for_log(|l| l.contains("control socket ready"));
    std::fs::write(dir.path().join("clients"), "192.0.2.0/24\nbogus entry!!\n").unwrap();
    let (status, _, err) = cli(&d, &["reload"]);
    assert_eq!(status, 1, "{err}");
    let config = d.config.display();
    let list = dir.path().join("clients");
    let why = format!(
        "reload failed, keeping the running configuration: {config}:10:19: {}:2:7: unknown action",
        list.display()
    );
    assert!(err.contains(&why), "{err}");
    let line = d.wait_for_log(|l| l.contains("reload failed"));
    assert!(line.contains("ERROR") && line.contains(&why), "{line}");
}

/// The log says what is in force (lists, learning mode) at start
/// and at reload, names allowances and times in words, and a syslog socket
/// that is not there is said so, every line keeping its level.
#[test]
fn the_log_says_what_is_in_force_in_words() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clients"), "192.0.2.0/24\n198.51.100.7\n").unwrap();
    let mut d = Daemon::start_in(
        dir.path(),
        "[greylist]\nmode = \"learn\"\n\
         [state]\nfile = \"{dir}/state\"\n\
         [control]\nsocket = \"{dir}/control.sock\"\n\
         [lists]\nsenders = { \"a@example.org\" = \"accept\" }\n\
         [lists.files]\naccept_clients = [\"clients\", \"more.local\"]\n\
         [log]\ntarget = \"syslog\"\nsyslog_socket = \"{dir}/no-syslog-here\"\n",
    );
    let first = d.wait_for_log(|l| l.contains("cannot log to the syslog socket"));
    assert!(first.starts_with("WARN "), "{first}");
    let lists = "INFO lists in force entries=3 inline=1 files=1 file_entries=2";
    let learn = "WARN learning mode ([greylist] mode = \"learn\"): nothing is deferred";
    let text = d.wait_for_log(|l| l.contains("control socket ready"));
    assert!(text.starts_with("INFO "), "{text}");
    let log = d.log_text();
    assert!(log.contains(lists), "{log}");
    assert!(log.contains(learn), "{log}");
    assert!(
        log.contains("optional list file missing: skipped file="),
        "{log}"
    );

    let from = d.log_len();
    d.signal(Signal::SIGHUP);
    d.wait_for_log_after(from, |l| l.contains("configuration reloaded"));
    let after = d.log_text().split_off(from);
    assert!(after.contains(lists) && after.contains(learn), "{after}");

    ok(&d, &["allow", "--network", "203.0.113.0/24", "--for", "1s"]);
    let gone = d.wait_for_log(|l| l.contains("runtime allowance expired"));
    assert!(
        gone.ends_with("runtime allowance expired: network 203.0.113.0/24"),
        "{gone}"
    );

    d.query("192.0.2.9", "x@example.org", &["b@example.net"]);
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit().success());
    d.spawn();
    let restored = d.wait_for_log(|l| l.contains("restored state"));
    let written = restored.split("written_at=").nth(1).unwrap_or_default();
    assert!(
        written.starts_with("20") && written.contains('T'),
        "{restored}"
    );
}

/// A start that fails on the metrics port leaves neither the
/// control socket nor a unix milter socket behind, and says the port once.
#[test]
fn a_failed_start_leaves_no_socket_behind() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap();
    let mut d = Daemon::start_in(
        dir.path(),
        &format!(
            "[milter]\nlisten = \"unix:{{dir}}/milter.sock\"\n\
             [control]\nsocket = \"{{dir}}/control.sock\"\n\
             [metrics]\nlisten = \"{port}\"\n"
        ),
    );
    let status = d.wait_exit();
    assert_eq!(status.code(), Some(2), "{}", d.log_text());
    assert!(
        !dir.path().join("control.sock").exists(),
        "{}",
        d.log_text()
    );
    assert!(!dir.path().join("milter.sock").exists(), "{}", d.log_text());
    assert!(d.log_text().contains(&format!("[metrics] listen {port}: ")));

    // The milter port taken (on every interface: bind fails, nothing is
    // exposed): "cannot listen on" once, not twice; the listener reachable
    // from the network is warned about in the log as check-config does.
    let config = dir.path().join("taken.toml");
    std::fs::write(
        &config,
        format!("[milter]\nlisten = \"inet:{}@0.0.0.0\"\n", port.port()),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.starts_with("greymilter: ")).unwrap();
    assert_eq!(
        line,
        format!(
            "greymilter: cannot listen on inet:0.0.0.0:{}: Address already in use (os error 98)",
            port.port()
        )
    );
    let warning = format!(
        "{}:2:1: the milter listens on 0.0.0.0:{}, reachable from the network",
        config.display(),
        port.port()
    );
    assert!(err.contains(&warning), "{err}");
}

/// `run` refuses what `check-config` refuses, with the same
/// file:line:col, and `check-config` no longer says OK for it.
#[test]
fn run_and_check_config_refuse_a_missing_user_alike() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("greymilter.toml");
    std::fs::write(
        &config,
        "[milter]\nlisten = \"inet:0@127.0.0.1\"\n[daemon]\nuser = \"nosuchuser-greymilter\"\n",
    )
    .unwrap();
    let want = format!(
        "{}:4:1: no such user \"nosuchuser-greymilter\": create it (adduser --system nosuchuser-greymilter) or name another\n",
        config.display()
    );
    for verb in ["check-config", "run"] {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .arg(verb)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{verb}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), want, "{verb}");
        assert!(out.stdout.is_empty(), "{verb}: {out:?}");
    }
}

/// A reader that goes away (`greymilter check-config | head -1`) ends the
/// output quietly: no panic, no message, the verb's own exit status. The
/// pipe's read end is closed before the verb starts, so every write fails.
#[test]
fn verbs_printing_to_a_closed_pipe_exit_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("greymilter.toml");
    std::fs::write(&config, "[greylist]\ndelay = \"1h\"\n").unwrap();
    let config = config.to_str().unwrap();
    for args in [&["check-config", "--config", config][..], &["--help"][..]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
        assert_eq!(stderr, "", "{args:?}");
    }
}
