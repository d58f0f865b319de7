//! [`PolicyDecider`]: one per milter connection. It keeps what the session
//! told it (client, sender, whether the sender authenticated), asks the
//! engine at CONNECT, MAIL and RCPT, turns the answer into a [`Verdict`],
//! writes the decision log line, and remembers whether a recipient of the
//! transaction passed after a delay, for the `X-Greylist` header at EOM.
//!
//! A passing recipient always gets [`Verdict::Continue`]:
//! [`Verdict::Accept`] only comes from CONNECT and MAIL, for decisions that
//! cover every recipient. If the engine is busy (a re-entrant call, which
//! the single-threaded daemon never makes), the decider fails open.

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::LocalBoxFuture;
use tracing::warn;

use super::log::{self, strip_brackets};
use super::shared::{self, SharedAnswer, Source, Step};
use crate::cluster::Cluster;
use crate::dns::Dns;
use crate::dns::transaction::{Found, Lookups};
use crate::greylist::settings::Mode;
use crate::greylist::{Action, Decision, Engine, Reason, Request};
use crate::milter::decision::{Client, Decided, Decider, Header, Macros, Verdict};
use crate::ratelimit::LogLimiter;

/// Longest client name, sender or recipient a decider keeps (a hostile MTA
/// peer must not make per-session memory grow; keys use 512 bytes at most).
const MAX_KEPT: usize = 1024;

static BUSY_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(60));

/// What the session has told the decider about the current transaction.
#[derive(Debug, Default, Clone)]
pub struct Envelope {
    pub client_addr: Option<IpAddr>,
    /// The host name as the MTA sent it (`[ip]` when unverified), cut.
    pub client_name: Vec<u8>,
    /// The MAIL argument as sent, cut.
    pub sender: Vec<u8>,
    /// The HELO name, when the session asked for it (SPF), cut.
    pub helo: Vec<u8>,
    pub authenticated: bool,
}

impl Envelope {
    fn request<'a>(&'a self, recipient: &'a [u8]) -> Request<'a> {
        Request {
            client_addr: self.client_addr,
            client_name: &self.client_name,
            sender: &self.sender,
            recipient,
            authenticated: self.authenticated,
        }
    }
}

pub struct PolicyDecider {
    engine: Rc<RefCell<Engine>>,
    cluster: Option<Cluster>,
    conn_id: u64,
    envelope: Envelope,
    /// Longest delay of a recipient of this transaction that passed for
    /// the first time after waiting.
    header_delay: Option<u64>,
    /// `None`: no DNS checks configured.
    dns: Option<Rc<Dns>>,
    lookups: Lookups,
    /// The recipient (and queue id) whose decision waits for DNS.
    waiting: Option<(Vec<u8>, Vec<u8>)>,
}

/// What a waiting recipient gets back: the DNS lookups of its
/// transaction, or the cluster's answer.
pub enum PolicyAnswer {
    Dns(Found),
    Shared(SharedAnswer),
}

/// The queue id of a recipient whose decision waited, for the log line.
struct Qid<'a>(&'a [u8]);

impl Macros for Qid<'_> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        matches!(name, "i" | "{i}").then_some(self.0)
    }
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
    pub fn new(engine: Rc<RefCell<Engine>>, conn_id: u64) -> PolicyDecider {
        PolicyDecider {
            engine,
            cluster: None,
            conn_id,
            envelope: Envelope::default(),
            header_delay: None,
            dns: None,
            lookups: Lookups::default(),
            waiting: None,
        }
    }

    /// With DNS checks: lookups start at CONNECT and MAIL (inside the
    /// daemon's `LocalSet`) and RCPT may wait for them.
    pub fn with_dns(mut self, dns: Option<Rc<Dns>>) -> PolicyDecider {
        self.dns = dns;
        self
    }

    /// Decides one recipient with what DNS found, logs it.
    fn decide(&mut self, recipient: &[u8], qid: &[u8], found: &Found) -> Verdict {
        let engine = Rc::clone(&self.engine);
        let Ok(mut engine) = engine.try_borrow_mut() else {
            return busy();
        };
        let (timeouts, errors) = self.lookups.uncounted_failures(found);
        if timeouts + errors > 0 {
            engine.note_dns_failures(timeouts, errors);
        }
        let facts = found.facts();
        let d = engine.decide_rcpt_with(&self.envelope.request(recipient), &facts);
        let verdict = self.conclude(&engine, &d, recipient);
        drop(engine);
        let spf = facts.spf.as_ref().map(|f| f.result);
        log::decision(
            self.conn_id,
            &self.envelope,
            &d,
            Some(recipient),
            self.local_src(),
            &Qid(qid),
            spf,
        );
        verdict
    }

    pub fn with_cluster(mut self, cluster: Option<Cluster>) -> Self {
        self.cluster = cluster;
        self
    }

    /// `src=` for the log: only on a cluster node, where it tells.
    fn local_src(&self) -> Option<Source> {
        self.cluster.as_ref().map(|_| Source::Local)
    }

    /// ACCEPT at CONNECT or MAIL: a decision for every recipient, logged.
    fn accepted(&self, reason: Reason, macros: &dyn Macros) -> Verdict {
        log::decision(
            self.conn_id,
            &self.envelope,
            &Decision::accepted(reason),
            None,
            self.local_src(),
            macros,
            None,
        );
        Verdict::Accept
    }

    /// The verdict for a decided recipient, and the bookkeeping it needs.
    fn conclude(&mut self, engine: &Engine, d: &Decision, recipient: &[u8]) -> Verdict {
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
        if d.reason == Reason::Retried && d.delay > 0 && !learning {
            self.header_delay = Some(self.header_delay.unwrap_or(0).max(d.delay));
        }
        verdict
    }
}

