//! Macro values the MTA sent, per stage (docs/milter.md, "Macros").
//!
//! A MACRO packet replaces its stage's set; an event discards the macros of
//! all later stages; a look-up runs from the event's stage back to CONNECT.

use super::codec::{MacroPairs, cmd};
use super::decision::Macros;

/// Stages we keep, in protocol order. HEADER and BODY macros are not kept:
/// we never enable those events.
const STAGES: [u8; 7] = [
    cmd::CONNECT,
    cmd::HELO,
    cmd::MAIL,
    cmd::RCPT,
    cmd::DATA,
    cmd::EOH,
    cmd::BODYEOB,
];

/// Most bytes of name/value pairs kept per stage. Real macro sets are a few
/// hundred bytes; this bounds a connection's memory whatever the MTA sends.
pub const MAX_STAGE_BYTES: usize = 8192;

fn slot(stage: u8) -> Option<usize> {
    STAGES.iter().position(|&s| s == stage)
}

/// What [`MacroStore::store`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    All,
    /// The stage byte is not one we keep (`U`, `L`, `B`, garbage, none).
    UnknownStage,
    /// An odd number of strings or a missing final NUL: the complete pairs
    /// before the problem were kept.
    Malformed,
    /// More than [`MAX_STAGE_BYTES`]: the pairs that fit were kept.
    Truncated,
}

#[derive(Debug, Default)]
pub struct MacroStore {
    slots: [Vec<u8>; STAGES.len()],
}

impl MacroStore {
    pub fn new() -> MacroStore {
        MacroStore::default()
    }

    /// Replaces the set of `stage` with the well-formed pairs of `pairs`.
    pub fn store(&mut self, stage: Option<u8>, pairs: MacroPairs<'_>) -> Stored {
        let Some(buf) = stage.and_then(slot).and_then(|i| self.slots.get_mut(i)) else {
            return Stored::UnknownStage;
        };
        buf.clear();
        let well_formed = pairs.well_formed_len();
        let mut outcome = if well_formed == pairs.raw().len() {
            Stored::All
        } else {
            Stored::Malformed
        };
        let mut kept = 0;
        for (name, value) in pairs.iter() {
            let size = name.len() + value.len() + 2;
            if kept + size > MAX_STAGE_BYTES {
                outcome = Stored::Truncated;
                break;
            }
            kept += size;
        }
        buf.extend_from_slice(pairs.raw().get(..kept).unwrap_or_default());
        outcome
    }

    /// Forgets the macros of every stage after `event`'s.
    pub fn clear_after(&mut self, event: u8) {
        let from = slot(event).map_or(0, |i| i + 1);
        for buf in self.slots.iter_mut().skip(from) {
            buf.clear();
        }
    }

    pub fn clear_all(&mut self) {
        for buf in &mut self.slots {
            buf.clear();
        }
    }

    /// Look-ups for `event`: its own stage, then earlier ones.
    pub fn view(&self, event: u8) -> MacroView<'_> {
        MacroView {
            store: self,
            upto: slot(event).unwrap_or(0),
        }
    }
}

/// `{x}` and `x` name the same macro.
fn bare(name: &[u8]) -> &[u8] {
    name.strip_prefix(b"{")
        .and_then(|n| n.strip_suffix(b"}"))
        .unwrap_or(name)
}

#[derive(Clone, Copy)]
pub struct MacroView<'a> {
    store: &'a MacroStore,
    upto: usize,
}

impl Macros for MacroView<'_> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        let wanted = bare(name.as_bytes());
        self.store
            .slots
            .iter()
            .take(self.upto + 1)
            .rev()
            .find_map(|buf| {
                MacroPairs::new(buf)
                    .iter()
                    .find(|(n, _)| bare(n) == wanted)
                    .map(|(_, v)| v)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(raw: &[u8]) -> MacroPairs<'_> {
        MacroPairs::new(raw)
    }

    #[test]
    fn lookup_runs_back_to_connect_and_braces_do_not_matter() {
        let mut m = MacroStore::new();
        assert_eq!(
            m.store(Some(b'C'), pairs(b"j\0mx\0{daemon_name}\0d\0")),
            Stored::All
        );
        assert_eq!(
            m.store(Some(b'M'), pairs(b"{auth_authen}\0alice\0i\0Q1\0")),
            Stored::All
        );
        let at_rcpt = m.view(b'R');
        assert_eq!(at_rcpt.get("auth_authen"), Some(&b"alice"[..]));
        assert_eq!(at_rcpt.get("{j}"), Some(&b"mx"[..]));
        assert_eq!(at_rcpt.get("daemon_name"), Some(&b"d"[..]));
        assert_eq!(m.view(b'C').get("i"), None);
        m.store(Some(b'R'), pairs(b"i\0Q2\0"));
        assert_eq!(m.view(b'R').get("i"), Some(&b"Q2"[..]));
        assert_eq!(m.view(b'M').get("i"), Some(&b"Q1"[..]));
    }

    #[test]
    fn replace_and_clear_later_stages() {
        let mut m = MacroStore::new();
        m.store(Some(b'M'), pairs(b"i\0Q1\0"));
        m.store(Some(b'R'), pairs(b"{rcpt_addr}\0b\0"));
        m.store(Some(b'M'), pairs(b""));
        assert_eq!(m.view(b'R').get("i"), None);
        assert_eq!(m.view(b'R').get("rcpt_addr"), Some(&b"b"[..]));
        m.clear_after(b'M');
        assert_eq!(m.view(b'R').get("rcpt_addr"), None);
    }

    #[test]
    fn odd_packets() {
        let mut m = MacroStore::new();
        assert_eq!(m.store(Some(b'U'), pairs(b"a\0b\0")), Stored::UnknownStage);
        assert_eq!(m.store(None, pairs(b"")), Stored::UnknownStage);
        assert_eq!(m.store(Some(b'C'), pairs(b"a\0b\0c\0")), Stored::Malformed);
        assert_eq!(m.view(b'C').get("a"), Some(&b"b"[..]));
        assert_eq!(m.view(b'C').get("c"), None);
        assert_eq!(m.store(Some(b'C'), pairs(b"a\0b")), Stored::Malformed);
        assert_eq!(m.view(b'C').get("a"), None);
        let big = [b"n\0".as_slice(), &[b'v'; MAX_STAGE_BYTES], b"\0"].concat();
        let two = [b"a\0b\0".as_slice(), &big].concat();
        assert_eq!(m.store(Some(b'C'), pairs(&two)), Stored::Truncated);
        assert_eq!(m.view(b'C').get("a"), Some(&b"b"[..]));
        assert_eq!(m.view(b'C').get("n"), None);
    }
}
