//! Verdicts into reply packets: only when the MTA waits for one, never
//! ACCEPT where it would end filtering too early, and a reply whose class
//! does not match its verdict sent as the bare code.

use tracing::warn;

use super::{SessionCore, VIOLATIONS};
use crate::milter::codec::{cmd, encode_addheader, encode_empty, encode_replycode, resp};
use crate::milter::decision::{Decider, Header, Verdict};
use crate::milter::negotiate::Agreement;
use crate::reply::Reply;

/// The longest header line we hand to the MTA (RFC 5322 line limit).
const MAX_HEADER_LINE: usize = 998;

impl<D: Decider> SessionCore<D> {
    pub(super) fn reply_continue(&self, agreement: Agreement, code: u8, out: &mut Vec<u8>) {
        if agreement.owes_reply(code) {
            encode_empty(out, resp::CONTINUE);
        }
    }

    pub(super) fn reply_verdict(
        &self,
        agreement: Agreement,
        code: u8,
        verdict: Verdict,
        out: &mut Vec<u8>,
    ) {
        if !agreement.owes_reply(code) {
            return;
        }
        match verdict {
            Verdict::Continue => encode_empty(out, resp::CONTINUE),
            // ACCEPT anywhere else would end filtering for the whole message.
            Verdict::Accept if code == cmd::CONNECT || code == cmd::MAIL => {
                encode_empty(out, resp::ACCEPT)
            }
            Verdict::Accept => encode_empty(out, resp::CONTINUE),
            Verdict::Tempfail(reply) if reply.class() == 4 => encode_replycode(out, &reply),
            Verdict::Reject(reply) if reply.class() == 5 => encode_replycode(out, &reply),
            Verdict::Tempfail(reply) => {
                self.class_mismatch(&reply, 4);
                encode_empty(out, resp::TEMPFAIL);
            }
            Verdict::Reject(reply) => {
                self.class_mismatch(&reply, 5);
                encode_empty(out, resp::REJECT);
            }
        }
    }

    pub(super) fn class_mismatch(&self, reply: &Reply, class: u8) {
        if let Some(suppressed) = VIOLATIONS.allow() {
            warn!(
                conn = self.conn_id,
                peer = %self.peer,
                suppressed,
                "reply {:?} does not match a {class}xx verdict: sent the bare code instead",
                reply.as_str()
            );
        }
    }

    pub(super) fn add_header(&self, agreement: Agreement, header: &Header, out: &mut Vec<u8>) {
        if !agreement.may_add_headers() {
            self.debug(format_args!(
                "header {:?} not added: SMFIF_ADDHDRS not negotiated",
                header.name
            ));
            return;
        }
        let name_ok = !header.name.is_empty()
            && header
                .name
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b':');
        let value_ok = header
            .value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
        if !name_ok || !value_ok || header.name.len() + 2 + header.value.len() > MAX_HEADER_LINE {
            if let Some(suppressed) = VIOLATIONS.allow() {
                warn!(
                    conn = self.conn_id,
                    peer = %self.peer,
                    suppressed,
                    "header {:?} not added: invalid name or value",
                    header.name
                );
            }
            return;
        }
        encode_addheader(out, header.name.as_bytes(), header.value.as_bytes());
    }
}
