//! The daemon run in-process: `Daemon::start` + `Daemon::serve` on a
//! listener bound to port 0, fed events through a channel instead of
//! signals, with the engine on a manual clock (no test waits for a greylist
//! delay). Reload, the statistics report and checkpoints are checked here;
//! signals, privileges and the binary's start-up have their own tests
//! against the real binary.
//!
//! `harness = false`: the scenarios run one after the other on the main
//! thread, so the process has exactly one thread and the checkpoint may
//! really fork, as in the daemon.

#[path = "support/log/mod.rs"]
mod log_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use greymilter::config::Config;
use greymilter::daemon::thread_count;
use greymilter::daemon::{Daemon, Event, Setup};
use greymilter::greylist::Engine;
use greymilter::greylist::clock::ManualClock;
use greymilter::greylist::settings::Settings;
use greymilter::milter::client::{ClientBuilder, ConnectAddr, Response};
use greymilter::milter::listener::{ListenSpec, Listener, UnixSocketOptions};
use log_support::Captured;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

const T0: u64 = 1_700_000_000;
/// How long a condition may take to come true before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// A daemon running in this thread's `LocalSet`.
struct Running {
    events: UnboundedSender<Event>,
    spec: ListenSpec,
    clock: ManualClock,
    dir: PathBuf,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(dir: &Path, config_text: &str) -> Running {
        let path = dir.join("greylist.toml");
        fs::write(&path, config_text).unwrap();
        let config = Config::load(&path).unwrap();
        let listener = Listener::bind(
            &ListenSpec::Tcp("127.0.0.1:0".parse().unwrap()),
            &UnixSocketOptions::default(),
        )
        .unwrap();
        let port = listener.tcp_port().unwrap();
        let clock = ManualClock::new(T0);
        let setup = Setup {
            config_path: Some(path),
            logging: None,
            identity: None,
            clock: Box::new(clock.clone()),
        };
        let daemon = Daemon::start(config, setup).unwrap();
        let (events, rx) = unbounded_channel();
        let done = tokio::task::spawn_local(daemon.serve(listener, rx));
        Running {
            events,
            spec: ListenSpec::Tcp(format!("127.0.0.1:{port}").parse().unwrap()),
            clock,
            dir: dir.to_path_buf(),
            done,
        }
    }

    fn send(&self, event: Event) {
        self.events.send(event).unwrap();
    }

    /// One delivery attempt from 192.0.2.10; the RCPT reply.
    async fn attempt(&self, from: &str, to: &str) -> Response {
        let mut c = ClientBuilder::new().connect(&self.spec).await.unwrap();
        c.negotiate().await.unwrap();
        let addr = ConnectAddr::Ip("192.0.2.10".parse().unwrap(), 40000);
        c.connect("mx.sender.example", &addr).await.unwrap();
        c.mail(&[from]).await.unwrap();
        let reply = c.rcpt(&[to]).await.unwrap();
        c.abort().await.unwrap();
        c.quit().await.unwrap();
        // The daemon closes once the session is over (and counted).
        assert!(c.closed().await.unwrap());
        reply
    }

    /// Asks for the report (the `[stats] file`) and returns it once the
    /// daemon has written it: events are handled in order, so every event
    /// sent before is handled by then.
    async fn report(&self) -> String {
        let file = self.dir.join("stats");
        let _ = fs::remove_file(&file);
        self.send(Event::Stats);
        until(|| fs::read_to_string(&file).ok()).await
    }

    async fn rewrite_config(&self, text: &str) {
        fs::write(self.dir.join("greylist.toml"), text).unwrap();
        self.send(Event::Reload);
    }
}

