//! Per-RCPT cost of the greylist decision, without sockets:
//! `Engine::decide_rcpt` for a new, an early-retry, a whitelisted and a
//! list-accepted recipient on a table of GREYMILTER_BENCH_TUPLES tuples
//! (default 1,000,000 under `cargo bench`, a realistic size where look-ups miss the caches),
//! and the same through the protocol session (`SessionCore` with the
//! real `MilterDecider`: MACRO + RCPT packets in, reply packet out).
//!
//! `cargo bench --bench engine` (`-- --test` runs each once: the CI smoke).

#[path = "../examples/support/workload.rs"]
mod workload;

use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use greymilter::greylist::clock::ManualClock;
use greymilter::greylist::settings::{ListAction, Settings};
use greymilter::greylist::{Action, Engine, Reason, Request};
use greymilter::milter::codec::{
    Command, Family, MacroPairs, StrArray, encode_macro_pairs, split_frame,
};
use greymilter::milter::decision::{DeciderFactory, SessionOptions};
use greymilter::milter::session::SessionCore;
use greymilter::pipeline::{MilterFactory, Pipeline, Timeouts};

const LIST_DOMAIN: &str = "list.test";

/// A numbered envelope of the population (see the address model).
struct Tuple(workload::Envelope);

impl Tuple {
    fn new(i: u64) -> Tuple {
        Tuple(workload::Envelope::numbered(i, 200_000))
    }

    fn request(&self) -> Request<'_> {
        Request {
            client_addr: Some(self.0.addr),
            client_name: self.0.name.as_bytes(),
            sender: self.0.sender.as_bytes(),
            recipient: self.0.recipient.as_bytes(),
            authenticated: false,
        }
    }
}

/// GREYMILTER_BENCH_TUPLES, else 1M under `cargo bench` and 1,000 under
/// `cargo test --all-targets` (a debug build runs each benchmark once).
fn table_size() -> u64 {
    let benching = std::env::args().any(|a| a == "--bench");
    std::env::var("GREYMILTER_BENCH_TUPLES")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(if benching { 1_000_000 } else { 1_000 })
}

/// An engine holding `table_size()` tuples, one in five whitelisted, and
/// the sets the benchmarks cycle through.
struct Fixture {
    engine: Rc<RefCell<Engine>>,
    clock: ManualClock,
    whitelisted: Vec<Tuple>,
    early: Vec<Tuple>,
    next_new: u64,
}

fn fixture() -> Fixture {
    let size = table_size();
    let clock = ManualClock::new(1_700_000_000);
    let mut settings = Settings {
        max_tuples: 100_000_000,
        auto_whitelist_after: 0,
        ..Settings::default()
    };
    settings
        .lists
        .recipient_domains
        .push((LIST_DOMAIN.to_string(), ListAction::Accept));
    let mut engine = Engine::new(settings, Box::new(clock.clone()));
    for i in 0..size {
        engine.decide_rcpt(&Tuple::new(i).request());
    }
    clock.advance(301);
    let sample = (size / 5).clamp(1, 100_000);
    let whitelisted: Vec<Tuple> = (0..sample).map(|i| Tuple::new(i * 5)).collect();
    for t in &whitelisted {
        engine.decide_rcpt(&t.request());
    }
    let early: Vec<Tuple> = (size..size + sample).map(Tuple::new).collect();
    for t in &early {
        engine.decide_rcpt(&t.request());
    }
    // Whitelisted by the first pass; the early set is in its delay.
    assert_eq!(
        engine.decide_rcpt(&whitelisted[0].request()).reason,
        Reason::Whitelisted
    );
    assert_eq!(
        engine.decide_rcpt(&early[0].request()).reason,
        Reason::Early
    );
    Fixture {
        engine: Rc::new(RefCell::new(engine)),
        clock,
        whitelisted,
        early,
        next_new: size * 10,
    }
}

fn decide_rcpt(c: &mut Criterion) {
    let mut f = fixture();
    let mut g = c.benchmark_group("decide_rcpt");
    g.throughput(Throughput::Elements(1));
    let engine = f.engine.clone();
    g.bench_function("new", |b| {
        b.iter_batched(
            || {
                f.next_new += 1;
                Tuple::new(f.next_new)
            },
            |t| {
                let d = engine.borrow_mut().decide_rcpt(&t.request());
                debug_assert_eq!(d.reason, Reason::New);
                black_box(d)
            },
            BatchSize::SmallInput,
        )
    });
    for (name, set, want) in [
        ("whitelisted", &f.whitelisted, Reason::Whitelisted),
        ("early", &f.early, Reason::Early),
    ] {
        let mut i = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                let t = &set[i % set.len()];
                i += 1;
                let d = engine.borrow_mut().decide_rcpt(&t.request());
                debug_assert_eq!(d.reason, want);
                black_box(d)
            })
        });
    }
    let mut listed = Tuple::new(1);
    listed.0.recipient = format!("<postmaster@{LIST_DOMAIN}>");
    g.bench_function("list_accept", |b| {
        b.iter(|| {
            let d = engine.borrow_mut().decide_rcpt(&listed.request());
            debug_assert_eq!(d.action, Action::Accept);
            black_box(d)
        })
    });
    g.finish();
    drop(f.clock);
}

