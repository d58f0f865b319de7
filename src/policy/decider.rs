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

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::LocalBoxFuture;
use tracing::warn;

use super::factory::CurrentDns;
use super::log::{self, strip_brackets};
use super::shared::{self, Settled, SharedAnswer, Source, Step};
use crate::cluster::Cluster;
use crate::dns::Dns;
use crate::dns::transaction::{Found, Lookups, Seen};
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
    pub(super) fn request<'a>(&'a self, recipient: &'a [u8]) -> Request<'a> {
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
    header_delay: Cell<Option<u64>>,
    /// The factory's DNS checks in force (`None` inside: none configured),
    /// read at each CONNECT and MAIL.
    dns: CurrentDns,
    lookups: Lookups,
    /// The recipient (and queue id) whose decision waits for DNS.
    waiting: Option<(Vec<u8>, Vec<u8>)>,
}

/// What a waiting recipient gets back: the DNS lookups of its
/// transaction (a lone node), or how a cluster node settled it.
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
            header_delay: Cell::new(None),
            dns: CurrentDns::default(),
            lookups: Lookups::default(),
            waiting: None,
        }
    }

    /// With DNS checks: lookups start at CONNECT and MAIL (inside the
    /// daemon's `LocalSet`) and RCPT may wait for them.
    pub fn with_dns(mut self, dns: CurrentDns) -> PolicyDecider {
        self.dns = dns;
        self
    }

    /// Decides one recipient whose DNS lookups are done (or not needed),
    /// logs it; a cluster node may have to ask Redis first. Copies nothing
    /// unless Redis is asked.
    fn decide_seen(
        &self,
        recipient: &[u8],
        macros: &dyn Macros,
        seen: Seen<'_>,
    ) -> Decided<LocalBoxFuture<'static, PolicyAnswer>> {
        let engine = Rc::clone(&self.engine);
        let Ok(mut engine) = engine.try_borrow_mut() else {
            return Decided::Now(busy());
        };
        let (timeouts, errors) = self.lookups.uncounted_failures(seen);
        if timeouts + errors > 0 {
            engine.note_dns_failures(timeouts, errors);
        }
        let facts = seen.facts();
        let req = self.envelope.request(recipient);
        let (d, src) = match &self.cluster {
            None => (engine.decide_rcpt_seen(&req, facts), None),
            Some(cluster) => match shared::start(&mut engine, cluster, &req, facts) {
                Step::Now(d, src) => (d, Some(src)),
                Step::Wait(call) => {
                    let recipient = recipient.to_vec();
                    let qid = macros.get("i").map(<[u8]>::to_vec);
                    let spf = facts.spf_result();
                    let answer = call.map(move |settled| {
                        PolicyAnswer::Shared(SharedAnswer {
                            settled,
                            recipient,
                            qid,
                            found: None,
                            spf,
                        })
                    });
                    return Decided::Wait(answer.boxed_local());
                }
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
            facts.spf_result(),
        );
        Decided::Now(verdict)
    }

    /// A recipient whose DNS lookups are still running waits for them (a
    /// cluster node then takes its Redis step in the same wait).
    fn wait_for_dns(
        &mut self,
        recipient: &[u8],
        qid: &[u8],
    ) -> Decided<LocalBoxFuture<'static, PolicyAnswer>> {
        let lookups = self.lookups.wait();
        let Some(cluster) = &self.cluster else {
            self.waiting = Some((recipient.to_vec(), qid.to_vec()));
            return Decided::Wait(lookups.map(PolicyAnswer::Dns).boxed_local());
        };
        let settle = shared::after_dns(
            Rc::clone(&self.engine),
            cluster.clone(),
            self.envelope.clone(),
            recipient.to_vec(),
            Some(qid.to_vec()).filter(|q| !q.is_empty()),
            lookups,
        );
        Decided::Wait(settle.map(PolicyAnswer::Shared).boxed_local())
    }

    /// The DNS checks in force now (a reload may have swapped them).
    fn current_dns(&self) -> Option<Rc<Dns>> {
        self.dns.try_borrow().ok().and_then(|d| d.clone())
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
    fn conclude(&self, engine: &Engine, d: &Decision, recipient: &[u8]) -> Verdict {
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
            let longest = self.header_delay.get().unwrap_or(0).max(d.delay);
            self.header_delay.set(Some(longest));
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
            if let Some(dns) = self.current_dns() {
                let e = &self.envelope;
                self.lookups.connect(&dns, e.client_addr, &e.client_name);
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
                if let Some(dns) = self.current_dns() {
                    // The HELO event (asked for without a reply when SPF
                    // is on), else Sendmail's `s` macro. Without either, a
                    // null sender simply gets no SPF result.
                    let e = &self.envelope;
                    let helo = match macros.get("s") {
                        Some(s) if e.helo.is_empty() => s.get(..MAX_KEPT).unwrap_or(s),
                        _ => &e.helo,
                    };
                    self.lookups.mail(&dns, e.client_addr, helo, &e.sender);
                }
                Verdict::Continue
            }
        }
    }

    fn rcpt(&mut self, recipient: &[u8], macros: &dyn Macros) -> Decided<Self::Wait> {
        let recipient = recipient.get(..MAX_KEPT).unwrap_or(recipient);
        match self.lookups.peek() {
            Some(seen) => self.decide_seen(recipient, macros, seen),
            None => {
                let qid = macros.get("i").unwrap_or_default();
                let qid = qid.get(..MAX_KEPT).unwrap_or(qid);
                self.wait_for_dns(recipient, qid)
            }
        }
    }

    fn rcpt_answered(&mut self, answer: PolicyAnswer) -> Verdict {
        let answer = match answer {
            PolicyAnswer::Dns(found) => {
                let Some((recipient, qid)) = self.waiting.take() else {
                    return Verdict::Continue;
                };
                // A lone node (the only one answering `Dns`) never waits twice.
                return match self.decide_seen(&recipient, &Qid(&qid), found.view()) {
                    Decided::Now(verdict) => verdict,
                    Decided::Wait(_) => Verdict::Continue,
                };
            }
            PolicyAnswer::Shared(answer) => answer,
        };
        let engine = Rc::clone(&self.engine);
        let Ok(mut engine) = engine.try_borrow_mut() else {
            return busy();
        };
        if let Some(seen) = answer.found.as_ref().map(Found::view) {
            let (timeouts, errors) = self.lookups.uncounted_failures(seen);
            if timeouts + errors > 0 {
                engine.note_dns_failures(timeouts, errors);
            }
        }
        let (d, src) = match &answer.settled {
            Settled::Asked { query, reply } => shared::finish(&mut engine, query, reply.as_ref()),
            Settled::Decided(d, src) => (*d, *src),
            Settled::Busy => return busy(),
        };
        let verdict = self.conclude(&engine, &d, &answer.recipient);
        drop(engine);
        log::decision(
            self.conn_id,
            &self.envelope,
            &d,
            Some(&answer.recipient),
            Some(src),
            &answer,
            answer.spf,
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
        self.header_delay.set(None);
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
