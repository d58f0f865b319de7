//! SMFIR_* responses: encode (the milter side) and owned decode (the MTA
//! side, for the client and tests).

use super::framing::{encode_empty, encode_packet, memchr, push_cstr, take_cstr};
use super::{Frame, resp};
use crate::reply::Reply;

/// A macro-list record of the OPTNEG reply: a stage and its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroList {
    pub stage: u32,
    pub names: Vec<u8>,
}

/// The milter's OPTNEG reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub version: u32,
    pub actions: u32,
    pub protocol: u32,
    pub macro_lists: Vec<MacroList>,
}

/// Appends an OPTNEG reply. `lists` are `(stage, "name name")` records.
pub fn encode_optneg_reply(
    out: &mut Vec<u8>,
    version: u32,
    actions: u32,
    protocol: u32,
    lists: &[(u32, &[u8])],
) {
    encode_packet(out, resp::OPTNEG, |out| {
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&actions.to_be_bytes());
        out.extend_from_slice(&protocol.to_be_bytes());
        for (stage, names) in lists {
            out.extend_from_slice(&stage.to_be_bytes());
            push_cstr(out, names);
        }
    });
}

/// Appends an SMFIR_REPLYCODE packet from a validated reply: the line with
/// every `%` doubled (Sendmail uses it as a format string, Postfix undoes
/// the doubling) and exactly one trailing NUL.
pub fn encode_replycode(out: &mut Vec<u8>, reply: &Reply) {
    encode_packet(out, resp::REPLYCODE, |out| {
        for &b in reply.as_str().as_bytes() {
            out.push(b);
            if b == b'%' {
                out.push(b'%');
            }
        }
        out.push(0);
    });
}

/// Appends an SMFIR_ADDHEADER packet. The caller has checked that neither
/// part contains a NUL.
pub fn encode_addheader(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    encode_packet(out, resp::ADDHEADER, |out| {
        push_cstr(out, name);
        push_cstr(out, value);
    });
}

/// A decoded SMFIR_* response (the MTA side's view; owned, for the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Continue,
    Accept,
    Tempfail,
    Reject,
    Discard,
    Skip,
    Progress,
    /// SMFIR_REPLYCODE: the three-digit code and the rest of the line after
    /// the separator, exactly as on the wire (so `%` is still doubled), without
    /// the final NUL. `raw` is the whole payload, NUL included.
    ReplyCode {
        code: u16,
        text: String,
        raw: Vec<u8>,
    },
    OptNeg(Negotiated),
    AddHeader {
        name: String,
        value: String,
    },
    InsertHeader {
        index: u32,
        name: String,
        value: String,
    },
    ChangeHeader {
        index: u32,
        name: String,
        value: String,
    },
    AddRcpt(String),
    DelRcpt(String),
    AddRcptPar {
        rcpt: String,
        args: String,
    },
    ChangeFrom {
        from: String,
        args: String,
    },
    ReplaceBody(Vec<u8>),
    Quarantine(String),
    Shutdown,
    ConnFail,
    SetSymList(Vec<u8>),
    /// Any other byte, or a known one whose payload does not parse.
    Other {
        cmd: u8,
        payload: Vec<u8>,
    },
}

