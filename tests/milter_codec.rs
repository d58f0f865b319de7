//! Byte-exact codec vectors (docs/milter.md, "Packets") and property
//! tests: round trips, and no input makes the decoder panic or over-allocate.

#[path = "support/milter/mod.rs"]
mod milter_support;

use greymilter::milter::client::ClientBuilder;
use greymilter::milter::codec::{
    Command, Family, FrameBuffer, FrameError, MAX_FRAME, MacroList, MacroPairs, Negotiated,
    Response, StrArray, split_frame,
};
use greymilter::milter::decision::{Conversation, SessionOptions};
use greymilter::milter::session::{Flow, SessionCore};
use greymilter::reply::Reply;
use milter_support::{GreyDecider, Shared};
use proptest::prelude::*;

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Decodes `wire` as exactly one command packet.
fn decode_one(wire: &[u8]) -> Command<'_> {
    let (frame, used) = split_frame(wire).unwrap().expect("a whole packet");
    assert_eq!(used, wire.len(), "one packet, nothing left over");
    Command::decode(frame).unwrap()
}

/// Checks decode and encode of one command against its wire bytes.
fn vector(wire: &[u8], expected: Command<'_>) {
    assert_eq!(decode_one(wire), expected);
    let mut out = Vec::new();
    expected.encode(&mut out);
    assert_eq!(out, wire);
}

fn response_vector(wire: &[u8], expected: Response) {
    let (frame, used) = split_frame(wire).unwrap().unwrap();
    assert_eq!(used, wire.len());
    assert_eq!(Response::decode(frame), expected);
    let mut out = Vec::new();
    expected.encode(&mut out);
    assert_eq!(out, wire);
}

// The MTA's packets of the worked example (§12, first attempt).
const OPTNEG_V6: &[u8] = &[
    0, 0, 0, 0x0d, b'O', 0, 0, 0, 6, 0, 0, 0x01, 0xff, 0, 0x1f, 0xff, 0xff,
];
const CONNECT_MACROS: &[u8] = b"\x00\x00\x00\x7bDCj\0mx.example.net\0{daemon_name}\0mx.example.net\0{daemon_addr}\x00192.0.2.1\0v\0Postfix 3.9.1\0_\0relay.example.org [198.51.100.7]\0";
const CONNECT4: &[u8] = b"\x00\x00\x00\x23Crelay.example.org\x004\xc3\xcb198.51.100.7\0";
const MACRO_H_EMPTY: &[u8] = b"\x00\x00\x00\x02DH";
const MACRO_M_EMPTY: &[u8] = b"\x00\x00\x00\x02DM";
const MAIL_ALICE: &[u8] = b"\x00\x00\x00\x2dM<alice@example.org>\0SIZE=2048\0BODY=8BITMIME\0";
const MACRO_R_EMPTY: &[u8] = b"\x00\x00\x00\x02DR";
const RCPT_BOB: &[u8] = b"\x00\x00\x00\x13R<bob@example.net>\0";
const ABORT: &[u8] = b"\x00\x00\x00\x01A";
const QUIT: &[u8] = b"\x00\x00\x00\x01Q";
// The milter's packets.
const OPTNEG_REPLY: &[u8] =
    b"\x00\x00\x00\x27O\x00\x00\x00\x06\x00\x00\x01\x00\x00\x00\x03\x72\x00\x00\x00\x02{auth_authen} i\0\x00\x00\x00\x03i\0";
/// The same with NR_CONN | NR_MAIL (`0x5372`), what greymilter answers.
const OPTNEG_REPLY_LEAN: &[u8] =
    b"\x00\x00\x00\x27O\x00\x00\x00\x06\x00\x00\x01\x00\x00\x00\x53\x72\x00\x00\x00\x02{auth_authen} i\0\x00\x00\x00\x03i\0";
const CONTINUE: &[u8] = b"\x00\x00\x00\x01c";
const GREYLISTED: &[u8] = b"\x00\x00\x00\x31y451 4.7.1 Greylisted, please retry in 5 minutes\0";

