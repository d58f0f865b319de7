//! Writes the seed corpora in `fuzz/corpus/<target>/`:
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example make_seeds
//!
//! Seeds are built with the crate's own encoders and engine (never typed in
//! by hand), so they stay valid when the formats change: rerun and commit.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use greymilter::greylist::clock::ManualClock;
use greymilter::greylist::settings::Settings;
use greymilter::greylist::{Engine, Request};
use greymilter::milter::codec::{
    Command, Family, MacroPairs, Response, StrArray, encode_macro_pairs, encode_packet,
};
use greymilter::milter::negotiate::negotiate;
use greymilter_fuzz::START;
use greymilter_fuzz::session::CLOCK;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    frame_decoder(&root.join("frame_decoder"));
    session(&root.join("session"));
    config(&root.join("config"));
    state_file(&root.join("state_file"));
    address(&root.join("address"));
    control_line(&root.join("control_line"));
    postfix_request(&root.join("postfix_request"));
}

/// Requests as Postfix 3.7 sends them (SMTPD_POLICY_README's attribute
/// list; the protocol has no encoder in the crate): one connection's stream
/// of several requests, a request with CRLF, and the bounds' edges.
fn postfix_request(dir: &Path) {
    let rcpt = |state: &str, sender: &str, sasl: &str| {
        format!(
            "request=smtpd_access_policy\nprotocol_state={state}\nprotocol_name=ESMTP\n\
             client_address=192.0.2.7\nclient_name=mail.example.org\n\
             reverse_client_name=mail.example.org\nclient_port=40123\n\
             helo_name=mail.example.org\nsender={sender}\nrecipient=bob@example.net\n\
             recipient_count=0\nqueue_id=\ninstance=1b2c.6570a1b2.3c4d5.0\nsize=0\n\
             sasl_method=\nsasl_username={sasl}\nsasl_sender=\nccert_subject=\n\
             encryption_protocol=TLSv1.3\npolicy_context=\ncompatibility_level=3.6\n\
             mail_version=3.7.11\n\n"
        )
    };
    write(
        dir,
        "rcpt",
        rcpt("RCPT", "alice@example.org", "").as_bytes(),
    );
    let session = [
        rcpt("RCPT", "alice@example.org", ""),
        rcpt("RCPT", "", ""),
        rcpt("DATA", "alice@example.org", ""),
        rcpt("END-OF-MESSAGE", "alice@example.org", "alice"),
    ]
    .concat();
    write(dir, "session", session.as_bytes());
    write(
        dir,
        "crlf",
        rcpt("RCPT", "a@b", "").replace('\n', "\r\n").as_bytes(),
    );
    let long = format!(
        "request=smtpd_access_policy\nccert_subject={}\n\n",
        "x".repeat(2034)
    );
    write(dir, "long-line", long.as_bytes());
    write(dir, "not-policy", b"request=junk\nprotocol_state=RCPT\n\n");
}

/// One seed per verb, written by the protocol's own `to_line`.
fn control_line(dir: &Path) {
    use greymilter::control::protocol::{Command as C, Tuple};
    use std::time::Duration;
    let tuple = Tuple {
        client: "192.0.2.1".parse().unwrap(),
        from: "<alice@example.org>".into(),
        to: "<bob@example.net>".into(),
    };
    let commands = [
        (
            "check",
            C::Check {
                tuple: tuple.clone(),
                name: Some("mx.example.org".into()),
                authenticated: true,
            },
        ),
        (
            "allow-tuple",
            C::AllowTuple {
                tuple: tuple.clone(),
                duration: Some(Duration::from_secs(3600)),
            },
        ),
        (
            "allow-network",
            C::AllowNetwork {
                net: "2001:db8::/48".parse().unwrap(),
                duration: Duration::from_secs(86_400),
            },
        ),
        (
            "allow-domain",
            C::AllowSenderDomain {
                domain: "example.org".into(),
                duration: Duration::from_secs(60),
            },
        ),
        ("forget-tuple", C::ForgetTuple(tuple)),
        (
            "forget-network",
            C::ForgetNetwork("192.0.2.0/24".parse().unwrap()),
        ),
        ("forget-domain", C::ForgetSenderDomain("example.org".into())),
        ("flush", C::FlushPending),
        ("stats", C::Stats),
        ("reload", C::Reload),
    ];
    for (name, c) in commands {
        write(dir, name, format!("{}\n", c.to_line()).as_bytes());
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    let path: PathBuf = dir.join(name);
    fs::write(&path, bytes).unwrap();
    println!("{} ({} bytes)", path.display(), bytes.len());
}

fn put(out: &mut Vec<u8>, c: Command<'_>) {
    c.encode(out);
}

fn macros(out: &mut Vec<u8>, stage: u8, pairs: &[(&[u8], &[u8])]) {
    let mut raw = Vec::new();
    encode_macro_pairs(&mut raw, pairs);
    put(
        out,
        Command::Macro {
            stage: Some(stage),
            pairs: MacroPairs::new(&raw),
        },
    );
}

fn args(raw: &[u8]) -> StrArray<'_> {
    StrArray::new(raw).unwrap()
}

