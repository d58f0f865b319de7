//! Shared by the milter test crates: a tiny greylist-like decider, and
//! helpers that run a session against the MTA-side client in memory.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::HashSet;
use std::net::IpAddr;
use std::rc::Rc;

use greymilter::milter::client::{ClientBuilder, MilterClient};
use greymilter::milter::connection::run_session;
use greymilter::milter::decision::{
    Client, Decided, Decider, DeciderFactory, Header, Macros, SessionOptions, SessionSummary,
    Verdict,
};
use greymilter::reply::Reply;
use tokio::io::DuplexStream;

/// What the deciders saw, shared with the test.
#[derive(Default, Debug)]
pub struct Seen {
    pub events: Vec<String>,
    pub summaries: Vec<SessionSummary>,
    /// (client, sender, recipient) tuples already seen once.
    pub known: HashSet<(Option<IpAddr>, String, String)>,
}

pub type Shared = Rc<RefCell<Seen>>;

/// Greylist-like rule: a (client, sender, recipient) tuple is tempfailed
/// with a 4.7.1 reply the first time and passes afterwards (the "delay" is
/// one attempt, not time). No client IP: ACCEPT at CONNECT. An
/// `{auth_authen}` macro at MAIL: ACCEPT. A recipient starting with
/// `<reject` gets a 550; one starting with `<wrongclass` a tempfail carrying
/// a 5xx reply (the session must fall back to a bare 't'). A recipient
/// starting with `<slow` is decided as usual but only after
/// [`SLOW_DECISION`] (a decision that waits); one starting with `<never`
/// waits forever.
pub struct GreyDecider {
    pub seen: Shared,
    pub client: Option<IpAddr>,
    pub sender: Option<String>,
    pub header: Option<Header>,
    pub tempfail: Reply,
}

impl GreyDecider {
    pub fn new(seen: &Shared) -> GreyDecider {
        GreyDecider {
            seen: Rc::clone(seen),
            client: None,
            sender: None,
            header: None,
            tempfail: Reply::parse("451 4.7.1 Greylisted, please try again later").unwrap(),
        }
    }

    fn log(&self, e: String) {
        self.seen.borrow_mut().events.push(e);
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// How long a `<slow…>` recipient's decision waits.
pub const SLOW_DECISION: std::time::Duration = std::time::Duration::from_millis(200);

pub type GreyWait = std::pin::Pin<Box<dyn std::future::Future<Output = Verdict>>>;

impl GreyDecider {
    fn decide(&mut self, rcpt: String) -> Verdict {
        if rcpt.starts_with("<reject") {
            return Verdict::Reject(Reply::parse("550 5.7.1 Refused").unwrap());
        }
        if rcpt.starts_with("<wrongclass") {
            return Verdict::Tempfail(Reply::parse("550 5.7.1 Refused").unwrap());
        }
        let tuple = (self.client, self.sender.clone().unwrap_or_default(), rcpt);
        if self.seen.borrow_mut().known.insert(tuple) {
            Verdict::Tempfail(self.tempfail.clone())
        } else {
            Verdict::Accept
        }
    }
}

impl Decider for GreyDecider {
    type Answer = Verdict;
    type Wait = GreyWait;
    fn connect(&mut self, client: &Client<'_>, macros: &dyn Macros) -> Verdict {
        self.log(format!(
            "connect {} {:?} j={:?}",
            lossy(client.hostname),
            client.addr,
            macros.get("j").map(lossy)
        ));
        self.client = client.addr;
        if client.hostname.starts_with(b"refused") {
            return Verdict::Reject(Reply::parse("554 5.7.1 Client refused").unwrap());
        }
        match client.addr {
            None => Verdict::Accept,
            Some(_) => Verdict::Continue,
        }
    }

    fn helo(&mut self, name: &[u8]) {
        self.log(format!("helo {}", lossy(name)));
    }

    fn mail(&mut self, sender: &[u8], macros: &dyn Macros) -> Verdict {
        let auth = macros.get("{auth_authen}").map(lossy);
        self.log(format!("mail {} auth={auth:?}", lossy(sender)));
        if auth.is_some_and(|a| !a.is_empty()) {
            return Verdict::Accept;
        }
        if sender.starts_with(b"<refused") {
            return Verdict::Tempfail(Reply::parse("450 4.7.1 Sender refused").unwrap());
        }
        self.sender = Some(lossy(sender).to_ascii_lowercase());
        Verdict::Continue
    }

    fn rcpt(&mut self, recipient: &[u8], macros: &dyn Macros) -> Decided<GreyWait> {
        let rcpt = lossy(recipient).to_ascii_lowercase();
        self.log(format!("rcpt {rcpt} i={:?}", macros.get("i").map(lossy)));
        if rcpt.starts_with("<never") {
            return Decided::Wait(Box::pin(std::future::pending()));
        }
        let verdict = self.decide(rcpt.clone());
        if rcpt.starts_with("<slow") {
            return Decided::Wait(Box::pin(async move {
                tokio::time::sleep(SLOW_DECISION).await;
                verdict
            }));
        }
        Decided::Now(verdict)
    }

    fn rcpt_answered(&mut self, answer: Verdict) -> Verdict {
        self.log(format!("answered {answer:?}"));
        answer
    }

    fn rcpt_expired(&mut self) {
        self.log("expired".into());
    }

    fn eom(&mut self, macros: &dyn Macros) -> Option<Header> {
        self.log(format!("eom i={:?}", macros.get("i").map(lossy)));
        self.header.clone()
    }

    fn end_transaction(&mut self) {
        self.log("end".into());
        self.sender = None;
    }

    fn reset(&mut self) {
        self.log("reset".into());
        self.sender = None;
        self.client = None;
    }
}

pub struct GreyFactory {
    pub seen: Shared,
    pub options: SessionOptions,
}

impl GreyFactory {
    pub fn new() -> GreyFactory {
        GreyFactory {
            seen: Shared::default(),
            options: SessionOptions::default(),
        }
    }
}

impl DeciderFactory for GreyFactory {
    type Decider = GreyDecider;

    fn new_decider(&self, _conn_id: u64) -> GreyDecider {
        GreyDecider::new(&self.seen)
    }

    fn options(&self) -> SessionOptions {
        self.options.clone()
    }

    fn session_ended(&self, summary: &SessionSummary) {
        self.seen.borrow_mut().summaries.push(*summary);
    }
}

/// Runs `script` (the MTA side) against a session over an in-memory pipe and
/// returns the session's summary and the script's result.
pub async fn with_session<D, F, Fut, T>(
    decider: D,
    options: &SessionOptions,
    builder: ClientBuilder,
    script: F,
) -> (SessionSummary, T)
where
    D: Decider,
    F: FnOnce(MilterClient<DuplexStream>) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let (mta, milter) = tokio::io::duplex(1 << 17);
    let session = run_session(milter, decider, options, 7, "duplex");
    let client = builder.on_stream(mta);
    tokio::join!(session, script(client))
}
