//! Test support: the real greymilter binary in a temp directory.
#![allow(dead_code)]

pub mod healthy;
pub mod hostile;
pub mod rng;
pub mod state;
pub mod watch;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub const BIN: &str = env!("CARGO_BIN_EXE_greymilter");

/// True if this process is root; without root a test that needs it is
/// skipped with a line saying so, except under `CI`, where it fails.
pub fn require_root(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{what} needs root, and CI must run the tests as root");
    }
    eprintln!("skipped: {what} needs root");
    false
}

/// Generous bound for anything the daemon does on its own; tests poll and
/// return as soon as the condition holds.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A running greymilter with its own directory, config and log.
pub struct Daemon {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
    /// The TCP port it listens on (from its "listening" log line).
    pub port: u16,
    /// Extra environment for the process (e.g. NOTIFY_SOCKET).
    pub env: Vec<(String, String)>,
}

impl Daemon {
    /// Writes `config` (TOML) to `dir/greymilter.toml` and starts the daemon.
    /// `{dir}` in the text is replaced by the directory. Unless the config
    /// sets `[milter] listen`, the daemon listens on a free loopback port.
    pub fn start_in(dir: &Path, config: &str) -> Daemon {
        Daemon::start_with_env(dir, config, &[])
    }

    /// As [`Daemon::start_in`], with extra environment variables.
    pub fn start_with_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> Daemon {
        let config_path = dir.join("greymilter.toml");
        let mut text = config.replace("{dir}", &dir.display().to_string());
        if !text.contains("listen") {
            text = format!("[milter]\nlisten = \"inet:0@127.0.0.1\"\n{text}");
        }
        fs::write(&config_path, text).unwrap();
        let mut d = Daemon {
            dir: dir.to_path_buf(),
            config: config_path,
            log: dir.join("greymilter.log"),
            child: None,
            port: 0,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        d.spawn();
        d
    }

    /// (Re)starts the process with the same directory and config.
    pub fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let marker = self.log_len();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let line = self.wait_for_log_after(marker, |l| {
            l.contains("listening") || l.contains("greymilter stopped")
        });
        self.port = parse_port(&line).unwrap_or(0);
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).unwrap();
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The decision log lines for recipient `to` after byte `from` of the
    /// log, up to and including the first that satisfies `want`. Decision lines are info lines,
    /// which the daemon batches (`src/log_output.rs`): the line for an answer
    /// the test just got may be written a moment after the answer, so this
    /// waits for it (up to [`PATIENCE`], then panics with the log).
    pub fn wait_rcpt_lines(
        &self,
        from: usize,
        to: &str,
        want: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let to = format!("to=<{to}>");
        let line = self.wait_for_log_after(from, |l| {
            l.contains(&to) && l.contains("reason=") && want(l)
        });
        // Everything up to and including that line is in the file.
        let text = self.log_text();
        let tail = text.get(from..).unwrap_or_default();
        let end = tail.find(&line).map_or(tail.len(), |at| at + line.len());
        tail[..end]
            .lines()
            .filter(|l| l.contains(&to) && l.contains("reason="))
            .map(str::to_string)
            .collect()
    }

    pub fn log_len(&self) -> usize {
        self.log_text().len()
    }

    /// Waits for a log line (written after byte `from`) that satisfies `want`.
    pub fn wait_for_log_after(&self, from: usize, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = self.log_text();
            if let Some(line) = text.get(from..).unwrap_or("").lines().find(|l| want(l)) {
                return line.to_string();
            }
            if Instant::now() > deadline {
                panic!("log line not seen within {PATIENCE:?}; log:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn wait_for_log(&self, want: impl Fn(&str) -> bool) -> String {
        self.wait_for_log_after(0, want)
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "daemon did not exit within {PATIENCE:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn milter_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Children of the daemon still present (zombies included), from /proc,
    /// but its prefault helper.
    pub fn children(&self) -> Vec<(i32, char)> {
        let me = self.pid().as_raw();
        let mut out = Vec::new();
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
            let Some((head, after)) = stat.rsplit_once(')') else {
                continue;
            };
            // The prefault helper lives as long as the daemon: not a
            // checkpoint child.
            if head.ends_with("(greymilter-pf") {
                continue;
            }
            let after = after.trim().to_string();
            let mut fields = after.split_whitespace();
            let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
            let ppid: i32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            if ppid == me {
                out.push((pid, state));
            }
        }
        out
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The port from the "listening" line, text (`listen=inet:127.0.0.1:PORT`)
/// or JSON (`"listen":"inet:127.0.0.1:PORT"`).
fn parse_port(line: &str) -> Option<u16> {
    let after = line
        .split("listen=")
        .nth(1)
        .or_else(|| line.split("\"listen\":\"").nth(1))?;
    let addr = after
        .split(|c: char| c.is_whitespace() || c == '"')
        .next()?;
    addr.rsplit(':')
        .next()?
        .trim_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()
}

/// What `greymilter query` printed and its exit status.
#[derive(Debug)]
pub struct Query {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Query {
    /// The verdict line printed for a step (`RCPT TO:<x@y>`, `MAIL FROM:<..>`, `EOM`).
    pub fn line(&self, step: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l.starts_with(step))
            .unwrap_or_else(|| panic!("no {step} line in:\n{}{}", self.stdout, self.stderr))
    }
}

/// `greymilter --config CONFIG ARGS`: (status, stdout and stderr together).
pub fn cli_with(config: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(config)
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

/// `greymilter ARGS` with the daemon's configuration: (status, stdout, stderr).
pub fn cli(d: &Daemon, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&d.config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The address of `[metrics] listen`, from the daemon's log.
pub fn metrics_addr(d: &Daemon) -> std::net::SocketAddr {
    let line = d.wait_for_log(|l| l.contains("metrics endpoint ready"));
    line.split("metrics=")
        .nth(1)
        .and_then(|a| a.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line}"))
}

/// [`cli`] that must succeed; its stdout.
pub fn cli_ok(d: &Daemon, args: &[&str]) -> String {
    let (status, out, err) = cli(d, args);
    assert_eq!(status, 0, "{args:?}: {out}{err}");
    out
}

/// Runs `greymilter query` against `socket` as the MTA would, for one
/// client, sender and one or more recipients.
pub fn query(socket: &str, client: &str, from: &str, to: &[&str], extra: &[&str]) -> Query {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "query",
        "--socket",
        socket,
        "--client",
        client,
        "--from",
        from,
        "--timeout",
        "10s",
    ]);
    for t in to {
        cmd.args(["--to", t]);
    }
    cmd.args(extra);
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    Query {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Daemon {
    /// `inet:PORT@127.0.0.1` for `query`.
    pub fn socket(&self) -> String {
        format!("inet:{}@127.0.0.1", self.port)
    }

    /// One `query` against this daemon.
    pub fn query(&self, client: &str, from: &str, to: &[&str]) -> Query {
        query(&self.socket(), client, from, to, &[])
    }

    /// Polls `query` until `done` holds for its output (bounded).
    pub fn query_until(
        &self,
        client: &str,
        from: &str,
        to: &[&str],
        done: impl Fn(&Query) -> bool,
    ) -> Query {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let q = query(&self.socket(), client, from, to, &[]);
            if done(&q) {
                return q;
            }
            if Instant::now() > deadline {
                panic!(
                    "condition not reached; last query:\n{}{}\nlog:\n{}",
                    q.stdout,
                    q.stderr,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
