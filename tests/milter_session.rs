//! Session behaviour, one test per item of the robustness checklist
//! (docs/milter.md, "Robustness checklist"), driven by the MTA-side client over an
//! in-memory pipe with tokio's paused clock.

#[path = "support/milter/mod.rs"]
mod milter_support;

use std::io;
use std::time::Duration;

use greymilter::milter::client::{ClientBuilder, ConnectAddr, Family, MilterClient, Response};
use greymilter::milter::codec::{Command, MacroPairs, StrArray, action, proto};
use greymilter::milter::connection::run_session_until;
use greymilter::milter::decision::{Conversation, Header, SessionOptions, SessionSummary};
use milter_support::{GreyDecider, Shared, with_session};
use tokio::io::{AsyncReadExt, DuplexStream};

type Client = MilterClient<DuplexStream>;

fn ip4() -> ConnectAddr {
    ConnectAddr::Ip("198.51.100.7".parse().unwrap(), 50123)
}

/// Runs `script` against a fresh session with a [`GreyDecider`]; returns the
/// summary, the decider's events, and the script's result.
async fn session<F, Fut, T>(
    options: SessionOptions,
    builder: ClientBuilder,
    script: F,
) -> (SessionSummary, Vec<String>, T)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let seen = Shared::default();
    let (summary, out) = with_session(GreyDecider::new(&seen), &options, builder, script).await;
    let events = seen.borrow().events.clone();
    (summary, events, out)
}

async fn default_session<F, Fut, T>(script: F) -> (SessionSummary, Vec<String>, T)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    session(SessionOptions::default(), ClientBuilder::new(), script).await
}

/// A session where CONNECT and MAIL wait for their replies
/// ([`Conversation::Full`]), as with an MTA that offers no NR_* bits.
async fn full_session<F, Fut, T>(script: F) -> (SessionSummary, Vec<String>, T)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let options = SessionOptions {
        conversation: Conversation::Full,
        ..SessionOptions::default()
    };
    session(options, ClientBuilder::new(), script).await
}

/// Negotiates and connects from 198.51.100.7.
async fn open(c: &mut Client) {
    c.negotiate().await.unwrap();
    c.macros(b'C', &[("j", "mx.example.net")]).await.unwrap();
    assert_eq!(
        c.connect("relay.example.org", &ip4()).await.unwrap(),
        Response::Continue
    );
}

/// Everything the milter still sends until it closes the connection.
async fn rest(c: Client) -> Vec<u8> {
    let mut stream = c.into_inner();
    let mut all = Vec::new();
    stream.read_to_end(&mut all).await.unwrap();
    all
}

fn is_greylisted(r: &Response) -> bool {
    matches!(r, Response::ReplyCode { code: 451, text, .. } if text.starts_with("4.7.1 "))
}

// ---- Codec ----

