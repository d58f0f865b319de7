//! The decision log: one line at info per RCPT (and per CONNECT/MAIL
//! accept):
//! `action=… reason=… client=<name>[<ip>] from=<…> to=<…> delay=<s>
//! remaining=<s>`, then `src=redis|local|fallback` on a cluster node,
//! `qid=<i>` when the MTA sent the `i` macro, and `spf=<result>` when SPF
//! was evaluated for the transaction. Addresses are logged as sent, escaped
//! and cut (see `envelope_address::push_loggable`).

use std::fmt::Write as _;

use tracing::{Level, info};

use super::decider::Envelope;
use super::shared::Source;
use crate::greylist::Decision;
use crate::greylist::envelope_address::push_loggable;
use crate::greylist::facts::SpfResult;
use crate::milter::decision::Macros;

/// Writes the line for `d`, if info is enabled (the line is only built
/// then: the RCPT path allocates nothing for a disabled log).
pub fn decision(
    conn_id: u64,
    envelope: &Envelope,
    d: &Decision,
    recipient: Option<&[u8]>,
    src: Option<Source>,
    macros: &dyn Macros,
    spf: Option<SpfResult>,
) {
    if !tracing::enabled!(Level::INFO) {
        return;
    }
    let mut line = String::with_capacity(160);
    line.push_str("action=");
    line.push_str(d.action.as_str());
    line.push_str(" reason=");
    d.reason.write_to(&mut line);
    line.push_str(" client=");
    let name = envelope.client_name.as_slice();
    if name.is_empty() || name.first() == Some(&b'[') {
        line.push_str("unknown");
    } else {
        push_loggable(&mut line, name);
    }
    match envelope.client_addr {
        Some(a) => {
            let _ = write!(line, "[{a}]");
        }
        None => line.push_str("[]"),
    }
    line.push_str(" from=<");
    push_loggable(&mut line, strip_brackets(&envelope.sender));
    line.push_str("> to=<");
    if let Some(r) = recipient {
        push_loggable(&mut line, strip_brackets(r));
    }
    let _ = write!(line, "> delay={} remaining={}", d.delay, d.remaining);
    if let Some(src) = src {
        line.push_str(" src=");
        line.push_str(src.as_str());
    }
    if let Some(qid) = macros.get("i").filter(|q| !q.is_empty()) {
        line.push_str(" qid=");
        push_loggable(&mut line, qid);
    }
    if let Some(spf) = spf {
        line.push_str(" spf=");
        line.push_str(spf.as_str());
    }
    info!(conn = conn_id, "{line}");
}

/// `<a@b>` → `a@b`, as the MTA sent it otherwise.
pub fn strip_brackets(a: &[u8]) -> &[u8] {
    let a = a.trim_ascii();
    let a = a.strip_prefix(b"<").unwrap_or(a);
    a.strip_suffix(b">").unwrap_or(a)
}
