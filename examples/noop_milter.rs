//! The baseline for the milter benchmarks: our own codec, session and
//! server, with a decider that answers CONTINUE to everything. What it
//! sustains is the protocol path's limit on a machine; greymilter's figures
//! are compared with it on the same load (BENCHMARKS.md).
//!
//! `cargo run --release --example noop_milter -- [SPEC] [MODE]`
//! (default `inet:127.0.0.1:10031`, `rcpt-macros`). Runs until killed.
//! MODE picks how much of the conversation it asks for:
//! * `rcpt-macros`: as greymilter without DNS checks: CONNECT and MAIL
//!   skipped, the envelope in macros at RCPT;
//! * `no-reply`: as greymilter with DNS checks: CONNECT and MAIL sent
//!   without waiting for a reply (NR_CONN, NR_MAIL);
//! * `full`: CONNECT and MAIL answered too (greymilter before issue 15);
//! * `eom-only`: the protocol's floor.

use std::rc::Rc;
use std::time::Duration;

use greymilter::milter::decision::{
    Client, Conversation, Decided, Decider, DeciderFactory, Header, Macros, NeverWaits,
    SessionOptions, Verdict,
};
use greymilter::milter::listener::{ListenSpec, Listener, UnixSocketOptions};
use greymilter::milter::server::{Limits, serve};

struct Noop;

impl Decider for Noop {
    type Answer = Verdict;
    type Wait = NeverWaits;
    fn connect(&mut self, _client: &Client<'_>, _macros: &dyn Macros) -> Verdict {
        Verdict::Continue
    }
    fn mail(&mut self, _sender: &[u8], _macros: &dyn Macros) -> Verdict {
        Verdict::Continue
    }
    fn rcpt(&mut self, _recipient: &[u8], _macros: &dyn Macros) -> Decided<NeverWaits> {
        Decided::Now(Verdict::Continue)
    }
    fn rcpt_answered(&mut self, answer: Verdict) -> Verdict {
        answer
    }
    fn eom(&mut self, _macros: &dyn Macros) -> Option<Header> {
        None
    }
    fn end_transaction(&mut self) {}
}

struct NoopFactory(Conversation, bool);

impl DeciderFactory for NoopFactory {
    type Decider = Noop;
    fn new_decider(&self, _conn_id: u64) -> Noop {
        Noop
    }
    fn options(&self) -> SessionOptions {
        SessionOptions {
            conversation: self.0,
            envelope_events: self.1,
            ..SessionOptions::default()
        }
    }
}

fn main() -> Result<(), String> {
    let spec_text = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "inet:127.0.0.1:10031".to_string());
    let spec: ListenSpec = spec_text.parse()?;
    let (conversation, envelope_events) = match std::env::args().nth(2).as_deref() {
        None | Some("rcpt-macros") => (Conversation::Lean, false),
        Some("no-reply") => (Conversation::Lean, true),
        Some("full") => (Conversation::Full, true),
        Some("eom-only") => (Conversation::EomOnly, true),
        Some(other) => return Err(format!("unknown mode {other:?}")),
    };
    let listener =
        Listener::bind(&spec, &UnixSocketOptions::default()).map_err(|e| e.to_string())?;
    println!(
        "noop_milter listening on {} pid {}",
        listener.local_addr(),
        std::process::id()
    );
    // Same runtime shape as the daemon: one thread, a LocalSet.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        serve(
            &listener,
            Rc::new(NoopFactory(conversation, envelope_events)),
            Limits::default(),
            std::future::pending::<()>(),
            Duration::from_secs(1),
        )
        .await
    });
    Ok(())
}
