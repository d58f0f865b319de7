//! The accept loop: one local task per connection, a cap on concurrent
//! sessions, graceful shutdown. The milter's sessions and Postfix's policy
//! connections (`crate::postfix_policy::server`) both run under it, through
//! [`Sessions`].
//!
//! Runs on a current_thread runtime inside a `LocalSet`: deciders are
//! `!Send` (they share the engine through `Rc<RefCell<…>>`).

use std::future::Future;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use super::connection::run_session_until;
use super::decision::DeciderFactory;
use super::listener::{Kind, Listener, QuickAckStream};
use crate::ratelimit::LogLimiter;

/// How many milter connections may be served at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Past this, new connections wait in the kernel backlog. Postfix runs
    /// up to 100 smtpd processes by default, each with its own connection.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
        }
    }
}

/// What [`serve`] did, for the logs and statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServeSummary {
    /// Connections accepted.
    pub accepted: u64,
    /// Times accepting paused because `max_connections` sessions ran.
    pub limit_reached: u64,
    /// Sessions that ended on their own during the drain.
    pub drained: usize,
    /// Sessions still running when the drain timeout expired (dropped).
    pub abandoned: usize,
}

static LIMIT_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(60));
static ACCEPT_ERROR_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));

/// Pause after a failed accept (often EMFILE), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

enum Accepting {
    Tcp(TcpListener),
    Unix(UnixListener, String),
}

impl Accepting {
    fn new(listener: &Listener) -> io::Result<Accepting> {
        // A duplicate of the descriptor: the caller keeps its listener (and
        // the Unix socket file) for the next serve() or for cleanup.
        Ok(match listener.kind() {
            Kind::Tcp(l) => Accepting::Tcp(TcpListener::from_std(l.try_clone()?)?),
            Kind::Unix { listener: l, .. } => Accepting::Unix(
                UnixListener::from_std(l.try_clone()?)?,
                listener.local_addr(),
            ),
        })
    }
}

/// What runs one accepted connection: a protocol's session driver.
pub trait Sessions {
    /// The protocol, in log lines (`milter`, `policy`).
    const NAME: &'static str;
    /// Starts serving `stream` in `sessions`; the session ends soon after
    /// `stop` completes (shutdown).
    fn spawn<S: AsyncRead + AsyncWrite + Unpin + 'static>(
        &self,
        sessions: &mut JoinSet<()>,
        conn_id: u64,
        stream: S,
        peer: String,
        stop: impl Future<Output = ()> + 'static,
    );
}

/// The milter's sessions, made by a [`DeciderFactory`].
struct MilterSessions<F>(Rc<F>);

impl<F: DeciderFactory + 'static> Sessions for MilterSessions<F> {
    const NAME: &'static str = "milter";
    fn spawn<S: AsyncRead + AsyncWrite + Unpin + 'static>(
        &self,
        sessions: &mut JoinSet<()>,
        conn_id: u64,
        stream: S,
        peer: String,
        stop: impl Future<Output = ()> + 'static,
    ) {
        spawn_session(sessions, &self.0, conn_id, stream, peer, stop);
    }
}

/// Serves milter connections from `listener` until `shutdown` completes.
/// Then it stops accepting, lets each session finish the command in flight
/// (idle sessions close at once), waits up to `drain_timeout` and returns;
/// sessions still running are dropped.
///
/// Must run inside a `tokio::task::LocalSet`.
pub async fn serve<F: DeciderFactory + 'static>(
    listener: &Listener,
    factory: Rc<F>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) -> ServeSummary {
    serve_sessions(
        listener,
        &MilterSessions(factory),
        limits,
        shutdown,
        drain_timeout,
    )
    .await
}

