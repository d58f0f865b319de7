//! Milter packet framing, typed decode of every SMFIC_* command and encode of
//! the SMFIR_* responses (milter-protocol.md §1–§5).
//!
//! A packet is `len: u32 BE | cmd: u8 | payload: len-1 bytes`. Decoding
//! borrows from the caller's buffer: no allocation per packet.

use std::fmt;

use crate::reply::Reply;

/// Largest payload accepted (libmilter's `MILTER_MAX_DATA_SIZE`). We never
/// negotiate the MDS_* bits, so no legitimate packet comes near it.
pub const MAX_PAYLOAD: usize = 65_535;
/// Largest packet on the wire, length field included.
pub const MAX_FRAME: usize = 4 + 1 + MAX_PAYLOAD;

/// SMFIC_* command bytes (MTA → milter).
pub mod cmd {
    pub const OPTNEG: u8 = b'O';
    pub const MACRO: u8 = b'D';
    pub const CONNECT: u8 = b'C';
    pub const HELO: u8 = b'H';
    pub const MAIL: u8 = b'M';
    pub const RCPT: u8 = b'R';
    pub const DATA: u8 = b'T';
    pub const HEADER: u8 = b'L';
    pub const EOH: u8 = b'N';
    pub const BODY: u8 = b'B';
    pub const BODYEOB: u8 = b'E';
    pub const UNKNOWN: u8 = b'U';
    pub const ABORT: u8 = b'A';
    pub const QUIT: u8 = b'Q';
    pub const QUIT_NC: u8 = b'K';
}

/// SMFIR_* response bytes (milter → MTA).
pub mod resp {
    pub const ADDRCPT: u8 = b'+';
    pub const DELRCPT: u8 = b'-';
    pub const ADDRCPT_PAR: u8 = b'2';
    pub const SHUTDOWN: u8 = b'4';
    pub const ACCEPT: u8 = b'a';
    pub const REPLBODY: u8 = b'b';
    pub const CONTINUE: u8 = b'c';
    pub const DISCARD: u8 = b'd';
    pub const CHGFROM: u8 = b'e';
    pub const CONN_FAIL: u8 = b'f';
    pub const ADDHEADER: u8 = b'h';
    pub const INSHEADER: u8 = b'i';
    pub const SETSYMLIST: u8 = b'l';
    pub const CHGHEADER: u8 = b'm';
    pub const PROGRESS: u8 = b'p';
    pub const QUARANTINE: u8 = b'q';
    pub const REJECT: u8 = b'r';
    pub const SKIP: u8 = b's';
    pub const TEMPFAIL: u8 = b't';
    pub const REPLYCODE: u8 = b'y';
    pub const OPTNEG: u8 = b'O';
}

/// SMFIF_* action bits.
pub mod action {
    pub const ADDHDRS: u32 = 0x001;
    pub const CHGBODY: u32 = 0x002;
    pub const ADDRCPT: u32 = 0x004;
    pub const DELRCPT: u32 = 0x008;
    pub const CHGHDRS: u32 = 0x010;
    pub const QUARANTINE: u32 = 0x020;
    pub const CHGFROM: u32 = 0x040;
    pub const ADDRCPT_PAR: u32 = 0x080;
    pub const SETSYMLIST: u32 = 0x100;
    /// `SMFI_V1_ACTS`: what `actions = 0` in an offer means.
    pub const V1: u32 = 0x0F;
    /// Every v6 action bit.
    pub const ALL: u32 = 0x1FF;
}

