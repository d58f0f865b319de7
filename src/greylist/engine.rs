//! The engine: settings, compiled lists, the tuple table, the client
//! auto-whitelist and the statistics, behind one value the daemon owns.
//!
//! # Where each rule decides
//!
//! The lists are consulted in the documented order — client IP, client
//! name, sender, sender domain, recipient, recipient domain, tuple table —
//! and the first list with a matching entry decides. Where the milter
//! protocol lets us, a decision that covers every recipient is given early:
//!
//! * CONNECT: no usable client address (local or unknown family) → accept;
//!   a `clients`/`client_names` **accept** → accept (the whole connection).
//! * MAIL: an authenticated transaction (`{auth_authen}` non-empty and
//!   `skip_authenticated`) → accept the message. Authentication beats the
//!   client lists' `reject` and `greylist` entries: an authenticated user on
//!   a listed network is a user, not that network's mail. Then, when no
//!   client list matched, a `senders`/`sender_domains` **accept** → accept:
//!   recipient lists come *after* sender lists, so such an entry decides for
//!   every recipient of the message.
//! * RCPT: everything else, per recipient, including every **reject**. A
//!   reject is given at RCPT, never at CONNECT or MAIL: the client gets our
//!   configured `550 5.7.1` text (a CONNECT reject would become Postfix's
//!   bare `554` greeting) and each refused recipient gets a log line.
//!
//! A `greylist` entry sends the recipient to the tuple table with the
//! entry's delay (or the configured one) and skips the auto-whitelist: the
//! administrator asked for greylisting explicitly.

use std::net::IpAddr;
use std::time::Duration;

use tracing::warn;

use super::awl::AutoWhitelist;
use super::clock::Clock;
use super::date::rfc5322;
use super::facts::DnsFacts;
use super::key::Secret;
use super::lists::{Allowed, ListName, Lists};
use super::settings::Settings;
use super::state::{self, StateError};
use super::stats::{Counters, DnsCounters, Interval, Snapshot};
use super::table::{Table, Timing, secs32};

mod admin;
mod counts;
pub use admin::{AdminWalk, Explaining, Explanation, SharedView, TableView, WALK_SLICE};
mod dns;
mod import;
pub use import::{ImportCounts, ImportEntry, Placed, PlacedNet};
mod pipeline;
mod shared;
mod snapshot;
pub use pipeline::{Classified, TableOutcome, TableQuery, Via};
pub use shared::{SharedQuery, SharedStep};

/// Work units (entries examined) per [`Engine::maintain`] call. Measured
/// by `examples/engine_memory.rs` with 800k of 1M tuples expiring at once
/// (every entry examined is removed, the worst case): mean 0.1 ms, p99
/// 0.2 ms per call on the 2-core build machine.
pub const MAINTAIN_BUDGET: usize = 2048;
/// Auto-whitelist records examined per call (their sweep never pauses).
const AWL_BUDGET: usize = 256;

/// One recipient to decide.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub client_addr: Option<IpAddr>,
    /// The host name as the MTA sent it (`[ip]` when unverified).
    pub client_name: &'a [u8],
    /// MAIL argument as sent.
    pub sender: &'a [u8],
    /// RCPT argument as sent.
    pub recipient: &'a [u8],
    pub authenticated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Greylist,
    /// Learning mode: recorded as [`Action::Greylist`] would be, but the
    /// recipient is let through.
    WouldGreylist,
    Pass,
    Accept,
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Greylist => "greylist",
            Action::WouldGreylist => "would-greylist",
            Action::Pass => "pass",
            Action::Accept => "accept",
            Action::Reject => "reject",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    New,
    Early,
    Retried,
    Whitelisted,
    AutoWhitelisted,
    List(ListName),
    /// A runtime allowance (`greymilter allow --network`,
    /// `--sender-domain`): `allow:network`, `allow:sender-domain`.
    Allowed(ListName),
    Authenticated,
    /// A loopback client (127.0.0.0/8, ::1): local software, not mail from
    /// the network. A list entry for it decides instead.
    Loopback,
    /// No client address: a local or unknown-family connection.
    Local,
    /// The table could not grow (out of memory): passed, fail open.
    Unstored,
    /// The client is in an allow zone.
    Dnswl,
    /// SPF passed and `spf = "skip"`.
    Spf,
    /// Selective greylisting: the client does not look suspicious.
    Selective,
}

impl Reason {
    /// As in the decision log: `new`, `list:clients`, …
    pub fn write_to(self, out: &mut String) {
        let list = match self {
            Reason::List(l) => Some(("list:", l.as_str())),
            Reason::Allowed(ListName::Clients) => Some(("allow:", "network")),
            Reason::Allowed(ListName::SenderDomains) => Some(("allow:", "sender-domain")),
            Reason::Allowed(l) => Some(("allow:", l.as_str())),
            _ => None,
        };
        if let Some((prefix, name)) = list {
            out.push_str(prefix);
            out.push_str(name);
            return;
        }
        out.push_str(match self {
            Reason::New => "new",
            Reason::Early => "early",
            Reason::Retried => "retried",
            Reason::Whitelisted => "whitelisted",
            Reason::AutoWhitelisted => "auto-whitelisted",
            Reason::Authenticated => "authenticated",
            Reason::Loopback => "loopback",
            Reason::Local => "local",
            Reason::Unstored => "unstored",
            Reason::Dnswl => "dnswl",
            Reason::Spf => "spf",
            Reason::Selective => "selective",
            // Written above.
            Reason::List(_) | Reason::Allowed(_) => return,
        });
    }
}

/// The decision for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub reason: Reason,
    /// Seconds since the tuple was first seen (0 for non-table decisions
    /// and for whitelisted tuples).
    pub delay: u64,
    /// Seconds until a retry can pass (greylist only).
    pub remaining: u64,
}

