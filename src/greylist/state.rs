//! The state file: everything the engine must remember across a restart.
//!
//! Byte layout, version 1. All integers little-endian; times are absolute
//! unix seconds (so downtime counts toward delays and expiries).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `GREYMLTR` |
//! | 8 | 4 | format version (`u32`, 1) |
//! | 12 | 4 | reserved, 0 |
//! | 16 | 16 | hashing secret: `k0` `u64`, `k1` `u64` (keys are only meaningful with it) |
//! | 32 | 8 | written at (`u64` unix seconds) |
//! | 40 | 8 | `P`: number of pending tuples (`u64`) |
//! | 48 | 24·P | pending tuples: key `[u64; 2]` (network hash, tuple hash), first seen `u32`, last attempt `u32` |
//! | … | 8 | `W`: number of whitelisted tuples |
//! | … | 24·W | whitelisted tuples: key `[u64; 2]`, first seen `u32`, last use `u32` |
//! | … | 8 | `A`: number of auto-whitelist records |
//! | … | 20·A | network hash `u64`, counted passes `u32`, last counted pass `u32`, last use as whitelisted network `u32` (0 = not yet whitelisted) |
//! | end − 8 | 8 | checksum: SipHash-1-3 with key (0, 0) of every byte before it |
//!
//! Statistics are not saved: they describe the running process (`Start`).
//!
//! Reading is all-or-nothing and never trusts the file: the checksum is
//! verified before anything is parsed, each count is checked against the
//! bytes actually present (a corrupt count cannot make us allocate), a
//! newer version is refused with a clear error, and a repeated key is an
//! error. Writing streams through one fixed 64 KiB buffer: no allocation per
//! entry, fit for a forked child at 10M tuples (240 MB of records).

use std::hash::Hasher;
use std::io::{self, Write};

use siphasher::sip::SipHasher13;

use super::awl::AwlRecord;
use super::key::{NetKey, Secret, TupleKey};
use super::table::Times;

pub const MAGIC: &[u8; 8] = b"GREYMLTR";
pub const VERSION: u32 = 1;
const HEADER_LEN: usize = 40;
const TUPLE_LEN: usize = 24;
const AWL_LEN: usize = 20;
const CHECKSUM_LEN: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// Shorter than an empty state.
    TooShort(usize),
    BadMagic,
    /// Written by another (newer, or unknown) version of greymilter.
    UnsupportedVersion(u32),
    /// The checksum does not match: truncated or corrupted.
    Checksum,
    /// A section is cut short or its count exceeds the bytes present.
    Truncated(&'static str),
    /// Bytes after the last section.
    TrailingBytes(usize),
    /// The same key twice.
    Duplicate(&'static str),
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::TooShort(n) => write!(f, "state is {n} bytes, too short to be a state"),
            StateError::BadMagic => write!(f, "not a greymilter state (bad magic)"),
            StateError::UnsupportedVersion(v) => write!(
                f,
                "state format version {v} is not supported (this greymilter reads version {VERSION}); \
                 was it written by a newer greymilter?"
            ),
            StateError::Checksum => write!(f, "state checksum mismatch: truncated or corrupted"),
            StateError::Truncated(what) => write!(f, "state is cut short in its {what} section"),
            StateError::TrailingBytes(n) => write!(f, "{n} unexpected bytes after the state"),
            StateError::Duplicate(what) => write!(f, "state holds a {what} twice"),
        }
    }
}

impl std::error::Error for StateError {}

/// A parsed state; the sections are iterators over the checked bytes.
pub struct Parsed<'a> {
    pub secret: Secret,
    pub written_at: u64,
    pending: &'a [u8],
    white: &'a [u8],
    awl: &'a [u8],
}

impl<'a> Parsed<'a> {
    pub fn pending(&self) -> impl ExactSizeIterator<Item = (TupleKey, Times)> + 'a {
        self.pending.chunks_exact(TUPLE_LEN).map(tuple_record)
    }
    pub fn white(&self) -> impl ExactSizeIterator<Item = (TupleKey, Times)> + 'a {
        self.white.chunks_exact(TUPLE_LEN).map(tuple_record)
    }
    pub fn awl(&self) -> impl ExactSizeIterator<Item = (NetKey, AwlRecord)> + 'a {
        self.awl.chunks_exact(AWL_LEN).map(|r| {
            let mut c = Cursor(r);
            let net = NetKey::from_u64(c.u64().unwrap_or(0));
            let rec = AwlRecord {
                passes: c.u32().unwrap_or(0),
                last_counted: c.u32().unwrap_or(0),
                last_use: c.u32().unwrap_or(0),
            };
            (net, rec)
        })
    }
}

fn tuple_record(r: &[u8]) -> (TupleKey, Times) {
    let mut c = Cursor(r);
    let k = TupleKey([c.u64().unwrap_or(0), c.u64().unwrap_or(0)]);
    let t = Times {
        first_seen: c.u32().unwrap_or(0),
        last: c.u32().unwrap_or(0),
    };
    (k, t)
}

