//! SIGHUP re-reads every list file: a broken one (bad line, bad regex,
//! FIFO) leaves the running lists whole and names file:line:col, while a
//! healthy MTA beside is served throughout; a fixed one takes effect.

mod support;

use std::fs;

use nix::sys::signal::Signal;
use support::Daemon;
use support::healthy::{Healthy, Plan};

fn reload(d: &Daemon, want: &str) -> String {
    let mark = d.log_len();
    d.signal(Signal::SIGHUP);
    d.wait_for_log_after(mark, |l| {
        l.contains("reload failed") || l.contains("configuration reloaded")
    });
    let line = d
        .log_text()
        .get(mark..)
        .unwrap_or_default()
        .lines()
        .find(|l| l.contains("reload failed") || l.contains("configuration reloaded"))
        .unwrap_or_default()
        .to_string();
    assert!(line.contains(want), "wanted {want:?}, got: {line}");
    line
}

#[test]
fn sighup_with_a_broken_list_file_keeps_the_old_lists() {
    let dir = tempfile::tempdir().unwrap();
    let clients = dir.path().join("clients");
    fs::write(
        &clients,
        "# large senders\n203.0.113.0/24\n/^mx[0-9]+\\.pool\\.example$/\n",
    )
    .unwrap();
    fs::write(dir.path().join("recipients"), "postmaster@\n").unwrap();
    let d = Daemon::start_in(
        dir.path(),
        "[greylist]\ndelay = \"2s\"\n\
         [lists.files]\naccept_clients = [\"clients\", \"clients.local\"]\n\
         accept_recipients = [\"recipients\"]\n",
    );
    assert_ne!(d.port, 0, "{}", d.log_text());
    let healthy = Healthy::start(d.milter_addr(), Plan::beside());

    let q = d.query("203.0.113.5", "a@x.test", &["b@y.test"]);
    assert_eq!(q.status, 0, "{q:?}");
    assert!(q.line("CONNECT").contains("accept"), "{q:?}");
    let q = d.query("198.51.100.7", "a@x.test", &["postmaster@y.test"]);
    assert_eq!(q.status, 0, "{q:?}");
    let by_name = ["--client-name", "mx12.pool.example"];
    let q = support::query(
        &d.socket(),
        "192.0.2.9",
        "a@x.test",
        &["b@y.test"],
        &by_name,
    );
    assert_eq!(q.status, 0, "{q:?}");
    // The regular expressions ran in the daemon: still one thread.
    let status = fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    assert!(status.contains("\nThreads:\t1\n"), "{status}");

    // A bad regular expression on line 3: nothing of the new file applies.
    fs::write(&clients, "203.0.113.0/24\n198.51.100.0/24\n/a(b/\n").unwrap();
    let line = reload(&d, "reload failed, keeping the running configuration");
    assert!(
        line.contains(&format!(
            "{}:3:3: invalid regular expression",
            clients.display()
        )),
        "{line}"
    );
    let q = d.query("198.51.100.7", "a@x.test", &["b@y.test"]);
    assert_eq!(q.status, 4, "the broken file's new entry applied: {q:?}");
    let q = d.query("203.0.113.5", "a@x.test", &["b@y.test"]);
    assert_eq!(q.status, 0, "the old entry was dropped: {q:?}");

    // A FIFO in place of the file: refused at once, never waited on.
    fs::remove_file(&clients).unwrap();
    nix::unistd::mkfifo(&clients, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    reload(&d, "not a regular file (a FIFO)");
    let q = d.query("203.0.113.5", "a@x.test", &["b@y.test"]);
    assert_eq!(q.status, 0, "{q:?}");

    // Fixed: the new lists replace the old ones whole.
    fs::remove_file(&clients).unwrap();
    fs::write(&clients, "198.51.100.0/24\n").unwrap();
    reload(&d, "configuration reloaded");
    let q = d.query("198.51.100.7", "a@x.test", &["b@y.test"]);
    assert_eq!(q.status, 0, "{q:?}");
    let q = d.query("203.0.113.5", "a@x.test", &["b@y.test"]);
    assert_eq!(q.status, 4, "{q:?}");
    let q = d.query("192.0.2.1", "a@x.test", &["postmaster@y.test"]);
    assert_eq!(q.status, 0, "{q:?}");

    healthy.finish().assert_all_served(&d.log_text());
}
