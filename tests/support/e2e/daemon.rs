//! The greymilter binary under test: a temp config (short delay, state file in the scratch
//! directory), run through the shared binary helper (`tests/support`), which starts it on
//! `inet:0@127.0.0.1` and reads the port it really got from its `listening` log line.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::smtp::Reply;
use super::support::Daemon;
use super::{WorkDir, tail};

/// The reply text for a new tuple, up to the number of seconds.
pub const GREYLIST_PREFIX: &str = "451 4.7.1 Greylisted, please try again in ";
pub const REJECT_REPLY: &str = "550 5.7.1 Message refused";

/// The settings a test controls; everything else is fixed as in the config.
#[derive(Clone, Debug)]
pub struct GreymilterConfig {
    pub delay: String,
    pub retry_window: String,
    pub auto_whitelist_after: u32,
    pub header: bool,
    /// `(key, action)` entries of `[lists]`; actions are "accept", "reject", "greylist".
    pub clients: Vec<(String, String)>,
    pub senders: Vec<(String, String)>,
    pub recipients: Vec<(String, String)>,
    pub checkpoint_interval: String,
    /// More `[greylist]` keys, as TOML lines (e.g. `spf = "key"`).
    pub greylist_extra: String,
    /// More tables, as TOML text appended to the file (e.g. `[dns]`).
    pub extra: String,
}

impl GreymilterConfig {
    /// The test configuration.
    pub fn new() -> GreymilterConfig {
        GreymilterConfig {
            delay: "2s".to_string(),
            retry_window: "1h".to_string(),
            auto_whitelist_after: 0,
            header: true,
            clients: vec![("192.0.2.0/24".into(), "accept".into())],
            senders: vec![("spammer@bad.test".into(), "reject".into())],
            recipients: vec![("postmaster@example.test".into(), "accept".into())],
            checkpoint_interval: "1s".to_string(),
            greylist_extra: String::new(),
            extra: String::new(),
        }
    }

    pub fn delay(mut self, delay: &str) -> GreymilterConfig {
        self.delay = delay.to_string();
        self
    }

    pub fn client(mut self, key: &str, action: &str) -> GreymilterConfig {
        self.clients.push((key.to_string(), action.to_string()));
        self
    }

    /// Adds `[greylist]` keys (TOML lines).
    pub fn greylist(mut self, lines: &str) -> GreymilterConfig {
        self.greylist_extra.push_str(lines);
        self
    }

    /// Appends TOML tables other than those this config writes.
    pub fn extra(mut self, toml: &str) -> GreymilterConfig {
        self.extra.push_str(toml);
        self
    }

    pub fn checkpoint_interval(mut self, interval: &str) -> GreymilterConfig {
        self.checkpoint_interval = interval.to_string();
        self
    }

    /// The TOML text; `port` 0 lets the kernel choose a free port.
    fn to_toml(&self, port: u16, state_file: &std::path::Path) -> String {
        fn table(entries: &[(String, String)]) -> String {
            let items: Vec<String> = entries
                .iter()
                .map(|(key, action)| format!("{key:?} = {action:?}"))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
        let mut toml = String::new();
        let _ = write!(
            toml,
            "[milter]\nlisten = \"inet:{port}@127.0.0.1\"\n\n\
             [greylist]\ndelay = {delay:?}\nretry_window = {window:?}\n\
             auto_whitelist_after = {awl}\nheader = {header}\n{greylist_extra}\n\
             [lists]\nclients = {clients}\nsenders = {senders}\nrecipients = {recipients}\n\n\
             [state]\nfile = {state:?}\ncheckpoint_interval = {interval:?}\n\n\
             [log]\nlevel = \"debug\"\n\n{extra}",
            delay = self.delay,
            window = self.retry_window,
            awl = self.auto_whitelist_after,
            header = self.header,
            clients = table(&self.clients),
            senders = table(&self.senders),
            recipients = table(&self.recipients),
            state = state_file.display().to_string(),
            interval = self.checkpoint_interval,
            greylist_extra = self.greylist_extra,
            extra = self.extra,
        );
        toml
    }
}

pub struct Greymilter {
    // Field order matters: the daemon stops before the directory may go.
    daemon: Daemon,
    config: GreymilterConfig,
    /// The port written into the config file: 0 until a restart pins the first one, so the
    /// MTA, configured once, finds the restarted daemon where it was.
    listen_port: u16,
    work: WorkDir,
}

impl Greymilter {
    pub fn start(config: GreymilterConfig) -> Greymilter {
        let work = WorkDir::new("greymilter");
        let toml = config.to_toml(0, &work.join("state"));
        let daemon = Daemon::start_in(work.path(), &toml);
        assert_ne!(
            daemon.port,
            0,
            "greymilter did not start; log:\n{}",
            daemon.log_text()
        );
        Greymilter {
            daemon,
            config,
            listen_port: 0,
            work,
        }
    }

