//! The control socket: a Unix stream socket, created with a restrictive
//! mode, that accepts only root, the daemon's own user or (if configured)
//! members of one group, checked with SO_PEERCRED. One command per
//! connection, read with a length cap and a deadline, executed in the main
//! loop (through a channel), answered, closed.

use std::io;
use std::path::Path;
use std::time::Duration;

use nix::unistd::{Gid, Uid};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::handle::Reply;
use super::import;
use super::protocol::{Command, MAX_LINE, parse};
use crate::milter::listener::{Kind, ListenSpec, Listener, UnixSocketOptions};
use crate::ratelimit::LogLimiter;
use crate::slots::{Slots, accept_failed};

/// Whole exchange (read, execute, write) of one connection.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed at once.
const MAX_CLIENTS: usize = 4;

static REFUSED_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(60));
static ACCEPT_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(60));

/// A parsed command on its way to the main loop.
pub struct ControlRequest {
    pub command: Command,
    pub uid: u32,
    pub reply: oneshot::Sender<Reply>,
    /// Tuples and records a `forget NETWORK` or `flush` removed, once the
    /// loop has walked the table in slices (`None` when it arrives).
    pub walked: Option<(u64, u64)>,
}

/// Who may talk to the daemon.
#[derive(Debug, Clone, Copy)]
pub struct Access {
    pub uid: Uid,
    pub group: Option<Gid>,
}

impl Access {
    fn allows(&self, uid: u32, gid: u32, pid: Option<i32>) -> bool {
        if uid == 0 || uid == self.uid.as_raw() {
            return true;
        }
        let Some(group) = self.group else {
            return false;
        };
        gid == group.as_raw() || pid.is_some_and(|p| in_group(p, group.as_raw()))
    }
}

/// Supplementary groups of a process, from `/proc/PID/status` (SO_PEERCRED
/// carries only the primary group).
fn in_group(pid: i32, gid: u32) -> bool {
    let path = format!("/proc/{pid}/status");
    let Ok(bytes) = crate::files::read_regular(Path::new(&path), 64 * 1024) else {
        return false;
    };
    String::from_utf8_lossy(&bytes)
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|g| {
            g.split_ascii_whitespace()
                .any(|n| n.parse::<u32>().ok() == Some(gid))
        })
}

/// Binds the socket (stale one replaced, mode and group set before it is
/// reachable: the milter listener's code).
pub fn bind(path: &Path, mode: u32, group: Option<Gid>) -> io::Result<Listener> {
    Listener::bind(
        &ListenSpec::Unix(path.to_path_buf()),
        &UnixSocketOptions { mode, group },
    )
}

/// Serves until the task is dropped.
pub async fn serve(listener: &Listener, access: Access, to_loop: mpsc::Sender<ControlRequest>) {
    let Kind::Unix { listener: std, .. } = listener.kind() else {
        return;
    };
    let accepted = std
        .try_clone()
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(UnixListener::from_std);
    let socket = match accepted {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("control socket unusable: {e}");
            return;
        }
    };
    let slots = Slots::new(MAX_CLIENTS);
    loop {
        let stream = match socket.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                accept_failed("control socket", &e, &ACCEPT_LOG).await;
                continue;
            }
        };
        let Some(slot) = slots.take() else {
            continue;
        };
        let to_loop = to_loop.clone();
        tokio::task::spawn_local(async move {
            let _ = tokio::time::timeout(DEADLINE, connection(stream, access, &to_loop)).await;
            drop(slot);
        });
    }
}

async fn connection(stream: UnixStream, access: Access, to_loop: &mpsc::Sender<ControlRequest>) {
    let cred = match stream.peer_cred() {
        Ok(c) => c,
        Err(_) => return,
    };
    let uid = cred.uid();
    // Read (bounded) before answering even a refused client: closing on
    // unread bytes would reset the connection and lose the answer.
    let mut reader = BufReader::with_capacity(4096, stream);
    let line = read_line(&mut reader, MAX_LINE).await;
    let command = match &line {
        Ok(l) => match import::header(l) {
            Some(Ok(n)) if access.allows(uid, cred.gid(), cred.pid()) => {
                read_batch(&mut reader, n).await
            }
            Some(Err(e)) => Err(e),
            _ => parse(l),
        },
        Err(e) => Err(e.clone()),
    };
    let mut stream = reader.into_inner();
    if !access.allows(uid, cred.gid(), cred.pid()) {
        if let Some(n) = REFUSED_LOG.allow() {
            tracing::warn!(
                uid,
                "control: client refused: not root, our user or our group ({n} more suppressed)"
            );
        }
        let _ = stream
            .write_all(&Reply::error("permission denied").to_wire())
            .await;
        return;
    }
    let reply = match command {
        Err(e) => Reply::error(e),
        Ok(command) => {
            let (tx, rx) = oneshot::channel();
            let sent = to_loop
                .send(ControlRequest {
                    command,
                    uid,
                    reply: tx,
                    walked: None,
                })
                .await;
            match sent {
                Ok(()) => rx
                    .await
                    .unwrap_or_else(|_| Reply::error("the daemon is shutting down")),
                Err(_) => Reply::error("the daemon is shutting down"),
            }
        }
    };
    let _ = stream.write_all(&reply.to_wire()).await;
    let _ = stream.shutdown().await;
}

/// One line: up to the first newline or EOF, at most `max` bytes.
async fn read_line(reader: &mut BufReader<UnixStream>, max: usize) -> Result<Vec<u8>, String> {
    let mut line = Vec::with_capacity(128);
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    (&mut *reader)
        .take(limit)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    if line.len() > max {
        return Err(format!("line longer than {max} bytes"));
    }
    Ok(line)
}

/// The `n` entry lines of an import batch.
async fn read_batch(reader: &mut BufReader<UnixStream>, n: usize) -> Result<Command, String> {
    let mut entries = Vec::with_capacity(n);
    for i in 1..=n {
        let line = read_line(reader, import::MAX_ENTRY_LINE).await?;
        if line.is_empty() {
            return Err(format!(
                "import: the batch ended after {} of {n} entries",
                i - 1
            ));
        }
        entries.push(import::parse_entry(&line).map_err(|e| format!("entry {i}: {e}"))?);
    }
    Ok(Command::Import(entries))
}
