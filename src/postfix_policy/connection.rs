//! One Postfix policy connection: requests in, answers out, until Postfix
//! closes it, it idles past `idle_timeout`, it sends something that is not
//! a policy request, or the daemon shuts down.
//!
//! Each request at `protocol_state=RCPT` goes through the recipient
//! pipeline: `connect`, `helo` and `mail` once per message (Postfix's
//! `instance` attribute is the same for every recipient of one message, so
//! DNS lookups started for the first recipient serve the others), then
//! `rcpt`, waiting at most the decision timeout (then `DUNNO`: fail open).
//! Every other state gets `DUNNO`. The `X-Greylist` header is prepended
//! once per message, like postgrey does.
//!
//! `idle_timeout` bounds both the wait for a request and the time one
//! request may take to arrive from its first byte (Postfix writes a request
//! at once): a peer trickling bytes (slowloris) is cut off as one that
//! sends nothing.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};
use tracing::{debug, warn};

use super::answer::{self, Answer};
use super::request::{self, Request};
use crate::config::policy::DeferAction;
use crate::pipeline::{FrontEnd, Pipeline, Proto, Transaction, Verdict};
use crate::ratelimit::LogLimiter;

/// The policy protocol as a [`FrontEnd`]: the verdict is kept as is and
/// said by [`answer_of`], which knows `defer_action`.
pub struct Policy;

impl FrontEnd for Policy {
    const PROTO: Proto = Proto::Policy;
    const HEADER_AT_RCPT: bool = true;
    type Reply = Verdict;

    fn reply(verdict: Verdict) -> Verdict {
        verdict
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub idle_timeout: Duration,
    /// The longest a recipient waits for DNS or Redis.
    pub decision_timeout: Duration,
    pub defer_action: DeferAction,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Postfix closed it (between requests).
    Closed,
    Idle,
    /// A request broke a rule of the protocol or a bound.
    BadRequest,
    /// Reading or writing failed, or the peer stopped reading answers.
    Io,
    Shutdown,
}

static BAD_REQUEST_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));
static IDLE_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(60));
static SLOW_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));

const READ_CHUNK: usize = 4096;

/// What the connection remembers about the message being decided.
#[derive(Default)]
struct Message {
    /// Postfix's `instance` of the message `connect`/`mail` were called for.
    instance: Vec<u8>,
    /// Decided for every recipient at CONNECT or MAIL.
    accepted: bool,
    /// The `instance` whose header was already prepended.
    header_sent: Vec<u8>,
    /// `<sender>` and `<recipient>` as the pipeline takes them.
    sender: Vec<u8>,
    recipient: Vec<u8>,
}

/// Serves one connection until it ends; returns why.
pub async fn run_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    pipeline: &Pipeline,
    options: &Options,
    conn_id: u64,
    peer: &str,
    stop: impl Future<Output = ()>,
) -> Ended {
    tokio::pin!(stop);
    let mut txn = pipeline.transaction::<Policy>(conn_id);
    let mut message = Message::default();
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(256);
    let idle = options.idle_timeout;
    let mut timer = Box::pin(tokio::time::sleep(idle));
    // When the first byte of the request in `buf` arrived.
    let mut request_started: Option<Instant> = None;
    loop {
        // Every complete request in the buffer, in order.
        let mut consumed = false;
        loop {
            let (verdict, len) = match request::parse(&buf) {
                Ok(Some((req, len))) => (decide(&mut txn, &mut message, &req, options).await, len),
                Ok(None) => break,
                Err(e) => {
                    if let Some(suppressed) = BAD_REQUEST_LOG.allow() {
                        warn!(
                            conn = conn_id,
                            peer, suppressed, "policy connection closed: {e}"
                        );
                    }
                    return Ended::BadRequest;
                }
            };
            write_answer(&mut out, &verdict, &mut message, options.defer_action);
            buf.drain(..len);
            consumed = true;
        }
        // One clock reading per turn: the start of the write and of the
        // wait for the next request.
        let now = Instant::now();
        if buf.is_empty() {
            request_started = None;
        } else if consumed || request_started.is_none() {
            request_started = Some(now);
        }
        if !out.is_empty() {
            // A peer that stops reading its answers is cut off like an idle one.
            match within(&mut timer, after(now, idle), stream.write_all(&out)).await {
                Some(Ok(())) => out.clear(),
                _ => return Ended::Io,
            }
        }
        // Room for a read, not zeroed (`read_buf` only writes what came).
        buf.reserve(READ_CHUNK);
        let deadline = after(request_started.unwrap_or(now), idle);
        let read = tokio::select! {
            biased;
            () = &mut stop => return Ended::Shutdown,
            read = within(&mut timer, deadline, stream.read_buf(&mut buf)) => read,
        };
        match read {
            Some(Ok(0)) => {
                if !buf.is_empty() {
                    debug!(
                        conn = conn_id,
                        peer, "policy connection closed in a request"
                    );
                }
                return Ended::Closed;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) => return Ended::Io,
            None => {
                let idle = humantime::format_duration(options.idle_timeout);
                let (log, reason) = match request_started {
                    Some(_) => (
                        &SLOW_LOG,
                        format!("request still incomplete {idle} after its first byte"),
                    ),
                    None => (&IDLE_LOG, format!("idle for {idle}")),
                };
                if let Some(suppressed) = log.allow() {
                    warn!(
                        conn = conn_id,
                        peer, suppressed, "policy connection closed: {reason}"
                    );
                }
                return Ended::Idle;
            }
        }
    }
}