#[test]
fn every_command_decodes_and_encodes_byte_exact() {
    vector(
        OPTNEG_V6,
        Command::OptNeg {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1f_ffff,
        },
    );
    let pairs = b"j\0mx.example.net\0{daemon_name}\0mx.example.net\0{daemon_addr}\x00192.0.2.1\0v\0Postfix 3.9.1\0_\0relay.example.org [198.51.100.7]\0";
    vector(
        CONNECT_MACROS,
        Command::Macro {
            stage: Some(b'C'),
            pairs: MacroPairs::new(pairs),
        },
    );
    vector(
        MACRO_H_EMPTY,
        Command::Macro {
            stage: Some(b'H'),
            pairs: MacroPairs::new(b""),
        },
    );
    vector(
        CONNECT4,
        Command::Connect {
            hostname: b"relay.example.org",
            family: Family::Inet4,
            port: 50123,
            address: b"198.51.100.7",
        },
    );
    vector(
        b"\x00\x00\x00\x20C[2001:db8::25]\x006\xa0\x282001:db8::25\0",
        Command::Connect {
            hostname: b"[2001:db8::25]",
            family: Family::Inet6,
            port: 41000,
            address: b"2001:db8::25",
        },
    );
    vector(
        b"\x00\x00\x00\x2aC[IPv6:2001:db8::25]\x006\xa0\x28IPv6:2001:db8::25\0",
        Command::Connect {
            hostname: b"[IPv6:2001:db8::25]",
            family: Family::Inet6,
            port: 41000,
            address: b"IPv6:2001:db8::25",
        },
    );
    vector(
        b"\x00\x00\x00\x1eClocalhost\0L\x00\x00/var/run/x.sock\0",
        Command::Connect {
            hostname: b"localhost",
            family: Family::Local,
            port: 0,
            address: b"/var/run/x.sock",
        },
    );
    vector(
        b"\x00\x00\x00\x0aCunknown\0U",
        Command::Connect {
            hostname: b"unknown",
            family: Family::Unknown,
            port: 0,
            address: b"",
        },
    );
    vector(
        b"\x00\x00\x00\x10Hmx.example.org\0",
        Command::Helo(b"mx.example.org"),
    );
    let mail = decode_one(MAIL_ALICE);
    let Command::Mail(args) = mail else {
        panic!("{mail:?}")
    };
    assert_eq!(
        args.iter().collect::<Vec<_>>(),
        [&b"<alice@example.org>"[..], b"SIZE=2048", b"BODY=8BITMIME"]
    );
    assert_eq!(args.first(), b"<alice@example.org>");
    vector(MAIL_ALICE, mail);
    let rcpt = decode_one(RCPT_BOB);
    assert!(matches!(rcpt, Command::Rcpt(a) if a.first() == b"<bob@example.net>"));
    vector(RCPT_BOB, rcpt);
    vector(b"\x00\x00\x00\x01T", Command::Data);
    vector(
        b"\x00\x00\x00\x0cLSubject\0hi\0",
        Command::Header {
            name: b"Subject",
            value: b"hi",
        },
    );
    vector(b"\x00\x00\x00\x01N", Command::Eoh);
    vector(b"\x00\x00\x00\x08Bhello\r\n", Command::Body(b"hello\r\n"));
    vector(b"\x00\x00\x00\x01E", Command::BodyEob(b""));
    vector(b"\x00\x00\x00\x06UHELP\0", Command::Unknown(b"HELP"));
    vector(ABORT, Command::Abort);
    vector(QUIT, Command::Quit);
    vector(b"\x00\x00\x00\x01K", Command::QuitNc);
}

