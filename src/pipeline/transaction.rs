//! [`Pipeline`], the daemon's one recipient pipeline (engine, cluster,
//! DNS checks), and [`Transaction`], its state for one front-end
//! connection: what the front end told it (client, HELO, sender, whether
//! the sender authenticated), the DNS lookups started for it, and whether
//! a recipient of the transaction passed after a delay (`X-Greylist`).
//!
//! Every recipient ends in [`Transaction::finish`], whether it was decided
//! at once or after waiting (DNS, Redis): the verdict, the header
//! bookkeeping and the decision log line are written there only. A
//! passing recipient always gets [`Verdict::Pass`]; [`Verdict::Accept`]
//! only comes from `connect` and `mail`, for decisions that cover every
//! recipient. If the engine is busy (a re-entrant call, which the
//! single-threaded daemon never makes), the pipeline fails open.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::LocalBoxFuture;
use tracing::warn;

use super::cluster::{self, Asked};
use super::envelope::{CurrentDns, Envelope, Source, cut, keep};
use super::front::{FrontEnd, Verdict};
use super::log::{self, Entry, strip_brackets};
use crate::cluster::Cluster;
use crate::dns::Dns;
use crate::dns::transaction::{Found, Lookups, Seen};
use crate::greylist::facts::SpfResult;
use crate::greylist::settings::Mode;
use crate::greylist::{Action, Decision, Engine, HeaderField, Reason};
use crate::ratelimit::LogLimiter;

static BUSY_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(60));

/// The recipient pipeline the front ends share: one per daemon, cheap to
/// clone (handles only).
#[derive(Clone)]
pub struct Pipeline {
    engine: Rc<RefCell<Engine>>,
    cluster: Option<Cluster>,
    dns: CurrentDns,
}

impl Pipeline {
    pub fn new(engine: Rc<RefCell<Engine>>) -> Pipeline {
        Pipeline {
            engine,
            cluster: None,
            dns: Rc::new(RefCell::new(None)),
        }
    }

    /// Decides through the shared state in Redis (`[cluster]`).
    pub fn with_cluster(mut self, cluster: Cluster) -> Pipeline {
        self.cluster = Some(cluster);
        self
    }

    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    pub fn engine(&self) -> &Rc<RefCell<Engine>> {
        &self.engine
    }

    /// `None`: no DNS checks. Transactions in progress take them at their
    /// next CONNECT or MAIL (lookups already started finish as they were).
    pub fn set_dns(&self, dns: Option<Rc<Dns>>) {
        *self.dns.borrow_mut() = dns;
    }

    pub fn dns(&self) -> Option<Rc<Dns>> {
        self.dns.try_borrow().ok().and_then(|d| d.clone())
    }

    /// `[greylist] header` is on.
    pub fn adds_header(&self) -> bool {
        self.engine
            .try_borrow()
            .map(|e| e.settings().header)
            .unwrap_or(false)
    }

    /// A transaction for one front-end connection.
    pub fn transaction<F: FrontEnd>(&self, conn_id: u64) -> Transaction<F> {
        Transaction {
            pipeline: self.clone(),
            conn_id,
            envelope: Envelope::default(),
            sender_known: false,
            header_delay: Cell::new(None),
            lookups: Lookups::default(),
            front: PhantomData,
        }
    }
}

/// A recipient's answer: ready now, or a future to wait for (bounded by
/// the front end: past its deadline, [`Transaction::expired`]).
pub enum Step<R> {
    Now(R),
    Wait(Wait),
}

/// What a waiting recipient waits for. It owns what it needs: the
/// transaction stays usable meanwhile.
pub type Wait = LocalBoxFuture<'static, Waited>;

/// What [`Wait`] yields, for [`Transaction::answered`].
pub struct Waited {
    recipient: Vec<u8>,
    qid: Option<Vec<u8>>,
    /// The DNS lookups waited for, if the recipient waited for them.
    found: Option<Found>,
    settled: Settled,
    spf: Option<SpfResult>,
}

enum Settled {
    /// Only DNS was waited for: a lone node decides now.
    DnsDone,
    /// Redis was asked.
    Asked(Asked),
    /// A cluster node decided without Redis once DNS was done.
    Decided(Decision, Source),
    /// The engine was borrowed elsewhere: fail open.
    Busy,
}

