//! The lookups of one milter connection: the client set starts at
//! CONNECT, the SPF set at MAIL, each at most once per connection or
//! transaction, spawned on the daemon's `LocalSet` so they progress while
//! the MTA talks; RCPT reads them when done or waits for them. Each set
//! ends within `[dns] timeout` of its start, so a RCPT never waits longer.

use std::cell::Cell;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;

use futures_util::FutureExt as _;
use futures_util::future::{LocalBoxFuture, Shared};

use super::{Dns, Outcome};
use crate::greylist::facts::{ClientFacts, DnsView, SpfFacts};

type Pending<T> = Shared<LocalBoxFuture<'static, Outcome<T>>>;

/// What the lookups found, with their failure counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    pub client: Option<Outcome<ClientFacts>>,
    pub spf: Option<Outcome<SpfFacts>>,
}

impl Found {
    pub fn view(&self) -> Seen<'_> {
        Seen {
            client: self.client.as_ref(),
            spf: self.spf.as_ref(),
        }
    }
}

/// [`Found`] borrowed from lookups that are done (nothing copied).
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub client: Option<&'a Outcome<ClientFacts>>,
    pub spf: Option<&'a Outcome<SpfFacts>>,
}

impl<'a> Seen<'a> {
    pub fn facts(&self) -> DnsView<'a> {
        DnsView {
            client: self.client.and_then(|o| o.facts),
            spf: self.spf.and_then(|o| o.facts.as_ref()),
        }
    }
}

#[derive(Default)]
pub struct Lookups {
    client: Option<Pending<ClientFacts>>,
    spf: Option<Pending<SpfFacts>>,
    /// Failures already handed to the statistics, per set.
    client_counted: Cell<bool>,
    spf_counted: Cell<bool>,
}

fn start<T: Clone + 'static>(fut: impl Future<Output = Outcome<T>> + 'static) -> Pending<T> {
    let shared = fut.boxed_local().shared();
    // Polled by its own task so that it progresses before RCPT asks. The
    // daemon runs every session inside its LocalSet.
    drop(tokio::task::spawn_local(shared.clone()));
    shared
}

impl Lookups {
    /// CONNECT: the client set, if the configuration asks for one.
    pub fn connect(&mut self, dns: &Rc<Dns>, addr: Option<IpAddr>, name: &[u8]) {
        *self = Lookups::default();
        let Some(addr) = addr else { return };
        if dns.wants_client() {
            self.client = Some(start(Rc::clone(dns).client(addr, name.to_vec())));
        }
    }

    /// MAIL: the SPF set for this transaction.
    pub fn mail(&mut self, dns: &Rc<Dns>, addr: Option<IpAddr>, helo: &[u8], sender: &[u8]) {
        self.end_transaction();
        let Some(addr) = addr else { return };
        if dns.wants_spf() {
            let helo = String::from_utf8_lossy(helo).into_owned();
            let sender = String::from_utf8_lossy(sender).into_owned();
            self.spf = Some(start(Rc::clone(dns).spf(addr, helo, sender)));
        }
    }

    pub fn end_transaction(&mut self) {
        self.spf = None;
        self.spf_counted.set(false);
    }

    /// What is known now, if every started set is done (borrowed: no
    /// copy on the path where RCPT does not wait).
    pub fn peek(&self) -> Option<Seen<'_>> {
        let client = match &self.client {
            Some(p) => Some(p.peek()?),
            None => None,
        };
        let spf = match &self.spf {
            Some(p) => Some(p.peek()?),
            None => None,
        };
        Some(Seen { client, spf })
    }

    /// Waits for every started set (each bounded by its own budget).
    pub fn wait(&self) -> Pin<Box<dyn Future<Output = Found>>> {
        let client = self.client.clone();
        let spf = self.spf.clone();
        Box::pin(async move {
            let client = async {
                match client {
                    Some(c) => Some(c.await),
                    None => None,
                }
            };
            let spf = async {
                match spf {
                    Some(s) => Some(s.await),
                    None => None,
                }
            };
            let (client, spf) = futures_util::join!(client, spf);
            Found { client, spf }
        })
    }

    /// The failures of `seen` not counted yet: (timeouts, errors).
    pub fn uncounted_failures(&self, seen: Seen<'_>) -> (u64, u64) {
        let mut sum = (0, 0);
        if let Some(c) = seen.client
            && !self.client_counted.replace(true)
        {
            sum = (c.timeouts, c.errors);
        }
        if let Some(s) = seen.spf
            && !self.spf_counted.replace(true)
        {
            sum = (sum.0 + s.timeouts, sum.1 + s.errors);
        }
        sum
    }
}
