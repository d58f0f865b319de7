//! `SessionCore` without I/O: the calls a decider sees and the replies
//! for a multi-recipient transaction.

use greymilter::milter::codec::Command;
use greymilter::milter::codec::{Response, split_frame};
use greymilter::milter::decision::{Client, Decided, Decider, Header, SessionOptions, Verdict};
use greymilter::milter::decision::{Macros, NeverWaits};
use greymilter::milter::session::{Flow, SessionCore, State};
use greymilter::reply::Reply;

/// Records calls; tempfails every recipient containing "grey".
#[derive(Default)]
struct Recorder {
    calls: Vec<String>,
}

impl Decider for Recorder {
    type Answer = Verdict;
    type Wait = NeverWaits;
    fn rcpt_answered(&mut self, answer: Verdict) -> Verdict {
        answer
    }
    fn connect(&mut self, client: &Client<'_>, _m: &dyn Macros) -> Verdict {
        self.calls.push(format!("connect {:?}", client.addr));
        match client.addr {
            None => Verdict::Accept,
            Some(_) => Verdict::Continue,
        }
    }
    fn mail(&mut self, sender: &[u8], m: &dyn Macros) -> Verdict {
        self.calls
            .push(format!("mail {}", String::from_utf8_lossy(sender)));
        if m.get("auth_authen").is_some() {
            Verdict::Accept
        } else {
            Verdict::Continue
        }
    }
    fn rcpt(&mut self, rcpt: &[u8], _m: &dyn Macros) -> Decided<NeverWaits> {
        self.calls
            .push(format!("rcpt {}", String::from_utf8_lossy(rcpt)));
        Decided::Now(if rcpt.windows(4).any(|w| w == b"grey") {
            Verdict::Tempfail(Reply::parse("451 4.7.1 Greylisted").unwrap())
        } else {
            Verdict::Accept
        })
    }
    fn eom(&mut self, _m: &dyn Macros) -> Option<Header> {
        self.calls.push("eom".into());
        None
    }
    fn end_transaction(&mut self) {
        self.calls.push("end".into());
    }
    fn reset(&mut self) {
        self.calls.push("reset".into());
    }
}

fn replies(out: &[u8]) -> Vec<Response> {
    let mut rest = out;
    let mut v = Vec::new();
    while let Some((f, used)) = split_frame(rest).unwrap() {
        v.push(Response::decode(f));
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
    v
}

fn core() -> SessionCore<Recorder> {
    SessionCore::new(Recorder::default(), &SessionOptions::default(), 1, "test")
}

fn send(core: &mut SessionCore<Recorder>, c: Command<'_>) -> (Flow, Vec<Response>) {
    let mut out = Vec::new();
    let flow = core.handle(c, &mut out);
    (flow, replies(&out))
}

const OPTNEG: Command<'static> = Command::OptNeg {
    version: 6,
    actions: 0x1ff,
    protocol: 0x1f_ffff,
};

fn connect4() -> Command<'static> {
    Command::Connect {
        hostname: b"h",
        family: greymilter::milter::codec::Family::Inet4,
        port: 1,
        address: b"192.0.2.1",
    }
}

#[test]
fn passing_recipient_gets_continue_never_accept() {
    let mut c = core();
    send(&mut c, OPTNEG);
    // CONNECT and MAIL go without a reply (NR_CONN, NR_MAIL).
    assert_eq!(send(&mut c, connect4()).1, vec![]);
    let mail = greymilter::milter::codec::StrArray::new(b"<a@b>\0").unwrap();
    assert_eq!(send(&mut c, Command::Mail(mail)).1, vec![]);
    let rcpt = greymilter::milter::codec::StrArray::new(b"<ok@b>\0").unwrap();
    assert_eq!(
        send(&mut c, Command::Rcpt(rcpt)).1,
        vec![Response::Continue]
    );
    let grey = greymilter::milter::codec::StrArray::new(b"<grey@b>\0").unwrap();
    let (_, r) = send(&mut c, Command::Rcpt(grey));
    assert!(matches!(&r[..], [Response::ReplyCode { code: 451, .. }]));
    assert_eq!(c.state(), State::Mail);
    assert_eq!(
        send(&mut c, Command::BodyEob(b"")).1,
        vec![Response::Continue]
    );
    assert_eq!(c.state(), State::Conn);
    assert_eq!(
        c.decider().calls,
        [
            "connect Some(192.0.2.1)",
            "mail <a@b>",
            "rcpt <ok@b>",
            "rcpt <grey@b>",
            "eom",
            "end"
        ]
    );
}
