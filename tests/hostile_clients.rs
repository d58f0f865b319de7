//! Hostile milter peers against the real binary: bad framing, bad commands, odd
//! negotiation, slowloris; each gets a bounded reaction and one rate-limited warn line.
//!
//! Each test runs its own daemon with the healthy client beside it, sends
//! one kind of hostile input on ROUNDS connections at once, and checks what
//! every hostile input must satisfy (support/hostile.rs): the daemon stays
//! alive without a panic, every healthy conversation keeps getting the
//! right replies, peak and kept memory stay bounded, the input produces one
//! rate-limited warn line (or none if it is legal), and the reaction —
//! close or tolerate, documented at the top of each test — is what the
//! statistics count.

mod support;

use greymilter::milter::client::{ConnectAddr, Family, Response};
use greymilter::milter::codec::{Command, cmd};
use support::healthy::{Client, REPLY_TIMEOUT, is_greylisted, negotiated, open};
use support::hostile::{Expect, Hostile, ROUNDS, assert_closed, eof_and_drain, packet, quit};
use support::rng::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// CONNECT from a documentation address; must be answered CONTINUE.
async fn connect_client(c: &mut Client, i: usize) {
    let ip = format!("198.51.100.{}", i % 250 + 1).parse().unwrap();
    let r = c
        .connect("mx.hostile.example", &ConnectAddr::Ip(ip, 25))
        .await;
    assert_eq!(r.unwrap(), Response::Continue, "CONNECT");
}

/// MAIL and a new recipient: the recipient must be greylisted (451 4.7.1).
async fn greylisted_rcpt(c: &mut Client, i: usize) {
    assert_eq!(
        c.mail(&["<h@hostile.example>"]).await.unwrap(),
        Response::Continue
    );
    let r = c.rcpt(&[&format!("<n{i}@hostile.example>")]).await.unwrap();
    assert!(is_greylisted(&r), "new tuple not greylisted: {r:?}");
}

/// Closes at once on a length field the framing refuses, without waiting
/// for (or allocating) the announced payload.
fn closes_on_length_field(header: [u8; 4], warn: &'static str) {
    let h = Hostile::start("");
    h.rounds(|addr, i| async move {
        let mut c = negotiated(addr).await;
        connect_client(&mut c, i).await;
        c.write_raw(&header).await.unwrap();
        assert_closed(&mut c, "bad length field").await;
    });
    h.finish(Expect::closed(warn));
}

/// Reaction: close. A length of 0 cannot even hold the command byte.
#[test]
fn length_zero_closes() {
    closes_on_length_field([0, 0, 0, 0], "packet length 0");
}

/// Reaction: close. Length 2^31: far beyond the 64 KiB packet limit; the
/// daemon closes on the 4 length bytes alone (the default idle timeout is
/// 10 minutes, so a close within the client's timeout is the check).
#[test]
fn length_two_to_the_31_closes() {
    closes_on_length_field(0x8000_0000u32.to_be_bytes(), "exceeds the limit");
}

/// Reaction: close, as for 2^31.
#[test]
fn length_two_to_the_32_minus_one_closes() {
    closes_on_length_field(u32::MAX.to_be_bytes(), "exceeds the limit");
}

/// Reaction: tolerate, then close. Length 1 is a packet of just the command
/// byte: legal for ABORT (tolerated, the conversation goes on), a truncated
/// CONNECT otherwise (closed).
#[test]
fn length_one_is_a_bare_command() {
    let h = Hostile::start("");
    h.rounds(|addr, i| async move {
        let mut c = negotiated(addr).await;
        connect_client(&mut c, i).await;
        c.write_raw(&[0, 0, 0, 1, cmd::ABORT]).await.unwrap();
        greylisted_rcpt(&mut c, i).await;
        c.write_raw(&[0, 0, 0, 1, cmd::CONNECT]).await.unwrap();
        assert_closed(&mut c, "one-byte CONNECT").await;
    });
    h.finish(Expect::closed("truncated or unterminated CONNECT"));
}

/// Reaction: close. Random bytes on a fresh connection where the length
/// field should be (its first byte non-zero, so it announces more than the
/// 64 KiB limit): the daemon closes on the first 4 bytes and reads nothing
/// more.
#[test]
fn garbage_bytes_close() {
    let h = Hostile::start("");
    let seed = Rng::from_env("garbage").next();
    h.rounds(|addr, i| async move {
        let mut rng = Rng::new(seed ^ i as u64);
        let mut garbage = rng.bytes(2048);
        garbage[0] |= 1;
        let mut c = open(addr).await;
        c.write_raw(&garbage).await.unwrap();
        let sent = eof_and_drain(c).await;
        assert!(sent.is_empty(), "the daemon answered garbage: {sent:?}");
    });
    h.finish(Expect::closed("exceeds the limit"));
}