/// The pipeline's state for one front-end connection.
pub struct Transaction<F> {
    pipeline: Pipeline,
    conn_id: u64,
    envelope: Envelope,
    /// `mail` was called for this transaction (the log shows `from=`).
    sender_known: bool,
    /// Longest delay of a recipient of this transaction that passed for
    /// the first time after waiting.
    header_delay: Cell<Option<u64>>,
    lookups: Lookups,
    front: PhantomData<fn() -> F>,
}

fn busy<F: FrontEnd>() -> F::Reply {
    if let Some(held_back) = BUSY_LOG.allow() {
        warn!("greylist engine busy, failing open ({held_back} more suppressed)");
    }
    F::reply(Verdict::PASS)
}

impl<F: FrontEnd> Transaction<F> {
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The client connected: `Verdict::Accept` when every recipient of
    /// the connection passes (a client accept, no client IP). Starts the
    /// client's DNS lookups otherwise.
    pub fn connect(&mut self, addr: Option<IpAddr>, name: &[u8]) -> F::Reply {
        self.reset();
        self.envelope.client_addr = addr;
        keep(&mut self.envelope.client_name, name);
        let Ok(mut engine) = self.pipeline.engine.try_borrow_mut() else {
            return busy::<F>();
        };
        let accepted = engine.check_connect(addr, &self.envelope.client_name);
        drop(engine);
        match accepted {
            Some(reason) => self.accepted(reason),
            None => {
                if let Some(dns) = self.pipeline.dns() {
                    let e = &self.envelope;
                    self.lookups.connect(&dns, e.client_addr, &e.client_name);
                }
                F::reply(Verdict::PASS)
            }
        }
    }

    /// The HELO name (an SPF identity for the null sender).
    pub fn helo(&mut self, name: &[u8]) {
        keep(&mut self.envelope.helo, name);
    }