/// `t + d`, or about thirty years on for a `d` past what the clock holds.
fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .unwrap_or_else(|| t + Duration::from_secs(30 * 365 * 86_400))
}

/// `fut`'s output, or `None` once `deadline` passed first.
///
/// The connection keeps one timer for its life instead of a
/// `tokio::time::timeout` per read and write (which registers a timer
/// and removes it again for every request): the timer runs to an earlier
/// deadline, and is moved on to `deadline` only when it fires before it.
/// Deadlines only ever move later (each is a later start plus the same
/// `idle_timeout`), so the timer never fires after the deadline that
/// counts.
async fn within<F: Future>(
    timer: &mut Pin<Box<Sleep>>,
    deadline: Instant,
    fut: F,
) -> Option<F::Output> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            biased;
            out = &mut fut => return Some(out),
            () = timer.as_mut() => {
                if Instant::now() >= deadline {
                    return None;
                }
                timer.as_mut().reset(deadline);
            }
        }
    }
}

/// The pipeline's verdict for one request.
async fn decide(
    txn: &mut Transaction<Policy>,
    message: &mut Message,
    req: &Request<'_>,
    options: &Options,
) -> Verdict {
    if !req.protocol_state.eq_ignore_ascii_case("RCPT") {
        return Verdict::PASS;
    }
    let same_message =
        !req.instance.is_empty() && message.instance.as_slice() == req.instance.as_bytes();
    if !same_message {
        message.instance.clear();
        message.instance.extend_from_slice(req.instance.as_bytes());
        message.accepted = false;
        let addr = req.client_address.parse::<IpAddr>().ok();
        // Postfix says `unknown` for a client without a verified name; the
        // pipeline's word for that is an empty (or bracketed) name.
        let name = match req.client_name {
            "unknown" => "",
            name => name,
        };
        if txn.connect(addr, name.as_bytes()) == Verdict::Accept {
            message.accepted = true;
            return Verdict::PASS;
        }
        txn.helo(req.helo_name.as_bytes());
        bracketed(&mut message.sender, req.sender);
        let authenticated = !req.sasl_username.is_empty();
        if txn.mail(&message.sender, authenticated, || None) == Verdict::Accept {
            message.accepted = true;
            return Verdict::PASS;
        }
    } else if message.accepted {
        return Verdict::PASS;
    }
    bracketed(&mut message.recipient, req.recipient);
    let qid = Some(req.queue_id.as_bytes()).filter(|q| !q.is_empty());
    txn.rcpt_within(&message.recipient, qid, options.decision_timeout)
        .await
}

/// `<address>`, as an MTA gives it to a milter (and the log shows it).
fn bracketed(dst: &mut Vec<u8>, address: &str) {
    dst.clear();
    dst.push(b'<');
    dst.extend_from_slice(address.as_bytes());
    dst.push(b'>');
}

fn write_answer(out: &mut Vec<u8>, verdict: &Verdict, message: &mut Message, defer: DeferAction) {
    let answer = match verdict {
        Verdict::Pass { header: None } | Verdict::Accept => Answer::Dunno,
        Verdict::Pass {
            header: Some(field),
        } => {
            // One header per message, whatever its number of recipients.
            if !message.instance.is_empty() && message.header_sent == message.instance {
                Answer::Dunno
            } else {
                message.header_sent.clone_from(&message.instance);
                Answer::Prepend {
                    name: field.name,
                    value: &field.value,
                }
            }
        }
        Verdict::Tempfail(reply) => match defer {
            DeferAction::DeferIfPermit => Answer::DeferIfPermit(reply),
            DeferAction::Defer => Answer::Defer(reply),
        },
        Verdict::Reject(reply) => Answer::Reject(reply),
    };
    answer::write(out, &answer);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timer armed for 10 s, the deadline that counts at 15 s: a
    /// future that never ends is given up at 15 s, not at the timer's
    /// first firing, and one that ends at 12 s is not cut off.
    #[tokio::test(start_paused = true)]
    async fn the_connection_timer_is_moved_on_to_the_deadline_that_counts() {
        let start = Instant::now();
        let mut timer = Box::pin(tokio::time::sleep(Duration::from_secs(10)));
        let deadline = start + Duration::from_secs(15);
        let never = within(&mut timer, deadline, std::future::pending::<()>()).await;
        assert_eq!(never, None);
        assert_eq!(start.elapsed(), Duration::from_secs(15));

        let start = Instant::now();
        let mut timer = Box::pin(tokio::time::sleep(Duration::from_secs(10)));
        let ends = tokio::time::sleep(Duration::from_secs(12));
        let got = within(&mut timer, start + Duration::from_secs(15), async {
            ends.await;
            7
        })
        .await;
        assert_eq!(got, Some(7));
        assert_eq!(start.elapsed(), Duration::from_secs(12));
        // The same timer serves the next wait, to a later deadline.
        let never = within(
            &mut timer,
            start + Duration::from_secs(30),
            std::future::pending::<()>(),
        )
        .await;
        assert_eq!(never, None);
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }
}
