//! SMFIC_* commands: typed decode, borrowing from the packet, and encode
//! (the MTA side, for the client and tests).

use std::fmt;

use super::framing::{encode_packet, memchr, push_cstr, take_cstr};
use super::{Frame, cmd};

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
