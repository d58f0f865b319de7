//! The decision log: one line at info per RCPT (and per CONNECT/MAIL
//! accept):
//! `action=… reason=… client=<name>[<ip>] from=<…> to=<…> delay=<s>
//! remaining=<s>`, then `src=redis|local|fallback` on a cluster node,
//! `qid=<i>` when the MTA sent the queue id, `spf=<result>` when SPF was
//! evaluated for the transaction, and `proto=milter|policy` last.
//! Addresses are logged as sent, escaped and cut (see
//! `envelope_address::push_loggable`); a decision made before the sender
//! or the recipient was known leaves that field out.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::IpAddr;

use tracing::{Level, info};

use super::envelope::{Envelope, Proto, Source};
use crate::greylist::Decision;
use crate::greylist::envelope_address::push_loggable;
use crate::greylist::facts::SpfResult;
use crate::log_output;

/// One decision to log.
pub struct Entry<'a> {
    pub conn_id: u64,
    pub envelope: &'a Envelope,
    pub decision: &'a Decision,
    /// `None`: decided before the sender was known (CONNECT).
    pub sender_known: bool,
    /// `None`: decided before RCPT.
    pub recipient: Option<&'a [u8]>,
    /// `None`: a lone node (only a cluster node says where).
    pub src: Option<Source>,
    pub qid: Option<&'a [u8]>,
    pub spf: Option<SpfResult>,
    pub proto: Proto,
}

/// Whether decision lines are written (info enabled).
pub fn enabled() -> bool {
    tracing::enabled!(Level::INFO)
}

thread_local! {
    /// The line being built, reused: no allocation per decision.
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(256));
}

/// Writes the line, if info is enabled (the line is only built then), by
/// `log_output`'s own writer when the daemon's log layout allows, else
/// through tracing.
pub fn decision(e: &Entry<'_>) {
    if !enabled() {
        return;
    }
    LINE.with(|cell| {
        // Not reentrant in practice (nothing logs while a line is built);
        // if it were, the inner line gets a buffer of its own.
        let mut spare = String::new();
        let mut held = cell.try_borrow_mut();
        let line = match held.as_deref_mut() {
            Ok(line) => line,
            Err(_) => &mut spare,
        };
        line.clear();
        build(line, e);
        write_line(line, e.conn_id);
    });
}

fn write_line(line: &str, conn_id: u64) {
    if !log_output::info_line(line, conn_id) {
        info!(conn = conn_id, "{line}");
    }
}

fn build(line: &mut String, e: &Entry<'_>) {
    let d = e.decision;
    line.push_str("action=");
    line.push_str(d.action.as_str());
    line.push_str(" reason=");
    d.reason.write_to(line);
    line.push_str(" client=");
    let name = e.envelope.client_name.as_slice();
    if name.is_empty() || name.first() == Some(&b'[') {
        line.push_str("unknown");
    } else {
        push_loggable(line, name);
    }
    match e.envelope.client_addr {
        Some(IpAddr::V4(a)) => {
            // As `Ipv4Addr`'s `Display`, a quarter of its cost.
            let [a, b, c, d] = a.octets();
            line.push('[');
            for (i, octet) in [a, b, c, d].into_iter().enumerate() {
                if i > 0 {
                    line.push('.');
                }
                log_output::push_decimal(line, u64::from(octet));
            }
            line.push(']');
        }
        Some(a) => {
            let _ = write!(line, "[{a}]");
        }
        None => line.push_str("[]"),
    }
    if e.sender_known {
        line.push_str(" from=<");
        push_loggable(line, strip_brackets(&e.envelope.sender));
        line.push('>');
    }
    if let Some(r) = e.recipient {
        line.push_str(" to=<");
        push_loggable(line, strip_brackets(r));
        line.push('>');
    }
    line.push_str(" delay=");
    log_output::push_decimal(line, d.delay);
    line.push_str(" remaining=");
    log_output::push_decimal(line, d.remaining);
    if let Some(src) = e.src {
        line.push_str(" src=");
        line.push_str(src.as_str());
    }
    if let Some(qid) = e.qid.filter(|q| !q.is_empty()) {
        line.push_str(" qid=");
        push_loggable(line, qid);
    }
    if let Some(spf) = e.spf {
        line.push_str(" spf=");
        line.push_str(spf.as_str());
    }
    line.push_str(" proto=");
    line.push_str(e.proto.as_str());
}

/// `<a@b>` → `a@b`, as the MTA sent it otherwise.
pub fn strip_brackets(a: &[u8]) -> &[u8] {
    let a = a.trim_ascii();
    let a = a.strip_prefix(b"<").unwrap_or(a);
    a.strip_suffix(b">").unwrap_or(a)
}
