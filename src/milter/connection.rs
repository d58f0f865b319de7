//! The connection driver: runs a [`SessionCore`] over a byte stream.
//!
//! [`Connection`] owns the stream and its buffers and knows the deadlines:
//! a read waits at most the idle timeout, and a packet must be whole within
//! it from its first byte (a peer trickling one byte per read would
//! otherwise hold a session and a `max_connections` slot forever). The
//! driver loop reads, hands each whole packet to the core, waits for a
//! recipient's decision when the core asks it to (bounded by the decision
//! timeout, reading nothing else meanwhile), writes the replies, and stops
//! at QUIT, EOF, a protocol error, a timeout or a requested stop between
//! commands.

use std::future::Future;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::warn;

use super::codec::FrameBuffer;
use super::decision::{Decider, SessionOptions, SessionSummary};
use super::session::{CloseReason, Flow, SessionCore};
use crate::ratelimit::LogLimiter;

/// One warn line per interval for expired decisions, across all sessions.
static EXPIRED: LogLimiter = LogLimiter::new(Duration::from_secs(10));

/// Why the conversation ends.
enum End {
    /// Normal (QUIT, EOF between packets, stop) or an I/O error: nothing
    /// to count.
    Quietly,
    ProtocolError,
    TimedOut,
}

/// What one read brought.
enum Read {
    Data,
    Eof,
    Failed(std::io::Error),
    /// Nothing within the idle timeout (or the packet deadline).
    Idle,
}

/// A milter stream with its framing buffer and outgoing replies.
pub struct Connection<S> {
    stream: S,
    frames: FrameBuffer,
    out: Vec<u8>,
    idle: Duration,
    /// When the first bytes of the packet being received arrived.
    packet_started: Option<Instant>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S, idle: Duration) -> Connection<S> {
        Connection {
            stream,
            frames: FrameBuffer::new(),
            out: Vec::with_capacity(64),
            idle,
            packet_started: None,
        }
    }

    /// One read into the framing buffer, bounded by the idle timeout or,
    /// inside a packet, by what is left of the packet's deadline.
    async fn read(&mut self) -> Result<Read, super::codec::FrameError> {
        let wait = if self.frames.is_empty() {
            self.idle
        } else {
            let started = *self.packet_started.get_or_insert_with(Instant::now);
            self.idle.saturating_sub(started.elapsed())
        };
        let spare = self.frames.spare()?;
        Ok(
            match tokio::time::timeout(wait, self.stream.read(spare)).await {
                Ok(Ok(0)) => Read::Eof,
                Ok(Ok(n)) => {
                    self.frames.filled(n);
                    Read::Data
                }
                Ok(Err(e)) => Read::Failed(e),
                Err(_) => Read::Idle,
            },
        )
    }

    /// Sends the pending replies in one write: miltertest and some MTAs
    /// read the header and the payload with exactly two reads.
    async fn write_out(&mut self) -> Result<(), WriteFailure> {
        if self.out.is_empty() {
            return Ok(());
        }
        match tokio::time::timeout(self.idle, self.stream.write_all(&self.out)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(WriteFailure::Io(e)),
            Err(_) => return Err(WriteFailure::TimedOut),
        }
        self.out.clear();
        self.stream.flush().await.map_err(WriteFailure::Io)
    }
}

enum WriteFailure {
    Io(std::io::Error),
    TimedOut,
}

/// Runs one milter conversation over `stream` until QUIT, EOF, a protocol
/// error or the idle timeout.
pub async fn run_session<S, D>(
    stream: S,
    decider: D,
    options: &SessionOptions,
    conn_id: u64,
    peer: &str,
) -> SessionSummary
where
    S: AsyncRead + AsyncWrite + Unpin,
    D: Decider,
{
    run_session_until(
        stream,
        decider,
        options,
        conn_id,
        peer,
        std::future::pending(),
    )
    .await
}