#[test]
fn lenient_and_strict_decoding() {
    // A macro packet without its stage byte is decoded (and ignored later).
    assert_eq!(
        decode_one(b"\x00\x00\x00\x01D"),
        Command::Macro {
            stage: None,
            pairs: MacroPairs::new(b"")
        }
    );
    // HELO and UNKNOWN without NUL are kept as they are.
    assert_eq!(decode_one(b"\x00\x00\x00\x03Hmx"), Command::Helo(b"mx"));
    // Key fields must be complete.
    let bad: [&[u8]; 7] = [
        b"\x00\x00\x00\x0cO\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff",
        b"\x00\x00\x00\x05Chost",
        b"\x00\x00\x00\x06Chost\0",
        b"\x00\x00\x00\x08Chost\x004\x01",
        b"\x00\x00\x00\x0cChost\x004\x00\x191.2",
        b"\x00\x00\x00\x06M<a@b>",
        b"\x00\x00\x00\x01R",
    ];
    for wire in bad {
        let (frame, _) = split_frame(wire).unwrap().unwrap();
        assert!(Command::decode(frame).is_err(), "{wire:?}");
    }
    let (frame, _) = split_frame(b"\x00\x00\x00\x01Z").unwrap().unwrap();
    assert!(Command::decode(frame).is_err());
    // Framing limits: length 0, and one byte over 64 KiB of payload.
    assert_eq!(
        split_frame(b"\x00\x00\x00\x00c"),
        Err(FrameError::ZeroLength)
    );
    assert_eq!(
        split_frame(&[0, 1, 0, 1, b'B']),
        Err(FrameError::TooLong(65_537))
    );
    assert_eq!(split_frame(&[0, 1, 0, 0, b'B']), Ok(None));
    assert_eq!(split_frame(&[0, 0, 0]), Ok(None));
}

#[test]
fn every_response_decodes_and_encodes_byte_exact() {
    let simple = [
        (b'c', Response::Continue),
        (b'a', Response::Accept),
        (b't', Response::Tempfail),
        (b'r', Response::Reject),
        (b'd', Response::Discard),
        (b's', Response::Skip),
        (b'p', Response::Progress),
        (b'4', Response::Shutdown),
        (b'f', Response::ConnFail),
    ];
    for (byte, r) in simple {
        response_vector(&[0, 0, 0, 1, byte], r);
    }
    response_vector(
        GREYLISTED,
        Response::ReplyCode {
            code: 451,
            text: "4.7.1 Greylisted, please retry in 5 minutes".into(),
            raw: b"451 4.7.1 Greylisted, please retry in 5 minutes\0".to_vec(),
        },
    );
    response_vector(
        OPTNEG_REPLY,
        Response::OptNeg(Negotiated {
            version: 6,
            actions: 0x100,
            protocol: 0x372,
            macro_lists: vec![
                MacroList {
                    stage: 2,
                    names: b"{auth_authen} i".to_vec(),
                },
                MacroList {
                    stage: 3,
                    names: b"i".to_vec(),
                },
            ],
        }),
    );
    response_vector(
        b"\x00\x00\x00\x16hX-Greylist\0delayed 5\0",
        Response::AddHeader {
            name: "X-Greylist".into(),
            value: "delayed 5".into(),
        },
    );
    response_vector(
        b"\x00\x00\x00\x0ai\x00\x00\x00\x01X\0yz\0",
        Response::InsertHeader {
            index: 1,
            name: "X".into(),
            value: "yz".into(),
        },
    );
    response_vector(
        b"\x00\x00\x00\x08m\x00\x00\x00\x02X\0\0",
        Response::ChangeHeader {
            index: 2,
            name: "X".into(),
            value: "".into(),
        },
    );
    response_vector(
        b"\x00\x00\x00\x07+<a@b>\0",
        Response::AddRcpt("<a@b>".into()),
    );
    response_vector(
        b"\x00\x00\x00\x07-<a@b>\0",
        Response::DelRcpt("<a@b>".into()),
    );
    response_vector(
        b"\x00\x00\x00\x0e2<a@b>\0NOTIFY\0",
        Response::AddRcptPar {
            rcpt: "<a@b>".into(),
            args: "NOTIFY".into(),
        },
    );
    response_vector(
        b"\x00\x00\x00\x08e<a@b>\0\0",
        Response::ChangeFrom {
            from: "<a@b>".into(),
            args: "".into(),
        },
    );
    response_vector(
        b"\x00\x00\x00\x04bxyz",
        Response::ReplaceBody(b"xyz".to_vec()),
    );
    response_vector(
        b"\x00\x00\x00\x06qspam\0",
        Response::Quarantine("spam".into()),
    );
    response_vector(
        b"\x00\x00\x00\x03l\x01\x02",
        Response::SetSymList(vec![1, 2]),
    );
    // A zero-payload reply with data after it is not what it claims.
    let (frame, _) = split_frame(b"\x00\x00\x00\x02cx").unwrap().unwrap();
    assert!(matches!(
        Response::decode(frame),
        Response::Other { cmd: b'c', .. }
    ));
    // A REPLYCODE with a NUL inside or none at the end.
    for wire in [&b"\x00\x00\x00\x06y451\0x"[..], b"\x00\x00\x00\x04y451"] {
        let (frame, _) = split_frame(wire).unwrap().unwrap();
        assert!(matches!(
            Response::decode(frame),
            Response::Other { cmd: b'y', .. }
        ));
    }
}