/// Polls `f` (yielding to the daemon between tries) until it gives a value.
async fn until<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met in {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn value(report: &str, label: &str) -> String {
    report
        .lines()
        .find_map(|l| l.strip_prefix(label)?.strip_prefix("  "))
        .unwrap_or_else(|| panic!("no {label} in\n{report}"))
        .trim()
        .to_string()
}

fn greylisted_for(r: &Response) -> u64 {
    match r {
        Response::ReplyCode {
            code: 451, text, ..
        } => text
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no seconds in {text:?}")),
        other => panic!("expected a tempfail, got {other:?}"),
    }
}

fn config(dir: &Path, greylist: &str, extra: &str) -> String {
    format!(
        "[greylist]\n{greylist}\n[stats]\nfile = \"{}\"\n{extra}",
        dir.join("stats").display()
    )
}

async fn reload_applies_new_settings_and_keeps_restart_only_ones(log: Captured) {
    let dir = tempfile::tempdir().unwrap();
    let d = Running::start(dir.path(), &config(dir.path(), "delay = \"1m\"", ""));
    let first = d.attempt("<a@sender.example>", "<r1@local.example>").await;
    assert_eq!(greylisted_for(&first), 60);
    d.clock.advance(61);
    let retry = d.attempt("<a@sender.example>", "<r1@local.example>").await;
    assert_eq!(retry, Response::Continue);

    // A longer delay applies to new tuples; a changed listen is reported and
    // kept (the daemon goes on serving where it listens).
    let changed = config(
        dir.path(),
        "delay = \"10m\"",
        "[milter]\nlisten = \"inet:10099@127.0.0.1\"\n",
    );
    d.rewrite_config(&changed).await;
    // A reload is a job of the loop, which serves other events meanwhile:
    // the report is asked for once it is swapped in.
    until(|| log.text().contains("configuration reloaded").then_some(())).await;
    let report = d.report().await;
    assert!(
        log.text()
            .contains("reload: milter.listen changed; that takes effect only after a restart"),
        "{}",
        log.text()
    );
    let new = d.attempt("<b@sender.example>", "<r2@local.example>").await;
    assert_eq!(greylisted_for(&new), 600);
    assert_eq!(value(&report, "Requests"), "2");
    assert_eq!(value(&report, "Sessions"), "2");
    assert_eq!(value(&report, "Decision-Timeouts"), "0");
    assert!(value(&report, "Loop-Lag-Max").ends_with(" ms"), "{report}");

    // A broken file leaves the running configuration whole.
    d.rewrite_config("[greylist]\ndelay = \"10m\"\nretry_window = \"1m\"\n")
        .await;
    until(|| log.text().contains("reload failed").then_some(())).await;
    let report = d.report().await;
    assert!(
        log.text()
            .contains("reload failed, keeping the running configuration")
            && log.text().contains("greylist.toml:3:1: retry_window"),
        "{}",
        log.text()
    );
    d.clock.advance(61);
    let early = d.attempt("<b@sender.example>", "<r2@local.example>").await;
    assert_eq!(greylisted_for(&early), 600 - 61);
    assert_eq!(value(&report, "Requests"), "3");

    d.send(Event::Shutdown);
    d.done.await.unwrap();
}

async fn checkpoints_fork_and_restore_and_the_last_one_is_written_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let extra = format!(
        "[state]\nfile = \"{}\"\ncheckpoint_interval = \"1h\"\n",
        state.display()
    );
    let d = Running::start(dir.path(), &config(dir.path(), "delay = \"1m\"", &extra));
    for i in 0..3 {
        d.attempt("<a@sender.example>", &format!("<r{i}@local.example>"))
            .await;
    }
    assert_eq!(thread_count().unwrap(), 1, "in-process, one thread");
    d.send(Event::Checkpoint);
    // The child renames the file into place, then exits; SIGCHLD becomes
    // ChildExited, which the test sends itself until the child is reaped.
    let meta = until(|| fs::metadata(&state).ok()).await;
    assert_ne!(meta.len(), 0);
    let mut written = String::new();
    for _ in 0..200 {
        d.send(Event::ChildExited);
        written = d.report().await;
        if value(&written, "Checkpoints") == "1" {
            break;
        }
    }
    assert_eq!(value(&written, "Checkpoints"), "1", "{written}");
    assert_eq!(value(&written, "Checkpoint-Failed"), "0");
    let restored = restore(&state);
    assert_eq!(restored.pending, 3);

    // One more tuple, then shutdown: the final checkpoint has it.
    d.attempt("<a@sender.example>", "<r9@local.example>").await;
    d.send(Event::Shutdown);
    d.done.await.unwrap();
    assert_eq!(restore(&state).pending, 4);
    assert_eq!(thread_count().unwrap(), 1);
}

/// The expiry sweep runs in the serving daemon (one slice per turn of its
/// loop): a tuple not retried within the window is gone from the table,
/// and the report that says so is served in between.
async fn an_unretried_tuple_is_swept_by_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let d = Running::start(
        dir.path(),
        &config(dir.path(), "delay = \"1m\"\nretry_window = \"10m\"", ""),
    );
    let first = d.attempt("<a@sender.example>", "<r@local.example>").await;
    assert_eq!(greylisted_for(&first), 60);
    assert_eq!(value(&d.report().await, "Tuples"), "1");
    d.clock.advance(11 * 60);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let report = d.report().await;
        if value(&report, "Graylist-Expired") == "1" {
            assert_eq!(value(&report, "Tuples"), "0");
            break;
        }
        assert!(Instant::now() < deadline, "not swept: {report}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.send(Event::Shutdown);
    d.done.await.unwrap();
}

fn restore(state: &Path) -> greymilter::greylist::RestoreSummary {
    let mut engine = Engine::new(Settings::default(), Box::new(ManualClock::new(T0 + 10)));
    engine.restore_state(&fs::read(state).unwrap()).unwrap()
}

fn run_scenario<F: std::future::Future<Output = ()>>(f: F) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&runtime, f);
}

type Scenario<'a> = Box<dyn Fn() + 'a>;

fn main() {
    let log = Captured::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let scenarios: [(&str, Scenario); 3] = [
        (
            "reload_applies_new_settings_and_keeps_restart_only_ones",
            Box::new(|| {
                run_scenario(reload_applies_new_settings_and_keeps_restart_only_ones(
                    log.clone(),
                ))
            }),
        ),
        (
            "an_unretried_tuple_is_swept_by_the_running_daemon",
            Box::new(|| run_scenario(an_unretried_tuple_is_swept_by_the_running_daemon())),
        ),
        (
            "checkpoints_fork_and_restore_and_the_last_one_is_written_at_shutdown",
            Box::new(|| {
                run_scenario(checkpoints_fork_and_restore_and_the_last_one_is_written_at_shutdown())
            }),
        ),
    ];
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed) = (0, 0);
    for (name, scenario) in &scenarios {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(scenario)) {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