/// SMFIP_* protocol bits.
pub mod proto {
    pub const NOCONNECT: u32 = 0x0000_0001;
    pub const NOHELO: u32 = 0x0000_0002;
    pub const NOMAIL: u32 = 0x0000_0004;
    pub const NORCPT: u32 = 0x0000_0008;
    pub const NOBODY: u32 = 0x0000_0010;
    pub const NOHDRS: u32 = 0x0000_0020;
    pub const NOEOH: u32 = 0x0000_0040;
    pub const NR_HDR: u32 = 0x0000_0080;
    pub const NOUNKNOWN: u32 = 0x0000_0100;
    pub const NODATA: u32 = 0x0000_0200;
    pub const SKIP: u32 = 0x0000_0400;
    pub const RCPT_REJ: u32 = 0x0000_0800;
    pub const NR_CONN: u32 = 0x0000_1000;
    pub const NR_HELO: u32 = 0x0000_2000;
    pub const NR_MAIL: u32 = 0x0000_4000;
    pub const NR_RCPT: u32 = 0x0000_8000;
    pub const NR_DATA: u32 = 0x0001_0000;
    pub const NR_UNKN: u32 = 0x0002_0000;
    pub const NR_EOH: u32 = 0x0004_0000;
    pub const NR_BODY: u32 = 0x0008_0000;
    pub const HDR_LEADSPC: u32 = 0x0010_0000;
    pub const MDS_256K: u32 = 0x1000_0000;
    pub const MDS_1M: u32 = 0x2000_0000;
    /// The NR_* bit that silences the reply to command `c` (0 if none).
    pub fn no_reply_bit(c: u8) -> u32 {
        match c {
            super::cmd::CONNECT => NR_CONN,
            super::cmd::HELO => NR_HELO,
            super::cmd::MAIL => NR_MAIL,
            super::cmd::RCPT => NR_RCPT,
            super::cmd::DATA => NR_DATA,
            super::cmd::HEADER => NR_HDR,
            super::cmd::EOH => NR_EOH,
            super::cmd::BODY => NR_BODY,
            super::cmd::UNKNOWN => NR_UNKN,
            _ => 0,
        }
    }

    /// `SMFI_V1_PROT`: what `protocol = 0` in an offer means.
    pub const V1: u32 = 0x3F;
    /// `SMFI_CURR_PROT`: every v6 step bit.
    pub const ALL: u32 = 0x1F_FFFF;
}

/// SMFIM_* macro stage numbers used in the OPTNEG macro lists. EOM comes
/// numerically before EOH.
pub mod stage {
    pub const CONNECT: u32 = 0;
    pub const HELO: u32 = 1;
    pub const ENVFROM: u32 = 2;
    pub const ENVRCPT: u32 = 3;
    pub const DATA: u32 = 4;
    pub const EOM: u32 = 5;
    pub const EOH: u32 = 6;
}

/// Why a packet could not even be framed. The connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// `len == 0`: not even a command byte.
    ZeroLength,
    /// `len - 1` above [`MAX_PAYLOAD`].
    TooLong(u32),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::ZeroLength => write!(f, "packet length 0"),
            FrameError::TooLong(len) => write!(
                f,
                "packet length {len} exceeds the limit of {} bytes",
                MAX_PAYLOAD + 1
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// One packet, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub cmd: u8,
    pub payload: &'a [u8],
}

/// Checks a 4-byte length field and returns the full packet size (length
/// field included). Called before any buffer is sized for the packet.
pub fn frame_size(header: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header);
    if len == 0 {
        return Err(FrameError::ZeroLength);
    }
    if (len - 1) as usize > MAX_PAYLOAD {
        return Err(FrameError::TooLong(len));
    }
    Ok(4 + len as usize)
}

/// Splits the first packet off `input`: `Ok(None)` when more bytes are
/// needed, otherwise the frame and the number of bytes it used.
pub fn split_frame(input: &[u8]) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some(header) = input.first_chunk::<4>() else {
        return Ok(None);
    };
    let size = frame_size(*header)?;
    let Some(packet) = input.get(4..size) else {
        return Ok(None);
    };
    let Some((&cmd, payload)) = packet.split_first() else {
        return Err(FrameError::ZeroLength);
    };
    Ok(Some((Frame { cmd, payload }, size)))
}

/// Appends one packet. `payload` is written by the closure so the packet is
/// built in place; the length field is patched afterwards.
pub fn encode_packet(out: &mut Vec<u8>, cmd: u8, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, cmd]);
    payload(out);
    let len = (out.len() - start - 4) as u32;
    if let Some(field) = out.get_mut(start..start + 4) {
        field.copy_from_slice(&len.to_be_bytes());
    }
}

