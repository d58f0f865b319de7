//! Reading a set of list files into list entries, all or nothing.
//!
//! Every file is read with [`crate::files::read_regular`] (a FIFO, a device
//! or a file over the size limit is refused without blocking), every line
//! must parse and every regular expression must compile within its size
//! limit; the first fault is returned with its file, line and column, and
//! nothing is returned with it. The caller swaps the result in whole, so
//! the running lists are never half replaced.

use std::io;
use std::path::PathBuf;

use super::parse::{Item, Kind, parse_line};
use crate::greylist::patterns::Patterns;
use crate::greylist::settings::{ListAction, ListSpec};
use crate::pace::Pacer;

/// One configured file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    pub kind: Kind,
    /// For lines without an action of their own.
    pub action: ListAction,
    /// A missing optional file is skipped (postgrey's `.local` files).
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: String,
    /// 1-based; 0 when the error concerns the whole file.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// What was loaded, per file, for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub entries: usize,
    pub files: usize,
    pub missing_optional: Vec<PathBuf>,
}

/// A regular expression waiting for its set, with where it came from.
struct Pending {
    source: String,
    action: ListAction,
    file: usize,
    line: usize,
    column: usize,
}

/// Reads every file. `max_bytes` bounds each file.
pub fn load(sources: &[Source], max_bytes: u64) -> Result<(ListSpec, Summary), LoadError> {
    crate::pace::run_now(load_paced(sources, max_bytes, &mut Pacer::unpaced()))
}

/// [`load`] with a pause every slice of lines (a file is read in chunks
/// of a step each).
pub async fn load_paced(
    sources: &[Source],
    max_bytes: u64,
    pacer: &mut Pacer<'_>,
) -> Result<(ListSpec, Summary), LoadError> {
    let mut spec = ListSpec::default();
    let mut summary = Summary::default();
    let mut regexes: [Vec<Pending>; 3] = Default::default();
    for (file_index, src) in sources.iter().enumerate() {
        let name = src.path.display().to_string();
        let whole = |message: String| LoadError {
            file: name.clone(),
            line: 0,
            column: 0,
            message,
        };
        let bytes = match crate::files::read_regular_paced(&src.path, max_bytes, pacer).await {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound && src.optional => {
                summary.missing_optional.push(src.path.clone());
                continue;
            }
            Err(e) => return Err(whole(format!("cannot read list file: {e}"))),
        };
        summary.files += 1;
        if src.kind == Kind::Clients {
            // One allocation, faulted in as it fills: doubling a vector of
            // 65,536 networks copies 3 MiB in one step of the loop.
            let lines = bytes.iter().filter(|&&b| b == b'\n').count();
            spec.clients.reserve(lines.saturating_add(1));
        }
        for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            pacer.step().await;
            let at = |column: usize, message: String| LoadError {
                file: name.clone(),
                line: i + 1,
                column,
                message,
            };
            let text = std::str::from_utf8(raw).map_err(|e| {
                let valid = raw.get(..e.valid_up_to()).unwrap_or_default();
                let col = String::from_utf8_lossy(valid).chars().count() + 1;
                at(col, "invalid UTF-8".to_string())
            })?;
            let Some(line) = parse_line(src.kind, text).map_err(|e| at(e.column, e.message))?
            else {
                continue;
            };
            summary.entries += 1;
            let action = line.action.unwrap_or(src.action);
            add(&mut spec, src.kind, line.item, action, |source, column| {
                if let Some(list) = regexes.get_mut(kind_index(src.kind)) {
                    list.push(Pending {
                        source,
                        action,
                        file: file_index,
                        line: i + 1,
                        column,
                    });
                }
            });
        }
    }
    // What the name lines of client files left unused.
    spec.clients.shrink_to_fit();
    let [clients, senders, recipients] = regexes;
    spec.client_name_patterns = compile(clients, sources, pacer).await?;
    spec.sender_patterns = compile(senders, sources, pacer).await?;
    spec.recipient_patterns = compile(recipients, sources, pacer).await?;
    Ok((spec, summary))
}

fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Clients => 0,
        Kind::Senders => 1,
        Kind::Recipients => 2,
    }
}

fn add(
    spec: &mut ListSpec,
    kind: Kind,
    item: Item,
    action: ListAction,
    mut regex: impl FnMut(String, usize),
) {
    let senders = kind == Kind::Senders;
    match item {
        Item::Net(net) => spec.clients.push((net, action)),
        Item::Name {
            name,
            subdomains_only,
        } => {
            // postgrey's name matches itself and its subdomains.
            spec.client_names.push((format!(".{name}"), action));
            if !subdomains_only {
                spec.client_names.push((name, action));
            }
        }
        Item::Address(a) if senders => spec.senders.push((a, action)),
        Item::Address(a) => spec.recipients.push((a, action)),
        Item::Local(l) if senders => spec.sender_locals.push((l, action)),
        Item::Local(l) => spec.recipient_locals.push((l, action)),
        Item::Domain(d) if senders => spec.sender_domains.push((d, action)),
        Item::Domain(d) => spec.recipient_domains.push((d, action)),
        Item::Regex { source, column } => regex(source, column),
    }
}

/// The regular expressions of one kind of list, compiled in slices
/// ([`Patterns::new_paced`]).
async fn compile(
    pending: Vec<Pending>,
    sources: &[Source],
    pacer: &mut Pacer<'_>,
) -> Result<Patterns, LoadError> {
    let entries = pending
        .iter()
        .map(|p| (p.source.clone(), p.action))
        .collect();
    Patterns::new_paced(entries, pacer).await.map_err(|e| {
        let p = pending.get(e.index);
        let column = p.map_or(0, |p| {
            p.column
                + e.offset
                    .and_then(|o| p.source.get(..o))
                    .map_or(0, |s| s.chars().count())
        });
        LoadError {
            file: p
                .and_then(|p| sources.get(p.file))
                .map_or_else(String::new, |s| s.path.display().to_string()),
            line: p.map_or(0, |p| p.line),
            column,
            message: e.message,
        }
    })
}