    /// Starts the binary again with the same config, state file and port (after a stop or a
    /// kill).
    pub fn restart(&mut self) {
        assert!(
            !self.is_running(),
            "restart while greymilter is still running"
        );
        let port = self.daemon.port;
        self.listen_port = port;
        self.write_config(&self.config.clone());
        self.daemon.spawn();
        assert_eq!(
            self.daemon.port,
            port,
            "greymilter came back on another port; log:\n{}",
            tail(&self.log_path(), 40)
        );
    }

    pub fn port(&self) -> u16 {
        self.daemon.port
    }

    /// Postfix's spelling of the milter endpoint.
    pub fn postfix_spec(&self) -> String {
        format!("inet:127.0.0.1:{}", self.daemon.port)
    }

    pub fn config_path(&self) -> PathBuf {
        self.daemon.config.clone()
    }

    pub fn state_path(&self) -> PathBuf {
        self.work.join("state")
    }

    pub fn log_path(&self) -> PathBuf {
        self.daemon.log.clone()
    }

    /// The MTA negotiated the conversation without CONNECT and MAIL
    /// (the session's debug line at OPTNEG; lines below warnings are
    /// batched, so it is waited for, and panics with the log if it never
    /// comes).
    pub fn assert_envelope_from_rcpt_macros(&self) {
        self.wait_for_log_after(0, |line| {
            line.contains("CONNECT and MAIL skipped, envelope from RCPT macros")
        });
    }

    pub fn log(&self) -> String {
        self.daemon.log_text()
    }

    /// Replaces the config file (the daemon reads it at start and on SIGHUP).
    pub fn write_config(&mut self, config: &GreymilterConfig) {
        self.config = config.clone();
        let toml = config.to_toml(self.listen_port, &self.state_path());
        std::fs::write(self.config_path(), toml).expect("write greymilter.toml");
    }

    /// Writes arbitrary (e.g. broken) text as the config file.
    pub fn write_raw_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).expect("write greymilter.toml");
    }

    pub fn config(&self) -> &GreymilterConfig {
        &self.config
    }

    pub fn signal(&self, sig: Signal) {
        self.daemon.signal(sig);
    }

    /// Whether the daemon process is still alive.
    pub fn is_running(&mut self) -> bool {
        self.daemon
            .child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// SIGTERM and wait for the exit; panics if it does not exit in time.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.daemon.wait_exit()
    }

    /// kill -9, as a crash would.
    pub fn kill9(&mut self) {
        self.daemon.kill9();
    }

    /// Waits for a log line written after byte `from` of the log that satisfies `matches`;
    /// panics with the log on timeout.
    pub fn wait_for_log_after(&self, from: usize, matches: impl Fn(&str) -> bool) -> String {
        self.daemon.wait_for_log_after(from, matches)
    }
}

impl Drop for Greymilter {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "e2e: greymilter log tail ({}):\n{}",
                self.log_path().display(),
                tail(&self.log_path(), 60)
            );
        }
    }
}

/// Asserts `reply` is greymilter's greylisting reply and returns the announced wait.
pub fn assert_greylisted(reply: &Reply) -> Duration {
    let line = reply.last_line();
    let seconds = line
        .strip_prefix(GREYLIST_PREFIX)
        .and_then(|rest| rest.strip_suffix(" seconds"))
        .and_then(|n| n.parse::<u64>().ok());
    match seconds {
        Some(n) => Duration::from_secs(n),
        None => panic!("expected `{GREYLIST_PREFIX}N seconds`, got {line:?}"),
    }
}

/// Sleeps until the wait a greylisting reply announced has passed, plus a second for the
/// daemon's whole-second rounding. This waits for the configured delay itself, the property
/// under test, not for a race to settle.
pub fn wait_out(announced: Duration, since: std::time::Instant) {
    let until = since + announced + Duration::from_millis(1100);
    let now = std::time::Instant::now();
    if until > now {
        std::thread::sleep(until - now);
    }
}

/// Sends `envelope` (one recipient) twice: first it must be greylisted, then, once the wait
/// greymilter announced has passed, accepted. Returns the accepted attempt.
pub fn greylist_then_pass(envelope: &super::smtp::Envelope) -> super::smtp::Outcome {
    let first = envelope.send();
    let announced = assert_greylisted(first.rcpt());
    assert!(!first.delivered(), "{first:#?}");
    wait_out(announced, std::time::Instant::now());
    let retry = envelope.send();
    assert_eq!(retry.rcpt().code, 250, "retry after the delay: {retry:#?}");
    assert!(retry.delivered(), "retry after the delay: {retry:#?}");
    retry
}

/// Checks an `X-Greylist: delayed N seconds by greymilter-…` value: N is at least the
/// configured `delay` and at most what the test really `waited` (plus rounding).
pub fn assert_greylist_header(value: &str, delay: Duration, waited: Duration) {
    let delayed: u64 = value
        .strip_prefix("delayed ")
        .and_then(|rest| rest.split_once(" seconds by greymilter-"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| {
            panic!("X-Greylist should read `delayed N seconds by greymilter-…`, got {value:?}")
        });
    assert!(
        delayed >= delay.as_secs() && delayed <= waited.as_secs() + 1,
        "X-Greylist says {delayed} s; the delay is {delay:?} and the retry came after {waited:?}"
    );
}
