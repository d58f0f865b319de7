//! Where the daemon's log lines go, and the decision line's own writer.
//!
//! * The decision line (one per recipient, `pipeline::log`) skips
//!   tracing-subscriber's formatter, which escapes a message one `char` at a
//!   time and formats the time stamp from scratch for every line: [`info_line`]
//!   writes the same bytes (`docs/log-reference.md`) with an ASCII fast path
//!   and the time stamp's date and time formatted once a second. It does so
//!   only once [`install_stderr`] or [`install_syslog`] said which text layout
//!   the daemon's subscriber uses; otherwise (tests with their own subscriber,
//!   `format = "json"`, colours at a terminal) the line goes through tracing.
//! * With `target = "stderr"` every line (the decision lines and tracing's)
//!   goes through one buffer, in order. [`buffer_until_flushed`] makes it wait
//!   there until [`flush`]: the daemon flushes whenever its loop is about to
//!   sleep (the runtime's park hook), so a burst of decisions costs one
//!   `write(2)` instead of one per line. A line never waits longer than
//!   [`MAX_DELAY`] once another line follows it, nor past [`MAX_BUFFERED`]
//!   bytes; a warning or an error is written at once with everything before
//!   it; the daemon flushes before it forks, after each signal's work and
//!   when it stops, and a panic flushes before its message.
//!
//! Syslog lines are datagrams of one line each: nothing to batch there.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

use crate::greylist::date;

/// Longest a buffered line waits once another line is logged after it.
pub const MAX_DELAY: Duration = Duration::from_millis(50);
/// Buffered bytes past which the buffer is written out at once.
pub const MAX_BUFFERED: usize = 16 * 1024;

const THROUGH_TRACING: u8 = 0;
const STDERR_TEXT: u8 = 1;
const SYSLOG_TEXT: u8 = 2;

/// How [`info_line`] writes: through tracing, or itself in one of the
/// daemon's text layouts.
static LAYOUT: AtomicU8 = AtomicU8::new(THROUGH_TRACING);
/// Stderr lines wait for [`flush`] (see the module docs).
static BUFFERED: AtomicBool = AtomicBool::new(false);
static STDERR: Mutex<Pending> = Mutex::new(Pending::new());
/// Sends one INFO message to syslog (`daemon::syslog`).
type SyslogSend = Box<dyn Fn(&[u8]) + Send + Sync>;
static SYSLOG: OnceLock<SyslogSend> = OnceLock::new();

/// Stderr output not yet written, and the time stamp cache.
struct Pending {
    buf: Vec<u8>,
    /// When the oldest line in `buf` was added.
    oldest: Option<Instant>,
    /// The unix second `stamp` was formatted for.
    stamp_second: Option<u64>,
    /// `YYYY-MM-DDTHH:MM:SS.` of `stamp_second`.
    stamp: Vec<u8>,
}

impl Pending {
    const fn new() -> Pending {
        Pending {
            buf: Vec::new(),
            oldest: None,
            stamp_second: None,
            stamp: Vec::new(),
        }
    }

    /// Writes what is buffered to stderr. A failed write is not retried:
    /// there is nowhere else to say it.
    fn write_out(&mut self) {
        if !self.buf.is_empty() {
            let _ = std::io::stderr().lock().write_all(&self.buf);
            self.buf.clear();
        }
        self.oldest = None;
    }

    /// A line was appended: writes it out now unless it may wait.
    fn appended(&mut self, urgent: bool) {
        let now_due = urgent
            || !BUFFERED.load(Ordering::Relaxed)
            || self.buf.len() >= MAX_BUFFERED
            || self.oldest.is_some_and(|t| t.elapsed() >= MAX_DELAY);
        if now_due {
            self.write_out();
        } else if self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
    }

    /// tracing-subscriber's time stamp (`SystemTime`'s RFC 3339 with
    /// microseconds) and its level column, for an INFO line.
    fn push_stamp(&mut self, now: SystemTime) {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = since.as_secs();
        if self.stamp_second != Some(second) {
            self.stamp.clear();
            let whole = date::rfc3339(second);
            self.stamp
                .extend_from_slice(whole.strip_suffix('Z').unwrap_or(&whole).as_bytes());
            self.stamp.push(b'.');
            self.stamp_second = Some(second);
        }
        self.buf.extend_from_slice(&self.stamp);
        push_padded(&mut self.buf, u64::from(since.subsec_micros()), 6);
        self.buf.extend_from_slice(b"Z  INFO ");
    }
}

