//! Every SMFIR_REPLYCODE the session can produce must pass the reply checks
//! of Postfix (stable and 3.12) and Sendmail (docs/milter.md, "Replies"). The
//! validators below are written from those rules, independently of
//! `reply.rs`.

use greymilter::greylist::settings::{ReplyTemplate, Settings};
use greymilter::milter::codec::{Command, Family, Response, StrArray, split_frame};
use greymilter::milter::decision::{
    Client, Conversation, Decided, Decider, Header, Macros, NeverWaits, SessionOptions, Verdict,
};
use greymilter::milter::session::SessionCore;
use greymilter::reply::Reply;

fn digit(b: Option<&u8>) -> bool {
    b.is_some_and(u8::is_ascii_digit)
}

/// Postfix 2.x–3.11 (`milter8.c`): first line only. `[45]dd` then a space
/// or `-`; if the fifth character is a digit it equals the first.
fn postfix_stable(payload: &[u8]) -> Result<(), String> {
    let text = payload.strip_suffix(b"\0").unwrap_or(payload);
    let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
    if !matches!(first.first(), Some(b'4' | b'5')) || !digit(first.get(1)) || !digit(first.get(2)) {
        return Err("not [45]dd".into());
    }
    if !matches!(first.get(3), Some(b' ' | b'-')) {
        return Err("no space or dash after the code".into());
    }
    if digit(first.get(4)) && first.get(4) != first.first() {
        return Err("enhanced status class differs".into());
    }
    Ok(())
}

/// Postfix 3.12 snapshots: at most one trailing NUL and none inside; every
/// line at least 4 characters, `[45]dd`, `-` on non-final lines and a space
/// on the last, class digit matching; CRLF between lines, none after.
fn postfix_312(payload: &[u8]) -> Result<(), String> {
    let text = payload.strip_suffix(b"\0").unwrap_or(payload);
    if text.contains(&0) {
        return Err("NUL inside the reply".into());
    }
    if text.ends_with(b"\r\n") {
        return Err("CRLF after the last line".into());
    }
    let lines: Vec<&[u8]> = split_crlf(text);
    for (i, line) in lines.iter().enumerate() {
        let last = i + 1 == lines.len();
        if line.len() < 4 {
            return Err(format!("line {i} shorter than 4 characters"));
        }
        if line.contains(&b'\r') || line.contains(&b'\n') {
            return Err(format!("bare CR or LF in line {i}"));
        }
        if !matches!(line[0], b'4' | b'5') || !digit(line.get(1)) || !digit(line.get(2)) {
            return Err(format!("line {i} not [45]dd"));
        }
        let sep = if last { b' ' } else { b'-' };
        if line[3] != sep {
            return Err(format!("line {i}: wrong separator"));
        }
        if digit(line.get(4)) && line[4] != line[0] {
            return Err(format!("line {i}: enhanced status class differs"));
        }
        if line[0] != lines[0][0] {
            return Err("lines of different classes".into());
        }
    }
    Ok(())
}

fn split_crlf(text: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        lines.push(&rest[..i]);
        rest = &rest[i + 2..];
    }
    lines.push(rest);
    lines
}

/// Sendmail `MILTER_CHECK_REPLYCODE`: `strlen(reply) + 1 == len`, at least
/// 3 bytes, `[45]dd`, and no `%` that is not doubled (the text is used as a
/// format string).
fn sendmail(payload: &[u8]) -> Result<(), String> {
    let strlen = payload
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(payload.len());
    if strlen + 1 != payload.len() {
        return Err("not exactly one NUL, at the end".into());
    }
    let text = &payload[..strlen];
    if text.len() < 3
        || !matches!(text[0], b'4' | b'5')
        || !digit(text.get(1))
        || !digit(text.get(2))
    {
        return Err("not [45]dd".into());
    }
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'%' {
            if text.get(i + 1) != Some(&b'%') {
                return Err(format!("lone % at {i}"));
            }
            i += 1;
        }
        i += 1;
    }
    Ok(())
}