fn worked_example_decider(seen: &Shared) -> GreyDecider {
    let mut d = GreyDecider::new(seen);
    d.tempfail = Reply::parse("451 4.7.1 Greylisted, please retry in 5 minutes").unwrap();
    d
}

/// §12 packets 1–11: negotiation up to bob's RCPT.
const UP_TO_FIRST_RCPT: [&[u8]; 8] = [
    OPTNEG_V6,
    CONNECT_MACROS,
    CONNECT4,
    MACRO_H_EMPTY,
    MACRO_M_EMPTY,
    MAIL_ALICE,
    MACRO_R_EMPTY,
    RCPT_BOB,
];

fn first_attempt_input() -> Vec<u8> {
    cat(&[&UP_TO_FIRST_RCPT.concat(), ABORT, QUIT])
}

/// §12 as documented: every event answered ([`Conversation::Full`]).
fn first_attempt_output() -> Vec<u8> {
    cat(&[OPTNEG_REPLY, CONTINUE, CONTINUE, GREYLISTED])
}

/// What greymilter sends by default: CONNECT and MAIL go unanswered.
fn first_attempt_output_lean() -> Vec<u8> {
    cat(&[OPTNEG_REPLY_LEAN, GREYLISTED])
}

fn full() -> SessionOptions {
    SessionOptions {
        conversation: Conversation::Full,
        ..SessionOptions::default()
    }
}

#[test]
fn worked_example_byte_for_byte_sync_core() {
    let seen = Shared::default();
    let mut core = SessionCore::new(worked_example_decider(&seen), &full(), 1, "example");
    let mut out = Vec::new();
    let flow = core.run_bytes(&first_attempt_input(), &mut out);
    assert_eq!(
        flow,
        Flow::Close(greymilter::milter::session::CloseReason::Quit)
    );
    assert_eq!(out, first_attempt_output());
    let events = seen.borrow().events.clone();
    assert_eq!(
        events,
        [
            "connect relay.example.org Some(198.51.100.7) j=Some(\"mx.example.net\")",
            "mail <alice@example.org> auth=None",
            "rcpt <bob@example.net> i=None",
            "end",
        ]
    );

    // The retry, with two recipients (§12 second table). carol passes too.
    let mut core = SessionCore::new(worked_example_decider(&seen), &full(), 2, "example");
    let carol = b"\x00\x00\x00\x15R<carol@example.net>\0";
    let qid_r = b"\x00\x00\x00\x13DRi\x004XcW2m1Kz8z9Qp\0";
    let qid_t = b"\x00\x00\x00\x13DTi\x004XcW2m1Kz8z9Qp\0";
    let qid_e = b"\x00\x00\x00\x13DEi\x004XcW2m1Kz8z9Qp\0";
    seen.borrow_mut().known.insert((
        Some("198.51.100.7".parse().unwrap()),
        "<alice@example.org>".into(),
        "<carol@example.net>".into(),
    ));
    let input = cat(&[
        &UP_TO_FIRST_RCPT.concat(),
        qid_r,
        carol,
        qid_t,
        qid_e,
        b"\x00\x00\x00\x01E",
        ABORT,
    ]);
    let mut out = Vec::new();
    assert_eq!(core.run_bytes(&input, &mut out), Flow::Continue);
    let expected = cat(&[
        OPTNEG_REPLY,
        CONTINUE,
        CONTINUE,
        CONTINUE,
        CONTINUE,
        CONTINUE,
    ]);
    assert_eq!(out, expected);
    let events = seen.borrow().events.clone();
    assert_eq!(
        &events[4..],
        [
            "connect relay.example.org Some(198.51.100.7) j=Some(\"mx.example.net\")",
            "mail <alice@example.org> auth=None",
            "rcpt <bob@example.net> i=None",
            "rcpt <carol@example.net> i=Some(\"4XcW2m1Kz8z9Qp\")",
            "eom i=Some(\"4XcW2m1Kz8z9Qp\")",
            "end",
        ]
    );
}