fn stderr_buffer() -> MutexGuard<'static, Pending> {
    STDERR.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The daemon's subscriber writes text to stderr without colours (time,
/// level, message, fields): [`info_line`] may write decision lines itself.
pub fn install_stderr() {
    LAYOUT.store(STDERR_TEXT, Ordering::Relaxed);
}

/// The daemon's subscriber writes text to syslog (message and fields, no
/// time nor level): [`info_line`] hands decision lines to `send`.
pub fn install_syslog(send: SyslogSend) {
    if SYSLOG.set(send).is_ok() {
        LAYOUT.store(SYSLOG_TEXT, Ordering::Relaxed);
    }
}

/// From now on stderr lines wait for [`flush`] (within the bounds in the
/// module docs). Only for a caller that flushes: the daemon's runtime does
/// when it parks.
pub fn buffer_until_flushed() {
    BUFFERED.store(true, Ordering::Relaxed);
}

/// Writes what is buffered, and every later line at once: for the end of
/// the loop that flushed.
pub fn unbuffer() {
    BUFFERED.store(false, Ordering::Relaxed);
    flush();
}

/// Writes every buffered stderr line.
pub fn flush() {
    stderr_buffer().write_out();
}

/// For a panic hook: flushes unless the buffer is in use (a panic inside
/// a log write must not deadlock on it).
pub fn flush_if_free() {
    if let Ok(mut pending) = STDERR.try_lock() {
        pending.write_out();
    }
}

/// Writes `message` as an INFO event with the field `conn`, byte for byte
/// as the daemon's tracing subscriber would. Returns `false` when it cannot
/// (no layout installed): the caller logs through tracing then.
pub fn info_line(message: &str, conn: u64) -> bool {
    match LAYOUT.load(Ordering::Relaxed) {
        STDERR_TEXT => {
            let mut pending = stderr_buffer();
            pending.push_stamp(SystemTime::now());
            push_message(&mut pending.buf, message, conn);
            pending.buf.push(b'\n');
            pending.appended(false);
            true
        }
        SYSLOG_TEXT => {
            let Some(send) = SYSLOG.get() else {
                return false;
            };
            let mut line = Vec::with_capacity(message.len() + 24);
            push_message(&mut line, message, conn);
            send(&line);
            true
        }
        _ => false,
    }
}

/// `message conn=N`, the message escaped as tracing-subscriber escapes it.
fn push_message(out: &mut Vec<u8>, message: &str, conn: u64) {
    push_escaped(out, message);
    out.extend_from_slice(b" conn=");
    push_padded(out, conn, 1);
}

