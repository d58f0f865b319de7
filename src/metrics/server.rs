//! The `/metrics` endpoint: hyper's HTTP/1 connection driver (no hand-made
//! HTTP parsing) on the daemon's LocalSet; hyper spawns nothing for an
//! HTTP/1 connection, so no thread appears. Only `GET /metrics` is served;
//! request heads are capped at 8 KiB, read within 5 s, and a connection
//! lives at most 10 s and serves one request. The text comes from the main
//! loop through a channel, so a scrape never borrows the engine.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::ratelimit::LogLimiter;
use crate::slots::{Slots, accept_failed};

/// A scrape waiting for its text.
pub type Scrape = oneshot::Sender<String>;

const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// hyper's smallest read buffer: the cap on a request head.
const MAX_HEAD: usize = 8192;
const MAX_CLIENTS: usize = 4;
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

static ACCEPT_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(60));

/// Binds a literal address (never a host name: resolving one would start
/// a thread).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serves until the task is dropped.
pub async fn serve(listener: std::net::TcpListener, to_loop: mpsc::Sender<Scrape>) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("metrics listener unusable: {e}");
            return;
        }
    };
    let slots = Slots::new(MAX_CLIENTS);
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                accept_failed("metrics", &e, &ACCEPT_LOG).await;
                continue;
            }
        };
        let Some(slot) = slots.take() else {
            continue;
        };
        let to_loop = to_loop.clone();
        tokio::task::spawn_local(async move {
            let service = service_fn(move |req| respond(req, to_loop.clone()));
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, connection).await;
            drop(slot);
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn respond(
    req: Request<Incoming>,
    to_loop: mpsc::Sender<Scrape>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.uri().path() != "/metrics" {
        return Ok(reply(StatusCode::NOT_FOUND, TEXT, "only /metrics\n".into()));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "GET only\n".into());
        if let Ok(v) = "GET, HEAD".parse() {
            r.headers_mut().insert(hyper::header::ALLOW, v);
        }
        return Ok(r);
    }
    // Prometheus asks for OpenMetrics; curl and promtool get the classic text.
    let openmetrics = req
        .headers()
        .get_all(hyper::header::ACCEPT)
        .iter()
        .any(|v| {
            v.as_bytes()
                .windows(23)
                .any(|w| w == b"application/openmetrics")
        });
    let (tx, rx) = oneshot::channel();
    let text = match to_loop.send(tx).await {
        Ok(()) => rx.await.ok(),
        Err(_) => None,
    };
    Ok(match text {
        Some(t) if openmetrics => reply(StatusCode::OK, OPENMETRICS, t),
        Some(t) => reply(StatusCode::OK, CLASSIC, super::render::classic(&t)),
        None => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "shutting down\n".into(),
        ),
    })
}
