//! The adapter between the milter session and the engine: one
//! [`PolicyDecider`] per milter connection, made by [`PolicyFactory`].
//!
//! It keeps what the session told it (client, sender, whether the sender
//! authenticated), asks the engine at CONNECT, MAIL and RCPT, turns the
//! answer into a [`Verdict`], writes the decision log line, and remembers
//! whether a recipient of the transaction passed after a delay, for the
//! `X-Greylist` header at EOM. A passing recipient always gets
//! [`Verdict::Continue`]: [`Verdict::Accept`] only comes from CONNECT and
//! MAIL, for decisions that cover every recipient.
//!
//! Decision log, one line at info per RCPT (and per CONNECT/MAIL accept):
//! `action=… reason=… client=<name>[<ip>] from=<…> to=<…> delay=<s>
//! remaining=<s>` and `qid=<i>` when the MTA sent the `i` macro. Addresses
//! are logged as sent, escaped and cut (see `address::push_loggable`).
//!
//! If the engine is busy (a re-entrant call, which the single-threaded
//! daemon never makes), the decider fails open: Continue.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use tracing::{Level, info, warn};

use super::address::push_loggable;
use super::engine::{Action, Decision, Engine, Reason, Request};
use super::settings::Mode;
use crate::milter::decision::{
    Client, Decider, DeciderFactory, Header, Macros, SessionOptions, SessionSummary, Verdict,
};
use crate::ratelimit::LogLimiter;

/// Longest client name, sender or recipient a decider keeps (a hostile MTA
/// peer must not make per-session memory grow; keys use 512 bytes at most).
const MAX_KEPT: usize = 1024;

static BUSY_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(60));

pub struct PolicyFactory {
    engine: Rc<RefCell<Engine>>,
    idle_timeout: Cell<Duration>,
}

impl PolicyFactory {
    pub fn new(engine: Rc<RefCell<Engine>>, idle_timeout: Duration) -> Self {
        PolicyFactory {
            engine,
            idle_timeout: Cell::new(idle_timeout),
        }
    }

    pub fn set_idle_timeout(&self, d: Duration) {
        self.idle_timeout.set(d);
    }
}

impl DeciderFactory for PolicyFactory {
    type Decider = PolicyDecider;

    fn new_decider(&self, conn_id: u64) -> PolicyDecider {
        PolicyDecider {
            engine: Rc::clone(&self.engine),
            conn_id,
            client_addr: None,
            client_name: Vec::new(),
            sender: Vec::new(),
            authenticated: false,
            header_delay: None,
        }
    }

    fn options(&self) -> SessionOptions {
        let add_header = self
            .engine
            .try_borrow()
            .map(|e| e.settings().header)
            .unwrap_or(false);
        SessionOptions {
            idle_timeout: self.idle_timeout.get(),
            add_header,
        }
    }

    fn session_ended(&self, summary: &SessionSummary) {
        if let Ok(mut e) = self.engine.try_borrow_mut() {
            e.note_session_end(summary);
        }
    }
}

pub struct PolicyDecider {
    engine: Rc<RefCell<Engine>>,
    conn_id: u64,
    client_addr: Option<IpAddr>,
    client_name: Vec<u8>,
    sender: Vec<u8>,
    authenticated: bool,
    /// Longest delay of a recipient of this transaction that passed for
    /// the first time after waiting.
    header_delay: Option<u64>,
}

fn keep(dst: &mut Vec<u8>, src: &[u8]) {
    dst.clear();
    dst.extend_from_slice(src.get(..MAX_KEPT).unwrap_or(src));
}

fn busy() -> Verdict {
    if let Some(held_back) = BUSY_LOG.allow() {
        warn!("greylist engine busy, failing open ({held_back} more suppressed)");
    }
    Verdict::Continue
}

