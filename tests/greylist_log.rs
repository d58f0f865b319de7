//! The decision log line, in a test binary of its own: tracing caches
//! per-callsite interest globally, which a parallel test without a
//! subscriber could spoil.

#[path = "support/greylist/mod.rs"]
mod greylist_support;
#[path = "support/log/mod.rs"]
mod log_support;

use std::cell::RefCell;
use std::rc::Rc;

use greylist_support::{MapMacros, engine, ip};
use greymilter::greylist::settings::Settings;
use greymilter::milter::decision::{Client, Decider, DeciderFactory};
use greymilter::pipeline::{MilterFactory, Pipeline, Timeouts};
use log_support::Captured;

#[test]
fn one_decision_log_line_per_recipient() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .without_time()
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (e, clock) = engine(Settings::default());
    let f = MilterFactory::new(Pipeline::new(Rc::new(RefCell::new(e))), Timeouts::default());
    let mut d = f.new_decider(7);
    let client = Client {
        hostname: b"mx.sender.example",
        addr: Some(ip("192.0.2.1")),
        port: 25,
    };
    d.connect(&client, &MapMacros::default());
    let none = MapMacros::default();
    d.mail(b"<alice@sender.example>", &none);
    d.rcpt(b"<bob@example.net>", &none).now().unwrap();
    clock.advance(301);
    d.mail(b"<alice@sender.example>", &none);
    d.rcpt(b"<bob@example.net>", &MapMacros::with(&[("i", "4ABC123")]));
    let mut hostile = b"<".to_vec();
    hostile.extend(std::iter::repeat_n(b'x', 60_000));
    hostile.extend_from_slice(b" x=y>");
    d.rcpt(&hostile, &none).now().unwrap();

    let out = String::from_utf8(captured.text().into_bytes()).unwrap();
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("action=")).collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].contains(
            "action=greylist reason=new client=mx.sender.example[192.0.2.1] \
         from=<alice@sender.example> to=<bob@example.net> delay=0 remaining=300"
        ),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(
            "action=pass reason=retried client=mx.sender.example[192.0.2.1] \
         from=<alice@sender.example> to=<bob@example.net> delay=301 remaining=0 qid=4ABC123"
        ),
        "{}",
        lines[1]
    );
    // A hostile address is cut and cannot inject fields.
    assert!(lines[2].len() < 600, "{}", lines[2].len());
    assert!(
        lines[2].contains("xxx...> delay=0 remaining=300"),
        "{}",
        lines[2]
    );
    assert!(!lines[2].contains(" x=y"));
}