/// MACRO (R stage, Postfix's pairs) + RCPT for `rcpt`, as Postfix writes them.
fn rcpt_bytes(out: &mut Vec<u8>, rcpt: &str) {
    out.clear();
    let bare = rcpt.trim_matches(['<', '>']);
    let host = bare.rsplit_once('@').map_or("", |(_, h)| h);
    let mut raw = Vec::new();
    encode_macro_pairs(
        &mut raw,
        &[
            (b"{rcpt_addr}", bare.as_bytes()),
            (b"{rcpt_host}", host.as_bytes()),
            (b"{rcpt_mailer}", b"smtp"),
        ],
    );
    Command::Macro {
        stage: Some(b'R'),
        pairs: MacroPairs::new(&raw),
    }
    .encode(out);
    let mut args = Vec::new();
    StrArray::encode(&mut args, &[rcpt.as_bytes()]);
    Command::Rcpt(StrArray::new(&args).unwrap()).encode(out);
}

/// The whole user-space path of one RCPT: framing, decoding, macros,
/// policy (engine + decision log formatting when enabled; no subscriber
/// here, so no log line), reply encoding.
fn session_rcpt(c: &mut Criterion) {
    let mut f = fixture();
    let factory = MilterFactory::new(Pipeline::new(f.engine.clone()), Timeouts::default());
    let mut g = c.benchmark_group("session_rcpt");
    g.throughput(Throughput::Elements(1));
    for (name, tuple) in [("whitelisted", &f.whitelisted[0]), ("new", &f.early[0])] {
        let mut core = SessionCore::new(
            factory.new_decider(1),
            &SessionOptions::default(),
            1,
            "bench",
        );
        let mut setup = Vec::new();
        Command::OptNeg {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1f_ffff,
        }
        .encode(&mut setup);
        let addr = tuple.0.addr.to_string();
        Command::Connect {
            hostname: tuple.0.name.as_bytes(),
            family: if tuple.0.addr.is_ipv4() {
                Family::Inet4
            } else {
                Family::Inet6
            },
            port: 25,
            address: addr.as_bytes(),
        }
        .encode(&mut setup);
        let mut args = Vec::new();
        StrArray::encode(&mut args, &[tuple.0.sender.as_bytes()]);
        Command::Mail(StrArray::new(&args).unwrap()).encode(&mut setup);
        let mut out = Vec::new();
        core.run_bytes(&setup, &mut out);
        let mut input = Vec::new();
        let mut next = f.next_new;
        if name == "whitelisted" {
            rcpt_bytes(&mut input, &tuple.0.recipient);
            out.clear();
            core.run_bytes(&input, &mut out);
            assert_eq!(split_frame(&out).unwrap().unwrap().0.cmd, b'c', "CONTINUE");
            g.bench_function(name, |b| {
                b.iter(|| {
                    out.clear();
                    core.run_bytes(black_box(&input), &mut out);
                    debug_assert_eq!(split_frame(&out).unwrap().unwrap().0.cmd, b'c');
                    black_box(out.len())
                })
            });
        } else {
            rcpt_bytes(&mut input, "<first-new@example.test>");
            out.clear();
            core.run_bytes(&input, &mut out);
            assert_eq!(split_frame(&out).unwrap().unwrap().0.cmd, b'y', "REPLYCODE");
            // A new recipient each time (same client and sender): a new tuple.
            g.bench_function(name, |b| {
                b.iter_batched(
                    || {
                        next += 1;
                        let mut bytes = Vec::new();
                        rcpt_bytes(&mut bytes, &format!("<u{next}@example.test>"));
                        bytes
                    },
                    |bytes| {
                        out.clear();
                        core.run_bytes(&bytes, &mut out);
                        debug_assert_eq!(split_frame(&out).unwrap().unwrap().0.cmd, b'y');
                        black_box(out.len())
                    },
                    BatchSize::SmallInput,
                )
            });
            f.next_new = next;
        }
    }
    g.finish();
}

criterion_group!(benches, decide_rcpt, session_rcpt);
criterion_main!(benches);