/// Reaction: answer what can be answered, close on what cannot. After a
/// normal OPTNEG and CONNECT, 49 well-framed packets with random command
/// bytes (never QUIT, which would end the session cleanly) and payloads,
/// then one with an unknown command byte, then EOF. Whatever the daemon
/// sends back must be well-formed milter replies; every connection ends in
/// exactly one protocol error (at the latest on the unknown byte), and the
/// rate-limited warn line is a session's warning about its peer's input.
#[test]
fn random_frames_after_negotiation() {
    let h = Hostile::start("");
    let seed = Rng::from_env("random frames").next();
    h.rounds(|addr, i| async move {
        let mut rng = Rng::new(seed ^ (i as u64) << 32);
        let mut c = negotiated(addr).await;
        connect_client(&mut c, i).await;
        let mut frames = Vec::new();
        for _ in 0..49 {
            let len = rng.below(100) as usize;
            let code = match rng.next() as u8 {
                cmd::QUIT | cmd::QUIT_NC => cmd::ABORT,
                code => code,
            };
            frames.extend(packet(code, &rng.bytes(len)));
        }
        frames.extend(packet(b'Z', b"payload\0"));
        c.write_raw(&frames).await.unwrap();
        let mut rest = eof_and_drain(c).await;
        while !rest.is_empty() {
            match greymilter::milter::codec::split_frame(&rest) {
                Ok(Some((_, used))) => rest.drain(..used),
                other => panic!("a malformed reply from the daemon: {other:?} in {rest:?}"),
            };
        }
    });
    // Which warning comes first depends on the random frames: a closing
    // protocol error, or one of the violations a session survives.
    h.finish(Expect::closed(
        "milter protocol error, closing|macro at RCPT|macro packet|CONNECT with|RCPT without MAIL",
    ));
}

/// Reaction: close. An unknown command byte: the daemon cannot tell whether
/// a reply is owed, so it cannot stay in step with the MTA.
#[test]
fn unknown_command_codes_close() {
    let h = Hostile::start("");
    h.rounds(|addr, i| async move {
        let mut c = negotiated(addr).await;
        connect_client(&mut c, i).await;
        let code = [b'Z', 0x00, 0xff, b'x', b'P'][i % 5];
        c.write_raw(&packet(code, b"payload\0")).await.unwrap();
        assert_closed(&mut c, "unknown command").await;
    });
    h.finish(Expect::closed("unknown command byte"));
}

/// Reaction: close. Version 1 predates everything greymilter relies on
/// (libmilter refuses it too).
#[test]
fn optneg_version_one_closes() {
    let h = Hostile::start("");
    h.rounds(|addr, _| async move {
        let mut c = open(addr).await;
        let offer = Command::OptNeg {
            version: 1,
            actions: 0x1ff,
            protocol: 0x1f_ffff,
        };
        c.send(&offer).await.unwrap();
        assert_closed(&mut c, "OPTNEG v1").await;
    });
    h.finish(Expect::closed("need at least 2"));
}

/// Negotiates each offer `(version, actions, protocol)` in turn and checks
/// the answer: our version (6 at most), and only bits we know that were
/// offered (Sendmail drops a milter that asks for more); then greylisting
/// works on that connection.
fn odd_offers_are_answered_sanely(offers: &'static [(u32, u32, u32)]) {
    let h = Hostile::start("");
    h.rounds(|addr, i| async move {
        let (version, actions, protocol) = offers[i % offers.len()];
        let mut c = open(addr).await;
        let offer = Command::OptNeg {
            version,
            actions,
            protocol,
        };
        let Response::OptNeg(n) = c.request(&offer).await.unwrap() else {
            panic!("OPTNEG not answered with OPTNEG");
        };
        assert_eq!(n.version, version.min(6));
        let offered_actions = if actions == 0 { 0x0f } else { actions };
        let offered_protocol = if protocol == 0 { 0x3f } else { protocol };
        assert_eq!(n.actions & !offered_actions, 0, "{n:?}");
        assert_eq!(n.actions & !0x1ff, 0, "{n:?}");
        assert_eq!(n.protocol & !offered_protocol, 0, "{n:?}");
        // Only CONNECT and MAIL may go without a reply (NR_CONN, NR_MAIL)
        // or be skipped (NOCONNECT, NOMAIL).
        assert_eq!(n.protocol & !0x5377, 0, "no other bit: {n:?}");
        connect_client(&mut c, i).await;
        greylisted_rcpt(&mut c, i).await;
        quit(c).await;
    });
    h.finish(Expect::tolerated(None));
}

