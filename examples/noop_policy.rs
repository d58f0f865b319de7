//! The baseline for the policy benchmarks (benches/postfix-overhead.sh,
//! scenario `policy-noop`): a Postfix policy service that answers
//! `action=DUNNO` to every request, on greymilter's own request parser,
//! answer writer and accept loop. What Postfix costs with it is the policy
//! protocol's floor; greymilter's policy front end is compared with it on
//! the same load (BENCHMARKS.md).
//!
//! `cargo run --release --example noop_policy -- [SPEC]`
//! (default `inet:127.0.0.1:10032`). Runs until killed.
//!
//! When a connection ends it prints one line,
//! `connection N closed after R requests`: the benchmark adds the counts up
//! to check that Postfix asked for every recipient (one line per
//! connection, and Postfix keeps its connections across SMTP sessions, so
//! the count costs nothing per request).

use std::future::Future;
use std::time::Duration;

use greymilter::milter::listener::{ListenSpec, Listener, UnixSocketOptions};
use greymilter::milter::server::{Limits, Sessions, serve_sessions};
use greymilter::postfix_policy::{Answer, answer, request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;

const READ_CHUNK: usize = 4096;

struct NoopSessions;

impl Sessions for NoopSessions {
    const NAME: &'static str = "policy";

    fn spawn<S: AsyncRead + AsyncWrite + Unpin + 'static>(
        &self,
        sessions: &mut JoinSet<()>,
        conn_id: u64,
        stream: S,
        peer: String,
        stop: impl Future<Output = ()> + 'static,
    ) {
        sessions.spawn_local(async move {
            let (requests, error) = answer_dunno(stream, stop).await;
            match error {
                None => println!("connection {conn_id} closed after {requests} requests"),
                Some(e) => println!(
                    "connection {conn_id} closed after {requests} requests: {e} (peer {peer})"
                ),
            }
        });
    }
}

/// Answers DUNNO to each request until the peer closes the connection,
/// sends something that is not a policy request, or `stop` completes;
/// returns how many requests it answered, and why it ended if not cleanly.
async fn answer_dunno<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    stop: impl Future<Output = ()>,
) -> (u64, Option<String>) {
    tokio::pin!(stop);
    let mut requests = 0;
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(64);
    loop {
        loop {
            match request::parse(&buf) {
                Ok(Some((_, len))) => {
                    answer::write(&mut out, &Answer::Dunno);
                    buf.drain(..len);
                    requests += 1;
                }
                Ok(None) => break,
                Err(e) => return (requests, Some(e.to_string())),
            }
        }
        if !out.is_empty() {
            if let Err(e) = stream.write_all(&out).await {
                return (requests, Some(e.to_string()));
            }
            out.clear();
        }
        let start = buf.len();
        buf.resize(start + READ_CHUNK, 0);
        let read = tokio::select! {
            () = &mut stop => return (requests, None),
            read = stream.read(buf.get_mut(start..).unwrap_or_default()) => read,
        };
        match read {
            Ok(0) => return (requests, None),
            Ok(n) => buf.truncate(start + n),
            Err(e) => return (requests, Some(e.to_string())),
        }
    }
}

fn main() -> Result<(), String> {
    let spec_text = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "inet:127.0.0.1:10032".to_string());
    let spec: ListenSpec = spec_text.parse()?;
    let listener =
        Listener::bind(&spec, &UnixSocketOptions::default()).map_err(|e| e.to_string())?;
    println!(
        "noop_policy listening on {} pid {}",
        listener.local_addr(),
        std::process::id()
    );
    // Same runtime shape as the daemon: one thread, a LocalSet.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        serve_sessions(
            &listener,
            &NoopSessions,
            Limits::default(),
            std::future::pending::<()>(),
            Duration::from_secs(1),
        )
        .await
    });
    Ok(())
}