impl Decision {
    /// Accepted before RCPT (CONNECT or MAIL) for `reason`.
    pub fn accepted(reason: Reason) -> Decision {
        Decision::of(Action::Accept, reason)
    }

    fn of(action: Action, reason: Reason) -> Decision {
        Decision {
            action,
            reason,
            delay: 0,
            remaining: 0,
        }
    }
}

/// A message header the engine wants added (the `X-Greylist` trace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    pub name: &'static str,
    pub value: String,
}

/// A stored tuple as [`Engine::peek`] shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TupleInfo {
    pub first_seen: u64,
    /// Last use (whitelisted) or last attempt (pending).
    pub last: u64,
    pub whitelisted: bool,
}

/// What [`Engine::restore_state`] loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreSummary {
    pub pending: usize,
    pub whitelisted: usize,
    pub auto_whitelist_records: usize,
    /// Entries evicted because the state held more than `max_tuples`.
    pub evicted: u64,
    pub written_at: u64,
}

pub struct Engine {
    settings: Settings,
    lists: Lists,
    timing: Timing,
    clock: Box<dyn Clock>,
    secret: Secret,
    table: Table,
    awl: AutoWhitelist,
    counters: Counters,
    interval: Interval,
    start: u64,
    generation: u64,
    sender_buf: Vec<u8>,
    recipient_buf: Vec<u8>,
    /// RCPT decisions by action and reason (for the metrics).
    decisions: std::collections::HashMap<(Action, Reason), u64>,
    /// Cluster: whitelisted tuples last confirmed at or before this second
    /// are asked about again (an administrator changed the shared state).
    shared_fresh_after: u32,
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

fn timing_of(s: &Settings) -> Timing {
    Timing {
        delay: secs(s.delay),
        retry_window: secs(s.retry_window),
        lifetime: secs(s.whitelist_lifetime),
    }
}

/// Compiles the lists and drops their source entries from `settings`.
fn compile_lists(settings: &mut Settings) -> Lists {
    let spec = std::mem::take(&mut settings.lists);
    Lists::compile(&spec, settings.normalize_sender)
}

impl Engine {
    pub fn new(mut settings: Settings, clock: Box<dyn Clock>) -> Engine {
        let (secret, fallback) = Secret::random();
        if fallback {
            warn!("cannot read /dev/urandom: the tuple hashing key is derived from time and pid");
        }
        let now = clock.now();
        Engine {
            lists: compile_lists(&mut settings),
            timing: timing_of(&settings),
            table: Table::new(settings.max_tuples),
            settings,
            clock,
            secret,
            awl: AutoWhitelist::default(),
            counters: Counters::default(),
            interval: Interval::new(now),
            start: now,
            generation: 0,
            sender_buf: Vec::new(),
            recipient_buf: Vec::new(),
            decisions: std::collections::HashMap::new(),
            shared_fresh_after: 0,
        }
    }

    /// The settings in force. Their `lists` are empty: the engine keeps
    /// the lists compiled only (a large list file is not held twice).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Swaps in reloaded settings; the table and auto-whitelist are kept.
    /// A lower `max_tuples` is reached by eviction in [`Engine::maintain`];
    /// a prefix change makes old tuples unreachable (they expire normally).
    pub fn set_settings(&mut self, mut settings: Settings) {
        let lists = compile_lists(&mut settings);
        self.set_settings_compiled(settings, lists);
    }

    /// [`Engine::set_settings`] with the lists compiled beforehand (in
    /// slices, off the engine: `Lists::compile_paced` on
    /// `settings.lists`, which are dropped here).
    /// The runtime allowances are kept.
    pub fn set_settings_compiled(&mut self, mut settings: Settings, mut lists: Lists) {
        settings.lists = Default::default();
        lists.set_allowed(self.lists.take_allowed());
        self.lists = lists;
        self.timing = timing_of(&settings);
        self.table.set_max(settings.max_tuples);
        self.settings = settings;
    }

    /// The runtime allowances in force from now on (compiled apart from
    /// the lists: a change costs the allowances' compile only).
    pub fn set_allowed(&mut self, allowed: Allowed) {
        self.lists.set_allowed(allowed);
    }

    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Bumps whenever something a checkpoint saves has changed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    pub fn auto_whitelist(&self) -> &AutoWhitelist {
        &self.awl
    }

    /// The X-Greylist header for a message whose recipient waited
    /// `delayed` seconds before passing.
    pub fn greylist_header(&self, delayed: u64) -> HeaderField {
        HeaderField {
            name: "X-Greylist",
            value: format!(
                "delayed {delayed} seconds by greymilter-{}; {}",
                env!("CARGO_PKG_VERSION"),
                rfc5322(self.clock.now())
            ),
        }
    }

    /// Incremental housekeeping: closes the `Requests-Cu` interval, brings
    /// the table under a lowered `max_tuples`, and runs one bounded slice
    /// of the expiry sweeps. Returns true while a sweep pass is under way
    /// (call again soon), false when nothing is due until a later call.
    pub fn maintain(&mut self) -> bool {
        let now = self.clock.now();
        let cleanup = self.settings.cleanup_interval.as_secs();
        self.interval.roll(now, cleanup, self.counters.requests);
        let before = (self.table.flows(), self.awl.len());
        let mut budget = MAINTAIN_BUDGET;
        budget -= self.table.trim(now, &self.timing, budget).min(budget);
        let (_, more) = self.table.sweep(now, &self.timing, budget);
        self.awl
            .sweep(secs32(now), self.timing.lifetime, AWL_BUDGET);
        if before != (self.table.flows(), self.awl.len()) {
            self.generation += 1;
        }
        more || self.table.len() > self.table.max()
    }
}