/// Reaction: tolerate, no warn line. A version above ours is how a newer
/// MTA offers: the daemon answers 6 and greylists as usual.
#[test]
fn optneg_version_max_is_answered_with_ours() {
    odd_offers_are_answered_sanely(&[(u32::MAX, 0x1ff, 0x1f_ffff)]);
}

/// Reaction: tolerate, no warn line. Absurd masks (every bit set, zero,
/// only undefined bits) are masked with what greymilter wants.
#[test]
fn optneg_absurd_masks_are_masked() {
    odd_offers_are_answered_sanely(&[
        (6, u32::MAX, u32::MAX),
        (6, 0, 0),
        (6, 0xffff_fe00, 0xffe0_0000),
        (6, 0x1ff, 0x8000_0000),
    ]);
}

/// CONNECT with `addr`, which carries no usable client IP: the daemon must
/// fail open (the connection is not greylisted: a new tuple's recipient
/// gets CONTINUE) and keep serving.
async fn connect_without_ip_fails_open(c: &mut Client, addr: ConnectAddr) {
    let r = c.connect("mx.hostile.example", &addr).await.unwrap();
    // CONNECT goes without a reply (NR_CONN): the MTA takes it as CONTINUE.
    assert!(!c.expects_reply(cmd::CONNECT));
    assert_eq!(r, Response::Continue, "{addr:?}");
    c.mail(&["<new@hostile.example>"]).await.unwrap();
    let r = c.rcpt(&["<someone@hostile.example>"]).await.unwrap();
    assert_eq!(r, Response::Continue, "not greylisted: {addr:?}");
}

/// Reaction: tolerate (fail open: no client IP, not greylisted), one warn
/// line. A family byte other than 4, 6, L or U is no family any MTA sends.
#[test]
fn connect_with_an_unknown_family_fails_open() {
    let h = Hostile::start("");
    h.rounds(|addr, i| async move {
        let mut c = negotiated(addr).await;
        let family = Family::Other([b'X', b'5', 0x00, 0xff][i % 4]);
        let raw = ConnectAddr::Raw {
            family,
            port: 25,
            address: "198.51.100.1".into(),
        };
        connect_without_ip_fails_open(&mut c, raw).await;
        quit(c).await;
    });
    h.finish(Expect::tolerated(Some("unknown address family")));
}

/// Reaction: tolerate (fail open), one warn line. Family 4 or 6 with text
/// that is no address of that family.
#[test]
fn connect_with_an_invalid_address_fails_open() {
    let h = Hostile::start("");
    h.rounds(|addr, i| async move {
        let mut c = negotiated(addr).await;
        let (family, text) = [
            (Family::Inet4, "999.1.2.3"),
            (Family::Inet4, "not an address"),
            (Family::Inet6, "2001:db8::zz"),
            (Family::Inet4, ""),
        ][i % 4];
        let raw = ConnectAddr::Raw {
            family,
            port: 25,
            address: text.into(),
        };
        connect_without_ip_fails_open(&mut c, raw).await;
        quit(c).await;
    });
    h.finish(Expect::tolerated(Some(
        "client address that does not parse",
    )));
}

/// Reaction: close. A CONNECT whose host name or address lacks its NUL:
/// the key fields cannot be trusted.
#[test]
fn connect_without_its_nul_closes() {
    let h = Hostile::start("");
    h.rounds(|addr, i| async move {
        let mut c = negotiated(addr).await;
        let payload: &[u8] = if i % 2 == 0 {
            b"mx.hostile.example"
        } else {
            b"mx.hostile.example\x004\x00\x19198.51.100.1"
        };
        c.write_raw(&packet(cmd::CONNECT, payload)).await.unwrap();
        assert_closed(&mut c, "CONNECT without NUL").await;
    });
    h.finish(Expect::closed("truncated or unterminated CONNECT"));
}

