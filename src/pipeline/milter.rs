//! The milter in front of the pipeline: [`MilterDecider`] turns the
//! session's events and macros into envelope facts for a [`Transaction`],
//! and [`Milter`] says the pipeline's verdicts as milter verdicts. Nothing
//! else: every decision is the pipeline's.

use super::envelope::Proto;
use super::front::{FrontEnd, Verdict};
use super::transaction::{Pipeline, Step, Transaction, Wait, Waited};
use crate::milter::decision::{self as milter, Client, Decided, Decider, Header, Macros};

/// The milter as a [`FrontEnd`].
pub struct Milter;

impl FrontEnd for Milter {
    const PROTO: Proto = Proto::Milter;
    const HEADER_AT_RCPT: bool = false;
    type Reply = milter::Verdict;

    fn reply(verdict: Verdict) -> milter::Verdict {
        match verdict {
            Verdict::Pass { .. } => milter::Verdict::Continue,
            Verdict::Accept => milter::Verdict::Accept,
            Verdict::Tempfail(r) => milter::Verdict::Tempfail(r),
            Verdict::Reject(r) => milter::Verdict::Reject(r),
        }
    }
}

/// One per milter connection.
pub struct MilterDecider {
    txn: Transaction<Milter>,
}

impl MilterDecider {
    pub fn new(pipeline: &Pipeline, conn_id: u64) -> MilterDecider {
        MilterDecider {
            txn: pipeline.transaction(conn_id),
        }
    }
}

impl Decider for MilterDecider {
    type Answer = Waited;
    type Wait = Wait;

    fn connect(&mut self, client: &Client<'_>, _macros: &dyn Macros) -> milter::Verdict {
        self.txn.connect(client.addr, client.hostname)
    }

    fn helo(&mut self, name: &[u8]) {
        self.txn.helo(name);
    }

    fn mail(&mut self, sender: &[u8], macros: &dyn Macros) -> milter::Verdict {
        let authenticated = macros
            .get("auth_authen")
            .is_some_and(|v| !v.trim_ascii().is_empty());
        // Asked for the HELO event when SPF is on; else Sendmail's `s`.
        self.txn.mail(sender, authenticated, || macros.get("s"))
    }

    fn rcpt(&mut self, recipient: &[u8], macros: &dyn Macros) -> Decided<Wait> {
        match self.txn.rcpt(recipient, || macros.get("i")) {
            Step::Now(verdict) => Decided::Now(verdict),
            Step::Wait(wait) => Decided::Wait(wait),
        }
    }

    fn rcpt_answered(&mut self, answer: Waited) -> milter::Verdict {
        self.txn.answered(answer)
    }

    fn rcpt_expired(&mut self) {
        self.txn.expired();
    }

    fn eom(&mut self, _macros: &dyn Macros) -> Option<Header> {
        self.txn.header().map(|field| Header {
            name: field.name.to_string(),
            value: field.value,
        })
    }

    fn end_transaction(&mut self) {
        self.txn.end_transaction();
    }

    fn reset(&mut self) {
        self.txn.reset();
    }
}
