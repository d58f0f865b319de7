//! The session state machine (`milter::session::SessionCore`) with the real
//! `PolicyDecider` over an `Engine` on a manual clock: the protocol and the
//! engine fuzzed together through the `Decider` seam.
//!
//! Input: the first byte picks the settings ([`settings`]); the rest is the
//! MTA's side of one or more milter connections, as on the wire. A packet
//! with the command byte [`CLOCK`] (not a milter command) is taken by the
//! harness: its payload moves the clock forward ([`clock_step`]), then the
//! engine's housekeeping runs once. When a
//! session closes, the next bytes go to a new connection (same engine), up
//! to [`MAX_SESSIONS`].
//!
//! After every packet: the replies frame and decode; each is one the
//! session may send (`O c a y t r h`, no other byte); exactly one final
//! reply when one is owed, none otherwise; ACCEPT only at CONNECT or MAIL
//! (never for a recipient); a REPLYCODE is a valid 4xx/5xx line; the
//! negotiation asks for nothing the MTA did not offer; the output for one
//! packet is bounded; the table never holds more than `max_tuples`; the
//! statistics report can be made after every clock move. The first
//! connection is replayed through `run_session`, which must answer the same.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use greymilter::config::Config;
use greymilter::greylist::Engine;
use greymilter::greylist::clock::ManualClock;
use greymilter::greylist::settings::Settings;
use greymilter::milter::codec::{Command, Frame, Response, action, cmd, proto, split_frame};
use greymilter::milter::connection::run_session;
use greymilter::milter::decision::DeciderFactory;
use greymilter::milter::negotiate::{Agreement, MIN_VERSION, OUR_VERSION};
use greymilter::milter::session::{Flow, SessionCore};
use greymilter::pipeline::{MilterFactory, Pipeline, Timeouts};
use greymilter::reply::{MAX_WIRE_LEN, Reply};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::START;

/// The harness's own packet: advance the clock.
pub const CLOCK: u8 = b'~';
/// Connections per input.
pub const MAX_SESSIONS: u64 = 8;
/// Most bytes written for one packet: an X-Greylist header (≤ 998 bytes of
/// line) and one final reply. Anything near this would be a bug.
const MAX_OUTPUT: usize = 2048;
/// RFC 5322 line limit for the header we add.
const MAX_HEADER_LINE: usize = 998;

pub fn check(data: &[u8]) {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let settings = settings(selector).clone();
    let max_tuples = settings.max_tuples;
    let clock = ManualClock::new(START);
    let mut now = START;
    let engine = Rc::new(RefCell::new(Engine::new(settings, Box::new(clock.clone()))));
    let factory = MilterFactory::new(Pipeline::new(engine.clone()), Timeouts::default());
    let options = factory.options();
    let mut conn = 0;
    let mut session = SessionCore::new(factory.new_decider(conn), &options, conn, "fuzz");
    let mut out = Vec::new();
    // The first connection's bytes (up to its close, or to the first clock
    // packet) and replies, to replay through the async driver.
    let mut first = FirstConnection {
        end: input.len(),
        replies: Vec::new(),
        open: true,
    };
    let mut wire = input;
    while let Ok(Some((frame, used))) = split_frame(wire) {
        let at = input.len() - wire.len();
        wire = &wire[used..];
        if frame.cmd == CLOCK {
            if first.open {
                first.end = at;
                first.open = false;
            }
            now = now.saturating_add(clock_step(frame.payload));
            clock.set(now);
            engine.borrow_mut().maintain();
            check_engine(&engine.borrow(), max_tuples);
            check_report(&engine.borrow());
            continue;
        }
        out.clear();
        let flow = session.handle_frame(frame, &mut out);
        check_replies(frame, flow, session.agreement(), options.add_header, &out);
        check_engine(&engine.borrow(), max_tuples);
        if first.open {
            first.replies.extend_from_slice(&out);
        }
        if let Flow::Close(_) = flow {
            if first.open {
                first.end = at + used;
                first.open = false;
            }
            session.finish();
            conn += 1;
            if conn == MAX_SESSIONS {
                break;
            }
            session = SessionCore::new(factory.new_decider(conn), &options, conn, "fuzz");
        }
    }
    session.finish();
    check_engine(&engine.borrow(), max_tuples);
    check_report(&engine.borrow());
    replay_async(selector, &input[..first.end], &first.replies);
}

struct FirstConnection {
    /// Where its bytes end in the input.
    end: usize,
    /// What `SessionCore` answered, all packets together.
    replies: Vec<u8>,
    /// Still running.
    open: bool,
}