    /// A new transaction from `sender` (`<a@b>`, `<>`): `Verdict::Accept`
    /// when every recipient of the message passes. `helo` stands in for a
    /// HELO name never given (Sendmail's `s` macro), asked only then and
    /// only with DNS checks on (a milter macro is a scan: not on every
    /// MAIL). Starts SPF otherwise.
    pub fn mail<'h>(
        &mut self,
        sender: &[u8],
        authenticated: bool,
        helo: impl FnOnce() -> Option<&'h [u8]>,
    ) -> F::Reply {
        self.end_transaction();
        keep(&mut self.envelope.sender, sender);
        self.envelope.authenticated = authenticated;
        self.sender_known = true;
        let Ok(mut engine) = self.pipeline.engine.try_borrow_mut() else {
            return busy::<F>();
        };
        let e = &self.envelope;
        let accepted = engine.check_mail(e.client_addr, &e.client_name, &e.sender, authenticated);
        drop(engine);
        if let Some(reason) = accepted {
            return self.accepted(reason);
        }
        if let Some(dns) = self.pipeline.dns() {
            // Without a HELO name, a null sender simply gets no SPF result.
            let e = &self.envelope;
            let helo = match e.helo.is_empty().then(helo).flatten() {
                Some(s) => cut(s),
                None => &e.helo,
            };
            self.lookups.mail(&dns, e.client_addr, helo, &e.sender);
        }
        F::reply(Verdict::PASS)
    }

    /// One recipient (as sent, `<a@b>`), with the MTA's queue id if known.
    /// Decided now when its DNS lookups are done (or none were needed) and
    /// Redis need not be asked; copies nothing then. `qid` is asked only
    /// when needed (a wait, a logged decision): a milter macro is a scan.
    pub fn rcpt<'q>(
        &mut self,
        recipient: &[u8],
        qid: impl Fn() -> Option<&'q [u8]>,
    ) -> Step<F::Reply> {
        let recipient = cut(recipient);
        if let Some(seen) = self.lookups.peek() {
            return self.decide_seen(recipient, &qid, seen);
        }
        let lookups = self.lookups.wait();
        let (recipient, qid) = (recipient.to_vec(), qid().map(cut).map(<[u8]>::to_vec));
        let wait = match self.pipeline.cluster.clone() {
            None => lookups
                .map(move |found| Waited {
                    recipient,
                    qid,
                    spf: None,
                    found: Some(found),
                    settled: Settled::DnsDone,
                })
                .boxed_local(),
            Some(cluster) => after_dns(
                Rc::clone(&self.pipeline.engine),
                cluster,
                self.envelope.clone(),
                recipient,
                qid,
                lookups,
            )
            .boxed_local(),
        };
        Step::Wait(wait)
    }

    /// [`Transaction::rcpt`], waiting at most `timeout` (then failing
    /// open), for a front end with nothing else to do meanwhile.
    pub async fn rcpt_within(
        &mut self,
        recipient: &[u8],
        qid: Option<&[u8]>,
        timeout: Duration,
    ) -> F::Reply {
        match self.rcpt(recipient, || qid) {
            Step::Now(reply) => reply,
            Step::Wait(wait) => match tokio::time::timeout(timeout, wait).await {
                Ok(waited) => self.answered(waited),
                Err(_) => {
                    self.expired();
                    F::reply(Verdict::PASS)
                }
            },
        }
    }

    /// The answer of a [`Step::Wait`] that completed in time.
    pub fn answered(&mut self, w: Waited) -> F::Reply {
        let settled = match w.settled {
            Settled::DnsDone => {
                let Some(found) = &w.found else {
                    return F::reply(Verdict::PASS);
                };
                // A lone node (the only one that waits for DNS alone)
                // never waits twice.
                return match self.decide_seen(&w.recipient, &|| w.qid.as_deref(), found.view()) {
                    Step::Now(reply) => reply,
                    Step::Wait(_) => F::reply(Verdict::PASS),
                };
            }
            settled => settled,
        };
        let Ok(mut engine) = self.pipeline.engine.try_borrow_mut() else {
            return busy::<F>();
        };
        if let Some(found) = &w.found {
            self.count_failures(&mut engine, found.view());
        }
        let (d, src) = match settled {
            Settled::Decided(d, src) => (d, src),
            Settled::Asked(asked) => cluster::finish(&mut engine, &asked),
            Settled::DnsDone | Settled::Busy => return busy::<F>(),
        };
        let qid = w.qid.as_deref();
        self.finish(&engine, &d, Some(src), &w.recipient, qid, w.spf)
    }

    /// A [`Step::Wait`] missed its deadline and was dropped (the front end
    /// answers [`Verdict::PASS`]).
    pub fn expired(&mut self) {}

    /// The `X-Greylist` header for the message, if a recipient passed after
    /// a delay and `[greylist] header` is on (end of message).
    pub fn header(&mut self) -> Option<HeaderField> {
        let delayed = self.header_delay.take()?;
        let engine = self.pipeline.engine.try_borrow().ok()?;
        if !engine.settings().header {
            return None;
        }
        Some(engine.greylist_header(delayed))
    }

    /// The transaction is over (message done or aborted, a new MAIL).
    pub fn end_transaction(&mut self) {
        self.envelope.sender.clear();
        self.envelope.authenticated = false;
        self.sender_known = false;
        self.header_delay.set(None);
        self.lookups.end_transaction();
    }

    /// The connection is over (or starts again).
    pub fn reset(&mut self) {
        self.end_transaction();
        self.lookups = Lookups::default();
        self.envelope.client_addr = None;
        self.envelope.client_name.clear();
        self.envelope.helo.clear();
    }

    /// Decides one recipient whose DNS lookups are done (or not needed); a
    /// cluster node may have to ask Redis first.
    fn decide_seen<'q>(
        &self,
        recipient: &[u8],
        qid: &dyn Fn() -> Option<&'q [u8]>,
        seen: Seen<'_>,
    ) -> Step<F::Reply> {
        let Ok(mut engine) = self.pipeline.engine.try_borrow_mut() else {
            return Step::Now(busy::<F>());
        };
        self.count_failures(&mut engine, seen);
        let facts = seen.facts();
        let spf = facts.spf_result();
        let req = self.envelope.request(recipient);
        let (d, src) = match &self.pipeline.cluster {
            None => (engine.decide_rcpt_seen(&req, facts), None),
            Some(cluster) => match cluster::start(&mut engine, cluster, &req, facts) {
                cluster::Step::Now(d, src) => (d, Some(src)),
                cluster::Step::Wait(call) => {
                    let recipient = recipient.to_vec();
                    let qid = qid().map(cut).map(<[u8]>::to_vec);
                    return Step::Wait(
                        call.map(move |asked| Waited {
                            recipient,
                            qid,
                            found: None,
                            settled: Settled::Asked(asked),
                            spf,
                        })
                        .boxed_local(),
                    );
                }
            },
        };
        // The queue id only shows in the log line.
        let qid = if log::enabled() { qid().map(cut) } else { None };
        Step::Now(self.finish(&engine, &d, src, recipient, qid, spf))
    }

    /// DNS failures not counted yet, for `DNS-Timeouts`/`DNS-Errors`.
    fn count_failures(&self, engine: &mut Engine, seen: Seen<'_>) {
        let (timeouts, errors) = self.lookups.uncounted_failures(seen);
        if timeouts + errors > 0 {
            engine.note_dns_failures(timeouts, errors);
        }
    }

    /// Every decided recipient ends here: its verdict, the header
    /// bookkeeping and its log line.
    fn finish(
        &self,
        engine: &Engine,
        d: &Decision,
        src: Option<Source>,
        recipient: &[u8],
        qid: Option<&[u8]>,
        spf: Option<SpfResult>,
    ) -> F::Reply {
        let settings = engine.settings();
        let shown = || String::from_utf8_lossy(strip_brackets(recipient));
        let verdict = match d.action {
            Action::Pass | Action::Accept | Action::WouldGreylist => {
                // A learning engine delayed nobody: no header claims it did.
                let delayed =
                    d.reason == Reason::Retried && d.delay > 0 && settings.mode != Mode::Learn;
                let mut header = None;
                if delayed {
                    let longest = self.header_delay.get().unwrap_or(0).max(d.delay);
                    self.header_delay.set(Some(longest));
                    if F::HEADER_AT_RCPT && settings.header {
                        header = Some(engine.greylist_header(d.delay));
                    }
                }
                Verdict::Pass { header }
            }
            Action::Greylist => Verdict::Tempfail(settings.reply.render(d.remaining, &shown())),
            Action::Reject => Verdict::Reject(settings.reject_reply.render(0, &shown())),
        };
        log::decision(&Entry {
            conn_id: self.conn_id,
            envelope: &self.envelope,
            decision: d,
            sender_known: true,
            recipient: Some(recipient),
            src,
            qid,
            spf,
            proto: F::PROTO,
        });
        F::reply(verdict)
    }

    /// ACCEPT at CONNECT or MAIL: a decision for every recipient, logged.
    fn accepted(&self, reason: Reason) -> F::Reply {
        log::decision(&Entry {
            conn_id: self.conn_id,
            envelope: &self.envelope,
            decision: &Decision::accepted(reason),
            sender_known: self.sender_known,
            recipient: None,
            src: self.pipeline.cluster.as_ref().map(|_| Source::Local),
            qid: None,
            spf: None,
            proto: F::PROTO,
        });
        F::reply(Verdict::Accept)
    }
}

/// A cluster node's recipient whose DNS lookups are still running: waits
/// for them, then takes the steps of [`cluster::start`], all in one future
/// (one wait for the front end, bounded by its deadline).
async fn after_dns(
    engine: Rc<RefCell<Engine>>,
    cluster: Cluster,
    envelope: Envelope,
    recipient: Vec<u8>,
    qid: Option<Vec<u8>>,
    lookups: impl Future<Output = Found> + 'static,
) -> Waited {
    let found = lookups.await;
    let spf = found.view().facts().spf_result();
    // The borrow ends with this statement, before any await.
    let step = match engine.try_borrow_mut() {
        Ok(mut engine) => {
            let req = envelope.request(&recipient);
            Some(cluster::start(
                &mut engine,
                &cluster,
                &req,
                found.view().facts(),
            ))
        }
        Err(_) => None,
    };
    let settled = match step {
        None => Settled::Busy,
        Some(cluster::Step::Now(d, src)) => Settled::Decided(d, src),
        Some(cluster::Step::Wait(call)) => Settled::Asked(call.await),
    };
    Waited {
        recipient,
        qid,
        found: Some(found),
        settled,
        spf,
    }
}