/// Checks and splits a state file image.
pub fn parse(bytes: &[u8]) -> Result<Parsed<'_>, StateError> {
    // Smallest state: header, three counts, checksum.
    if bytes.len() < HEADER_LEN + 3 * 8 + CHECKSUM_LEN {
        return Err(StateError::TooShort(bytes.len()));
    }
    let mut c = Cursor(bytes);
    if c.take(8) != Some(MAGIC.as_slice()) {
        return Err(StateError::BadMagic);
    }
    let version = c.u32().unwrap_or(0);
    if version != VERSION {
        return Err(StateError::UnsupportedVersion(version));
    }
    let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    let mut h = checksum_hasher();
    h.write(body);
    if h.finish().to_le_bytes() != sum {
        return Err(StateError::Checksum);
    }
    let mut c = Cursor(body.get(12..).unwrap_or_default());
    let truncated = StateError::Truncated("header");
    let _reserved = c.u32().ok_or(truncated.clone())?;
    let secret = Secret {
        k0: c.u64().ok_or(truncated.clone())?,
        k1: c.u64().ok_or(truncated.clone())?,
    };
    let written_at = c.u64().ok_or(truncated)?;
    let pending = c.section(TUPLE_LEN, "pending tuples")?;
    let white = c.section(TUPLE_LEN, "whitelisted tuples")?;
    let awl = c.section(AWL_LEN, "auto-whitelist")?;
    if !c.0.is_empty() {
        return Err(StateError::TrailingBytes(c.0.len()));
    }
    Ok(Parsed {
        secret,
        written_at,
        pending,
        white,
        awl,
    })
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    /// A count followed by that many records of `len` bytes; the count is
    /// checked against the bytes left before anything else.
    fn section(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], StateError> {
        let count = self.u64().ok_or(StateError::Truncated(what))?;
        let bytes = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(len))
            .filter(|&b| b <= self.0.len())
            .ok_or(StateError::Truncated(what))?;
        self.take(bytes).ok_or(StateError::Truncated(what))
    }
}

fn checksum_hasher() -> SipHasher13 {
    SipHasher13::new_with_keys(0, 0)
}

/// Writes a state (layout in the module docs).
pub fn write<'a>(
    out: &mut dyn Write,
    secret: Secret,
    written_at: u64,
    pending: impl ExactSizeIterator<Item = (&'a TupleKey, &'a Times)>,
    white: impl ExactSizeIterator<Item = (&'a TupleKey, &'a Times)>,
    awl: impl ExactSizeIterator<Item = (&'a NetKey, &'a AwlRecord)>,
) -> io::Result<()> {
    let mut w = ChecksumWriter::new(out);
    w.put(MAGIC)?;
    w.put(&VERSION.to_le_bytes())?;
    w.put(&0u32.to_le_bytes())?;
    w.put(&secret.k0.to_le_bytes())?;
    w.put(&secret.k1.to_le_bytes())?;
    w.put(&written_at.to_le_bytes())?;
    w.tuples(pending)?;
    w.tuples(white)?;
    w.put(&(awl.len() as u64).to_le_bytes())?;
    for (k, r) in awl {
        let mut rec = [0u8; AWL_LEN];
        rec[..8].copy_from_slice(&k.as_u64().to_le_bytes());
        rec[8..12].copy_from_slice(&r.passes.to_le_bytes());
        rec[12..16].copy_from_slice(&r.last_counted.to_le_bytes());
        rec[16..20].copy_from_slice(&r.last_use.to_le_bytes());
        w.put(&rec)?;
    }
    w.finish()
}

struct ChecksumWriter<'o> {
    out: &'o mut dyn Write,
    buf: Vec<u8>,
    hasher: SipHasher13,
}

const WRITE_BUF: usize = 64 * 1024;

impl<'o> ChecksumWriter<'o> {
    fn new(out: &'o mut dyn Write) -> Self {
        ChecksumWriter {
            out,
            buf: Vec::with_capacity(WRITE_BUF),
            hasher: checksum_hasher(),
        }
    }
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.buf.len() + bytes.len() > WRITE_BUF {
            self.flush_buf()?;
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }
    fn flush_buf(&mut self) -> io::Result<()> {
        self.hasher.write(&self.buf);
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
    fn tuples<'a>(
        &mut self,
        entries: impl ExactSizeIterator<Item = (&'a TupleKey, &'a Times)>,
    ) -> io::Result<()> {
        self.put(&(entries.len() as u64).to_le_bytes())?;
        for (k, t) in entries {
            let mut rec = [0u8; TUPLE_LEN];
            rec[..8].copy_from_slice(&k.0[0].to_le_bytes());
            rec[8..16].copy_from_slice(&k.0[1].to_le_bytes());
            rec[16..20].copy_from_slice(&t.first_seen.to_le_bytes());
            rec[20..24].copy_from_slice(&t.last.to_le_bytes());
            self.put(&rec)?;
        }
        Ok(())
    }
    fn finish(mut self) -> io::Result<()> {
        self.flush_buf()?;
        let sum = self.hasher.finish().to_le_bytes();
        self.out.write_all(&sum)?;
        self.out.flush()
    }
}