impl Response {
    /// Whether this response ends the MTA's wait for an event (everything but
    /// the EOM modification requests and PROGRESS).
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            Response::Progress
                | Response::AddHeader { .. }
                | Response::InsertHeader { .. }
                | Response::ChangeHeader { .. }
                | Response::AddRcpt(_)
                | Response::DelRcpt(_)
                | Response::AddRcptPar { .. }
                | Response::ChangeFrom { .. }
                | Response::ReplaceBody(_)
                | Response::Quarantine(_)
        )
    }

    /// Decodes a response packet. Never fails: what does not parse becomes
    /// [`Response::Other`].
    pub fn decode(frame: Frame<'_>) -> Response {
        let p = frame.payload;
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let other = || Response::Other {
            cmd: frame.cmd,
            payload: p.to_vec(),
        };
        let empty = |r: Response| if p.is_empty() { r } else { other() };
        let two = || -> Option<(String, String)> {
            let (a, rest) = take_cstr(p)?;
            let (b, rest) = take_cstr(rest)?;
            rest.is_empty().then(|| (lossy(a), lossy(b)))
        };
        let one = || -> Option<String> {
            let (a, rest) = take_cstr(p)?;
            rest.is_empty().then(|| lossy(a))
        };
        let indexed = || -> Option<(u32, String, String)> {
            let (idx, rest) = p.split_first_chunk::<4>()?;
            let (a, rest) = take_cstr(rest)?;
            let (b, rest) = take_cstr(rest)?;
            rest.is_empty()
                .then(|| (u32::from_be_bytes(*idx), lossy(a), lossy(b)))
        };
        match frame.cmd {
            resp::CONTINUE => empty(Response::Continue),
            resp::ACCEPT => empty(Response::Accept),
            resp::TEMPFAIL => empty(Response::Tempfail),
            resp::REJECT => empty(Response::Reject),
            resp::DISCARD => empty(Response::Discard),
            resp::SKIP => empty(Response::Skip),
            resp::PROGRESS => empty(Response::Progress),
            resp::SHUTDOWN => empty(Response::Shutdown),
            resp::CONN_FAIL => empty(Response::ConnFail),
            resp::REPLYCODE => decode_replycode(p).unwrap_or_else(other),
            resp::OPTNEG => decode_optneg_reply(p).map_or_else(other, Response::OptNeg),
            resp::ADDHEADER => {
                two().map_or_else(other, |(name, value)| Response::AddHeader { name, value })
            }
            resp::INSHEADER => indexed().map_or_else(other, |(index, name, value)| {
                Response::InsertHeader { index, name, value }
            }),
            resp::CHGHEADER => indexed().map_or_else(other, |(index, name, value)| {
                Response::ChangeHeader { index, name, value }
            }),
            resp::ADDRCPT => one().map_or_else(other, Response::AddRcpt),
            resp::DELRCPT => one().map_or_else(other, Response::DelRcpt),
            resp::QUARANTINE => one().map_or_else(other, Response::Quarantine),
            resp::ADDRCPT_PAR => {
                two().map_or_else(other, |(rcpt, args)| Response::AddRcptPar { rcpt, args })
            }
            resp::CHGFROM => {
                two().map_or_else(other, |(from, args)| Response::ChangeFrom { from, args })
            }
            resp::REPLBODY => Response::ReplaceBody(p.to_vec()),
            resp::SETSYMLIST => Response::SetSymList(p.to_vec()),
            _ => other(),
        }
    }

    /// Appends the packet (used by round-trip tests and fake milters).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let two = |out: &mut Vec<u8>, c: u8, a: &str, b: &str| {
            encode_packet(out, c, |out| {
                push_cstr(out, a.as_bytes());
                push_cstr(out, b.as_bytes());
            })
        };
        let indexed = |out: &mut Vec<u8>, c: u8, i: u32, a: &str, b: &str| {
            encode_packet(out, c, |out| {
                out.extend_from_slice(&i.to_be_bytes());
                push_cstr(out, a.as_bytes());
                push_cstr(out, b.as_bytes());
            })
        };
        let one = |out: &mut Vec<u8>, c: u8, a: &str| {
            encode_packet(out, c, |out| push_cstr(out, a.as_bytes()))
        };
        match self {
            Response::Continue => encode_empty(out, resp::CONTINUE),
            Response::Accept => encode_empty(out, resp::ACCEPT),
            Response::Tempfail => encode_empty(out, resp::TEMPFAIL),
            Response::Reject => encode_empty(out, resp::REJECT),
            Response::Discard => encode_empty(out, resp::DISCARD),
            Response::Skip => encode_empty(out, resp::SKIP),
            Response::Progress => encode_empty(out, resp::PROGRESS),
            Response::Shutdown => encode_empty(out, resp::SHUTDOWN),
            Response::ConnFail => encode_empty(out, resp::CONN_FAIL),
            Response::ReplyCode { raw, .. } => {
                encode_packet(out, resp::REPLYCODE, |out| out.extend_from_slice(raw))
            }
            Response::OptNeg(n) => {
                let lists: Vec<(u32, &[u8])> = n
                    .macro_lists
                    .iter()
                    .map(|l| (l.stage, l.names.as_slice()))
                    .collect();
                encode_optneg_reply(out, n.version, n.actions, n.protocol, &lists);
            }
            Response::AddHeader { name, value } => two(out, resp::ADDHEADER, name, value),
            Response::InsertHeader { index, name, value } => {
                indexed(out, resp::INSHEADER, *index, name, value)
            }
            Response::ChangeHeader { index, name, value } => {
                indexed(out, resp::CHGHEADER, *index, name, value)
            }
            Response::AddRcpt(r) => one(out, resp::ADDRCPT, r),
            Response::DelRcpt(r) => one(out, resp::DELRCPT, r),
            Response::Quarantine(r) => one(out, resp::QUARANTINE, r),
            Response::AddRcptPar { rcpt, args } => two(out, resp::ADDRCPT_PAR, rcpt, args),
            Response::ChangeFrom { from, args } => two(out, resp::CHGFROM, from, args),
            Response::ReplaceBody(b) => {
                encode_packet(out, resp::REPLBODY, |out| out.extend_from_slice(b))
            }
            Response::SetSymList(b) => {
                encode_packet(out, resp::SETSYMLIST, |out| out.extend_from_slice(b))
            }
            Response::Other { cmd, payload } => {
                encode_packet(out, *cmd, |out| out.extend_from_slice(payload))
            }
        }
    }
}

/// `NNN<sep>text\0` with exactly one NUL, at the end.
fn decode_replycode(p: &[u8]) -> Option<Response> {
    let line = p.strip_suffix(&[0])?;
    if memchr(line).is_some() {
        return None;
    }
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    let text = line.get(4..).unwrap_or_default();
    Some(Response::ReplyCode {
        code,
        text: String::from_utf8_lossy(text).into_owned(),
        raw: p.to_vec(),
    })
}

fn decode_optneg_reply(p: &[u8]) -> Option<Negotiated> {
    let (head, mut rest) = p.split_first_chunk::<12>()?;
    let field = |i: usize| {
        head.get(i * 4..i * 4 + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
    };
    let mut macro_lists = Vec::new();
    while !rest.is_empty() {
        let (stage, after) = rest.split_first_chunk::<4>()?;
        let (names, after) = take_cstr(after)?;
        macro_lists.push(MacroList {
            stage: u32::from_be_bytes(*stage),
            names: names.to_vec(),
        });
        rest = after;
    }
    Some(Negotiated {
        version: field(0)?,
        actions: field(1)?,
        protocol: field(2)?,
        macro_lists,
    })
}
