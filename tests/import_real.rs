//! `greymilter import` from the real tools' state: a private postgrey
//! (Debian's) and milter-greylist 4.6.2 (built from the anchor tarball by
//! .ci/build-anchor.sh) record tuples on loopback; after the import, a
//! retry of each passes on its first attempt at greymilter, whose own
//! delay (1 h) could not have let it through.
//!
//! Needs postgrey and db_dump (.ci/install-policy.sh) and milter-greylist's
//! build dependencies (.ci/install-anchor.sh); with `CI` set a missing one
//! fails the test, otherwise it is skipped.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{BIN, Daemon, PATIENCE, query};

fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} missing: .ci/install-policy.sh installs it"
        );
        eprintln!("skipped: {tool} is not installed");
    }
    found
}

/// A process of ours, killed when the test ends however it ends.
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn import(config: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("import")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// One policy request to postgrey; its action line.
fn ask(conn: &mut TcpStream, client: &str, sender: &str, recipient: &str) -> String {
    write!(
        conn,
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address={client}\nclient_name=unknown\nhelo_name=mx.example\nsender={sender}\nrecipient={recipient}\ninstance={client}.{sender}.{recipient}.{:?}\n\n",
        Instant::now()
    )
    .unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\n\n") {
        assert_eq!(conn.read(&mut byte).unwrap(), 1, "postgrey closed");
        answer.push(byte[0]);
    }
    String::from_utf8(answer).unwrap().trim().to_string()
}

/// Tuples as (client, sender, recipient), as policy requests carry them
/// (`greymilter query` adds the angle brackets).
const PASSED: [(&str, &str, &str); 4] = [
    ("192.0.2.7", "alice@example.org", "bob@example.net"),
    ("198.51.100.9", "", "carol@example.net"),
    ("2001:db8::5", "Dave+news@Example.ORG", "erin@example.net"),
    (
        "203.0.113.4",
        "bounce-1234-56@lists.example",
        "bob@example.net",
    ),
];
const PENDING: (&str, &str, &str) = ("192.0.2.50", "frank@example.org", "gina@example.net");

const GREYMILTER: &str = "[greylist]\ndelay = \"1h\"\nauto_whitelist_after = 2\n[state]\nfile = \"{dir}/state\"\n[daemon]\npidfile = \"{dir}/greymilter.pid\"\n";

fn passes(d: &Daemon, (client, from, to): (&str, &str, &str)) -> bool {
    let q = query(
        &format!("inet:{}@127.0.0.1", d.port),
        client,
        from,
        &[to],
        &[],
    );
    assert!(q.status == 0 || q.status == 4, "{q:?}");
    q.status == 0
}