/// Appends a packet with no payload (`c`, `a`, `t`, `A`, `Q`, …).
pub fn encode_empty(out: &mut Vec<u8>, cmd: u8) {
    out.extend_from_slice(&[0, 0, 0, 1, cmd]);
}

fn push_cstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

/// Why a framed packet could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A command byte we do not know: we cannot tell whether a reply is owed.
    UnknownCommand(u8),
    /// OPTNEG with fewer than 12 bytes.
    ShortOptneg(usize),
    /// CONNECT without its host name, family, port or address terminator.
    BadConnect,
    /// MAIL or RCPT with no NUL-terminated address.
    BadAddressArgs(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnknownCommand(c) => write!(f, "unknown command byte 0x{c:02x}"),
            DecodeError::ShortOptneg(n) => write!(f, "OPTNEG payload of {n} bytes, need 12"),
            DecodeError::BadConnect => write!(f, "truncated or unterminated CONNECT"),
            DecodeError::BadAddressArgs(c) => write!(
                f,
                "{} without a NUL-terminated address",
                if *c == cmd::MAIL { "MAIL" } else { "RCPT" }
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The address family byte of SMFIC_CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Inet4,
    Inet6,
    /// `L`: a local (Unix) socket; the address is a path.
    Local,
    /// `U`: unknown; nothing follows the family byte.
    Unknown,
    /// Any other byte. Treated as "no client IP".
    Other(u8),
}

impl Family {
    pub fn from_byte(b: u8) -> Family {
        match b {
            b'4' => Family::Inet4,
            b'6' => Family::Inet6,
            b'L' => Family::Local,
            b'U' => Family::Unknown,
            other => Family::Other(other),
        }
    }

    pub fn to_byte(self) -> u8 {
        match self {
            Family::Inet4 => b'4',
            Family::Inet6 => b'6',
            Family::Local => b'L',
            Family::Unknown => b'U',
            Family::Other(b) => b,
        }
    }

    /// Whether a port and an address follow the family byte.
    fn has_address(self) -> bool {
        !matches!(self, Family::Unknown)
    }
}

/// A payload made of NUL-terminated strings (MAIL, RCPT arguments). The raw
/// bytes end with a NUL; iterate with [`StrArray::iter`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StrArray<'a> {
    raw: &'a [u8],
}

impl<'a> StrArray<'a> {
    /// `raw` must be non-empty and end in NUL.
    pub fn new(raw: &'a [u8]) -> Option<StrArray<'a>> {
        (raw.last() == Some(&0)).then_some(StrArray { raw })
    }

    /// The bytes as on the wire, final NUL included.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The first string: the address at MAIL and RCPT.
    pub fn first(&self) -> &'a [u8] {
        self.iter().next().unwrap_or_default()
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let body = self.raw.strip_suffix(&[0]).unwrap_or(self.raw);
        body.split(|&b| b == 0)
    }

    /// Appends the wire form of `args` (each NUL-terminated).
    pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
        for a in args {
            push_cstr(out, a);
        }
    }
}

impl fmt::Debug for StrArray<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|s| String::from_utf8_lossy(s)))
            .finish()
    }
}

/// Name/value pairs of an SMFIC_MACRO packet. Iteration stops at the first
/// incomplete pair; [`MacroPairs::is_well_formed`] says whether there was one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MacroPairs<'a> {
    raw: &'a [u8],
}

impl<'a> MacroPairs<'a> {
    pub fn new(raw: &'a [u8]) -> MacroPairs<'a> {
        MacroPairs { raw }
    }

    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    pub fn iter(&self) -> MacroIter<'a> {
        MacroIter { rest: self.raw }
    }

    /// Length of the prefix of `raw` made of complete pairs.
    pub fn well_formed_len(&self) -> usize {
        let mut it = self.iter();
        while it.next().is_some() {}
        self.raw.len() - it.rest.len()
    }

    /// False for an odd number of strings or a missing final NUL.
    pub fn is_well_formed(&self) -> bool {
        self.well_formed_len() == self.raw.len()
    }
}

impl fmt::Debug for MacroPairs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            }))
            .finish()
    }
}