/// greymilter's own rule (§8.4): one line of printable ASCII, at most 512
/// bytes on the wire, `[45]dd x.y.z ` with a matching class, never 421/521.
fn greymilter_rule(payload: &[u8]) -> Result<(), String> {
    let text = payload.strip_suffix(b"\0").ok_or("no NUL")?;
    if text.len() > 512 {
        return Err(format!("{} bytes", text.len()));
    }
    if !text.iter().all(|b| (b' '..=b'~').contains(b)) {
        return Err("not printable ASCII".into());
    }
    if text.starts_with(b"421") || text.starts_with(b"521") {
        return Err("disconnecting code".into());
    }
    let s = std::str::from_utf8(text).map_err(|e| e.to_string())?;
    let enhanced = s.get(4..).unwrap_or("").split(' ').next().unwrap_or("");
    let parts: Vec<&str> = enhanced.split('.').collect();
    if parts.len() != 3
        || parts[0].as_bytes() != [text[0]]
        || parts
            .iter()
            .any(|p| p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("bad enhanced code {enhanced:?}"));
    }
    Ok(())
}

fn all_checks(payload: &[u8]) -> Result<(), String> {
    postfix_stable(payload).map_err(|e| format!("Postfix: {e}"))?;
    postfix_312(payload).map_err(|e| format!("Postfix 3.12: {e}"))?;
    sendmail(payload).map_err(|e| format!("Sendmail: {e}"))?;
    greymilter_rule(payload).map_err(|e| format!("greymilter: {e}"))
}

/// What the SMTP client finally reads: Postfix turns `%%` into `%`.
fn as_client_reads(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload.strip_suffix(b"\0").unwrap()).into_owned();
    text.replace("%%", "%")
}

#[test]
fn the_validators_catch_what_the_mtas_refuse() {
    let bad: [(&[u8], &str); 9] = [
        (b"451 4.7.1 100% sure\0", "Sendmail"),
        (b"451 5.7.1 mismatch\0", "Postfix"),
        (b"451 4.7.1 two\0\0", "Postfix 3.12"),
        (b"451 4.7.1 trailing\r\n\0", "Postfix 3.12"),
        (b"451-4.7.1 a\r\n451 4.7.1 b\0", "greymilter"),
        (b"45\0", "Postfix"),
        (b"250 2.0.0 ok\0", "Postfix"),
        (b"451 4.7.1 no nul", "Sendmail"),
        (b"421 4.7.0 bye\0", "greymilter"),
    ];
    for (payload, who) in bad {
        let err = all_checks(payload).unwrap_err();
        assert!(err.starts_with(who), "{payload:?}: {err}");
    }
    assert!(postfix_312(b"451-4.7.1 a\r\n451 4.7.1 b\0").is_ok());
    assert!(all_checks(b"451 4.7.1 100%% sure\0").is_ok());
}

/// Answers one stage with a fixed verdict.
struct Fixed {
    at: u8,
    verdict: Verdict,
}

impl Fixed {
    fn at(&self, stage: u8) -> Verdict {
        if self.at == stage {
            self.verdict.clone()
        } else {
            Verdict::Continue
        }
    }
}

impl Decider for Fixed {
    type Answer = Verdict;
    type Wait = NeverWaits;
    fn connect(&mut self, _: &Client<'_>, _: &dyn Macros) -> Verdict {
        self.at(b'C')
    }
    fn mail(&mut self, _: &[u8], _: &dyn Macros) -> Verdict {
        self.at(b'M')
    }
    fn rcpt(&mut self, _: &[u8], _: &dyn Macros) -> Decided<NeverWaits> {
        Decided::Now(self.at(b'R'))
    }
    fn rcpt_answered(&mut self, answer: Verdict) -> Verdict {
        answer
    }
    fn eom(&mut self, _: &dyn Macros) -> Option<Header> {
        None
    }
    fn end_transaction(&mut self) {}
}