const OPTNEG: Command<'static> = Command::OptNeg {
    version: 6,
    actions: 0x1ff,
    protocol: 0x1f_ffff,
};

/// A first delivery attempt as Postfix sends it (the MTA's side).
fn first_attempt(out: &mut Vec<u8>) {
    put(out, OPTNEG);
    macros(
        out,
        b'C',
        &[
            (b"j", b"mx.example.net"),
            (b"{daemon_name}", b"mx.example.net"),
            (b"{daemon_addr}", b"192.0.2.1"),
            (b"v", b"Postfix 3.9.1"),
            (b"_", b"relay.example.org [198.51.100.7]"),
        ],
    );
    put(
        out,
        Command::Connect {
            hostname: b"relay.example.org",
            family: Family::Inet4,
            port: 0xc3cb,
            address: b"198.51.100.7",
        },
    );
    macros(out, b'H', &[]);
    macros(out, b'M', &[]);
    put(
        out,
        Command::Mail(args(b"<alice@example.org>\0SIZE=2048\0BODY=8BITMIME\0")),
    );
    macros(out, b'R', &[]);
    put(out, Command::Rcpt(args(b"<bob@example.net>\0")));
    put(out, Command::Abort);
    put(out, Command::Quit);
}

/// §12, the retry with two recipients, on a new connection.
fn retry(out: &mut Vec<u8>) {
    put(out, OPTNEG);
    put(
        out,
        Command::Connect {
            hostname: b"relay.example.org",
            family: Family::Inet4,
            port: 0xc3cc,
            address: b"198.51.100.7",
        },
    );
    put(out, Command::Mail(args(b"<alice@example.org>\0")));
    macros(out, b'R', &[]);
    put(out, Command::Rcpt(args(b"<bob@example.net>\0")));
    macros(out, b'R', &[(b"i", b"4XcW2m1Kz8z9Qp")]);
    put(out, Command::Rcpt(args(b"<carol@example.net>\0")));
    macros(out, b'T', &[(b"i", b"4XcW2m1Kz8z9Qp")]);
    macros(out, b'E', &[(b"i", b"4XcW2m1Kz8z9Qp")]);
    put(out, Command::BodyEob(b""));
    put(out, Command::Abort);
    put(out, Command::Quit);
}

fn clock(out: &mut Vec<u8>, secs: u32) {
    encode_packet(out, CLOCK, |o| o.extend_from_slice(&secs.to_be_bytes()));
}

