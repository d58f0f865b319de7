//! SMFIC_OPTNEG: what greymilter asks the MTA for (docs/milter.md, "Negotiation").
//!
//! Only CONNECT, MAIL and RCPT (and EOM, which cannot be disabled) are kept.
//! Every kept event gets a reply: no NR_* bits are ever requested, so a stray
//! reply can never desynchronise the stream.

use std::fmt;

use super::codec::{action, cmd, encode_optneg_reply, proto, stage};

/// The highest protocol version we speak.
pub const OUR_VERSION: u32 = 6;
/// libmilter refuses MTAs below version 2, and so do we.
pub const MIN_VERSION: u32 = 2;

/// The events we switch off: `NOHELO | NOBODY | NOHDRS | NOEOH | NOUNKNOWN |
/// NODATA` = 0x372. Always masked with the offer (Sendmail disconnects a
/// milter that asks for bits it did not offer).
pub const WANTED_PROTOCOL: u32 =
    proto::NOHELO | proto::NOBODY | proto::NOHDRS | proto::NOEOH | proto::NOUNKNOWN | proto::NODATA;

/// Macro lists sent when the MTA offers SETSYMLIST: `{auth_authen}` lets MAIL
/// be accepted for authenticated senders, `i` (queue ID) is for logs. Never
/// empty: Postfix ignores an empty list.
pub const MACRO_LISTS: [(u32, &[u8]); 2] =
    [(stage::ENVFROM, b"{auth_authen} i"), (stage::ENVRCPT, b"i")];

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

/// Answers an offer. `add_header`: ask for SMFIF_ADDHDRS (X-Greylist).
pub fn negotiate(
    version: u32,
    actions: u32,
    protocol: u32,
    add_header: bool,
) -> Result<Agreement, NegotiationError> {
    if version < MIN_VERSION {
        return Err(NegotiationError::VersionTooLow(version));
    }
    let offered_actions = if actions == 0 { action::V1 } else { actions };
    let offered_protocol = if protocol == 0 { proto::V1 } else { protocol };
    let mut wanted_actions = action::SETSYMLIST;
    if add_header {
        wanted_actions |= action::ADDHDRS;
    }
    Ok(Agreement {
        version: version.min(OUR_VERSION),
        actions: wanted_actions & offered_actions,
        protocol: WANTED_PROTOCOL & offered_protocol,
    })
}

impl Agreement {
    /// Whether macro lists go into the OPTNEG reply.
    pub fn sends_macro_lists(&self) -> bool {
        self.actions & action::SETSYMLIST != 0
    }

    pub fn may_add_headers(&self) -> bool {
        self.actions & action::ADDHDRS != 0
    }

    /// Appends the OPTNEG reply packet.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let lists: &[(u32, &[u8])] = if self.sends_macro_lists() {
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

    #[test]
    fn v6_offer_gets_0x372_and_symlist() {
        let a = negotiate(6, action::ALL, proto::ALL, false).unwrap();
        assert_eq!(
            a,
            Agreement {
                version: 6,
                actions: 0x100,
                protocol: 0x372
            }
        );
        let with_header = negotiate(6, action::ALL, proto::ALL, true).unwrap();
        assert_eq!(with_header.actions, 0x101);
    }

    #[test]
    fn old_and_odd_offers() {
        // v2 Postfix: no NOUNKNOWN/NODATA bits, no SETSYMLIST.
        let v2 = negotiate(2, 0x3F, 0x7F, true).unwrap();
        assert_eq!(
            v2,
            Agreement {
                version: 2,
                actions: 0x01,
                protocol: 0x72
            }
        );
        assert!(!v2.sends_macro_lists());
        // Zeros mean the v1 defaults.
        let zero = negotiate(4, 0, 0, false).unwrap();
        assert_eq!(
            zero,
            Agreement {
                version: 4,
                actions: 0,
                protocol: 0x32
            }
        );
        // Newer MTA: answer our version.
        assert_eq!(
            negotiate(9, action::ALL, proto::ALL, false)
                .unwrap()
                .version,
            6
        );
        assert_eq!(
            negotiate(1, 0, 0, false),
            Err(NegotiationError::VersionTooLow(1))
        );
    }

    #[test]
    fn replies_owed() {
        let a = negotiate(6, action::ALL, proto::ALL, false).unwrap();
        for c in [
            b'O', b'C', b'H', b'M', b'R', b'T', b'L', b'N', b'B', b'E', b'U',
        ] {
            assert!(a.owes_reply(c), "{}", c as char);
        }
        for c in [b'D', b'A', b'Q', b'K'] {
            assert!(!a.owes_reply(c), "{}", c as char);
        }
        let nr = Agreement {
            protocol: proto::NR_RCPT,
            ..a
        };
        assert!(!nr.owes_reply(b'R'));
        assert!(nr.owes_reply(b'E'));
    }
}