#[test]
fn worked_example_lean_answers_only_rcpt() {
    let seen = Shared::default();
    let options = SessionOptions::default();
    let mut core = SessionCore::new(worked_example_decider(&seen), &options, 1, "example");
    let mut out = Vec::new();
    let flow = core.run_bytes(&first_attempt_input(), &mut out);
    assert_eq!(
        flow,
        Flow::Close(greymilter::milter::session::CloseReason::Quit)
    );
    assert_eq!(out, first_attempt_output_lean());
    assert_eq!(seen.borrow().events.len(), 4, "connect, mail, rcpt, end");
}

/// The same conversation over the async driver, written one byte at a time,
/// then all at once; the milter's bytes are identical.
#[tokio::test(start_paused = true)]
async fn worked_example_byte_for_byte_over_a_stream() {
    for (chunk, options, expected) in [
        (1, full(), first_attempt_output()),
        (usize::MAX, full(), first_attempt_output()),
        (1, SessionOptions::default(), first_attempt_output_lean()),
    ] {
        let seen = Shared::default();
        let input = first_attempt_input();
        let (summary, reply_bytes) = milter_support::with_session(
            worked_example_decider(&seen),
            &options,
            ClientBuilder::new(),
            |client| async move {
                let mut client = client;
                client.write_split(&input, chunk).await.unwrap();
                let mut stream = client.into_inner();
                let mut all = Vec::new();
                tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut all)
                    .await
                    .unwrap();
                all
            },
        )
        .await;
        assert_eq!(reply_bytes, expected, "chunk {chunk}");
        assert!(!summary.protocol_error && !summary.timed_out);
    }
}

// ---- property tests ----

#[derive(Debug, Clone)]
enum OwnedCommand {
    OptNeg(u32, u32, u32),
    Macro(Option<u8>, Vec<(Vec<u8>, Vec<u8>)>),
    Connect(Vec<u8>, u8, u16, Vec<u8>),
    Helo(Vec<u8>),
    Mail(Vec<Vec<u8>>),
    Rcpt(Vec<Vec<u8>>),
    Header(Vec<u8>, Vec<u8>),
    Body(Vec<u8>),
    BodyEob(Vec<u8>),
    Unknown(Vec<u8>),
    Bare(u8),
}

fn cstring() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(1u8..=255, 0..40)
}

fn owned_command() -> impl Strategy<Value = OwnedCommand> {
    prop_oneof![
        (any::<u32>(), any::<u32>(), any::<u32>())
            .prop_map(|(a, b, c)| OwnedCommand::OptNeg(a, b, c)),
        (
            proptest::option::of(any::<u8>()),
            proptest::collection::vec((cstring(), cstring()), 0..5)
        )
            .prop_map(|(s, p)| OwnedCommand::Macro(s, p)),
        (cstring(), any::<u8>(), any::<u16>(), cstring())
            .prop_map(|(h, f, p, a)| OwnedCommand::Connect(h, f, p, a)),
        cstring().prop_map(OwnedCommand::Helo),
        proptest::collection::vec(cstring(), 1..5).prop_map(OwnedCommand::Mail),
        proptest::collection::vec(cstring(), 1..5).prop_map(OwnedCommand::Rcpt),
        (cstring(), cstring()).prop_map(|(n, v)| OwnedCommand::Header(n, v)),
        proptest::collection::vec(any::<u8>(), 0..100).prop_map(OwnedCommand::Body),
        proptest::collection::vec(any::<u8>(), 0..100).prop_map(OwnedCommand::BodyEob),
        cstring().prop_map(OwnedCommand::Unknown),
        prop::sample::select(vec![b'T', b'N', b'A', b'Q', b'K']).prop_map(OwnedCommand::Bare),
    ]
}