impl Decider for PolicyDecider {
    type Answer = PolicyAnswer;
    type Wait = LocalBoxFuture<'static, PolicyAnswer>;

    fn connect(&mut self, client: &Client<'_>, macros: &dyn Macros) -> Verdict {
        self.reset();
        self.envelope.client_addr = client.addr;
        keep(&mut self.envelope.client_name, client.hostname);
        let Ok(mut engine) = self.engine.try_borrow_mut() else {
            return busy();
        };
        let Some(reason) =
            engine.check_connect(self.envelope.client_addr, &self.envelope.client_name)
        else {
            drop(engine);
            if let Some(dns) = &self.dns {
                let e = &self.envelope;
                self.lookups.connect(dns, e.client_addr, &e.client_name);
            }
            return Verdict::Continue;
        };
        drop(engine);
        self.accepted(reason, macros)
    }

    fn helo(&mut self, name: &[u8]) {
        keep(&mut self.envelope.helo, name);
    }

    fn mail(&mut self, sender: &[u8], macros: &dyn Macros) -> Verdict {
        self.end_transaction();
        keep(&mut self.envelope.sender, sender);
        self.envelope.authenticated = macros
            .get("auth_authen")
            .is_some_and(|v| !v.trim_ascii().is_empty());
        let Ok(mut engine) = self.engine.try_borrow_mut() else {
            return busy();
        };
        let e = &self.envelope;
        let accepted = engine.check_mail(e.client_addr, &e.client_name, &e.sender, e.authenticated);
        drop(engine);
        match accepted {
            Some(reason) => self.accepted(reason, macros),
            None => {
                if let Some(dns) = &self.dns {
                    // The HELO event (asked for without a reply when SPF
                    // is on), else Sendmail's `s` macro. Without either, a
                    // null sender simply gets no SPF result.
                    let e = &self.envelope;
                    let helo = match macros.get("s") {
                        Some(s) if e.helo.is_empty() => s.get(..MAX_KEPT).unwrap_or(s),
                        _ => &e.helo,
                    };
                    self.lookups.mail(dns, e.client_addr, helo, &e.sender);
                }
                Verdict::Continue
            }
        }
    }

    fn rcpt(&mut self, recipient: &[u8], macros: &dyn Macros) -> Decided<Self::Wait> {
        let recipient = recipient.get(..MAX_KEPT).unwrap_or(recipient);
        if self.cluster.is_none() {
            // DNS checks (not yet on a cluster node: its shared table is
            // keyed by network).
            let qid = macros.get("i").unwrap_or_default();
            let qid = qid.get(..MAX_KEPT).unwrap_or(qid);
            let found = match self.lookups.ready() {
                Some(found) => found,
                None => {
                    self.waiting = Some((recipient.to_vec(), qid.to_vec()));
                    return Decided::Wait(self.lookups.wait().map(PolicyAnswer::Dns).boxed_local());
                }
            };
            return Decided::Now(self.decide(recipient, qid, &found));
        }
        let engine = Rc::clone(&self.engine);
        let Ok(mut engine) = engine.try_borrow_mut() else {
            return Decided::Now(busy());
        };
        let req = self.envelope.request(recipient);
        let (d, src) = match &self.cluster {
            None => (engine.decide_rcpt(&req), None),
            Some(cluster) => match shared::start(&mut engine, cluster, &req, macros) {
                Step::Now(d, src) => (d, Some(src)),
                Step::Wait(w) => return Decided::Wait(w.map(PolicyAnswer::Shared).boxed_local()),
            },
        };
        let verdict = self.conclude(&engine, &d, recipient);
        drop(engine);
        log::decision(
            self.conn_id,
            &self.envelope,
            &d,
            Some(recipient),
            src,
            macros,
            None,
        );
        Decided::Now(verdict)
    }

    fn rcpt_answered(&mut self, answer: PolicyAnswer) -> Verdict {
        let answer = match answer {
            PolicyAnswer::Dns(found) => {
                return match self.waiting.take() {
                    Some((recipient, qid)) => self.decide(&recipient, &qid, &found),
                    None => Verdict::Continue,
                };
            }
            PolicyAnswer::Shared(answer) => answer,
        };
        let engine = Rc::clone(&self.engine);
        let Ok(mut engine) = engine.try_borrow_mut() else {
            return busy();
        };
        let (d, src) = shared::finish(&mut engine, &answer);
        let verdict = self.conclude(&engine, &d, &answer.recipient);
        drop(engine);
        log::decision(
            self.conn_id,
            &self.envelope,
            &d,
            Some(&answer.recipient),
            Some(src),
            &answer,
            None,
        );
        verdict
    }

    fn rcpt_expired(&mut self) {
        self.waiting = None;
    }

    fn eom(&mut self, _macros: &dyn Macros) -> Option<Header> {
        let delayed = self.header_delay.take()?;
        let engine = self.engine.try_borrow().ok()?;
        if !engine.settings().header {
            return None;
        }
        let field = engine.greylist_header(delayed);
        Some(Header {
            name: field.name.to_string(),
            value: field.value,
        })
    }

    fn end_transaction(&mut self) {
        self.envelope.sender.clear();
        self.envelope.authenticated = false;
        self.header_delay = None;
        self.waiting = None;
        self.lookups.end_transaction();
    }

    fn reset(&mut self) {
        self.end_transaction();
        self.lookups = Lookups::default();
        self.envelope.client_addr = None;
        self.envelope.client_name.clear();
        self.envelope.helo.clear();
    }
}