#[test]
fn postgrey_whitelist_carries_over() {
    if !have("postgrey") || !have("db_dump") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // postgrey drops to its own user: it must reach and own its dbdir.
    std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let db = root.join("postgrey-db");
    std::fs::create_dir(&db).unwrap();
    assert!(
        Command::new("chown")
            .args(["postgrey:postgrey"])
            .arg(&db)
            .status()
            .unwrap()
            .success()
    );
    let mut postgrey = Owned(
        Command::new("postgrey")
            .arg("--inet=127.0.0.1:0")
            .arg("--delay=1")
            .arg(format!("--dbdir={}", db.display()))
            .arg("--auto-whitelist-clients=1")
            .arg(format!("--pidfile={}", root.join("postgrey.pid").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // "Bound to auto-assigned port N" on stderr.
    let mut lines = BufReader::new(postgrey.0.stderr.take().unwrap()).lines();
    let port: u16 = loop {
        let line = lines.next().expect("postgrey exited").unwrap();
        if let Some(p) = line.split("auto-assigned port ").nth(1) {
            break p.trim().parse().unwrap();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(PATIENCE)).unwrap();
    let started = Instant::now();
    for (c, s, r) in PASSED.iter().chain([&PENDING]) {
        let a = ask(&mut conn, c, s, r);
        assert!(a.starts_with("action=DEFER_IF_PERMIT"), "{c} {s} {r}: {a}");
    }
    // postgrey's --delay=1 counts whole seconds: two seconds later the
    // retries are past it (postgrey's answer below says so).
    std::thread::sleep(Duration::from_secs(2).saturating_sub(started.elapsed()));
    for (c, s, r) in PASSED {
        let a = ask(&mut conn, c, s, r);
        assert!(
            a.starts_with("action=PREPEND X-Greylist") || a == "action=DUNNO",
            "{c} {s} {r}: {a}"
        );
    }
    drop(conn);
    drop(postgrey);
    let dump = |db_name: &str, file: &str, printable: bool| {
        let mut cmd = Command::new("db_dump");
        cmd.arg("-h").arg(&db);
        if printable {
            cmd.arg("-p");
        }
        let out = cmd.arg(db_name).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(root.join(file), &out.stdout).unwrap();
        root.join(file).display().to_string()
    };
    // Both of db_dump's forms: hex (the default) and printable.
    let tuples = dump("postgrey.db", "tuples.dump", false);
    let clients = dump("postgrey_clients.db", "clients.dump", true);

    let config = root.join("greymilter.toml");
    std::fs::write(
        &config,
        format!(
            "[milter]\nlisten = \"inet:0@127.0.0.1\"\n{}",
            GREYMILTER.replace("{dir}", &root.display().to_string())
        ),
    )
    .unwrap();
    let (code, out) = import(&config, &["--dry-run", "postgrey", "--delay=1", &tuples]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("whitelisted client=192.0.2.0/24 from=alice@example.org to=bob@example.net"),
        "{out}"
    );
    assert!(
        out.contains("4 whitelisted tuples, 1 pending tuples"),
        "{out}"
    );
    assert!(!root.join("state").exists(), "a dry run wrote the state");
    let (code, out) = import(&config, &["postgrey", "--delay=1", &tuples]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("4 whitelisted and 1 pending tuples and 0 networks added"),
        "{out}"
    );

    let mut d = Daemon::start_in(root, &std::fs::read_to_string(&config).unwrap());
    for t in PASSED {
        assert!(
            passes(&d, t),
            "{t:?} was greylisted after the import: {out}\n{}",
            d.log_text()
        );
    }
    // Recorded but never passed at postgrey: still waiting at greymilter.
    assert!(!passes(&d, PENDING));
    // A tuple postgrey never saw is greylisted: the passes above are the import's.
    assert!(!passes(
        &d,
        ("192.0.2.7", "new@example.org", "bob@example.net")
    ));
    // Its next checkpoint would overwrite an import into its state file.
    let (code, out) = import(&config, &["postgrey", &tuples]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("greymilter is running"), "{out}");
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(d.wait_exit().success());

    // The clients database: with auto_whitelist_after = 1, postgrey's
    // client record whitelists a new tuple of 192.0.2.7's network.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("auto_whitelist_after = 2", "auto_whitelist_after = 1");
    std::fs::write(&config, &text).unwrap();
    let (code, out) = import(
        &config,
        &["postgrey", "--delay=1", "--clients", &clients, &tuples],
    );
    assert_eq!(code, 0, "{out}");
    // greymilter counted the passes above itself: the records are merged.
    assert!(out.contains("4 auto-whitelist networks"), "{out}");
    let d = Daemon::start_in(root, &text);
    assert!(passes(
        &d,
        ("192.0.2.99", "another@example.org", "bob@example.net")
    ));
    assert!(!passes(
        &d,
        ("192.0.3.1", "another@example.org", "bob@example.net")
    ));
}

#[test]
fn milter_greylist_dump_carries_over() {
    let built = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/build-anchor.sh"))
        .output()
        .unwrap();
    if !built.status.success() {
        assert!(
            std::env::var_os("CI").is_none(),
            "milter-greylist did not build: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        eprintln!("skipped: milter-greylist did not build");
        return;
    }
    let mg_bin = String::from_utf8(built.stdout).unwrap().trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dumpfile = root.join("greylist.db");
    std::fs::write(
        root.join("mg.conf"),
        format!(
            "pidfile \"{root}/mg.pid\"\nsocket \"inet:{port}@127.0.0.1\"\ndumpfile \"{dump}\"\ndumpfreq 1d\ngreylist 1s\nautowhite 1d\nlogfac none\nracl greylist default\n",
            root = root.display(),
            dump = dumpfile.display()
        ),
    )
    .unwrap();
    let mut mg = Owned(
        Command::new(&mg_bin)
            .arg("-D")
            .arg("-f")
            .arg(root.join("mg.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "milter-greylist does not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let socket = format!("inet:{port}@127.0.0.1");
    let ask = |(c, s, r): (&str, &str, &str)| query(&socket, c, s, &[r], &[]).status;
    let started = Instant::now();
    for t in PASSED.iter().chain([&PENDING]) {
        assert_eq!(ask(*t), 4, "{t:?}: milter-greylist did not greylist it");
    }
    std::thread::sleep(Duration::from_secs(2).saturating_sub(started.elapsed()));
    for t in PASSED {
        assert_eq!(ask(t), 0, "{t:?}: milter-greylist did not pass the retry");
    }
    // It writes its dump when it stops.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(mg.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = mg.0.wait();
    let text = std::fs::read_to_string(&dumpfile).unwrap();
    assert!(text.contains("dumped by milter-greylist-4.6.2"), "{text}");

    let config = GREYMILTER.replace("{dir}", &root.display().to_string());
    let config_path = root.join("greymilter.toml");
    std::fs::write(
        &config_path,
        format!("[milter]\nlisten = \"inet:0@127.0.0.1\"\n{config}"),
    )
    .unwrap();
    let (code, out) = import(
        &config_path,
        &["milter-greylist", &dumpfile.display().to_string()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("5 records read: 4 whitelisted tuples, 1 pending tuples"),
        "{out}"
    );
    let d = Daemon::start_in(root, &std::fs::read_to_string(&config_path).unwrap());
    // The whitelisted ones, and the pending one too: milter-greylist would
    // accept its retry now (its 1 s delay is over), so greymilter does.
    for t in PASSED.iter().chain([&PENDING]) {
        assert!(passes(&d, *t), "{t:?} was greylisted after the import");
    }
    assert!(!passes(
        &d,
        ("192.0.2.7", "new@example.org", "bob@example.net")
    ));
}
