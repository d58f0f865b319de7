//! Packet framing: splitting packets off a byte stream, the per-connection
//! receive buffer, and packet encoding.

use std::fmt;

use super::MAX_PAYLOAD;

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

pub(super) fn push_cstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

/// A reusable per-connection receive buffer that yields whole frames. It
/// starts small and grows only to the size of the packet being received,
/// never past [`super::MAX_FRAME`], and only after the length field was checked.
pub struct FrameBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// Initial size: a whole RCPT or MACRO packet fits, several usually do.
pub(super) const INITIAL_BUFFER: usize = 4096;

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
            // at most MAX_FRAME (super::MAX_FRAME).
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

/// Splits a NUL-terminated string off the front.
pub(super) fn take_cstr(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = memchr(input)?;
    Some((input.get(..nul)?, input.get(nul + 1..)?))
}

pub(super) fn memchr(input: &[u8]) -> Option<usize> {
    input.iter().position(|&b| b == 0)
}
