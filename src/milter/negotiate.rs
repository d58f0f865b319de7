//! SMFIC_OPTNEG: what greymilter asks the MTA for (docs/milter.md, "Negotiation").
//!
//! Only CONNECT, MAIL and RCPT (and EOM, which cannot be disabled) are kept,
//! and with [`Conversation::Lean`] only RCPT and EOM wait for a reply: the
//! MTA sends CONNECT and MAIL and carries on. Every no-reply bit is masked
//! with the offer, and [`Agreement::owes_reply`] is the one place that says
//! whether a reply goes out, so a stray reply can never desynchronise the
//! stream.

use std::fmt;

use super::codec::{action, cmd, encode_optneg_reply, proto, stage};
use super::decision::Conversation;

/// The highest protocol version we speak.
pub const OUR_VERSION: u32 = 6;
/// libmilter refuses MTAs below version 2, and so do we.
pub const MIN_VERSION: u32 = 2;

/// The events we switch off: `NOHELO | NOBODY | NOHDRS | NOEOH | NOUNKNOWN |
/// NODATA` = 0x372. Always masked with the offer (Sendmail disconnects a
/// milter that asks for bits it did not offer).
pub const WANTED_PROTOCOL: u32 =
    proto::NOHELO | proto::NOBODY | proto::NOHDRS | proto::NOEOH | proto::NOUNKNOWN | proto::NODATA;

/// [`Conversation::Lean`] adds: CONNECT and MAIL without a reply (0x5000).
pub const LEAN_NO_REPLY: u32 = proto::NR_CONN | proto::NR_MAIL;

/// [`Conversation::EomOnly`]: every event off but end of message.
pub const EOM_ONLY_PROTOCOL: u32 =
    WANTED_PROTOCOL | proto::NOCONNECT | proto::NOMAIL | proto::NORCPT;

/// What the session wants from the negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wanted {
    /// SMFIF_ADDHDRS (X-Greylist).
    pub add_header: bool,
    pub conversation: Conversation,
    /// The HELO event, without a reply.
    pub helo: bool,
    /// The decider wants CONNECT and MAIL as they happen. Without, and
    /// when the MTA offers SETSYMLIST, NOCONNECT and NOMAIL, a
    /// [`Conversation::Lean`] session skips them and reads the client and
    /// the sender from macros at RCPT ([`RCPT_ONLY_LISTS`]).
    pub envelope_events: bool,
}

impl Wanted {
    fn protocol(&self) -> u32 {
        let mut bits = match self.conversation {
            Conversation::Full => WANTED_PROTOCOL,
            Conversation::Lean => WANTED_PROTOCOL | LEAN_NO_REPLY,
            Conversation::EomOnly => return EOM_ONLY_PROTOCOL,
        };
        if self.helo {
            bits = (bits & !proto::NOHELO) | proto::NR_HELO;
        }
        bits
    }
}

/// Macro lists sent when the MTA offers SETSYMLIST: `{auth_authen}` lets MAIL
/// be accepted for authenticated senders, `i` (queue ID) is for logs. Never
/// empty: Postfix ignores an empty list.
pub const MACRO_LISTS: [(u32, &[u8]); 2] =
    [(stage::ENVFROM, b"{auth_authen} i"), (stage::ENVRCPT, b"i")];

/// The lists when CONNECT and MAIL are skipped: what those events carried,
/// asked for at RCPT instead. Both MTAs can evaluate these names at any
/// stage once they are known.
pub const RCPT_ONLY_LISTS: [(u32, &[u8]); 1] = [(
    stage::ENVRCPT,
    b"{client_addr} {client_name} {mail_addr} {auth_authen} i",
)];

/// The events skipped when the decider can take the envelope at RCPT.
pub const ENVELOPE_EVENTS: u32 = proto::NOCONNECT | proto::NOMAIL;

/// What was agreed for one milter connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    pub version: u32,
    pub actions: u32,
    pub protocol: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NegotiationError {
    /// The MTA offered a version below [`MIN_VERSION`].
    VersionTooLow(u32),
}

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NegotiationError::VersionTooLow(v) => {
                write!(
                    f,
                    "MTA offers milter protocol version {v}, need at least {MIN_VERSION}"
                )
            }
        }
    }
}