/// [`serve`] for any protocol's [`Sessions`].
pub async fn serve_sessions<H: Sessions>(
    listener: &Listener,
    handler: &H,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) -> ServeSummary {
    let mut summary = ServeSummary::default();
    tokio::pin!(shutdown);
    let accepting = loop {
        match Accepting::new(listener) {
            Ok(a) => break a,
            Err(e) => {
                error!(listen = %listener.local_addr(), "cannot accept connections: {e}");
                tokio::select! {
                    () = &mut shutdown => return summary,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sessions = JoinSet::new();
    let mut next_id: u64 = 0;
    let max = limits.max_connections.max(1);
    loop {
        while let Some(done) = sessions.try_join_next() {
            report_panic(done, H::NAME);
        }
        if sessions.len() >= max {
            summary.limit_reached += 1;
            if let Some(suppressed) = LIMIT_LOG.allow() {
                warn!(
                    sessions = sessions.len(),
                    suppressed,
                    "max_connections reached: new {} connections wait until a session ends",
                    H::NAME
                );
            }
            tokio::select! {
                () = &mut shutdown => break,
                done = sessions.join_next() => if let Some(done) = done { report_panic(done, H::NAME) },
            }
            continue;
        }
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&accepting) => accepted,
        };
        match accepted {
            Ok(conn) => {
                summary.accepted += 1;
                next_id += 1;
                let stop = stop_signal(stop_rx.clone());
                match conn {
                    Conn::Tcp(stream, peer) => {
                        handler.spawn(&mut sessions, next_id, stream, peer, stop)
                    }
                    Conn::Unix(stream, peer) => {
                        handler.spawn(&mut sessions, next_id, stream, peer, stop)
                    }
                }
            }
            Err(e) => {
                if let Some(suppressed) = ACCEPT_ERROR_LOG.allow() {
                    warn!(suppressed, "accept failed: {e}");
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    drop(accepting);
    let _ = stop_tx.send(true);
    while let Some(done) = sessions.try_join_next() {
        report_panic(done, H::NAME);
    }
    let in_flight = sessions.len();
    if in_flight > 0 {
        info!(
            sessions = in_flight,
            "shutting down: finishing sessions in flight"
        );
    }
    let drain = async {
        while let Some(done) = sessions.join_next().await {
            report_panic(done, H::NAME);
            summary.drained += 1;
        }
    };
    let _ = tokio::time::timeout(drain_timeout, drain).await;
    summary.abandoned = sessions.len();
    if summary.abandoned > 0 {
        warn!(
            sessions = summary.abandoned,
            "drain timeout: dropping sessions still running"
        );
    }
    sessions.abort_all();
    summary
}

enum Conn {
    Tcp(QuickAckStream, String),
    Unix(tokio::net::UnixStream, String),
}

async fn accept(accepting: &Accepting) -> io::Result<Conn> {
    match accepting {
        Accepting::Tcp(l) => {
            let (stream, peer) = l.accept().await?;
            Ok(Conn::Tcp(QuickAckStream::new(stream), peer.to_string()))
        }
        Accepting::Unix(l, label) => {
            let (stream, _) = l.accept().await?;
            Ok(Conn::Unix(stream, label.clone()))
        }
    }
}

async fn stop_signal(mut rx: watch::Receiver<bool>) {
    // An error means the sender is gone: serve() has returned.
    let _ = rx.wait_for(|stop| *stop).await;
}

fn spawn_session<F, S>(
    sessions: &mut JoinSet<()>,
    factory: &Rc<F>,
    conn_id: u64,
    stream: S,
    peer: String,
    stop: impl Future<Output = ()> + 'static,
) where
    F: DeciderFactory + 'static,
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    debug!(conn = conn_id, peer = %peer, "milter connection");
    let factory = Rc::clone(factory);
    let options = factory.options();
    let decider = factory.new_decider(conn_id);
    sessions.spawn_local(async move {
        let summary = run_session_until(stream, decider, &options, conn_id, &peer, stop).await;
        factory.session_ended(&summary);
    });
}

fn report_panic(done: Result<(), tokio::task::JoinError>, name: &str) {
    if let Err(e) = done
        && e.is_panic()
    {
        error!("a {name} session panicked: {e}");
    }
}
