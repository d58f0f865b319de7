//! Framing and decoding (`milter::codec`): `split_frame`, the reassembling
//! `FrameBuffer`, `Command::decode` and `Response::decode`.
//!
//! Input: the first byte picks how the stream is cut into reads for the
//! `FrameBuffer`; the rest is a byte stream as a peer would send it.

use greymilter::milter::codec::{
    Command, Frame, FrameBuffer, FrameError, MAX_FRAME, MAX_PAYLOAD, Response, encode_packet,
    split_frame,
};

/// The `FrameBuffer` starts at and shrinks back to this size.
const INITIAL_BUFFER: usize = 4096;

pub fn check(data: &[u8]) {
    let Some((&cuts, stream)) = data.split_first() else {
        return;
    };
    let split = reference(stream);
    for (frame, bytes) in &split.frames {
        check_frame(*frame, bytes);
    }
    let buffered = through_buffer(stream, cuts);
    let expected: Vec<Owned> = split
        .frames
        .iter()
        .map(|(f, _)| (f.cmd, f.payload.to_vec()))
        .collect();
    assert_eq!(
        buffered.frames, expected,
        "FrameBuffer and split_frame disagree"
    );
    assert_eq!(
        buffered.error, split.error,
        "FrameBuffer and split_frame disagree on the error"
    );
    if split.error.is_none() {
        assert_eq!(
            buffered.partial,
            split.used < stream.len(),
            "partial packet left in the buffer"
        );
    }
}

/// A frame's command byte and payload.
type Owned = (u8, Vec<u8>);

/// What a way of framing made of a stream.
struct Framing<F> {
    frames: Vec<F>,
    /// Bytes used by complete frames (`split_frame`).
    used: usize,
    /// A partial packet was left (`FrameBuffer`).
    partial: bool,
    error: Option<FrameError>,
}

/// Every frame `split_frame` finds, with its bytes.
fn reference(stream: &[u8]) -> Framing<(Frame<'_>, &[u8])> {
    let mut frames = Vec::new();
    let mut used = 0;
    loop {
        let rest = &stream[used..];
        let done = |error| Framing {
            frames: Vec::new(),
            used,
            partial: false,
            error,
        };
        match split_frame(rest) {
            Ok(None) => {
                return Framing {
                    frames,
                    ..done(None)
                };
            }
            Err(e) => {
                return Framing {
                    frames,
                    ..done(Some(e))
                };
            }
            Ok(Some((frame, size))) => {
                assert!(size > 4 && size <= MAX_FRAME, "frame of {size} bytes");
                assert!(frame.payload.len() <= MAX_PAYLOAD);
                assert_eq!(size, 5 + frame.payload.len());
                frames.push((frame, &rest[..size]));
                used += size;
            }
        }
    }
}

fn check_frame(frame: Frame<'_>, bytes: &[u8]) {
    let mut encoded = Vec::new();
    encode_packet(&mut encoded, frame.cmd, |o| {
        o.extend_from_slice(frame.payload)
    });
    assert_eq!(encoded, bytes, "re-encoding a frame changes it");

    if let Ok(command) = Command::decode(frame) {
        assert_eq!(command.code(), frame.cmd);
        let mut wire = Vec::new();
        command.encode(&mut wire);
        let (again, size) = match split_frame(&wire) {
            Ok(Some(x)) => x,
            other => panic!("encoded {command:?} does not frame: {other:?}"),
        };
        assert_eq!(size, wire.len());
        assert_eq!(
            Command::decode(again),
            Ok(command),
            "decode(encode(c)) != c"
        );
        if let Command::Macro { pairs, .. } = command {
            let complete = pairs.well_formed_len();
            assert!(complete <= pairs.raw().len());
            let counted: usize = pairs.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
            assert_eq!(counted, complete, "macro pairs and their length disagree");
            assert_eq!(pairs.is_well_formed(), complete == pairs.raw().len());
        }
    }

    // The same bytes read as a response (the MTA side, `milter::client`).
    let response = Response::decode(frame);
    let mut wire = Vec::new();
    response.encode(&mut wire);
    let (again, _) = match split_frame(&wire) {
        Ok(Some(x)) => x,
        other => panic!("encoded {response:?} does not frame: {other:?}"),
    };
    assert_eq!(Response::decode(again), response, "decode(encode(r)) != r");
}

/// Feeds `stream` through a `FrameBuffer` in reads sized by `cuts`.
fn through_buffer(stream: &[u8], cuts: u8) -> Framing<Owned> {
    let small = 1 + usize::from(cuts & 0x0f);
    let large = 1 + usize::from(cuts >> 4) * 4999;
    let mut buffer = FrameBuffer::new();
    let mut frames = Vec::new();
    let mut pos = 0;
    let mut odd = false;
    let done = |frames, partial, error| Framing {
        frames,
        used: 0,
        partial,
        error,
    };
    loop {
        loop {
            match buffer.next_frame() {
                Ok(Some(f)) => frames.push((f.cmd, f.payload.to_vec())),
                Ok(None) => break,
                Err(e) => return done(frames, true, Some(e)),
            }
        }
        assert!(
            buffer.capacity() <= MAX_FRAME + INITIAL_BUFFER,
            "buffer grew to {}",
            buffer.capacity()
        );
        if pos == stream.len() {
            return done(frames, !buffer.is_empty(), None);
        }
        let spare = match buffer.spare() {
            Ok(spare) => spare,
            Err(e) => return done(frames, true, Some(e)),
        };
        assert!(!spare.is_empty(), "no room to read into");
        let want = if odd { large } else { small };
        let n = want.min(spare.len()).min(stream.len() - pos);
        spare[..n].copy_from_slice(&stream[pos..pos + n]);
        buffer.filled(n);
        pos += n;
        odd = !odd;
    }
}