pub struct MacroIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for MacroIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (name, after) = take_cstr(self.rest)?;
        let (value, after) = take_cstr(after)?;
        self.rest = after;
        Some((name, value))
    }
}

/// Splits a NUL-terminated string off the front.
fn take_cstr(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = memchr(input)?;
    Some((input.get(..nul)?, input.get(nul + 1..)?))
}

fn memchr(input: &[u8]) -> Option<usize> {
    input.iter().position(|&b| b == 0)
}

/// Takes a string up to the first NUL, or the whole input when there is none
/// (lenient decode for fields we do not key on).
fn lenient_cstr(input: &[u8]) -> (&[u8], &[u8]) {
    match memchr(input) {
        Some(n) => (
            input.get(..n).unwrap_or_default(),
            input.get(n + 1..).unwrap_or_default(),
        ),
        None => (input, &[]),
    }
}

/// A decoded SMFIC_* command, borrowing from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    OptNeg {
        version: u32,
        actions: u32,
        protocol: u32,
    },
    /// `stage` is the SMFIC byte of the event the macros belong to; `None`
    /// for a packet without even the stage byte.
    Macro {
        stage: Option<u8>,
        pairs: MacroPairs<'a>,
    },
    Connect {
        hostname: &'a [u8],
        family: Family,
        port: u16,
        /// As sent: bare, `IPv6:`-prefixed, bracketed, or a socket path.
        address: &'a [u8],
    },
    Helo(&'a [u8]),
    Mail(StrArray<'a>),
    Rcpt(StrArray<'a>),
    Data,
    Header {
        name: &'a [u8],
        value: &'a [u8],
    },
    Eoh,
    Body(&'a [u8]),
    BodyEob(&'a [u8]),
    Unknown(&'a [u8]),
    Abort,
    Quit,
    QuitNc,
}

impl<'a> Command<'a> {
    /// Decodes one framed packet. Strict only where a greylist key or the
    /// conversation depends on it (OPTNEG, CONNECT, MAIL, RCPT, command
    /// byte); lenient elsewhere, like libmilter.
    pub fn decode(frame: Frame<'a>) -> Result<Command<'a>, DecodeError> {
        let p = frame.payload;
        Ok(match frame.cmd {
            cmd::OPTNEG => {
                let field = |i: usize| {
                    p.get(i * 4..i * 4 + 4)
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map(u32::from_be_bytes)
                        .ok_or(DecodeError::ShortOptneg(p.len()))
                };
                Command::OptNeg {
                    version: field(0)?,
                    actions: field(1)?,
                    protocol: field(2)?,
                }
            }
            cmd::MACRO => match p.split_first() {
                Some((&stage, rest)) => Command::Macro {
                    stage: Some(stage),
                    pairs: MacroPairs::new(rest),
                },
                None => Command::Macro {
                    stage: None,
                    pairs: MacroPairs::new(&[]),
                },
            },
            cmd::CONNECT => decode_connect(p)?,
            cmd::HELO => Command::Helo(lenient_cstr(p).0),
            cmd::MAIL => {
                Command::Mail(StrArray::new(p).ok_or(DecodeError::BadAddressArgs(cmd::MAIL))?)
            }
            cmd::RCPT => {
                Command::Rcpt(StrArray::new(p).ok_or(DecodeError::BadAddressArgs(cmd::RCPT))?)
            }
            cmd::DATA => Command::Data,
            cmd::HEADER => {
                let (name, rest) = lenient_cstr(p);
                Command::Header {
                    name,
                    value: lenient_cstr(rest).0,
                }
            }
            cmd::EOH => Command::Eoh,
            cmd::BODY => Command::Body(p),
            cmd::BODYEOB => Command::BodyEob(p),
            cmd::UNKNOWN => Command::Unknown(lenient_cstr(p).0),
            cmd::ABORT => Command::Abort,
            cmd::QUIT => Command::Quit,
            cmd::QUIT_NC => Command::QuitNc,
            other => return Err(DecodeError::UnknownCommand(other)),
        })
    }

    /// The command byte.
    pub fn code(&self) -> u8 {
        match self {
            Command::OptNeg { .. } => cmd::OPTNEG,
            Command::Macro { .. } => cmd::MACRO,
            Command::Connect { .. } => cmd::CONNECT,
            Command::Helo(_) => cmd::HELO,
            Command::Mail(_) => cmd::MAIL,
            Command::Rcpt(_) => cmd::RCPT,
            Command::Data => cmd::DATA,
            Command::Header { .. } => cmd::HEADER,
            Command::Eoh => cmd::EOH,
            Command::Body(_) => cmd::BODY,
            Command::BodyEob(_) => cmd::BODYEOB,
            Command::Unknown(_) => cmd::UNKNOWN,
            Command::Abort => cmd::ABORT,
            Command::Quit => cmd::QUIT,
            Command::QuitNc => cmd::QUIT_NC,
        }
    }

    /// Appends the packet (the MTA side: used by the client and tests).
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_packet(out, self.code(), |out| match *self {
            Command::OptNeg {
                version,
                actions,
                protocol,
            } => {
                out.extend_from_slice(&version.to_be_bytes());
                out.extend_from_slice(&actions.to_be_bytes());
                out.extend_from_slice(&protocol.to_be_bytes());
            }
            Command::Macro { stage, pairs } => {
                if let Some(stage) = stage {
                    out.push(stage);
                }
                out.extend_from_slice(pairs.raw());
            }
            Command::Connect {
                hostname,
                family,
                port,
                address,
            } => {
                push_cstr(out, hostname);
                out.push(family.to_byte());
                if family.has_address() {
                    out.extend_from_slice(&port.to_be_bytes());
                    push_cstr(out, address);
                }
            }
            Command::Helo(name) | Command::Unknown(name) => push_cstr(out, name),
            Command::Mail(args) | Command::Rcpt(args) => out.extend_from_slice(args.raw()),
            Command::Header { name, value } => {
                push_cstr(out, name);
                push_cstr(out, value);
            }
            Command::Body(chunk) | Command::BodyEob(chunk) => out.extend_from_slice(chunk),
            Command::Data | Command::Eoh | Command::Abort | Command::Quit | Command::QuitNc => {}
        });
    }
}

fn decode_connect(p: &[u8]) -> Result<Command<'_>, DecodeError> {
    let (hostname, rest) = take_cstr(p).ok_or(DecodeError::BadConnect)?;
    let (&family, rest) = rest.split_first().ok_or(DecodeError::BadConnect)?;
    let family = Family::from_byte(family);
    if !family.has_address() {
        return Ok(Command::Connect {
            hostname,
            family,
            port: 0,
            address: &[],
        });
    }
    let (port, rest) = rest
        .split_first_chunk::<2>()
        .ok_or(DecodeError::BadConnect)?;
    let (address, _) = take_cstr(rest).ok_or(DecodeError::BadConnect)?;
    Ok(Command::Connect {
        hostname,
        family,
        port: u16::from_be_bytes(*port),
        address,
    })
}

/// Appends `name\0value\0` pairs (MAIL-side helper for clients and tests).
pub fn encode_macro_pairs(out: &mut Vec<u8>, pairs: &[(&[u8], &[u8])]) {
    for (n, v) in pairs {
        push_cstr(out, n);
        push_cstr(out, v);
    }
}

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

/// A reusable per-connection receive buffer that yields whole frames. It
/// starts small and grows only to the size of the packet being received,
/// never past [`MAX_FRAME`], and only after the length field was checked.
pub struct FrameBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// Initial size: a whole RCPT or MACRO packet fits, several usually do.
const INITIAL_BUFFER: usize = 4096;

impl Default for FrameBuffer {
    fn default() -> Self {
        FrameBuffer::new()
    }
}

impl FrameBuffer {
    pub fn new() -> FrameBuffer {
        FrameBuffer {
            buf: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    /// The next complete frame, if one is buffered. Its bytes stay valid
    /// until the buffer is next written to.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, FrameError> {
        let pending = self.buf.get(self.start..self.end).unwrap_or_default();
        match split_frame(pending)? {
            None => Ok(None),
            Some((_, used)) => {
                let from = self.start;
                self.start += used;
                if self.start == self.end {
                    self.start = 0;
                    self.end = 0;
                }
                let packet = self.buf.get(from..from + used).unwrap_or_default();
                Ok(split_frame(packet)?.map(|(frame, _)| frame))
            }
        }
    }

    /// True when no partial packet is buffered.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Room to read into, sized for the packet being received. Fails if the
    /// buffered length field is invalid.
    pub fn spare(&mut self) -> Result<&mut [u8], FrameError> {
        let pending = self.end - self.start;
        let need = match self
            .buf
            .get(self.start..self.end)
            .and_then(|p| p.first_chunk::<4>())
        {
            Some(header) => frame_size(*header)?,
            None => 4,
        };
        let want = need.max(INITIAL_BUFFER);
        if pending == 0 && self.buf.len() > INITIAL_BUFFER {
            // A big packet has been handled: give the memory back.
            self.buf.truncate(INITIAL_BUFFER);
            self.buf.shrink_to_fit();
            self.start = 0;
            self.end = 0;
        }
        if self.buf.len() < want {
            // Only reached once per connection for normal traffic; grows to
            // at most MAX_FRAME.
            self.buf.resize(want, 0);
        }
        if self.start + need > self.buf.len() || self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = pending;
        }
        Ok(self.buf.get_mut(self.end..).unwrap_or_default())
    }

    /// Records that `n` bytes were read into [`FrameBuffer::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Bytes currently allocated (for tests of the memory bound).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_is_doubled_in_a_replycode_with_one_nul() {
        let r = Reply::parse("451 4.7.1 100% sure").unwrap();
        let mut out = Vec::new();
        encode_replycode(&mut out, &r);
        assert_eq!(&out[5..], b"451 4.7.1 100%% sure\0");
        assert_eq!(out[4], resp::REPLYCODE);
    }

    #[test]
    fn frame_size_limits() {
        assert_eq!(frame_size([0, 0, 0, 0]), Err(FrameError::ZeroLength));
        assert_eq!(frame_size([0, 0, 0, 1]), Ok(5));
        assert_eq!(frame_size([0, 1, 0, 0]), Ok(4 + 65_536));
        assert_eq!(frame_size([0, 1, 0, 1]), Err(FrameError::TooLong(65_537)));
        assert_eq!(
            frame_size([0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::TooLong(u32::MAX))
        );
    }

    #[test]
    fn frame_buffer_reassembles_split_input() {
        let mut wire = Vec::new();
        encode_empty(&mut wire, cmd::ABORT);
        encode_packet(&mut wire, cmd::RCPT, |o| o.extend_from_slice(b"<a@b>\0"));
        let mut fb = FrameBuffer::new();
        let mut seen = Vec::new();
        for byte in &wire {
            let spare = fb.spare().unwrap();
            spare[0] = *byte;
            fb.filled(1);
            while let Some(f) = fb.next_frame().unwrap() {
                seen.push((f.cmd, f.payload.to_vec()));
            }
        }
        assert_eq!(seen, vec![(b'A', vec![]), (b'R', b"<a@b>\0".to_vec())]);
        assert!(fb.is_empty());
    }

    #[test]
    fn frame_buffer_grows_only_for_a_valid_big_packet() {
        let mut fb = FrameBuffer::new();
        let spare = fb.spare().unwrap();
        spare[..4].copy_from_slice(&[0, 1, 0, 0]);
        fb.filled(4);
        assert!(fb.next_frame().unwrap().is_none());
        assert!(fb.spare().unwrap().len() >= 65_536);
        assert!(fb.capacity() <= MAX_FRAME + INITIAL_BUFFER);

        let mut bad = FrameBuffer::new();
        bad.spare().unwrap()[..4].copy_from_slice(&[0x7f, 0, 0, 0]);
        bad.filled(4);
        assert_eq!(bad.next_frame(), Err(FrameError::TooLong(0x7f00_0000)));
        assert!(bad.spare().is_err());
        assert!(bad.capacity() <= INITIAL_BUFFER);
    }
}
