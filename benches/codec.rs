//! Per-packet cost of the milter codec: framing and decoding the packets
//! Postfix sends most (MACRO, RCPT, CONNECT), encoding the replies we send
//! most (CONTINUE, a 451 REPLYCODE), and the receive buffer's cycle.
//!
//! `cargo bench --bench codec` (`-- --test` runs each once: the CI smoke).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use greymilter::milter::codec::{
    Command, Family, FrameBuffer, MacroPairs, Response, StrArray, encode_macro_pairs,
    encode_replycode, split_frame,
};
use greymilter::reply::Reply;

fn rcpt_packet() -> Vec<u8> {
    let mut raw = Vec::new();
    StrArray::encode(
        &mut raw,
        &[b"<jsmith+lists@mail.example.test>", b"NOTIFY=NEVER"],
    );
    let mut out = Vec::new();
    Command::Rcpt(StrArray::new(&raw).unwrap()).encode(&mut out);
    out
}

fn macro_packet() -> Vec<u8> {
    let mut raw = Vec::new();
    encode_macro_pairs(
        &mut raw,
        &[
            (b"i", b"4Xk2mP0c3Bz9"),
            (b"{rcpt_addr}", b"jsmith+lists@mail.example.test"),
            (b"{rcpt_host}", b"mail.example.test"),
            (b"{rcpt_mailer}", b"smtp"),
        ],
    );
    let mut out = Vec::new();
    Command::Macro {
        stage: Some(b'R'),
        pairs: MacroPairs::new(&raw),
    }
    .encode(&mut out);
    out
}

fn connect_packet() -> Vec<u8> {
    let mut out = Vec::new();
    Command::Connect {
        hostname: b"mail7.sender.example",
        family: Family::Inet4,
        port: 41234,
        address: b"192.0.2.17",
    }
    .encode(&mut out);
    out
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    for (name, packet) in [
        ("rcpt", rcpt_packet()),
        ("macro_rcpt_4_pairs", macro_packet()),
        ("connect", connect_packet()),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let (frame, _) = split_frame(black_box(&packet)).unwrap().unwrap();
                let command = Command::decode(frame).unwrap();
                // Walk macro pairs as the session's store does.
                if let Command::Macro { pairs, .. } = command {
                    black_box(pairs.iter().count());
                }
                black_box(command.code())
            })
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    let reply = Reply::parse("451 4.7.1 Greylisted, please try again in 3600 seconds").unwrap();
    let mut out = Vec::with_capacity(256);
    g.bench_function("continue", |b| {
        b.iter(|| {
            out.clear();
            Response::Continue.encode(&mut out);
            black_box(out.len())
        })
    });
    g.bench_function("replycode_451", |b| {
        b.iter(|| {
            out.clear();
            encode_replycode(&mut out, black_box(&reply));
            black_box(out.len())
        })
    });
    let mut raw = Vec::new();
    StrArray::encode(&mut raw, &[b"<jsmith@example.test>"]);
    let args = StrArray::new(&raw).unwrap();
    g.bench_function("rcpt_command", |b| {
        b.iter(|| {
            out.clear();
            Command::Rcpt(black_box(args)).encode(&mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

/// One read of MACRO+RCPT (as Postfix writes them) into the session's
/// receive buffer and the two frames out of it.
fn frame_buffer(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_buffer");
    g.throughput(Throughput::Elements(2));
    let mut input = macro_packet();
    input.extend_from_slice(&rcpt_packet());
    let mut buffer = FrameBuffer::new();
    g.bench_function("macro_and_rcpt_per_read", |b| {
        b.iter(|| {
            let spare = buffer.spare().unwrap();
            spare[..input.len()].copy_from_slice(&input);
            buffer.filled(input.len());
            let mut n = 0;
            while let Some(frame) = buffer.next_frame().unwrap() {
                n += frame.payload.len();
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, decode, encode, frame_buffer);
criterion_main!(benches);
