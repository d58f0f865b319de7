//! CONNECT and MAIL that the MTA skipped or did not wait for: the
//! envelope rebuilt from the RCPT macros, and CONNECT/MAIL verdicts carried
//! to the recipients (docs/milter.md, "Negotiation").

use super::{SessionCore, State};
use crate::milter::client_address::client_ip_text;
use crate::milter::codec::cmd;
use crate::milter::decision::{Client, Decider, Macros, Verdict};

impl<D: Decider> SessionCore<D> {
    /// The first RCPT of a transaction when CONNECT and MAIL are skipped:
    /// the decider hears both now, built from the RCPT macros the way the
    /// events would have carried them, and their verdicts apply as for
    /// events without a reply.
    pub(super) fn envelope_from_macros(&mut self) {
        let macros = self.macros.view(cmd::RCPT);
        let client_addr = macros.get("client_addr");
        if !self.client_known {
            let addr = client_addr.and_then(client_ip_text);
            if addr.is_none() {
                self.violation_warn(format_args!(
                    "no usable {{client_addr}} macro at RCPT (has the MTA's macro list been trimmed?): not greylisted"
                ));
            }
            // Postfix's "unknown" is the bracketed address in SMFIC_CONNECT.
            self.envelope.clear();
            match macros.get("client_name") {
                Some(name) if !name.is_empty() && name != b"unknown" => {
                    self.envelope.extend_from_slice(name);
                }
                _ => {
                    self.envelope.push(b'[');
                    self.envelope
                        .extend_from_slice(client_addr.unwrap_or_default());
                    self.envelope.push(b']');
                }
            }
            let client = Client {
                hostname: &self.envelope,
                addr,
                port: 0,
            };
            let verdict = self.decider.connect(&client, &macros);
            self.client_known = true;
            self.connection_decided = verdict != Verdict::Continue;
            self.connection_refusal = refusal(verdict);
        }
        self.state = State::Mail;
        if !self.consults_decider() {
            self.message_accepted = true;
            return;
        }
        let Some(sender) = macros.get("mail_addr") else {
            self.violation_warn(format_args!(
                "no {{mail_addr}} macro at RCPT (has the MTA's macro list been trimmed?): not greylisted"
            ));
            self.message_accepted = true;
            return;
        };
        // As the MAIL argument would have been: `<a@b>`, `<>`.
        self.envelope.clear();
        self.envelope.push(b'<');
        self.envelope.extend_from_slice(sender);
        self.envelope.push(b'>');
        let verdict = self.decider.mail(&self.envelope, &macros);
        self.decider_txn = true;
        self.mail_unanswered(verdict);
    }

    /// A MAIL verdict the MTA did not wait for: the transaction stays open
    /// and a refusal is given at each RCPT.
    pub(super) fn mail_unanswered(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Continue => {}
            Verdict::Accept => self.message_accepted = true,
            Verdict::Tempfail(_) | Verdict::Reject(_) => {
                self.end_transaction();
                self.message_refusal = Some(verdict);
            }
        }
    }

    /// A CONNECT or MAIL refusal the MTA did not wait for, inside a
    /// transaction.
    pub(super) fn refusal_for_rcpt(&self) -> Option<Verdict> {
        if self.state != State::Mail {
            return None;
        }
        self.connection_refusal
            .as_ref()
            .or(self.message_refusal.as_ref())
            .cloned()
    }
}

/// A CONNECT or MAIL verdict that must still reach the recipients.
pub(super) fn refusal(verdict: Verdict) -> Option<Verdict> {
    match verdict {
        Verdict::Tempfail(_) | Verdict::Reject(_) => Some(verdict),
        Verdict::Continue | Verdict::Accept => None,
    }
}