/// The reply packet the session sends for `verdict` at `stage`. CONNECT and
/// MAIL are answered here ([`Conversation::Full`]); with the default, a
/// refusal there goes out at RCPT through the same encoder.
fn reply_at(stage: u8, verdict: Verdict) -> (u8, Vec<u8>) {
    let options = SessionOptions {
        conversation: Conversation::Full,
        ..SessionOptions::default()
    };
    let mut core = SessionCore::new(Fixed { at: stage, verdict }, &options, 1, "t");
    let mut out = Vec::new();
    core.handle(
        Command::OptNeg {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1f_ffff,
        },
        &mut out,
    );
    out.clear();
    core.handle(
        Command::Connect {
            hostname: b"h",
            family: Family::Inet4,
            port: 25,
            address: b"192.0.2.1",
        },
        &mut out,
    );
    if stage != b'C' {
        out.clear();
        core.handle(Command::Mail(StrArray::new(b"<a@b>\0").unwrap()), &mut out);
    }
    if stage == b'R' {
        out.clear();
        core.handle(Command::Rcpt(StrArray::new(b"<c@d>\0").unwrap()), &mut out);
    }
    let (frame, used) = split_frame(&out).unwrap().unwrap();
    assert_eq!(used, out.len(), "exactly one reply");
    (frame.cmd, frame.payload.to_vec())
}

fn nasty_recipients() -> Vec<String> {
    vec![
        "<bob@example.net>".into(),
        String::new(),
        "<a%b@example.net>".into(),
        "<%s%n%%@x>".into(),
        "<a\r\nBcc: x@y>".into(),
        "<b\u{e9}b@\u{4f8b}\u{5b50}.example>".into(),
        "<nul\0inside>".into(),
        "x".repeat(2000),
        "%".repeat(600),
        "\u{1f600}".repeat(300),
    ]
}

/// Every reply the engine can hand to the session: the default templates,
/// configured templates with `%`, long text and non-ASCII placeholders.
fn every_producible_reply() -> Vec<Reply> {
    let settings = Settings::default();
    let configured = [
        "451 4.7.1 Greylisted: 100% sure, retry in {remaining}s for {recipient}",
        "450 4.2.0 {recipient}",
        "452 4.3.1 %%% {remaining}%",
        "451 4.7.1",
        "550 5.7.1 {recipient} is 100% refused",
        "554 5.7.0 %s %n %d",
    ];
    let long = format!("451 4.7.1 {} {{recipient}} {{remaining}}", "w".repeat(400));
    let mut templates = vec![settings.reply.clone(), settings.reject_reply.clone()];
    for source in configured.iter().copied().chain([long.as_str()]) {
        let class = source.as_bytes()[0] - b'0';
        templates
            .push(ReplyTemplate::parse(source, class).unwrap_or_else(|e| panic!("{source}: {e}")));
    }
    let mut replies = Vec::new();
    for t in &templates {
        for remaining in [0, 1, 299, 300, u64::from(u32::MAX), u64::MAX] {
            for r in nasty_recipients() {
                replies.push(t.render(remaining, &r));
            }
        }
    }
    let prefix = Reply::parse("451 4.7.1").unwrap();
    for text in nasty_recipients() {
        replies.push(Reply::with_text(&prefix, &text));
    }
    replies
}

#[test]
fn every_reply_the_session_can_send_passes_both_mtas() {
    let replies = every_producible_reply();
    assert!(replies.len() > 400);
    for reply in replies {
        let class = reply.class();
        let verdict = if class == 4 {
            Verdict::Tempfail(reply.clone())
        } else {
            Verdict::Reject(reply.clone())
        };
        for stage in [b'C', b'M', b'R'] {
            let (cmd, payload) = reply_at(stage, verdict.clone());
            assert_eq!(cmd, b'y', "{reply:?}");
            if let Err(e) = all_checks(&payload) {
                panic!(
                    "{reply:?} at '{}': {e}: {:?}",
                    stage as char,
                    String::from_utf8_lossy(&payload)
                );
            }
            assert_eq!(payload[0] - b'0', class);
            assert_eq!(as_client_reads(&payload), reply.as_str());
        }
    }
}

#[test]
fn a_reply_of_the_wrong_class_is_never_sent_as_text() {
    let fivexx = Reply::parse("550 5.7.1 no").unwrap();
    let fourxx = Reply::parse("451 4.7.1 later").unwrap();
    for stage in [b'C', b'M', b'R'] {
        assert_eq!(
            reply_at(stage, Verdict::Tempfail(fivexx.clone())),
            (b't', vec![])
        );
        assert_eq!(
            reply_at(stage, Verdict::Reject(fourxx.clone())),
            (b'r', vec![])
        );
    }
    // And a bare reply decodes as what it is.
    let (frame, _) = split_frame(b"\x00\x00\x00\x01t").unwrap().unwrap();
    assert_eq!(Response::decode(frame), Response::Tempfail);
}