impl std::error::Error for NegotiationError {}

/// Answers an offer.
pub fn negotiate(
    version: u32,
    actions: u32,
    protocol: u32,
    wanted: Wanted,
) -> Result<Agreement, NegotiationError> {
    if version < MIN_VERSION {
        return Err(NegotiationError::VersionTooLow(version));
    }
    let offered_actions = if actions == 0 { action::V1 } else { actions };
    let offered_protocol = if protocol == 0 { proto::V1 } else { protocol };
    let mut wanted_actions = action::SETSYMLIST;
    if wanted.add_header {
        wanted_actions |= action::ADDHDRS;
    }
    let mut protocol = wanted.protocol() & offered_protocol;
    let skip_envelope = wanted.conversation == Conversation::Lean
        && !wanted.envelope_events
        && !wanted.helo
        && offered_actions & action::SETSYMLIST != 0
        && offered_protocol & ENVELOPE_EVENTS == ENVELOPE_EVENTS;
    if skip_envelope {
        protocol = (protocol & !LEAN_NO_REPLY) | ENVELOPE_EVENTS;
    }
    if wanted.helo && protocol & proto::NR_HELO == 0 {
        // An MTA without NR_HELO would wait for a reply we never planned:
        // go without the HELO name instead.
        protocol |= proto::NOHELO & offered_protocol;
    }
    Ok(Agreement {
        version: version.min(OUR_VERSION),
        actions: wanted_actions & offered_actions,
        protocol,
    })
}

impl Agreement {
    /// Whether macro lists go into the OPTNEG reply.
    pub fn sends_macro_lists(&self) -> bool {
        self.actions & action::SETSYMLIST != 0
    }

    /// CONNECT and MAIL are skipped: the envelope comes in macros at RCPT.
    pub fn skips_envelope(&self) -> bool {
        self.protocol & ENVELOPE_EVENTS == ENVELOPE_EVENTS
            && self.protocol & proto::NORCPT == 0
            && self.sends_macro_lists()
    }

    pub fn may_add_headers(&self) -> bool {
        self.actions & action::ADDHDRS != 0
    }

