//! Imported entries streamed to a running daemon through its control
//! socket (`control::import`), in batches of [`MAX_BATCH`]: the daemon
//! keys them with its own secret and normalisation and merges each batch
//! in one step of its main loop, so mail keeps being served between two.

use std::path::Path;
use std::time::Duration;

use super::keyed::Plan;
use crate::control::client::exchange;
use crate::control::import::{MAX_BATCH, MAX_ENTRY_LINE, entry_line, parse_answer};
use crate::greylist::engine::{ImportCounts, ImportEntry};

/// One batch's exchange (the daemon's own deadline is 5 s).
const TIMEOUT: Duration = Duration::from_secs(6);

/// What the daemon stored, and entries too long to send.
#[derive(Debug, Default)]
pub struct Sent {
    pub counts: ImportCounts,
    pub too_long: u64,
}

/// Sends `plan` to the daemon at `socket`. An error says how much was
/// imported before it (importing again merges: nothing is counted twice
/// in the table).
pub fn send(socket: &Path, plan: &Plan) -> Result<Sent, String> {
    let mut sent = Sent::default();
    let entries = plan
        .tuples
        .iter()
        .cloned()
        .map(ImportEntry::Tuple)
        .chain(plan.networks.iter().copied().map(ImportEntry::Network));
    let mut lines: Vec<String> = Vec::with_capacity(MAX_BATCH);
    let flush = |lines: &mut Vec<String>, sent: &mut Sent| -> Result<(), String> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut text = format!("import entries={}\n", lines.len());
        for l in lines.drain(..) {
            text.push_str(&l);
            text.push('\n');
        }
        let reply = exchange(socket, &text, TIMEOUT)?;
        let done = || {
            let c = &sent.counts;
            c.new_white + c.new_pending + c.new_networks + c.known
        };
        if !reply.ok {
            return Err(format!(
                "the daemon refused a batch: {} ({} entries imported before it)",
                reply.text,
                done()
            ));
        }
        let counts = parse_answer(&reply.text).ok_or_else(|| {
            format!(
                "unexpected answer from the daemon: {:?}",
                reply.text.chars().take(200).collect::<String>()
            )
        })?;
        sent.counts.add(&counts);
        Ok(())
    };
    for e in entries {
        let line = entry_line(&e);
        if line.len() > MAX_ENTRY_LINE {
            sent.too_long += 1;
            continue;
        }
        lines.push(line);
        if lines.len() == MAX_BATCH {
            flush(&mut lines, &mut sent)?;
        }
    }
    flush(&mut lines, &mut sent)?;
    Ok(sent)
}
