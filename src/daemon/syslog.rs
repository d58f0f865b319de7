//! Log lines to the local syslog socket (`[log] target = "syslog"`), one
//! RFC 3164 datagram per event: `<PRI>greymilter[PID]: message`. The
//! timestamp is left to the local syslog daemon, which stamps what it
//! receives without one (rsyslog and journald both do), so no time zone
//! code is needed here.
//!
//! A small writer rather than a crate: the `syslog` crates either start
//! nothing but block on a full socket, or wrap libc `syslog(3)`, which
//! blocks too. Here the socket is non-blocking: a line the syslog daemon
//! cannot take right now is counted and the count reported in the next
//! line that goes through, so a stalled syslog never stalls the milter.
//! When the socket is missing (no syslog daemon, a restart in progress)
//! the line goes to stderr instead, with its level, so nothing is lost;
//! the first such line is preceded by one saying why, and the first line
//! that reaches syslog again says so.

use std::cell::Cell;
use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Longest message sent; longer ones are cut (datagram size limits).
const MAX_LINE: usize = 8 * 1024;
const IDENT: &str = "greymilter";

/// The `MakeWriter` for `tracing_subscriber::fmt`: each event becomes one
/// [`SyslogLine`], sent when the formatter drops it.
#[derive(Clone)]
pub struct Syslog {
    inner: Arc<Inner>,
}

struct Inner {
    socket: Option<UnixDatagram>,
    path: PathBuf,
    facility: u8,
    dropped: AtomicU64,
    /// Lines go to stderr (the socket is unusable).
    on_stderr: AtomicBool,
}

impl Syslog {
    pub fn new(path: PathBuf, facility: u8) -> Syslog {
        let socket = UnixDatagram::unbound()
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(|e| eprintln!("{IDENT}: cannot create a syslog socket: {e}"))
            .ok();
        Syslog {
            inner: Arc::new(Inner {
                socket,
                path,
                facility,
                dropped: AtomicU64::new(0),
                on_stderr: AtomicBool::new(false),
            }),
        }
    }
}

pub(super) fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// The level a stderr line carries, as the text format writes it.
fn level_word(severity: u8) -> &'static str {
    match severity {
        0..=3 => "ERROR",
        4 => "WARN",
        5 | 6 => "INFO",
        _ => "DEBUG",
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogLine;

    fn make_writer(&'a self) -> SyslogLine {
        self.line(6)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SyslogLine {
        self.line(severity(meta.level()))
    }
}

impl Syslog {
    pub(super) fn line(&self, severity: u8) -> SyslogLine {
        let mut buf = Vec::with_capacity(256);
        let pri = u16::from(self.inner.facility) * 8 + u16::from(severity);
        // The pid of the process that logs: a checkpoint child logs as itself.
        let pid = std::process::id();
        let _ = write!(buf, "<{pri}>{IDENT}[{pid}]: ");
        SyslogLine {
            inner: Arc::clone(&self.inner),
            header: buf.len(),
            buf,
            sent: Cell::new(false),
            severity,
        }
    }
}

/// One log line being formatted.
pub struct SyslogLine {
    inner: Arc<Inner>,
    buf: Vec<u8>,
    header: usize,
    sent: Cell<bool>,
    severity: u8,
}

impl Write for SyslogLine {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = (MAX_LINE + self.header).saturating_sub(self.buf.len());
        self.buf
            .extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine {
    fn drop(&mut self) {
        if self.sent.replace(true) {
            return;
        }
        while self.buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            self.buf.pop();
        }
        if self.buf.len() <= self.header {
            return;
        }
        let inner = &self.inner;
        let dropped = inner.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = write!(
                self.buf,
                " ({dropped} earlier log lines dropped: syslog was busy)"
            );
        }
        let result = match &inner.socket {
            Some(s) => s.send_to(&self.buf, &inner.path).map(|_| ()),
            None => Err(io::Error::from(io::ErrorKind::NotConnected)),
        };
        match result {
            Ok(()) => {
                if inner.on_stderr.swap(false, Ordering::Relaxed) {
                    let mut err = io::stderr().lock();
                    let _ = writeln!(
                        err,
                        "INFO syslog socket {} usable again: logging there",
                        inner.path.display()
                    );
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                inner.dropped.fetch_add(dropped + 1, Ordering::Relaxed);
            }
            Err(e) => {
                // No syslog to talk to: stderr, the level in words since
                // the PRI is not written there.
                let mut err = io::stderr().lock();
                if !inner.on_stderr.swap(true, Ordering::Relaxed) {
                    let _ = writeln!(
                        err,
                        "WARN cannot log to the syslog socket {}: {e}; logging to stderr until it is back",
                        inner.path.display()
                    );
                }
                let body = self.buf.get(self.header..).unwrap_or_default();
                let _ = err.write_all(level_word(self.severity).as_bytes());
                let _ = err.write_all(b" ");
                let _ = err.write_all(body);
                let _ = err.write_all(b"\n");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_datagram_per_line_with_priority_and_tag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let catcher = UnixDatagram::bind(&path).unwrap();
        let syslog = Syslog::new(path, 2);
        {
            let mut w = syslog.line(severity(&Level::WARN));
            w.write_all(b"action=greylist reason=new\n").unwrap();
        }
        let mut buf = [0u8; 512];
        let n = catcher.recv(&mut buf).unwrap();
        let pid = std::process::id();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            format!("<20>greymilter[{pid}]: action=greylist reason=new")
        );
    }

    #[test]
    fn a_busy_socket_drops_lines_and_says_so_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let catcher = UnixDatagram::bind(&path).unwrap();
        let syslog = Syslog::new(path, 2);
        let long = vec![b'x'; 4000];
        let mut sent = 0;
        // Fill the receive queue until a line is dropped.
        while syslog.inner.dropped.load(Ordering::Relaxed) == 0 {
            syslog.make_writer().write_all(&long).unwrap();
            sent += 1;
            assert!(sent < 100_000, "the socket never filled");
        }
        let mut buf = vec![0u8; 16 * 1024];
        for _ in 0..sent - 1 {
            catcher.recv(&mut buf).unwrap();
        }
        syslog.make_writer().write_all(b"after").unwrap();
        let n = catcher.recv(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(
            text.ends_with("after (1 earlier log lines dropped: syslog was busy)"),
            "{text}"
        );
    }
}