    /// Appends the OPTNEG reply packet.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let lists: &[(u32, &[u8])] = if self.skips_envelope() {
            &RCPT_ONLY_LISTS
        } else if self.sends_macro_lists() {
            &MACRO_LISTS
        } else {
            &[]
        };
        encode_optneg_reply(out, self.version, self.actions, self.protocol, lists);
    }

    /// Whether the MTA waits for a reply to command `c`: not for ABORT,
    /// MACRO, QUIT, QUIT_NC, nor for an event negotiated as no-reply. EOM and
    /// OPTNEG always get one.
    pub fn owes_reply(&self, c: u8) -> bool {
        match c {
            cmd::MACRO | cmd::ABORT | cmd::QUIT | cmd::QUIT_NC => false,
            _ => self.protocol & proto::no_reply_bit(c) == 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(add_header: bool, conversation: Conversation) -> Wanted {
        Wanted {
            add_header,
            conversation,
            helo: false,
            envelope_events: true,
        }
    }

    #[test]
    fn envelope_events_are_skipped_when_the_decider_can_do_without() {
        let w = Wanted {
            envelope_events: false,
            ..wanted(false, Conversation::Lean)
        };
        let a = negotiate(6, action::ALL, proto::ALL, w).unwrap();
        assert_eq!(a.protocol, 0x377);
        assert!(a.skips_envelope());
        let mut out = Vec::new();
        a.encode(&mut out);
        assert!(out.windows(13).any(|w| w == b"{client_addr}"));
        // Without SETSYMLIST the MTA could not send the envelope at RCPT:
        // CONNECT and MAIL stay, without replies.
        let no_lists = negotiate(6, 0xFF, proto::ALL, w).unwrap();
        assert_eq!(no_lists.protocol, 0x5372);
        assert!(!no_lists.skips_envelope());
        // Full conversations and early events keep them too.
        let full = Wanted {
            conversation: Conversation::Full,
            ..w
        };
        assert_eq!(
            negotiate(6, action::ALL, proto::ALL, full)
                .unwrap()
                .protocol,
            0x372
        );
    }

    #[test]
    fn v6_offer_gets_lean_bits_and_symlist() {
        let a = negotiate(
            6,
            action::ALL,
            proto::ALL,
            wanted(false, Conversation::Lean),
        )
        .unwrap();
        assert_eq!(
            a,
            Agreement {
                version: 6,
                actions: 0x100,
                protocol: 0x5372
            }
        );
        let full = negotiate(6, action::ALL, proto::ALL, wanted(true, Conversation::Full)).unwrap();
        assert_eq!((full.actions, full.protocol), (0x101, 0x372));
        let floor = negotiate(
            6,
            action::ALL,
            proto::ALL,
            wanted(false, Conversation::EomOnly),
        );
        assert_eq!(floor.unwrap().protocol, 0x37F);
    }

    #[test]
    fn helo_is_asked_without_a_reply_or_not_at_all() {
        let w = Wanted {
            helo: true,
            ..wanted(false, Conversation::Lean)
        };
        let a = negotiate(6, action::ALL, proto::ALL, w).unwrap();
        assert_eq!(a.protocol, 0x7370);
        assert!(!a.owes_reply(cmd::HELO));
        // Postfix 2.3 offers v2 bits only: HELO stays off.
        let old = negotiate(2, 0x3F, 0x7F, w).unwrap();
        assert_eq!(old.protocol, 0x72);
    }

    #[test]
    fn old_and_odd_offers() {
        // v2 Postfix: no NOUNKNOWN/NODATA bits, no SETSYMLIST, no NR_*.
        let v2 = negotiate(2, 0x3F, 0x7F, wanted(true, Conversation::Lean)).unwrap();
        assert_eq!(
            v2,
            Agreement {
                version: 2,
                actions: 0x01,
                protocol: 0x72
            }
        );
        assert!(!v2.sends_macro_lists());
        assert!(v2.owes_reply(cmd::CONNECT) && v2.owes_reply(cmd::MAIL));
        // Zeros mean the v1 defaults.
        let zero = negotiate(4, 0, 0, wanted(false, Conversation::Lean)).unwrap();
        assert_eq!(
            zero,
            Agreement {
                version: 4,
                actions: 0,
                protocol: 0x32
            }
        );
        // An MTA that offers NR_MAIL but not NR_CONN gets just that.
        let partial = negotiate(
            6,
            action::ALL,
            0x37F | proto::NR_MAIL,
            wanted(false, Conversation::Lean),
        );
        assert_eq!(partial.unwrap().protocol, 0x4372);
        // Newer MTA: answer our version.
        let newer = negotiate(9, action::ALL, proto::ALL, Wanted::default());
        assert_eq!(newer.unwrap().version, 6);
        assert_eq!(
            negotiate(1, 0, 0, Wanted::default()),
            Err(NegotiationError::VersionTooLow(1))
        );
    }

    #[test]
    fn replies_owed() {
        let a = negotiate(
            6,
            action::ALL,
            proto::ALL,
            wanted(false, Conversation::Full),
        )
        .unwrap();
        for c in [
            b'O', b'C', b'H', b'M', b'R', b'T', b'L', b'N', b'B', b'E', b'U',
        ] {
            assert!(a.owes_reply(c), "{}", c as char);
        }
        for c in [b'D', b'A', b'Q', b'K'] {
            assert!(!a.owes_reply(c), "{}", c as char);
        }
        let lean = negotiate(
            6,
            action::ALL,
            proto::ALL,
            wanted(false, Conversation::Lean),
        )
        .unwrap();
        assert!(!lean.owes_reply(b'C') && !lean.owes_reply(b'M'));
        assert!(lean.owes_reply(b'R') && lean.owes_reply(b'E'));
    }
}