/// `run_session` (the driver the daemon uses: `FrameBuffer`, reads in
/// pieces, one write per reply) must answer exactly what the bare state
/// machine answered. A fresh engine with the same settings stands in: the
/// hashing secret differs, the decisions do not.
fn replay_async(selector: u8, wire: &[u8], expected: &[u8]) {
    let engine = Engine::new(
        settings(selector).clone(),
        Box::new(ManualClock::new(START)),
    );
    let factory = MilterFactory::new(
        Pipeline::new(Rc::new(RefCell::new(engine))),
        Timeouts::default(),
    );
    let mut stream = Wire {
        input: wire,
        // Reads of 1 to 64 bytes: packets arrive split and several at once.
        chunk: 1 + wire.len() % 64,
        output: Vec::new(),
    };
    RUNTIME.with(|rt| {
        rt.block_on(run_session(
            &mut stream,
            factory.new_decider(0),
            &factory.options(),
            0,
            "fuzz",
        ))
    });
    assert_eq!(
        stream.output.escape_ascii().to_string(),
        expected.escape_ascii().to_string(),
        "run_session answers differently"
    );
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("no tokio runtime: {e}"),
    };
}

/// The MTA's side of a connection in memory: reads come in `chunk`-byte
/// pieces, then EOF; writes are collected.
struct Wire<'a> {
    input: &'a [u8],
    chunk: usize,
    output: Vec<u8>,
}

impl AsyncRead for Wire<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = this.chunk.min(this.input.len()).min(buf.remaining());
        let (now, later) = this.input.split_at(n);
        buf.put_slice(now);
        this.input = later;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Wire<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().output.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Seconds to move the clock: a big-endian `u64` (8 payload bytes or more),
/// `u32` (4 to 7), else 1.
fn clock_step(payload: &[u8]) -> u64 {
    if let Some(b) = payload.first_chunk::<8>() {
        u64::from_be_bytes(*b)
    } else if let Some(b) = payload.first_chunk::<4>() {
        u64::from(u32::from_be_bytes(*b))
    } else {
        1
    }
}

/// The statistics report (SIGUSR1) can be made at any moment.
fn check_report(engine: &Engine) {
    let report = engine.stats_report();
    assert!(report.starts_with("Start "), "{report}");
}

fn check_engine(engine: &Engine, max_tuples: usize) {
    let table = engine.table();
    assert!(
        table.len() <= max_tuples,
        "{} tuples, max {max_tuples}",
        table.len()
    );
    assert!(engine.auto_whitelist().len() <= max_tuples);
    check_flows(engine);
}

/// The table's bookkeeping (stats.rs): `Tuples = Restored + Graylisted +
/// Allowed − Graylist-Expired − Whitelist-Expired − Evicted − Forgotten` at
/// every moment.
pub fn check_flows(engine: &Engine) {
    let s = engine.stats();
    assert_eq!(
        s.tuples + s.graylist_expired + s.whitelist_expired + s.evicted + s.forgotten,
        s.restored + s.graylisted + s.allowed,
        "table flows do not add up: {s:?}"
    );
    assert!(s.tuples_high >= s.tuples, "{s:?}");
}

fn check_replies(
    frame: Frame<'_>,
    flow: Flow,
    agreement: Option<Agreement>,
    add_header: bool,
    out: &[u8],
) {
    let code = frame.cmd;
    let what = || {
        format!(
            "reply to '{}' ({:?})",
            code.escape_ascii(),
            Command::decode(frame)
        )
    };
    assert!(out.len() <= MAX_OUTPUT, "{}: {} bytes", what(), out.len());
    let mut finals = Vec::new();
    let mut rest = out;
    while !rest.is_empty() {
        let (reply, used) = match split_frame(rest) {
            Ok(Some(x)) => x,
            other => panic!("{}: does not frame: {other:?} in {out:?}", what()),
        };
        rest = &rest[used..];
        match Response::decode(reply) {
            Response::AddHeader { name, value } => {
                assert!(
                    finals.is_empty(),
                    "{}: header after the final reply",
                    what()
                );
                assert!(
                    code == cmd::BODYEOB && add_header,
                    "{}: unexpected header",
                    what()
                );
                check_header(&name, &value);
            }
            r @ (Response::Continue
            | Response::Accept
            | Response::Tempfail
            | Response::Reject
            | Response::ReplyCode { .. }
            | Response::OptNeg(_)) => finals.push(r),
            other => panic!("{}: {other:?} is never sent", what()),
        }
    }
    if let Flow::Close(_) = flow {
        assert!(
            out.is_empty(),
            "{}: replies on a closing connection",
            what()
        );
        return;
    }
    let owed = match (code, agreement) {
        (cmd::OPTNEG, _) => true,
        (cmd::MACRO | cmd::ABORT | cmd::QUIT_NC, _) => false,
        (c, Some(a)) => a.owes_reply(c),
        (c, None) => panic!("'{}' handled before negotiation", c.escape_ascii()),
    };
    assert_eq!(finals.len(), usize::from(owed), "{}: {finals:?}", what());
    for reply in finals {
        match reply {
            Response::Continue => {}
            Response::Accept => assert!(
                code == cmd::CONNECT || code == cmd::MAIL,
                "{}: ACCEPT outside CONNECT and MAIL",
                what()
            ),
            Response::ReplyCode { code: n, raw, .. } => {
                assert_eq!(code, cmd::RCPT, "{}: reply code", what());
                check_replycode(n, &raw);
            }
            // The engine's templates are validated for their class, so the
            // session's bare-code fallback must never be needed.
            Response::Tempfail | Response::Reject => panic!("{}: bare {reply:?}", what()),
            Response::OptNeg(n) => {
                let Ok(Command::OptNeg {
                    version,
                    actions,
                    protocol,
                }) = Command::decode(frame)
                else {
                    panic!("{}: OPTNEG reply to another command", what());
                };
                let offered_actions = if actions == 0 { action::V1 } else { actions };
                let offered_protocol = if protocol == 0 { proto::V1 } else { protocol };
                assert!((MIN_VERSION..=OUR_VERSION).contains(&n.version), "{n:?}");
                assert!(n.version <= version, "{n:?}");
                assert_eq!(
                    n.actions & !offered_actions,
                    0,
                    "actions not offered: {n:?}"
                );
                assert_eq!(
                    n.protocol & !offered_protocol,
                    0,
                    "steps not offered: {n:?}"
                );
                assert!(n.macro_lists.iter().all(|l| !l.names.is_empty()), "{n:?}");
            }
            other => unreachable!("{other:?}"),
        }
    }
}

