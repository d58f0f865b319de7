//! A `/dev/log` catcher for Sendmail, which logs only through syslog and CI hosts run no
//! syslog daemon. One catcher serves all Sendmail instances of the test process (each
//! instance logs under its own tag); it lives while at least one [`SyslogLease`] exists.
//! A real syslog socket found at `/dev/log` is moved aside and put back afterwards.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

const DEV_LOG: &str = "/dev/log";
const SAVED: &str = "/dev/log.greymilter-e2e-saved";

struct Catcher {
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
    restore_saved: bool,
}

struct Shared {
    leases: usize,
    catcher: Option<Catcher>,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared {
    leases: 0,
    catcher: None,
});

fn shared() -> MutexGuard<'static, Shared> {
    // A panicking test must not poison the catcher for the others.
    SHARED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Keeps the catcher running; lines are read with [`SyslogLease::lines_tagged`].
pub struct SyslogLease {
    lines: Arc<Mutex<Vec<String>>>,
}

impl SyslogLease {
    pub fn acquire() -> SyslogLease {
        let mut shared = shared();
        if shared.catcher.is_none() {
            shared.catcher = Some(Catcher::start());
        }
        shared.leases += 1;
        let lines = Arc::clone(&shared.catcher.as_ref().expect("just started").lines);
        SyslogLease { lines }
    }

    /// Every caught line that carries `tag[` (syslog's `tag[pid]:` prefix).
    pub fn lines_tagged(&self, tag: &str) -> Vec<String> {
        let needle = format!("{tag}[");
        self.lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .filter(|line| line.contains(&needle))
            .cloned()
            .collect()
    }
}

impl Drop for SyslogLease {
    fn drop(&mut self) {
        let mut shared = shared();
        shared.leases -= 1;
        if shared.leases == 0
            && let Some(catcher) = shared.catcher.take()
        {
            catcher.stop();
        }
    }
}

impl Catcher {
    fn start() -> Catcher {
        let mut restore_saved = false;
        if Path::new(DEV_LOG).exists() || std::fs::symlink_metadata(DEV_LOG).is_ok() {
            let probe = UnixDatagram::unbound().expect("datagram socket");
            if probe.connect(DEV_LOG).is_ok() {
                // A live syslog daemon (or a systemd-journald symlink): keep it for later.
                std::fs::rename(DEV_LOG, SAVED)
                    .unwrap_or_else(|e| panic!("move {DEV_LOG} aside to {SAVED}: {e}"));
                restore_saved = true;
            } else {
                // Left over from a run that was killed: nobody reads it.
                std::fs::remove_file(DEV_LOG)
                    .unwrap_or_else(|e| panic!("remove stale {DEV_LOG}: {e}"));
            }
        }
        let socket = UnixDatagram::bind(DEV_LOG).unwrap_or_else(|e| panic!("bind {DEV_LOG}: {e}"));
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(DEV_LOG, std::fs::Permissions::from_mode(0o666))
                .unwrap_or_else(|e| panic!("chmod {DEV_LOG}: {e}"));
        }
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set a read timeout on the syslog socket");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let lines = Arc::clone(&lines);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || receive(socket, &lines, &stop))
        };
        Catcher {
            lines,
            stop,
            thread: Some(thread),
            restore_saved,
        }
    }

    fn stop(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(DEV_LOG);
        if self.restore_saved {
            let _ = std::fs::rename(SAVED, DEV_LOG);
        }
    }
}

fn receive(socket: UnixDatagram, lines: &Mutex<Vec<String>>, stop: &std::sync::atomic::AtomicBool) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        match socket.recv(&mut buf) {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                let line = text.trim_end_matches(['\0', '\n']).to_string();
                lines
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(line);
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
}