fn frame_decoder(dir: &Path) {
    let mut mta = vec![0x31];
    first_attempt(&mut mta);
    write(dir, "worked-example-mta", &mta);

    // The milter's side of the worked example, and every other response.
    let mut milter = vec![0x00];
    negotiate(
        6,
        0x1ff,
        0x1f_ffff,
        greymilter::milter::negotiate::Wanted {
            add_header: true,
            ..Default::default()
        },
    )
    .unwrap()
    .encode(&mut milter);
    let replies = [
        Response::Continue,
        Response::Accept,
        Response::ReplyCode {
            code: 451,
            text: String::new(),
            raw: b"451 4.7.1 Greylisted, 100%% sure\0".to_vec(),
        },
        Response::AddHeader {
            name: "X-Greylist".into(),
            value: "delayed 300 seconds".into(),
        },
        Response::InsertHeader {
            index: 1,
            name: "X-A".into(),
            value: "b".into(),
        },
        Response::ChangeFrom {
            from: "<a@b>".into(),
            args: "".into(),
        },
        Response::Tempfail,
        Response::Reject,
    ];
    for r in replies {
        r.encode(&mut milter);
    }
    write(dir, "responses", &milter);

    let mut odd = vec![0xf0];
    for c in [
        Command::Connect {
            hostname: b"[2001:db8::25]",
            family: Family::Inet6,
            port: 41000,
            address: b"IPv6:2001:db8::25",
        },
        Command::Connect {
            hostname: b"unknown",
            family: Family::Unknown,
            port: 0,
            address: b"",
        },
        Command::Header {
            name: b"Subject",
            value: b"hi",
        },
        Command::Helo(b"client.example"),
        Command::Unknown(b"XYZZY"),
        Command::Body(b"body"),
        Command::Data,
        Command::Eoh,
        Command::QuitNc,
    ] {
        put(&mut odd, c);
    }
    write(dir, "other-commands", &odd);
    write(dir, "zero-length", &[0x01, 0, 0, 0, 0, b'O']);
    write(dir, "too-long", &[0x01, 0, 1, 0, 1, b'B']);
}

fn session(dir: &Path) {
    // Selector 0x00: defaults but header off; see greymilter_fuzz::session::settings.
    let mut first = vec![0x00];
    first_attempt(&mut first);
    write(dir, "worked-example-first-attempt", &first);

    // Deferred, then the retry after the delay passes (header on, lists on).
    let mut both = vec![0x13];
    first_attempt(&mut both);
    clock(&mut both, 301);
    retry(&mut both);
    write(dir, "worked-example-retry", &both);

    // Too early, then whitelisted, then auto-whitelisted; IPv6 and local
    // clients; an authenticated sender; QUIT_NC reuse.
    let mut more = vec![0x5b];
    put(&mut more, OPTNEG);
    for (family, address) in [
        (Family::Inet6, &b"IPv6:2001:db8::25"[..]),
        (Family::Inet4, b"192.0.2.200"),
        (Family::Local, b"/var/run/x.sock"),
    ] {
        for step in [0u32, 1, 3600] {
            clock(&mut more, step);
            put(
                &mut more,
                Command::Connect {
                    hostname: b"[client]",
                    family,
                    port: 25,
                    address,
                },
            );
            put(&mut more, Command::Helo(b"client.example"));
            macros(&mut more, b'M', &[(b"{auth_authen}", b""), (b"i", b"Q1")]);
            put(
                &mut more,
                Command::Mail(args(b"<prvs=1234abcd=Bounce-42@Lists.Example>\0")),
            );
            put(&mut more, Command::Rcpt(args(b"<User+tag@Example.NET>\0")));
            put(&mut more, Command::Rcpt(args(b"<nobody@example.net>\0")));
            put(&mut more, Command::BodyEob(b""));
            put(&mut more, Command::QuitNc);
        }
    }
    put(
        &mut more,
        Command::Connect {
            hostname: b"mx.trusted.example",
            family: Family::Inet4,
            port: 25,
            address: b"203.0.113.9",
        },
    );
    macros(&mut more, b'M', &[(b"{auth_authen}", b"alice")]);
    put(&mut more, Command::Mail(args(b"<alice@example.org>\0")));
    put(&mut more, Command::Rcpt(args(b"<bob@example.net>\0")));
    put(&mut more, Command::Quit);
    write(dir, "timing-families-auth", &more);

    // Many tuples through a 3-entry table (bit 2) with replies built from
    // the recipient (bit 5).
    let mut full = vec![0x24];
    put(&mut full, OPTNEG);
    put(
        &mut full,
        Command::Connect {
            hostname: b"h",
            family: Family::Inet4,
            port: 1,
            address: b"198.51.100.9",
        },
    );
    put(&mut full, Command::Mail(args(b"<a@example.org>\0")));
    for i in 0..8 {
        let rcpt = format!("<r{i}%x@example.net>\0");
        put(&mut full, Command::Rcpt(args(rcpt.as_bytes())));
        clock(&mut full, 100);
    }
    put(&mut full, Command::Abort);
    write(dir, "eviction", &full);
}