fn roundtrip(owned: &OwnedCommand) {
    let mut pairs_raw = Vec::new();
    let mut args_raw = Vec::new();
    let command = match owned {
        OwnedCommand::OptNeg(version, actions, protocol) => Command::OptNeg {
            version: *version,
            actions: *actions,
            protocol: *protocol,
        },
        OwnedCommand::Macro(stage, pairs) => {
            // A packet without a stage byte can carry no pairs.
            let stage = if pairs.is_empty() {
                *stage
            } else {
                Some(stage.unwrap_or(b'C'))
            };
            let p: Vec<(&[u8], &[u8])> = pairs.iter().map(|(n, v)| (&n[..], &v[..])).collect();
            greymilter::milter::codec::encode_macro_pairs(&mut pairs_raw, &p);
            Command::Macro {
                stage,
                pairs: MacroPairs::new(&pairs_raw),
            }
        }
        OwnedCommand::Connect(host, family, port, addr) => {
            let family = Family::from_byte(*family);
            let unknown = family == Family::Unknown;
            Command::Connect {
                hostname: host,
                family,
                port: if unknown { 0 } else { *port },
                address: if unknown { b"" } else { addr },
            }
        }
        OwnedCommand::Helo(h) => Command::Helo(h),
        OwnedCommand::Mail(args) | OwnedCommand::Rcpt(args) => {
            let a: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
            StrArray::encode(&mut args_raw, &a);
            let arr = StrArray::new(&args_raw).unwrap();
            if matches!(owned, OwnedCommand::Mail(_)) {
                Command::Mail(arr)
            } else {
                Command::Rcpt(arr)
            }
        }
        OwnedCommand::Header(n, v) => Command::Header { name: n, value: v },
        OwnedCommand::Body(b) => Command::Body(b),
        OwnedCommand::BodyEob(b) => Command::BodyEob(b),
        OwnedCommand::Unknown(u) => Command::Unknown(u),
        OwnedCommand::Bare(b'T') => Command::Data,
        OwnedCommand::Bare(b'N') => Command::Eoh,
        OwnedCommand::Bare(b'A') => Command::Abort,
        OwnedCommand::Bare(b'Q') => Command::Quit,
        OwnedCommand::Bare(_) => Command::QuitNc,
    };
    let mut wire = Vec::new();
    command.encode(&mut wire);
    assert_eq!(decode_one(&wire), command);
}

fn text() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,30}"
}

fn owned_response() -> impl Strategy<Value = Response> {
    prop_oneof![
        prop::sample::select(vec![
            Response::Continue,
            Response::Accept,
            Response::Tempfail,
            Response::Reject,
            Response::Discard,
            Response::Skip,
            Response::Progress,
            Response::Shutdown,
            Response::ConnFail,
        ]),
        (100u16..1000, "[ -~]{0,60}").prop_map(|(code, text)| {
            let raw = format!("{code} {text}\0").into_bytes();
            Response::ReplyCode { code, text, raw }
        }),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec((any::<u32>(), cstring()), 0..4)
        )
            .prop_map(|(version, actions, protocol, lists)| {
                Response::OptNeg(Negotiated {
                    version,
                    actions,
                    protocol,
                    macro_lists: lists
                        .into_iter()
                        .map(|(stage, names)| MacroList { stage, names })
                        .collect(),
                })
            }),
        (text(), text()).prop_map(|(name, value)| Response::AddHeader { name, value }),
        (any::<u32>(), text(), text()).prop_map(|(index, name, value)| Response::InsertHeader {
            index,
            name,
            value
        }),
        (any::<u32>(), text(), text()).prop_map(|(index, name, value)| Response::ChangeHeader {
            index,
            name,
            value
        }),
        text().prop_map(Response::AddRcpt),
        text().prop_map(Response::DelRcpt),
        text().prop_map(Response::Quarantine),
        (text(), text()).prop_map(|(rcpt, args)| Response::AddRcptPar { rcpt, args }),
        (text(), text()).prop_map(|(from, args)| Response::ChangeFrom { from, args }),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Response::ReplaceBody),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Response::SetSymList),
    ]
}