#[tokio::test(start_paused = true)]
async fn bad_lengths_and_unknown_commands_close_the_connection() {
    let cases: [&[u8]; 4] = [
        &[0, 0, 0, 0],
        // 64 KiB + 1 of payload announced: closed at once, nothing read on.
        &[0, 1, 0, 1, b'B'],
        &[0xff, 0xff, 0xff, 0xff],
        b"\x00\x00\x00\x01Z",
    ];
    for wire in cases {
        let (summary, _, closed) = default_session(|mut c| async move {
            c.negotiate().await.unwrap();
            c.write_raw(wire).await.unwrap();
            c.closed().await.unwrap()
        })
        .await;
        assert!(closed, "{wire:?}");
        assert!(summary.protocol_error, "{wire:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn many_packets_in_one_write_are_answered_in_order() {
    let (_, events, replies) = default_session(|mut c| async move {
        open(&mut c).await;
        let mut batch = Vec::new();
        let mail = StrArray::new(b"<a@example.org>\0").unwrap();
        Command::Mail(mail).encode(&mut batch);
        for r in [
            &b"<x@example.net>\0"[..],
            b"<y@example.net>\0",
            b"<x@example.net>\0",
        ] {
            Command::Rcpt(StrArray::new(r).unwrap()).encode(&mut batch);
        }
        c.write_raw(&batch).await.unwrap();
        // MAIL goes without a reply (NR_MAIL): three replies, one per RCPT.
        let mut replies = Vec::new();
        for _ in 0..3 {
            replies.push(c.read_response().await.unwrap());
        }
        c.quit().await.unwrap();
        assert!(rest(c).await.is_empty());
        replies
    })
    .await;
    assert!(is_greylisted(&replies[0]) && is_greylisted(&replies[1]));
    // The same tuple again passes: CONTINUE.
    assert_eq!(replies[2], Response::Continue);
    assert_eq!(events.iter().filter(|e| e.starts_with("rcpt")).count(), 3);
}

#[tokio::test(start_paused = true)]
async fn missing_nul_closes_for_key_fields_and_is_ignored_for_macros() {
    for bad in [
        &b"\x00\x00\x00\x06M<a@b>"[..],
        b"\x00\x00\x00\x06R<a@b>",
        b"\x00\x00\x00\x0bChost\x004\x00\x191.2",
    ] {
        let (summary, _, closed) = default_session(|mut c| async move {
            open(&mut c).await;
            c.write_raw(bad).await.unwrap();
            c.closed().await.unwrap()
        })
        .await;
        assert!(closed && summary.protocol_error, "{bad:?}");
    }
    let (summary, events, reply) = default_session(|mut c| async move {
        open(&mut c).await;
        // Odd number of strings, then a missing final NUL: the complete
        // pairs are kept.
        for raw in [&b"{auth_authen}\0"[..], b"i\0Q1\0dangling"] {
            let pairs = MacroPairs::new(raw);
            c.send(&Command::Macro {
                stage: Some(b'M'),
                pairs,
            })
            .await
            .unwrap();
        }
        let r = c.mail(&["<a@b>"]).await.unwrap();
        c.rcpt(&["<c@d>"]).await.unwrap();
        c.quit().await.unwrap();
        r
    })
    .await;
    assert_eq!(reply, Response::Continue);
    assert!(!summary.protocol_error);
    assert!(
        events.contains(&"mail <a@b> auth=None".to_string()),
        "{events:?}"
    );
    // ... and the complete pair before the dangling string was kept.
    assert!(
        events.contains(&"rcpt <c@d> i=Some(\"Q1\")".to_string()),
        "{events:?}"
    );
}

// ---- Negotiation ----

async fn negotiated(
    builder: ClientBuilder,
    add_header: bool,
) -> io::Result<(u32, u32, u32, usize)> {
    let options = SessionOptions {
        add_header,
        ..SessionOptions::default()
    };
    let (_, _, n) = session(options, builder, |mut c| async move {
        let n = c.negotiate().await;
        n.map(|n| (n.version, n.actions, n.protocol, n.macro_lists.len()))
    })
    .await;
    n
}

#[tokio::test(start_paused = true)]
async fn negotiation_versions_and_defaults() {
    let b = ClientBuilder::new;
    // CONNECT and MAIL without a reply (NR_CONN | NR_MAIL = 0x5000).
    assert_eq!(negotiated(b(), false).await.unwrap(), (6, 0x100, 0x5372, 2));
    assert_eq!(negotiated(b(), true).await.unwrap(), (6, 0x101, 0x5372, 2));
    assert_eq!(negotiated(b().version(9), false).await.unwrap().0, 6);
    // Postfix with milter_protocol = 2 and 4.
    assert_eq!(
        negotiated(b().version(2).protocol(0x7f), true)
            .await
            .unwrap(),
        (2, 0x101, 0x72, 2)
    );
    assert_eq!(
        negotiated(b().version(4).protocol(0x37f), false)
            .await
            .unwrap(),
        (4, 0x100, 0x372, 2)
    );
    // Zeros are the v1 defaults: no SETSYMLIST, so no lists.
    assert_eq!(
        negotiated(b().actions(0).protocol(0), true).await.unwrap(),
        (6, 0x01, 0x32, 0)
    );
    // Version 1 is refused: the milter closes without an answer.
    let err = negotiated(b().version(1), false).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}

#[tokio::test(start_paused = true)]
async fn requested_bits_are_masked_by_the_offer() {
    // No SETSYMLIST offered: no macro lists, no SETSYMLIST bit.
    let n = negotiated(
        ClientBuilder::new().actions(action::ALL & !action::SETSYMLIST),
        false,
    )
    .await
    .unwrap();
    assert_eq!((n.1, n.3), (0, 0));
    // An MTA that can only switch off HELO and BODY.
    let n = negotiated(
        ClientBuilder::new().protocol(proto::NOHELO | proto::NOBODY | proto::NR_RCPT),
        false,
    )
    .await
    .unwrap();
    assert_eq!(n.2, proto::NOHELO | proto::NOBODY);
}

#[tokio::test(start_paused = true)]
async fn macro_lists_are_never_empty() {
    let (_, _, lists) =
        default_session(|mut c| async move { c.negotiate().await.unwrap().macro_lists }).await;
    assert_eq!(lists.len(), 2);
    assert_eq!(
        (lists[0].stage, &lists[0].names[..]),
        (2, &b"{auth_authen} i"[..])
    );
    assert_eq!((lists[1].stage, &lists[1].names[..]), (3, &b"i"[..]));
}

// ---- Events ----

#[tokio::test(start_paused = true)]
async fn every_event_gets_exactly_one_reply_and_the_silent_ones_none() {
    let (summary, _, trailing) = default_session(|mut c| async move {
        open(&mut c).await;
        c.macros(b'H', &[]).await.unwrap();
        assert_eq!(
            c.helo("client.example.org").await.unwrap(),
            Response::Continue
        );
        assert_eq!(c.mail(&["<a@b>"]).await.unwrap(), Response::Continue);
        c.abort().await.unwrap();
        c.abort().await.unwrap();
        assert_eq!(c.mail(&["<a@b>"]).await.unwrap(), Response::Continue);
        assert!(is_greylisted(&c.rcpt(&["<c@d>"]).await.unwrap()));
        assert_eq!(c.data().await.unwrap(), Response::Continue);
        assert_eq!(c.header("Subject", "x").await.unwrap(), Response::Continue);
        assert_eq!(c.eoh().await.unwrap(), Response::Continue);
        assert_eq!(c.body(b"hello\r\n").await.unwrap(), Response::Continue);
        assert_eq!(c.unknown("HELP").await.unwrap(), Response::Continue);
        let eom = c.eom().await.unwrap();
        assert_eq!((eom.modifications.len(), eom.last), (0, Response::Continue));
        c.abort().await.unwrap();
        c.quit_nc().await.unwrap();
        assert_eq!(c.connect("h", &ip4()).await.unwrap(), Response::Continue);
        c.quit().await.unwrap();
        rest(c).await
    })
    .await;
    // ABORT, MACRO, QUIT_NC and QUIT left nothing unread behind.
    assert!(trailing.is_empty(), "{trailing:?}");
    assert!(!summary.protocol_error);
}

#[tokio::test(start_paused = true)]
async fn empty_unknown_and_orphan_macro_packets_are_no_ops() {
    let (summary, events, _) = default_session(|mut c| async move {
        open(&mut c).await;
        c.macros(b'H', &[]).await.unwrap(); // Postfix: NOHELO, still `D H`
        c.macros(b'M', &[("{auth_authen}", "")]).await.unwrap();
        assert_eq!(c.mail(&["<a@b>"]).await.unwrap(), Response::Continue);
        c.macros(b'U', &[("x", "y")]).await.unwrap();
        c.macros(b'Z', &[("i", "garbage")]).await.unwrap();
        c.write_raw(b"\x00\x00\x00\x01D").await.unwrap(); // no stage byte
        c.macros(b'T', &[("i", "Q1")]).await.unwrap(); // NODATA: no `T` follows
        c.macros(b'R', &[]).await.unwrap();
        assert!(is_greylisted(&c.rcpt(&["<c@d>"]).await.unwrap()));
        c.quit().await.unwrap();
    })
    .await;
    assert!(!summary.protocol_error);
    assert!(
        events.contains(&"mail <a@b> auth=Some(\"\")".to_string()),
        "{events:?}"
    );
    // The orphan DATA macros were dropped when RCPT arrived; garbage never stored.
    assert!(
        events.contains(&"rcpt <c@d> i=None".to_string()),
        "{events:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn abort_in_every_state_and_quit_or_eof_anywhere() {
    // ABORT before negotiation, twice after EOM, then QUIT.
    let (summary, events, trailing) = default_session(|mut c| async move {
        c.abort().await.unwrap();
        open(&mut c).await;
        c.abort().await.unwrap();
        c.mail(&["<a@b>"]).await.unwrap();
        c.eom().await.unwrap();
        c.abort().await.unwrap();
        c.abort().await.unwrap();
        c.quit().await.unwrap();
        rest(c).await
    })
    .await;
    assert!(trailing.is_empty() && !summary.protocol_error);
    assert_eq!(
        events.iter().filter(|e| *e == "end").count(),
        1,
        "{events:?}"
    );

    // QUIT mid-transaction ends the decider's transaction.
    let (summary, events, _) = default_session(|mut c| async move {
        open(&mut c).await;
        c.mail(&["<a@b>"]).await.unwrap();
        c.quit().await.unwrap();
    })
    .await;
    assert!(!summary.protocol_error && !summary.timed_out);
    assert_eq!(events.last().map(String::as_str), Some("end"));

    // EOF right after our CONNECT verdict (what Postfix does after ACCEPT).
    let (summary, events, _) = full_session(|mut c| async move {
        c.negotiate().await.unwrap();
        let r = c.connect("localhost", &ConnectAddr::Unknown).await.unwrap();
        assert_eq!(r, Response::Accept);
        drop(c);
    })
    .await;
    assert!(!summary.protocol_error && !summary.timed_out);
    assert_eq!(events, ["connect localhost None j=None"]);

    // EOF in the middle of a packet.
    let (summary, _, _) = default_session(|mut c| async move {
        open(&mut c).await;
        c.write_raw(b"\x00\x00\x00\x13R<bob").await.unwrap();
        drop(c);
    })
    .await;
    assert!(!summary.protocol_error && !summary.timed_out);
}

#[tokio::test(start_paused = true)]
async fn postfix_profile_helo_after_abort_and_many_transactions() {
    let (summary, events, _) = default_session(|mut c| async move {
        open(&mut c).await;
        // STARTTLS: a second EHLO, preceded by ABORT with no transaction.
        c.abort().await.unwrap();
        c.macros(b'H', &[("{tls_version}", "TLSv1.3")])
            .await
            .unwrap();
        assert_eq!(c.helo("again").await.unwrap(), Response::Continue);
        for round in 0..3 {
            c.macros(b'M', &[]).await.unwrap();
            assert_eq!(
                c.mail(&["<a@b>", "SIZE=10"]).await.unwrap(),
                Response::Continue
            );
            c.macros(b'R', &[]).await.unwrap();
            let r = c.rcpt(&["<c@d>"]).await.unwrap();
            if round == 0 {
                assert!(is_greylisted(&r));
                c.abort().await.unwrap();
                continue;
            }
            assert_eq!(r, Response::Continue);
            c.macros(b'T', &[("i", "Q")]).await.unwrap();
            c.macros(b'E', &[("i", "Q")]).await.unwrap();
            assert_eq!(c.eom().await.unwrap().last, Response::Continue);
            c.abort().await.unwrap();
        }
        // MAIL without ABORT after a transaction: an implicit reset.
        assert_eq!(c.mail(&["<e@f>"]).await.unwrap(), Response::Continue);
        assert_eq!(c.mail(&["<g@h>"]).await.unwrap(), Response::Continue);
        c.quit().await.unwrap();
    })
    .await;
    assert!(!summary.protocol_error);
    let mails = events.iter().filter(|e| e.starts_with("mail")).count();
    let ends = events.iter().filter(|e| *e == "end").count();
    assert_eq!((mails, ends), (5, 5), "{events:?}");
    assert!(events.contains(&"eom i=Some(\"Q\")".to_string()));
}

#[tokio::test(start_paused = true)]
async fn connect_address_forms() {
    let v6 = "Some(2001:db8::25)";
    let cases: [(Family, &str, &str); 9] = [
        (Family::Inet6, "2001:db8::25", v6),
        (Family::Inet6, "IPv6:2001:db8::25", v6),
        (Family::Inet6, "ipv6:2001:DB8::25", v6),
        (Family::Inet6, "[IPv6:2001:db8::25]", v6),
        (Family::Inet6, "IPv6:2001:db8:0:0:0:0:0:25", v6),
        (Family::Inet6, "::ffff:192.0.2.1", "Some(192.0.2.1)"),
        (Family::Inet4, "192.0.2.1", "Some(192.0.2.1)"),
        (Family::Local, "/var/run/x.sock", "None"),
        (Family::Inet4, "garbage", "None"),
    ];
    for (family, address, want) in cases {
        let (_, events, reply) = full_session(|mut c| async move {
            c.negotiate().await.unwrap();
            let addr = ConnectAddr::Raw {
                family,
                port: 41000,
                address: address.to_string(),
            };
            let r = c.connect("[IPv6:2001:db8::25]", &addr).await.unwrap();
            c.quit().await.unwrap();
            r
        })
        .await;
        assert_eq!(
            events[0],
            format!("connect [IPv6:2001:db8::25] {want} j=None"),
            "{address}"
        );
        // No client IP: the test decider accepts (the engine does the same).
        let expected = if want == "None" {
            Response::Accept
        } else {
            Response::Continue
        };
        assert_eq!(reply, expected, "{address}");
    }
    let (_, events, _) = default_session(|mut c| async move {
        c.negotiate().await.unwrap();
        c.connect("unknown", &ConnectAddr::Unknown).await.unwrap()
    })
    .await;
    assert_eq!(events[0], "connect unknown None j=None");
}

#[tokio::test(start_paused = true)]
async fn accepted_connection_is_not_consulted_again() {
    let (_, events, _) = full_session(|mut c| async move {
        c.negotiate().await.unwrap();
        assert_eq!(
            c.connect("local", &ConnectAddr::Local("/s".into()))
                .await
                .unwrap(),
            Response::Accept
        );
        // A confused MTA carries on anyway: CONTINUE, no decisions.
        assert_eq!(c.mail(&["<a@b>"]).await.unwrap(), Response::Continue);
        assert_eq!(c.rcpt(&["<c@d>"]).await.unwrap(), Response::Continue);
        assert_eq!(c.eom().await.unwrap().last, Response::Continue);
        c.quit().await.unwrap();
    })
    .await;
    assert_eq!(events, ["connect local None j=None"]);
}

#[tokio::test(start_paused = true)]
async fn mail_and_rcpt_arguments_reach_the_decider_as_sent() {
    let (_, events, _) = default_session(|mut c| async move {
        open(&mut c).await;
        c.mail(&["<>", "SIZE=100", "BODY=8BITMIME"]).await.unwrap();
        c.rcpt(&[
            "<@relay.example,@b.example:Bob@Example.NET>",
            "NOTIFY=NEVER",
        ])
        .await
        .unwrap();
        c.abort().await.unwrap();
        c.mail(&["<Alice@Example.ORG>"]).await.unwrap();
        c.rcpt(&["bob@example.net"]).await.unwrap();
        c.quit().await.unwrap();
    })
    .await;
    assert!(events.contains(&"mail <> auth=None".to_string()));
    assert!(
        events.contains(&"rcpt <@relay.example,@b.example:bob@example.net> i=None".to_string())
    );
    assert!(events.contains(&"mail <Alice@Example.ORG> auth=None".to_string()));
    assert!(events.contains(&"rcpt bob@example.net i=None".to_string()));
}

#[tokio::test(start_paused = true)]
async fn odd_sequences_are_survived() {
    let (summary, events, _) = default_session(|mut c| async move {
        c.negotiate().await.unwrap();
        // Repeated OPTNEG: answered again.
        assert!(matches!(
            c.request(&Command::OptNeg {
                version: 6,
                actions: 0x1ff,
                protocol: 0x1f_ffff
            })
            .await
            .unwrap(),
            Response::OptNeg(_)
        ));
        // Events before CONNECT.
        assert_eq!(c.helo("h").await.unwrap(), Response::Continue);
        assert_eq!(c.mail(&["<a@b>"]).await.unwrap(), Response::Continue);
        assert_eq!(c.rcpt(&["<c@d>"]).await.unwrap(), Response::Continue);
        assert_eq!(c.eom().await.unwrap().last, Response::Continue);
        // RCPT without MAIL: fail open.
        assert_eq!(c.connect("h", &ip4()).await.unwrap(), Response::Continue);
        assert_eq!(c.rcpt(&["<c@d>"]).await.unwrap(), Response::Continue);
        // A second CONNECT without QUIT_NC, inside a transaction.
        c.mail(&["<a@b>"]).await.unwrap();
        assert_eq!(c.connect("h2", &ip4()).await.unwrap(), Response::Continue);
        // HELO inside a transaction: implicit abort.
        c.mail(&["<a@b>"]).await.unwrap();
        assert_eq!(c.helo("h").await.unwrap(), Response::Continue);
        // A repeated OPTNEG mid-connection starts over.
        c.negotiate().await.unwrap();
        assert_eq!(c.connect("h3", &ip4()).await.unwrap(), Response::Continue);
        c.quit().await.unwrap();
    })
    .await;
    assert!(!summary.protocol_error);
    assert_eq!(
        events,
        [
            "connect h Some(198.51.100.7) j=None",
            "mail <a@b> auth=None",
            "reset",
            "connect h2 Some(198.51.100.7) j=None",
            "mail <a@b> auth=None",
            "end",
            "reset",
            "connect h3 Some(198.51.100.7) j=None",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn commands_before_negotiation_close() {
    for early in [
        Command::Connect {
            hostname: b"h",
            family: Family::Unknown,
            port: 0,
            address: b"",
        },
        Command::QuitNc,
        Command::BodyEob(b""),
    ] {
        let (summary, _, closed) = default_session(|mut c| async move {
            c.send(&early).await.unwrap();
            c.closed().await.unwrap()
        })
        .await;
        assert!(closed && summary.protocol_error, "{early:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn quit_nc_starts_a_new_connection_on_the_same_socket() {
    let (_, events, _) = default_session(|mut c| async move {
        open(&mut c).await;
        c.mail(&["<a@b>"]).await.unwrap();
        c.quit_nc().await.unwrap();
        c.macros(b'C', &[("j", "second")]).await.unwrap();
        c.connect(
            "other",
            &ConnectAddr::Ip("2001:db8::1".parse().unwrap(), 25),
        )
        .await
        .unwrap();
        c.mail(&["<a@b>"]).await.unwrap();
        c.quit().await.unwrap();
    })
    .await;
    assert_eq!(
        events,
        [
            "connect relay.example.org Some(198.51.100.7) j=Some(\"mx.example.net\")",
            "mail <a@b> auth=None",
            "reset",
            "connect other Some(2001:db8::1) j=Some(\"second\")",
            "mail <a@b> auth=None",
            "end",
        ]
    );
}

// ---- Replies ----

#[tokio::test(start_paused = true)]
async fn accepted_connection_without_connect_reply_passes_its_recipients() {
    let (_, events, replies) = default_session(|mut c| async move {
        c.negotiate().await.unwrap();
        let local = ConnectAddr::Local("/s".into());
        let connect = c.connect("local", &local).await.unwrap();
        let mail = c.mail(&["<a@b>"]).await.unwrap();
        let rcpt = c.rcpt(&["<c@d>"]).await.unwrap();
        let eom = c.eom().await.unwrap().last;
        c.quit().await.unwrap();
        [connect, mail, rcpt, eom]
    })
    .await;
    // The MTA did not wait at CONNECT or MAIL; the recipient gets CONTINUE
    // and the decider is not asked again.
    assert_eq!(replies, [const { Response::Continue }; 4]);
    assert_eq!(events, ["connect local None j=None"]);
}

#[tokio::test(start_paused = true)]
async fn refusals_without_a_reply_are_given_at_each_recipient() {
    let (_, events, replies) = default_session(|mut c| async move {
        c.negotiate().await.unwrap();
        // MAIL refused (450): each RCPT of that transaction gets it, the
        // next transaction is decided again.
        c.connect("relay.example.org", &ip4()).await.unwrap();
        c.mail(&["<refused@b>"]).await.unwrap();
        let first = c.rcpt(&["<c@d>"]).await.unwrap();
        let second = c.rcpt(&["<e@d>"]).await.unwrap();
        c.abort().await.unwrap();
        c.mail(&["<a@b>"]).await.unwrap();
        let next = c.rcpt(&["<c@d>"]).await.unwrap();
        c.abort().await.unwrap();
        // CONNECT refused (554): every RCPT of the connection gets it.
        c.quit_nc().await.unwrap();
        c.connect("refused.example.org", &ip4()).await.unwrap();
        c.mail(&["<a@b>"]).await.unwrap();
        let refused = c.rcpt(&["<c@d>"]).await.unwrap();
        let eom = c.eom().await.unwrap().last;
        c.mail(&["<x@b>"]).await.unwrap();
        let again = c.rcpt(&["<y@d>"]).await.unwrap();
        c.quit().await.unwrap();
        (first, second, next, refused, eom, again)
    })
    .await;
    let code = |r: &Response| match r {
        Response::ReplyCode { code, .. } => *code,
        other => panic!("{other:?}"),
    };
    assert_eq!((code(&replies.0), code(&replies.1)), (450, 450));
    assert!(is_greylisted(&replies.2), "{:?}", replies.2);
    assert_eq!((code(&replies.3), code(&replies.5)), (554, 554));
    assert_eq!(replies.4, Response::Continue);
    // Only the transaction that was not refused reached the decider's RCPT.
    let rcpts: Vec<_> = events.iter().filter(|e| e.starts_with("rcpt")).collect();
    assert_eq!(rcpts, ["rcpt <c@d> i=None"]);
}

/// A session whose decider can take the envelope at RCPT.
fn envelope_at_rcpt() -> SessionOptions {
    SessionOptions {
        envelope_events: false,
        ..SessionOptions::default()
    }
}

#[tokio::test(start_paused = true)]
async fn without_envelope_events_connect_and_mail_come_from_rcpt_macros() {
    let (_, events, replies) = session(
        envelope_at_rcpt(),
        ClientBuilder::new(),
        |mut c| async move {
            let n = c.negotiate().await.unwrap();
            assert_eq!(n.protocol, 0x377, "NOCONNECT | NOMAIL");
            assert_eq!(n.macro_lists.len(), 1);
            // Nothing is sent for these two: the client keeps the values for
            // the RCPT macros, as Postfix does.
            c.connect(
                "[2001:db8::7]",
                &ConnectAddr::Ip("2001:db8::7".parse().unwrap(), 25),
            )
            .await
            .unwrap();
            c.mail(&["<A@b>"]).await.unwrap();
            let first = c.rcpt(&["<c@d>"]).await.unwrap();
            let second = c.rcpt(&["<e@d>"]).await.unwrap();
            c.abort().await.unwrap();
            // Next transaction: MAIL again, CONNECT not; the null sender.
            c.mail(&["<>"]).await.unwrap();
            let bounce = c.rcpt(&["<c@d>"]).await.unwrap();
            c.abort().await.unwrap();
            // Authenticated: the recipient passes without being decided.
            c.macros(b'M', &[("{auth_authen}", "alice")]).await.unwrap();
            c.mail(&["<a@b>"]).await.unwrap();
            let authenticated = c.rcpt(&["<new@d>"]).await.unwrap();
            c.quit().await.unwrap();
            (first, second, bounce, authenticated)
        },
    )
    .await;
    assert!(is_greylisted(&replies.0) && is_greylisted(&replies.1));
    assert!(is_greylisted(&replies.2), "{:?}", replies.2);
    assert_eq!(replies.3, Response::Continue);
    assert_eq!(
        events,
        [
            // Postfix's "unknown" becomes the bracketed address, the
            // `IPv6:` prefix of its {client_addr} is understood.
            "connect [IPv6:2001:db8::7] Some(2001:db8::7) j=None",
            "mail <A@b> auth=None",
            "rcpt <c@d> i=None",
            "rcpt <e@d> i=None",
            "end",
            "mail <> auth=None",
            "rcpt <c@d> i=None",
            "end",
            "mail <a@b> auth=Some(\"alice\")",
            "end",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn without_the_envelope_macros_a_recipient_is_not_greylisted() {
    let (_, events, reply) = session(
        envelope_at_rcpt(),
        ClientBuilder::new(),
        |mut c| async move {
            c.negotiate().await.unwrap();
            // An MTA that ignores the macro list: a bare RCPT.
            c.send(&Command::Rcpt(StrArray::new(b"<c@d>\0").unwrap()))
                .await
                .unwrap();
            let reply = c.read_response().await.unwrap();
            c.quit().await.unwrap();
            reply
        },
    )
    .await;
    assert_eq!(reply, Response::Continue);
    // No client address: the test decider (like the engine) accepts the
    // connection, and nothing is greylisted.
    assert_eq!(events, ["connect [] None j=None"]);
}

#[tokio::test(start_paused = true)]
async fn helo_is_heard_without_a_reply_when_asked_for() {
    let options = SessionOptions {
        helo: true,
        ..SessionOptions::default()
    };
    let (_, events, replies) = session(options, ClientBuilder::new(), |mut c| async move {
        let n = c.negotiate().await.unwrap();
        assert_eq!(n.protocol, 0x7370, "HELO on, NR_HELO");
        c.connect("relay.example.org", &ip4()).await.unwrap();
        c.helo("relay.example.org").await.unwrap();
        c.mail(&["<>"]).await.unwrap();
        // The first reply on the wire is the recipient's.
        let r = c.rcpt(&["<c@d>"]).await.unwrap();
        c.quit().await.unwrap();
        r
    })
    .await;
    assert!(is_greylisted(&replies), "{replies:?}");
    assert_eq!(events[1], "helo relay.example.org");
}

#[tokio::test(start_paused = true)]
async fn accept_only_at_connect_and_mail() {
    let (_, _, replies) = full_session(|mut c| async move {
        open(&mut c).await;
        // The test decider says Accept for a known tuple at RCPT: CONTINUE.
        c.mail(&["<a@b>"]).await.unwrap();
        c.rcpt(&["<c@d>"]).await.unwrap();
        let rcpt = c.rcpt(&["<c@d>"]).await.unwrap();
        c.abort().await.unwrap();
        // Authenticated sender: ACCEPT at MAIL, and the rest of the message
        // is not filtered.
        c.macros(b'M', &[("{auth_authen}", "alice")]).await.unwrap();
        let mail = c.mail(&["<a@b>"]).await.unwrap();
        let after = c.rcpt(&["<new@d>"]).await.unwrap();
        c.quit().await.unwrap();
        (rcpt, mail, after)
    })
    .await;
    assert_eq!(
        replies,
        (Response::Continue, Response::Accept, Response::Continue)
    );
}

#[tokio::test(start_paused = true)]
async fn wrong_class_falls_back_to_bare_codes() {
    let (_, _, replies) = default_session(|mut c| async move {
        open(&mut c).await;
        c.mail(&["<a@b>"]).await.unwrap();
        let wrong = c.rcpt(&["<wrongclass@d>"]).await.unwrap();
        let reject = c.rcpt(&["<reject@d>"]).await.unwrap();
        c.quit().await.unwrap();
        (wrong, reject)
    })
    .await;
    assert_eq!(replies.0, Response::Tempfail);
    assert!(matches!(replies.1, Response::ReplyCode { code: 550, .. }));
}

#[tokio::test(start_paused = true)]
async fn header_is_added_only_when_negotiated_and_valid() {
    async fn eom_with(header: Header, add_header: bool) -> Vec<Response> {
        let seen = Shared::default();
        let mut d = GreyDecider::new(&seen);
        d.header = Some(header);
        let options = SessionOptions {
            add_header,
            ..SessionOptions::default()
        };
        let (_, eom) = with_session(d, &options, ClientBuilder::new(), |mut c| async move {
            open(&mut c).await;
            c.mail(&["<a@b>"]).await.unwrap();
            let eom = c.eom().await.unwrap();
            c.quit().await.unwrap();
            let mut all = eom.modifications;
            all.push(eom.last);
            all
        })
        .await;
        eom
    }
    let good = Header {
        name: "X-Greylist".into(),
        value: "delayed 300 seconds".into(),
    };
    assert_eq!(
        eom_with(good.clone(), true).await,
        [
            Response::AddHeader {
                name: "X-Greylist".into(),
                value: "delayed 300 seconds".into()
            },
            Response::Continue
        ]
    );
    assert_eq!(eom_with(good, false).await, [Response::Continue]);
    let bad = Header {
        name: "X-Greylist".into(),
        value: "a\r\nBcc: x".into(),
    };
    assert_eq!(eom_with(bad, true).await, [Response::Continue]);
    let bad_name = Header {
        name: "X Grey:".into(),
        value: "v".into(),
    };
    assert_eq!(eom_with(bad_name, true).await, [Response::Continue]);
}

// ---- Operations ----

#[tokio::test(start_paused = true)]
async fn idle_timeout_closes_the_connection() {
    let idle = Duration::from_secs(600);
    let options = SessionOptions {
        idle_timeout: idle,
        ..SessionOptions::default()
    };
    let builder = ClientBuilder::new().timeout(Duration::from_secs(3600));
    let (summary, _, waited) = session(options, builder, |mut c| async move {
        open(&mut c).await;
        let start = tokio::time::Instant::now();
        assert!(c.closed().await.unwrap());
        start.elapsed()
    })
    .await;
    assert!(summary.timed_out && !summary.protocol_error);
    assert_eq!(waited, idle);
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_counts_per_read_not_per_session() {
    let idle = Duration::from_secs(60);
    let options = SessionOptions {
        idle_timeout: idle,
        ..SessionOptions::default()
    };
    let builder = ClientBuilder::new().timeout(Duration::from_secs(3600));
    let (summary, _, _) = session(options, builder, |mut c| async move {
        open(&mut c).await;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(50)).await;
            c.macros(b'H', &[]).await.unwrap();
        }
        c.quit().await.unwrap();
    })
    .await;
    assert!(!summary.timed_out);
}

#[tokio::test(start_paused = true)]
async fn stop_finishes_the_command_in_flight_then_closes() {
    let seen = Shared::default();
    let (mta, milter) = tokio::io::duplex(4096);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        let _ = stop_rx.await;
    };
    let options = SessionOptions::default();
    let session = run_session_until(milter, GreyDecider::new(&seen), &options, 1, "t", stop);
    let script = async move {
        let mut c = ClientBuilder::new().on_stream(mta);
        open(&mut c).await;
        c.mail(&["<a@b>"]).await.unwrap();
        let mut rcpt = Vec::new();
        Command::Rcpt(StrArray::new(b"<bob@example.net>\0").unwrap()).encode(&mut rcpt);
        c.write_raw(&rcpt[..7]).await.unwrap();
        stop_tx.send(()).unwrap();
        tokio::task::yield_now().await;
        c.write_raw(&rcpt[7..]).await.unwrap();
        let reply = c.read_response().await.unwrap();
        (reply, c.closed().await.unwrap())
    };
    let (summary, (reply, closed)) = tokio::join!(session, script);
    assert!(is_greylisted(&reply));
    assert!(closed && !summary.protocol_error);
}

#[tokio::test(start_paused = true)]
async fn the_largest_legal_packet_is_handled_and_the_next_one_too() {
    let (summary, _, replies) = default_session(|mut c| async move {
        open(&mut c).await;
        let chunk = vec![b'x'; 65_535];
        let body = c.body(&chunk).await.unwrap();
        let after = c.mail(&["<a@b>"]).await.unwrap();
        c.quit().await.unwrap();
        (body, after)
    })
    .await;
    assert_eq!(replies, (Response::Continue, Response::Continue));
    assert!(!summary.protocol_error);
}