/// Reaction: close. MAIL or RCPT without even an empty NUL-terminated
/// address: there is nothing to key on and the MTA is broken.
#[test]
fn mail_and_rcpt_without_arguments_close() {
    let h = Hostile::start("");
    h.rounds(|addr, i| async move {
        let mut c = negotiated(addr).await;
        connect_client(&mut c, i).await;
        if i % 2 == 0 {
            c.write_raw(&packet(cmd::MAIL, b"")).await.unwrap();
        } else {
            assert_eq!(
                c.mail(&["<h@hostile.example>"]).await.unwrap(),
                Response::Continue
            );
            c.write_raw(&packet(cmd::RCPT, b"")).await.unwrap();
        }
        assert_closed(&mut c, "MAIL/RCPT without arguments").await;
    });
    h.finish(Expect::closed("without a NUL-terminated address"));
}

/// Reaction: tolerate, no warn line. Addresses are keyed as bytes, so
/// non-UTF-8 senders and recipients are greylisted like any other (a new
/// one 451, its early retry 451 again); the decision log escapes them and
/// stays valid UTF-8.
#[test]
fn non_utf8_addresses_are_greylisted() {
    let h = Hostile::start("");
    h.rounds(|addr, i| async move {
        let mut c = negotiated(addr).await;
        connect_client(&mut c, i).await;
        let mail = packet(cmd::MAIL, b"<\xff\xfe@hostile.example>\0");
        c.write_raw(&mail).await.unwrap();
        let mut rcpt = b"<\x80\xc0".to_vec();
        rcpt.extend_from_slice(format!("{i}@hostile.example>\0").as_bytes());
        let rcpt_bytes = packet(cmd::RCPT, &rcpt);
        for attempt in ["first", "early retry"] {
            c.write_raw(&rcpt_bytes).await.unwrap();
            let r = c.read_response().await.unwrap();
            assert!(is_greylisted(&r), "{attempt}: {r:?}");
        }
        quit(c).await;
    });
    let log = h.finish(Expect::tolerated(None)).daemon.log_text();
    assert!(!log.is_empty(), "the log must stay readable as UTF-8");
    assert!(log.contains(r"from=<\xff\xfe@hostile.example>"), "{log}");
}

/// Reaction: tolerate, no warn line. A 60,000-byte sender and recipient
/// (RFC 5321 allows 256) fit in one packet; they are greylisted (keyed on
/// their first 512 bytes) and the decision log line stays short.
#[test]
fn sixty_thousand_byte_addresses_are_greylisted() {
    let h = Hostile::start("");
    h.rounds(|addr, i| async move {
        let long = |tag: &str| format!("<{tag}{i}{}@hostile.example>", "a".repeat(60_000));
        let mut c = negotiated(addr).await;
        connect_client(&mut c, i).await;
        assert_eq!(c.mail(&[&long("s")]).await.unwrap(), Response::Continue);
        let r = c.rcpt(&[&long("r")]).await.unwrap();
        assert!(is_greylisted(&r), "{r:?}");
        quit(c).await;
    });
    let longest = h
        .finish(Expect::tolerated(None))
        .daemon
        .log_text()
        .lines()
        .filter(|l| l.contains("from=<s"))
        .map(str::len)
        .max()
        .unwrap();
    assert!(longest < 2048, "a decision line of {longest} bytes");
}

/// Reaction: tolerate, one warn line. A MACRO packet with 10,000 pairs
/// (40 KB): the daemon keeps the first 8 KiB of each stage. The
/// `{auth_authen}` pair after the 10,000 is therefore not kept, so MAIL is
/// not taken as authenticated and the recipient is greylisted.
#[test]
fn macro_packet_with_ten_thousand_pairs_is_cut() {
    let h = Hostile::start("");
    h.rounds(|addr, i| async move {
        let mut c = negotiated(addr).await;
        connect_client(&mut c, i).await;
        let mut payload = vec![cmd::MAIL];
        for _ in 0..10_000 {
            payload.extend_from_slice(b"x\0y\0");
        }
        payload.extend_from_slice(b"{auth_authen}\0alice\0");
        c.write_raw(&packet(cmd::MACRO, &payload)).await.unwrap();
        greylisted_rcpt(&mut c, i).await;
        quit(c).await;
    });
    h.finish(Expect::tolerated(Some("oversized macro packet")));
}