impl PolicyDecider {
    fn log(&self, d: &Decision, recipient: Option<&[u8]>, macros: &dyn Macros) {
        if !tracing::enabled!(Level::INFO) {
            return;
        }
        let mut line = String::with_capacity(160);
        line.push_str("action=");
        line.push_str(d.action.as_str());
        line.push_str(" reason=");
        d.reason.write_to(&mut line);
        line.push_str(" client=");
        let name = self.client_name.as_slice();
        if name.is_empty() || name.first() == Some(&b'[') {
            line.push_str("unknown");
        } else {
            push_loggable(&mut line, name);
        }
        match self.client_addr {
            Some(a) => {
                let _ = write!(line, "[{a}]");
            }
            None => line.push_str("[]"),
        }
        line.push_str(" from=<");
        push_loggable(&mut line, strip_brackets(&self.sender));
        line.push_str("> to=<");
        if let Some(r) = recipient {
            push_loggable(&mut line, strip_brackets(r));
        }
        let _ = write!(line, "> delay={} remaining={}", d.delay, d.remaining);
        if let Some(qid) = macros.get("i").filter(|q| !q.is_empty()) {
            line.push_str(" qid=");
            push_loggable(&mut line, qid);
        }
        info!(conn = self.conn_id, "{line}");
    }
}

fn strip_brackets(a: &[u8]) -> &[u8] {
    let a = a.trim_ascii();
    let a = a.strip_prefix(b"<").unwrap_or(a);
    a.strip_suffix(b">").unwrap_or(a)
}

impl Decider for PolicyDecider {
    fn connect(&mut self, client: &Client<'_>, macros: &dyn Macros) -> Verdict {
        self.reset();
        self.client_addr = client.addr;
        keep(&mut self.client_name, client.hostname);
        let Ok(mut engine) = self.engine.try_borrow_mut() else {
            return busy();
        };
        let Some(reason) = engine.check_connect(self.client_addr, &self.client_name) else {
            return Verdict::Continue;
        };
        drop(engine);
        self.log(&Decision::accepted(reason), None, macros);
        Verdict::Accept
    }

    fn mail(&mut self, sender: &[u8], macros: &dyn Macros) -> Verdict {
        self.end_transaction();
        keep(&mut self.sender, sender);
        self.authenticated = macros
            .get("auth_authen")
            .is_some_and(|v| !v.trim_ascii().is_empty());
        let Ok(mut engine) = self.engine.try_borrow_mut() else {
            return busy();
        };
        let accepted = engine.check_mail(
            self.client_addr,
            &self.client_name,
            &self.sender,
            self.authenticated,
        );
        drop(engine);
        match accepted {
            Some(reason) => {
                self.log(&Decision::accepted(reason), None, macros);
                Verdict::Accept
            }
            None => Verdict::Continue,
        }
    }

    fn rcpt(&mut self, recipient: &[u8], macros: &dyn Macros) -> Verdict {
        let recipient = recipient.get(..MAX_KEPT).unwrap_or(recipient);
        let Ok(mut engine) = self.engine.try_borrow_mut() else {
            return busy();
        };
        let d = engine.decide_rcpt(&Request {
            client_addr: self.client_addr,
            client_name: &self.client_name,
            sender: &self.sender,
            recipient,
            authenticated: self.authenticated,
        });
        let verdict = match d.action {
            Action::Pass | Action::Accept | Action::WouldGreylist => Verdict::Continue,
            Action::Greylist => {
                let shown = String::from_utf8_lossy(strip_brackets(recipient));
                Verdict::Tempfail(engine.settings().reply.render(d.remaining, &shown))
            }
            Action::Reject => {
                let shown = String::from_utf8_lossy(strip_brackets(recipient));
                Verdict::Reject(engine.settings().reject_reply.render(0, &shown))
            }
        };
        // A learning engine delayed nobody: no header claims it did.
        let learning = engine.settings().mode == Mode::Learn;
        drop(engine);
        if d.reason == Reason::Retried && d.delay > 0 && !learning {
            self.header_delay = Some(self.header_delay.unwrap_or(0).max(d.delay));
        }
        self.log(&d, Some(recipient), macros);
        verdict
    }

    fn eom(&mut self, _macros: &dyn Macros) -> Option<Header> {
        let delayed = self.header_delay.take()?;
        let engine = self.engine.try_borrow().ok()?;
        engine
            .settings()
            .header
            .then(|| engine.greylist_header(delayed))
    }

    fn end_transaction(&mut self) {
        self.sender.clear();
        self.authenticated = false;
        self.header_delay = None;
    }

    fn reset(&mut self) {
        self.end_transaction();
        self.client_addr = None;
        self.client_name.clear();
    }
}