fn check_header(name: &str, value: &str) {
    assert!(!name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':'));
    assert!(
        value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b)),
        "{value:?}"
    );
    assert!(name.len() + 2 + value.len() <= MAX_HEADER_LINE);
}

/// `%` doubled on the wire, one NUL at the end, a reply both MTAs accept.
fn check_replycode(code: u16, raw: &[u8]) {
    assert!(
        raw.len() <= MAX_WIRE_LEN + 1,
        "reply of {} bytes",
        raw.len()
    );
    let Some(line) = raw.strip_suffix(&[0]) else {
        panic!("reply without its NUL: {raw:?}");
    };
    let mut plain = Vec::with_capacity(line.len());
    let mut bytes = line.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            assert_eq!(bytes.next(), Some(&b'%'), "single % in {raw:?}");
        }
        plain.push(b);
    }
    let Ok(text) = std::str::from_utf8(&plain) else {
        panic!("reply is not text: {raw:?}");
    };
    let reply = Reply::parse(text).unwrap_or_else(|e| panic!("invalid reply {text:?}: {e}"));
    assert_eq!(reply.code(), code);
}

/// The settings for a selector byte, parsed from TOML like the daemon's:
///
/// * bit 0: `header` (the session then negotiates ADDHDRS);
/// * bit 1: `normalize_sender`;
/// * bit 2: `max_tuples = 3` (eviction at every turn);
/// * bit 3: `auto_whitelist_after = 1` (else 0: off);
/// * bit 4: static lists with every action and list kind;
/// * bit 5: replies with `{recipient}` and `%` (network text in the reply);
/// * bits 6–7: delay 300 s, 1 s, 1 h, or a day minus a second (with the
///   default 1-day retry window).
pub fn settings(selector: u8) -> &'static Settings {
    static ALL: OnceLock<Vec<Settings>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        (0..=u8::MAX)
            .map(|s| match Config::parse(&config_text(s), "fuzz.toml") {
                Ok(c) => c.settings(),
                Err(e) => panic!("harness config {s}: {e}"),
            })
            .collect()
    });
    &all[usize::from(selector)]
}

fn config_text(s: u8) -> String {
    let bit = |n: u8| s & (1 << n) != 0;
    let delay = ["300s", "1s", "1h", "86399s"][usize::from(s >> 6)];
    let mut t = format!(
        "[greylist]\nheader = {}\nnormalize_sender = {}\nmax_tuples = {}\n\
         auto_whitelist_after = {}\ndelay = \"{delay}\"\n",
        bit(0),
        bit(1),
        if bit(2) { 3 } else { 100_000 },
        u8::from(bit(3)),
    );
    if bit(5) {
        t.push_str(
            "reply = \"450 4.2.0 <{recipient}> 100% greylisted, {remaining}s to go\"\n\
             reject_reply = \"554 5.7.1 {recipient}: 100% refused\"\n",
        );
    }
    if bit(4) {
        t.push_str(
            r#"
[lists.clients]
"192.0.2.0/24" = "accept"
"192.0.2.128/25" = "reject"
"198.51.100.7" = { action = "greylist", delay = "1m" }
"2001:db8::/32" = "greylist"
[lists.client_names]
".trusted.example" = "accept"
"bad.example" = "reject"
[lists.senders]
"vip@example.org" = "accept"
"spam@example.org" = "reject"
"<>" = "greylist"
[lists.sender_domains]
"partner.example" = "accept"
"spam.example" = "reject"
[lists.recipients]
"postmaster@example.net" = "accept"
"nobody@example.net" = "reject"
"slow@example.net" = { action = "greylist", delay = "2h" }
[lists.recipient_domains]
"open.example" = "accept"
"closed.example" = "reject"
"#,
        );
    }
    t
}