fn config(dir: &Path) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../greylist.toml.example");
    write(dir, "greylist.toml.example", &fs::read(example).unwrap());
    let full = r#"
[milter]
listen = "unix:/run/greymilter/greymilter.sock"
socket_mode = "0660"
socket_group = "postfix"
max_connections = 100
idle_timeout = "2h 30m"
shutdown_timeout = 3

[greylist]
delay = "90s"
retry_window = "1d"
whitelist_lifetime = 3110400
ipv4_prefix = 32
ipv6_prefix = 48
auto_whitelist_after = 0
reply = "450 4.2.0 Greylisted for {remaining}s, <{recipient}> 100% ok"
reject_reply = "554 5.7.1 No"
header = false

[lists.clients]
"192.0.2.0/24" = "accept"
"2001:db8::1/32" = { action = "greylist", delay = "1m" }
[lists.client_names]
".example.com" = "accept"
[lists.senders]
"<>" = "greylist"
"Alice@Example.ORG" = "reject"
[lists.sender_domains]
"@lists.example" = "accept"
[lists.recipients]
"<postmaster@example.net>" = "accept"
[lists.recipient_domains]
".example.net" = "reject"

[state]
file = "/var/lib/greymilter/state"
checkpoint_interval = "1h"
cleanup_interval = "1m"

[stats]
file = "/var/lib/greymilter/stats"

[daemon]
user = "greymilter"
group = "greymilter"
pidfile = "/run/greymilter.pid"

[log]
level = "greymilter=debug,info"
format = "json"
"#;
    write(dir, "every-key", full.as_bytes());
}

fn state_file(dir: &Path) {
    let clock = ManualClock::new(START);
    let settings = Settings {
        auto_whitelist_after: 1,
        ..Settings::default()
    };
    let mut engine = Engine::new(settings, Box::new(clock.clone()));
    let mut empty = Vec::new();
    engine.write_state(&mut empty).unwrap();
    write(dir, "empty", &empty);

    let clients: [IpAddr; 3] = [
        "198.51.100.7".parse().unwrap(),
        "2001:db8::25".parse().unwrap(),
        "192.0.2.1".parse().unwrap(),
    ];
    let decide = |engine: &mut Engine, client: IpAddr, rcpt: &str| {
        engine.decide_rcpt(&Request {
            client_addr: Some(client),
            client_name: b"[client]",
            sender: b"<alice@example.org>",
            recipient: rcpt.as_bytes(),
            authenticated: false,
        })
    };
    for (i, client) in clients.iter().enumerate() {
        for r in 0..3 {
            decide(&mut engine, *client, &format!("<r{r}@example.net>"));
        }
        if i < 2 {
            clock.advance(400);
            // Passes: whitelisted tuples and an auto-whitelist record.
            decide(&mut engine, *client, "<r0@example.net>");
        }
    }
    let mut image = Vec::new();
    engine.write_state(&mut image).unwrap();
    write(dir, "pending-white-awl", &image);
}

fn address(dir: &Path) {
    for (name, text) in [
        ("plain", "<User@Example.COM>"),
        ("null", "<>"),
        ("source-route", "<@hop1,@hop2:user@example.org>"),
        ("batv", "<prvs=1234abcdef=bob@example.org>"),
        ("srs0", "<SRS0=hhhh=tt=orig.example=alice@fwd.example>"),
        (
            "srs1",
            "<SRS1=xxxx=fwd1.example==hhhh=tt=orig.example=alice@fwd2.example>",
        ),
        ("verp", "<bounce-12345-67+tag@lists.example>"),
        ("ipv6", "6IPv6:2001:db8::25"),
        ("ipv4-mapped", "6[::ffff:192.0.2.1]"),
        ("ipv4", "4198.51.100.7"),
    ] {
        write(dir, name, text.as_bytes());
    }
}
