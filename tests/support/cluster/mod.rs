//! Test support: a private redis-server on a free loopback port, in a
//! temporary directory, that tests can stop, restart, freeze and thaw.
//!
//! When redis-server is missing the tests are skipped with a message, and
//! fail when `CI` is set (`.ci/install-redis.sh` installs it).
#![allow(dead_code)]

pub mod shard;
pub mod tls;

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Bound for redis-server to start listening; tests return as soon as it does.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// `[cluster] timeout` of the daemons in the fault and failover tests.
pub const FAULT_TIMEOUT: Duration = Duration::from_millis(50);
/// The decision is bounded by FAULT_TIMEOUT plus the suite's slack; the
/// exact worst case (7-13 ms with Redis killed) is measured by
/// benches/cluster-bench.sh, not here.
#[path = "../slack.rs"]
mod slack;
// Not every test binary that includes this module times anything.
#[allow(unused_imports)]
pub use slack::SCHEDULING_SLACK;

pub fn redis_present() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("redis-server is not installed; CI must install it (.ci/install-redis.sh)");
        }
        eprintln!("redis-server not found: skipping (install the Debian package redis-server)");
    }
    found
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    l.local_addr().unwrap().port()
}

pub struct Redis {
    pub dir: tempfile::TempDir,
    pub port: u16,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Redis {
    /// Every key with its value (strings as text, other kinds by their
    /// type and serialized form) and its absolute expiry.
    pub fn snapshot(&self) -> std::collections::BTreeMap<String, (String, i64)> {
        let mut c = self.conn();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        keys.into_iter()
            .map(|k| {
                let kind: String = redis::cmd("TYPE").arg(&k).query(&mut c).unwrap();
                let value = if kind == "string" {
                    redis::cmd("GET").arg(&k).query(&mut c).unwrap()
                } else {
                    let dump: Vec<u8> = redis::cmd("DUMP").arg(&k).query(&mut c).unwrap();
                    format!("{kind} {dump:?}")
                };
                let exp: i64 = redis::cmd("EXPIRETIME").arg(&k).query(&mut c).unwrap();
                (k, (value, exp))
            })
            .collect()
    }

    /// Starts a redis-server with no persistence (extra `--name value`
    /// arguments appended).
    pub fn start(extra: &[&str]) -> Redis {
        let mut r = Redis {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        r.spawn();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn unix_path(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("redis.log")).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--unixsocket")
            .arg(self.unix_path())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(&self.extra)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self.try_ping() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("redis-server exited at start ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "redis-server not ready: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn try_ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
            return false;
        };
        match redis::cmd("PING").query::<String>(&mut c) {
            Ok(_) => true,
            // Up, and wants a password.
            Err(e) => e.to_string().contains("NOAUTH"),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// A synchronous connection for the test's own commands.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap()
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port (after [`Redis::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn freeze(&self) {
        kill(self.pid(), Signal::SIGSTOP).unwrap();
    }

    pub fn thaw(&self) {
        kill(self.pid(), Signal::SIGCONT).unwrap();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
        }
        self.kill();
    }
}

/// A redis-sentinel watching the primary `master` as `gm` (quorum 2).
pub struct Sentinel {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Sentinel {
    pub fn start(master_port: u16) -> Sentinel {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor gm 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds gm 500\n\
                 sentinel failover-timeout gm 5000\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("sentinel.log")).unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let s = Sentinel { dir, port, child };
        let deadline = Instant::now() + PATIENCE;
        while s.query(&["PING"]).is_none() {
            assert!(Instant::now() < deadline, "sentinel not ready");
            std::thread::sleep(Duration::from_millis(10));
        }
        s
    }

    /// A command to the sentinel; `None` if it cannot be reached.
    pub fn query(&self, args: &[&str]) -> Option<redis::Value> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).ok()?;
        let mut c = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()?;
        let mut cmd = redis::cmd(args.first()?);
        for a in args.get(1..).unwrap_or_default() {
            cmd.arg(*a);
        }
        cmd.query(&mut c).ok()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `f` on a current-thread runtime inside a LocalSet, like the daemon.
pub fn run<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f)
}

pub fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

/// Script arguments: delay 300 s, window 1 h, lifetime 1 d, no hint.
pub fn plain_args(now: u32, auto_whitelist_after: u32) -> greymilter::cluster::Args {
    greymilter::cluster::Args {
        now,
        delay: 300,
        retry_window: 3600,
        lifetime: 86_400,
        auto_whitelist_after,
        forced: false,
        hint: 0,
        hint_white: false,
    }
}

/// Options for `url` with a fixed test secret.
pub fn options(url: String, timeout: Duration) -> greymilter::cluster::Options {
    greymilter::cluster::Options {
        url,
        secret: greymilter::cluster::SharedSecret::from_bytes(b"0123456789abcdef").unwrap(),
        timeout,
        tls: None,
    }
}
