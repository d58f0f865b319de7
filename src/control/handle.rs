//! Executes control commands against the engine and the runtime
//! allowances, in the main loop (`stats` and `reload` need the daemon and
//! are answered there). Every edit is logged.

use std::fmt::Write as _;
use std::time::Duration;

use super::allows::{Allow, Allows};
use super::protocol::{Command, Tuple};
use crate::greylist::date::rfc3339;
use crate::greylist::settings::{ListAction, Mode};
use crate::greylist::{Engine, Explanation};

/// The answer sent back: `ok` + text, or `error: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub ok: bool,
    pub text: String,
}

impl Reply {
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply {
            ok: true,
            text: text.into(),
        }
    }

    pub fn error(message: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            text: message.into(),
        }
    }

    /// The bytes on the wire.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = String::with_capacity(self.text.len() + 16);
        if self.ok {
            out.push_str("ok\n");
            out.push_str(&self.text);
            if !self.text.is_empty() && !self.text.ends_with('\n') {
                out.push('\n');
            }
        } else {
            let _ = writeln!(out, "error: {}", self.text.replace('\n', " "));
        }
        out.into_bytes()
    }
}

/// What `execute` needs besides the engine.
pub struct Context<'a> {
    pub engine: &'a mut Engine,
    pub allows: &'a mut Allows,
    /// Who asked (peer uid), for the log.
    pub uid: u32,
    /// What a walk of the table in slices already removed for this
    /// command (`forget NETWORK`, `flush`): tuples, records.
    pub walked: Option<(u64, u64)>,
}

/// Runs an engine-level command. `check`, `stats` and `reload` answer an
/// error here: the daemon handles them (`check` in `check.rs`).
pub fn execute(command: &Command, cx: Context<'_>) -> Reply {
    let uid = cx.uid;
    let reply = run(command, cx);
    if command.is_edit() {
        let first = reply.text.lines().next().unwrap_or_default();
        if reply.ok {
            tracing::info!(uid, "control: {}: {first}", command.to_line());
        } else {
            tracing::warn!(uid, "control: {}: refused: {first}", command.to_line());
        }
    }
    reply
}

fn run(command: &Command, cx: Context<'_>) -> Reply {
    let Context {
        engine,
        allows,
        walked,
        ..
    } = cx;
    let now = engine.now();
    let until = |d: &Duration| now.saturating_add(d.as_secs());
    match command {
        Command::AllowTuple { tuple, duration } => {
            let Tuple { client, from, to } = tuple;
            match engine.allow_tuple(*client, from.as_bytes(), to.as_bytes(), *duration) {
                Some(until) => Reply::ok(format!("tuple whitelisted until {}", rfc3339(until))),
                None => Reply::error("cannot store the tuple (out of memory)"),
            }
        }
        Command::AllowNetwork { net, duration } => edit_allows(
            engine,
            allows,
            |a| a.add(Allow::Network(*net), until(duration)),
            format!("network {net} allowed until {}", rfc3339(until(duration))),
        ),
        Command::AllowSenderDomain { domain, duration } => edit_allows(
            engine,
            allows,
            |a| a.add(Allow::SenderDomain(domain.clone()), until(duration)),
            format!(
                "sender domain {domain} allowed until {}",
                rfc3339(until(duration))
            ),
        ),
        Command::ForgetTuple(Tuple { client, from, to }) => {
            if engine.forget_tuple(*client, from.as_bytes(), to.as_bytes()) {
                Reply::ok("tuple forgotten")
            } else {
                Reply::ok("no such tuple")
            }
        }
        Command::ForgetNetwork(net) => {
            // Too wide to walk its tuples, a network can still lose the
            // allowance `allow` gave it: forget always undoes allow.
            let result = match walked {
                Some(done) => Ok(done),
                None => engine.forget_network(*net),
            };
            let text = match result {
                Ok((tuples, records)) => format!(
                    "{tuples} tuple(s) and {records} auto-whitelist record(s) of {net} forgotten"
                ),
                Err(e)
                    if allows
                        .entries()
                        .iter()
                        .any(|(a, _)| *a == Allow::Network(*net)) =>
                {
                    format!("tuples not forgotten: {e}")
                }
                Err(e) => return Reply::error(e),
            };
            if allows.remove(&Allow::Network(*net)) {
                edit_allows(engine, allows, |_| Ok(()), text + "; allowance removed")
            } else {
                Reply::ok(text)
            }
        }
        Command::ForgetSenderDomain(domain) => {
            if allows.remove(&Allow::SenderDomain(domain.clone())) {
                edit_allows(engine, allows, |_| Ok(()), "allowance removed".into())
            } else {
                Reply::ok("no allowance for that sender domain")
            }
        }
        Command::FlushPending => Reply::ok(format!(
            "{} pending tuple(s) flushed",
            walked.map_or_else(|| engine.flush_pending(), |(tuples, _)| tuples)
        )),
        Command::Check { .. } | Command::Stats | Command::Reload => {
            Reply::error("handled by the daemon")
        }
        Command::Import(entries) => Reply::ok(super::import::answer(&engine.import(entries))),
        Command::AdoptSettings => {
            Reply::error("this host has no [cluster] section: there are no shared settings")
        }
    }
}

/// Changes the allowances, puts them in force in the engine and saves
/// them. A failed save keeps the change in memory and says so.
fn edit_allows(
    engine: &mut Engine,
    allows: &mut Allows,
    change: impl FnOnce(&mut Allows) -> Result<(), String>,
    done: String,
) -> Reply {
    if let Err(e) = change(allows) {
        return Reply::error(e);
    }
    engine.set_allowed(allows.compiled());
    match allows.save() {
        Ok(()) => Reply::ok(done),
        Err(e) => {
            tracing::error!("{e}");
            Reply::ok(format!("{done}\nwarning: in force, but not saved: {e}"))
        }
    }
}

/// The `check` answer.
pub fn describe(x: &Explanation, engine: &Engine) -> String {
    let d = &x.decision;
    let mut out = String::new();
    let mut reason = String::new();
    d.reason.write_to(&mut reason);
    let _ = writeln!(out, "action: {}", d.action.as_str());
    let _ = writeln!(out, "reason: {reason}");
    let mode = match engine.settings().mode {
        Mode::Enforce => "enforce",
        Mode::Learn => "learn",
    };
    let _ = writeln!(out, "mode: {mode}");
    match x.list {
        Some((list, action)) => {
            let action = match action {
                ListAction::Accept => "accept".to_string(),
                ListAction::Allow => "accept (runtime allowance)".to_string(),
                ListAction::Reject => "reject".to_string(),
                ListAction::Greylist { delay: None } => "greylist".to_string(),
                ListAction::Greylist { delay: Some(d) } => format!("greylist {}s", d.as_secs()),
            };
            let _ = writeln!(out, "list: {} {action}", list.as_str());
        }
        None => out.push_str("list: none\n"),
    }
    match x.tuple {
        Some(t) => {
            let _ = writeln!(
                out,
                "tuple: {} first-seen={} last={}",
                if t.whitelisted {
                    "whitelisted"
                } else {
                    "pending"
                },
                rfc3339(t.first_seen),
                rfc3339(t.last)
            );
        }
        None => out.push_str("tuple: none\n"),
    }
    let _ = writeln!(out, "waited: {}", d.delay);
    let _ = writeln!(out, "remaining: {}", d.remaining);
    let _ = writeln!(
        out,
        "auto-whitelisted: {}",
        if x.auto_whitelisted { "yes" } else { "no" }
    );
    out.push_str("recorded: nothing\n");
    out
}