/// tracing-subscriber's message escaping (its `EscapingWriter`: ESC, BEL,
/// BS, FF and DEL as `\xNN`, C1 controls as `\u{NN}`), with a fast path
/// for the usual line of printable ASCII.
fn push_escaped(out: &mut Vec<u8>, message: &str) {
    // `fold`, not `all`: the check runs on whole words.
    if message
        .bytes()
        .fold(true, |ok, b| ok & (0x20..0x7f).contains(&b))
    {
        out.extend_from_slice(message.as_bytes());
        return;
    }
    for ch in message.chars() {
        match ch {
            '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' => {
                let _ = write!(out, "\\x{:02x}", u32::from(ch));
            }
            '\u{80}'..='\u{9f}' => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(ch));
            }
            _ => {
                let mut utf8 = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
}

/// `n` in decimal, left-padded with zeros to `width` digits.
fn push_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let (digits, start) = decimal(n, width);
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

/// `n` in decimal, as `write!(out, "{n}")` without the formatting
/// machinery (a log line has several numbers).
pub fn push_decimal(out: &mut String, n: u64) {
    let (digits, start) = decimal(n, 1);
    let digits = digits.get(start..).unwrap_or_default();
    out.push_str(std::str::from_utf8(digits).unwrap_or_default());
}

/// The digits of `n`, at least `width` of them, in `digits[start..]`.
fn decimal(mut n: u64, width: usize) -> ([u8; 20], usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while n > 0 || digits.len() - start < width {
        start -= 1;
        if let Some(d) = digits.get_mut(start) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if start == 0 {
            break;
        }
    }
    (digits, start)
}

/// tracing-subscriber's writer for `target = "stderr"`: each event's line
/// goes into the buffer [`info_line`] writes to, so all lines keep their
/// order; warnings and errors are written out at once.
#[derive(Clone, Copy, Default)]
pub struct Stderr;

pub struct StderrLine {
    urgent: bool,
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = StderrLine;

    fn make_writer(&'a self) -> StderrLine {
        StderrLine { urgent: true }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> StderrLine {
        StderrLine {
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

impl std::io::Write for StderrLine {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut pending = stderr_buffer();
        pending.buf.extend_from_slice(data);
        if data.ends_with(b"\n") {
            pending.appended(self.urgent);
        } else if pending.oldest.is_none() {
            pending.oldest = Some(Instant::now());
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_padded() {
        let mut out = Vec::new();
        push_padded(&mut out, 0, 6);
        out.push(b' ');
        push_padded(&mut out, 42, 6);
        out.push(b' ');
        push_padded(&mut out, 0, 1);
        out.push(b' ');
        push_padded(&mut out, u64::MAX, 1);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "000000 000042 0 18446744073709551615"
        );
        for n in [0, 9, 10, 255, 300, 1_000_000, u64::MAX] {
            let mut out = String::from("x=");
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x={n}"));
        }
    }

    /// The message as tracing-subscriber's text format writes it (no time,
    /// no level), for the same event.
    fn through_tracing(message: &str, conn: u64) -> String {
        #[derive(Clone, Default)]
        struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .with_target(false)
            .with_level(false)
            .without_time()
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(conn, "{message}");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.strip_suffix('\n').unwrap_or(&text).to_string()
    }

    #[test]
    fn messages_are_written_as_tracing_writes_them() {
        for message in [
            "action=pass reason=whitelisted client=mail.example.org[192.0.2.7] from=<a@b> to=<c@d> delay=0 remaining=0 proto=policy",
            "",
            "tab\there, escape \x1b[31m, bell \x07, bs \x08, ff \x0c, del \x7f",
            "c1 \u{85} \u{9b}x, latin é, cjk 漢, emoji 🎉, newline\ninside, cr \r",
        ] {
            for conn in [0, 7, 123_456_789] {
                let mut ours = Vec::new();
                push_message(&mut ours, message, conn);
                assert_eq!(
                    String::from_utf8(ours).unwrap(),
                    through_tracing(message, conn),
                    "{message:?}"
                );
            }
        }
    }

    #[test]
    fn the_time_stamp_is_tracing_subscribers() {
        use tracing_subscriber::fmt::format::Writer;
        use tracing_subscriber::fmt::time::{FormatTime, SystemTime as TracingTime};
        // Theirs formats the current time: retry across a second boundary.
        for _ in 0..10 {
            let mut theirs = String::new();
            TracingTime
                .format_time(&mut Writer::new(&mut theirs))
                .unwrap();
            let mut pending = Pending::new();
            pending.push_stamp(SystemTime::now());
            let ours = String::from_utf8(pending.buf).unwrap();
            // Same shape; the same second (the microseconds differ).
            assert_eq!(
                ours.len(),
                theirs.len() + " INFO ".len() + 1,
                "{ours} {theirs}"
            );
            assert!(ours.ends_with("Z  INFO "), "{ours}");
            if ours.get(..20) == theirs.get(..20) {
                return;
            }
        }
        panic!("the time stamps never agreed to the second");
    }

    #[test]
    fn the_stamp_is_reformatted_when_the_second_changes() {
        let mut pending = Pending::new();
        let t = UNIX_EPOCH + Duration::from_micros(951_825_599_999_999); // 2000-02-29T11:59:59.999999
        pending.push_stamp(t);
        pending.push_stamp(t + Duration::from_micros(1));
        pending.push_stamp(UNIX_EPOCH + Duration::from_micros(5));
        assert_eq!(
            String::from_utf8(pending.buf).unwrap(),
            "2000-02-29T11:59:59.999999Z  INFO \
             2000-02-29T12:00:00.000000Z  INFO \
             1970-01-01T00:00:00.000005Z  INFO "
        );
    }
}