/// Like [`run_session`], and also ends the conversation once `stop` has
/// completed and no command is in flight (graceful shutdown: the command
/// being received is still answered).
pub async fn run_session_until<S, D, F>(
    stream: S,
    decider: D,
    options: &SessionOptions,
    conn_id: u64,
    peer: &str,
    stop: F,
) -> SessionSummary
where
    S: AsyncRead + AsyncWrite + Unpin,
    D: Decider,
    F: Future<Output = ()>,
{
    let mut core = SessionCore::new(decider, options, conn_id, peer);
    let mut conn = Connection::new(stream, options.idle_timeout);
    let mut summary = SessionSummary::default();
    let stop = stop.fuse();
    tokio::pin!(stop);
    let mut stopping = false;
    let end = loop {
        if let Err(end) = handle_buffered(&mut core, &mut conn, options, &mut summary).await {
            break end;
        }
        if stopping && conn.frames.is_empty() {
            core.debug(format_args!(
                "shutting down: connection closed between commands"
            ));
            break End::Quietly;
        }
        // Reading comes first: bytes the MTA sent before the stop are still
        // handled, and a command in flight is finished.
        tokio::select! {
            biased;
            read = conn.read() => match read {
                Ok(Read::Data) => {}
                Ok(Read::Eof) if conn.frames.is_empty() => {
                    core.debug(format_args!("MTA closed the connection"));
                    break End::Quietly;
                }
                Ok(Read::Eof) => {
                    // No MTA stops writing mid-packet unless it crashed or
                    // is not an MTA: worth a (rate-limited) line.
                    core.violation_warn(format_args!("MTA closed the connection inside a packet"));
                    break End::Quietly;
                }
                Ok(Read::Failed(e)) => {
                    core.debug(format_args!("read failed: {e}"));
                    break End::Quietly;
                }
                Ok(Read::Idle) if conn.frames.is_empty() => {
                    core.debug(format_args!("idle for {:?}: closing", conn.idle));
                    break End::TimedOut;
                }
                Ok(Read::Idle) => {
                    // Between commands an MTA may idle; inside a packet it
                    // does not (slowloris).
                    core.violation_warn(format_args!(
                        "packet still incomplete {:?} after its first byte: closing",
                        conn.idle
                    ));
                    break End::TimedOut;
                }
                Err(e) => {
                    core.violation(format_args!("{e}"));
                    break End::ProtocolError;
                }
            },
            () = &mut stop, if !stopping => stopping = true,
        }
    };
    match end {
        End::Quietly => {}
        End::ProtocolError => summary.protocol_error = true,
        End::TimedOut => summary.timed_out = true,
    }
    core.finish();
    let _ = conn.stream.shutdown().await;
    summary
}

/// Handles every whole packet in the buffer, waiting for decisions and
/// writing replies. `Err` ends the conversation.
async fn handle_buffered<S, D>(
    core: &mut SessionCore<D>,
    conn: &mut Connection<S>,
    options: &SessionOptions,
    summary: &mut SessionSummary,
) -> Result<(), End>
where
    S: AsyncRead + AsyncWrite + Unpin,
    D: Decider,
{
    loop {
        let flow = match conn.frames.next_frame() {
            Ok(Some(frame)) => core.handle_frame(frame, &mut conn.out),
            Ok(None) => return Ok(()),
            Err(e) => {
                core.violation(format_args!("{e}"));
                return Err(End::ProtocolError);
            }
        };
        conn.packet_started = None;
        if flow == Flow::Wait {
            await_decision(core, &mut conn.out, options.decision_timeout, summary).await;
        }
        match conn.write_out().await {
            Ok(()) => {}
            Err(WriteFailure::Io(e)) => {
                core.debug(format_args!("write failed: {e}"));
                return Err(End::Quietly);
            }
            Err(WriteFailure::TimedOut) => {
                core.debug(format_args!("write timed out"));
                return Err(End::TimedOut);
            }
        }
        match flow {
            Flow::Continue | Flow::Wait => {}
            Flow::Close(CloseReason::Quit) => {
                core.debug(format_args!("QUIT"));
                return Err(End::Quietly);
            }
            Flow::Close(CloseReason::ProtocolError) => return Err(End::ProtocolError),
        }
    }
}

/// Waits for the recipient's decision, at most `deadline`; past it the
/// recipient gets CONTINUE: a slow decision must never hold mail.
async fn await_decision<D: Decider>(
    core: &mut SessionCore<D>,
    out: &mut Vec<u8>,
    deadline: Duration,
    summary: &mut SessionSummary,
) {
    let Some(wait) = core.take_wait() else {
        return;
    };
    match tokio::time::timeout(deadline, wait).await {
        Ok(answer) => core.answer(answer, out),
        Err(_) => {
            summary.decisions_expired += 1;
            if let Some(suppressed) = EXPIRED.allow() {
                warn!(
                    conn = core.conn_id(),
                    peer = core.peer(),
                    suppressed,
                    "a recipient's decision took longer than {deadline:?}: answered CONTINUE (fail open)"
                );
            }
            core.expire(out);
        }
    }
}