/// Reaction: tolerate (fail open for that recipient: no sender to key on),
/// one warn line. The transaction that follows is greylisted as usual.
#[test]
fn rcpt_before_mail_is_answered_continue() {
    let h = Hostile::start("");
    h.rounds(|addr, i| async move {
        let mut c = negotiated(addr).await;
        connect_client(&mut c, i).await;
        let r = c.rcpt(&["<early@hostile.example>"]).await.unwrap();
        assert_eq!(r, Response::Continue);
        greylisted_rcpt(&mut c, i).await;
        quit(c).await;
    });
    h.finish(Expect::tolerated(Some("RCPT without MAIL")));
}

/// Reaction: close (the peer's EOF; not counted as a protocol error: an MTA
/// that crashes mid-write does the same), one warn line. A length larger
/// than the data, then EOF: the daemon holds at most the one announced
/// packet (all ROUNDS connections hold 30 KB of a 64 KiB packet at once,
/// which the peak memory check covers) and answers nothing.
#[test]
fn length_beyond_the_data_then_eof_closes() {
    let h = Hostile::start("");
    let all_sent = std::sync::Arc::new(tokio::sync::Barrier::new(ROUNDS));
    h.rounds(|addr, i| {
        let all_sent = all_sent.clone();
        async move {
            let mut c = negotiated(addr).await;
            connect_client(&mut c, i).await;
            let mut partial = 65_536u32.to_be_bytes().to_vec();
            partial.push(cmd::RCPT);
            partial.extend(std::iter::repeat_n(b'x', 30_000));
            c.write_raw(&partial).await.unwrap();
            all_sent.wait().await;
            let sent = eof_and_drain(c).await;
            assert!(
                sent.is_empty(),
                "the daemon answered a partial packet: {sent:?}"
            );
        }
    });
    h.finish(Expect::tolerated(Some("inside a packet")));
}

/// Reaction: close at the idle timeout (1 s here), counted as a timeout, one
/// warn line. Slowloris: one byte of a packet, then silence. Half the
/// rounds send the byte before OPTNEG, half after.
#[test]
fn slowloris_is_closed_at_the_idle_timeout() {
    let h = Hostile::start("[milter]\nlisten = \"inet:0@127.0.0.1\"\nidle_timeout = \"1s\"\n");
    h.rounds(|addr, i| async move {
        let mut c = if i % 2 == 0 {
            open(addr).await
        } else {
            negotiated(addr).await
        };
        c.write_raw(&[0]).await.unwrap();
        let started = std::time::Instant::now();
        assert_closed(&mut c, "slowloris").await;
        assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    });
    h.finish(Expect {
        warn: Some("packet still incomplete 1s after its first byte"),
        sessions: ROUNDS as u64,
        protocol_errors: 0..=0,
        timeouts: ROUNDS as u64,
    });
}

/// Reaction: close when the packet is not whole 1 s (the idle timeout)
/// after its first byte, counted as a timeout, one warn line. Slowloris
/// that trickles: a 1,000-byte RCPT sent one byte every 300 ms, so no single
/// read ever waits the idle timeout.
#[test]
fn trickling_slowloris_is_closed_when_the_packet_is_not_whole_in_time() {
    let h = Hostile::start("[milter]\nlisten = \"inet:0@127.0.0.1\"\nidle_timeout = \"1s\"\n");
    h.rounds(|addr, i| async move {
        let mut c = negotiated(addr).await;
        connect_client(&mut c, i).await;
        assert_eq!(
            c.mail(&["<h@hostile.example>"]).await.unwrap(),
            Response::Continue
        );
        let mut rcpt = packet(cmd::RCPT, &[b'x'; 999]);
        *rcpt.last_mut().unwrap() = 0;
        let (mut reader, mut writer) = tokio::io::split(c.into_inner());
        let trickle = async move {
            for byte in rcpt.chunks(1) {
                if writer.write_all(byte).await.is_err() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
        };
        let mut got = Vec::new();
        let closed = tokio::time::timeout(REPLY_TIMEOUT, reader.read_to_end(&mut got));
        tokio::select! {
            read = closed => {
                assert!(matches!(read, Ok(Ok(0))), "expected a close, got {read:?} {got:?}");
            }
            () = trickle => panic!("the whole packet was sent without a close"),
        }
    });
    h.finish(Expect {
        warn: Some("packet still incomplete 1s after its first byte"),
        sessions: ROUNDS as u64,
        protocol_errors: 0..=0,
        timeouts: ROUNDS as u64,
    });
}