/// Packets with plausible lengths, so the fuzzing reaches past framing.
fn packets() -> impl Strategy<Value = Vec<u8>> {
    let packet = (
        prop::sample::select(b"ODCHMRTLNBEUAQKZ\0y".to_vec()),
        proptest::collection::vec(
            prop_oneof![Just(0u8), Just(b'4'), Just(b'6'), Just(b'C'), any::<u8>()],
            0..40,
        ),
    )
        .prop_map(|(c, payload)| {
            let mut p = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
            p.push(c);
            p.extend(payload);
            p
        });
    prop_oneof![
        proptest::collection::vec(packet, 0..12).prop_map(|v| v.concat()),
        proptest::collection::vec(any::<u8>(), 0..200),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn commands_round_trip(c in owned_command()) {
        roundtrip(&c);
    }

    #[test]
    fn responses_round_trip(r in owned_response()) {
        let mut wire = Vec::new();
        r.encode(&mut wire);
        let (frame, used) = split_frame(&wire).unwrap().unwrap();
        prop_assert_eq!(used, wire.len());
        prop_assert_eq!(Response::decode(frame), r);
    }

    #[test]
    fn no_input_panics_the_decoders(bytes in packets()) {
        let mut rest = &bytes[..];
        while let Ok(Some((frame, used))) = split_frame(rest) {
            let _ = Command::decode(frame);
            let _ = Response::decode(frame);
            rest = &rest[used..];
        }
        // The whole session core, too: every byte it writes is a valid
        // response packet.
        let seen = Shared::default();
        let mut core = SessionCore::new(GreyDecider::new(&seen), &SessionOptions::default(), 1, "fuzz");
        let mut out = Vec::new();
        let optneg_first = [OPTNEG_V6, &bytes].concat();
        for input in [&bytes[..], &optneg_first] {
            out.clear();
            let _ = core.run_bytes(input, &mut out);
            let mut written = &out[..];
            while !written.is_empty() {
                let (frame, used) = split_frame(written).unwrap().unwrap();
                let valid = !matches!(Response::decode(frame), Response::Other { .. });
                prop_assert!(valid, "invalid response {:?}", frame);
                // Never SHUTDOWN, CONN_FAIL, SETSYMLIST or PROGRESS packets.
                prop_assert!(b"Ocaytrh".contains(&frame.cmd), "sent {:?}", frame);
                written = &written[used..];
            }
        }
    }

    /// Fed in any chunking, the frame buffer yields exactly the frames of the
    /// whole input, and never holds more than the largest announced packet.
    #[test]
    fn frame_buffer_is_bounded_and_chunking_does_not_matter(
        bytes in packets(),
        chunks in proptest::collection::vec(1usize..300, 1..20),
    ) {
        let mut expected = Vec::new();
        let mut expected_error = None;
        let mut rest = &bytes[..];
        loop {
            match split_frame(rest) {
                Ok(Some((f, used))) => { expected.push((f.cmd, f.payload.to_vec())); rest = &rest[used..]; }
                Ok(None) => break,
                Err(e) => { expected_error = Some(e); break; }
            }
        }
        let mut fb = FrameBuffer::new();
        let mut got = Vec::new();
        let mut got_error = None;
        let mut input = &bytes[..];
        let mut sizes = chunks.iter().cycle();
        'feed: loop {
            loop {
                match fb.next_frame() {
                    Ok(Some(f)) => got.push((f.cmd, f.payload.to_vec())),
                    Ok(None) => break,
                    Err(e) => { got_error = Some(e); break 'feed; }
                }
            }
            if input.is_empty() { break; }
            let spare = match fb.spare() { Ok(s) => s, Err(e) => { got_error = Some(e); break; } };
            prop_assert!(!spare.is_empty());
            let n = (*sizes.next().unwrap()).min(spare.len()).min(input.len());
            spare[..n].copy_from_slice(&input[..n]);
            fb.filled(n);
            input = &input[n..];
            prop_assert!(fb.capacity() <= 4096.max(largest_announced(&bytes)));
            prop_assert!(fb.capacity() <= MAX_FRAME.max(4096));
        }
        prop_assert_eq!(got, expected);
        prop_assert_eq!(got_error, expected_error);
    }
}

/// The largest valid packet size any 4 bytes of `bytes` could announce.
fn largest_announced(bytes: &[u8]) -> usize {
    bytes
        .windows(4)
        .filter_map(|w| greymilter::milter::codec::frame_size([w[0], w[1], w[2], w[3]]).ok())
        .max()
        .unwrap_or(0)
}
