//! `/regex/` list entries: one [`RegexSet`] per list, so a look-up scans
//! the text once whatever the number of expressions.
//!
//! The `regex` crate matches in time linear in the text (no backtracking:
//! `(a+)+$` is harmless), and its compiled size is bounded here, so a
//! pathological expression is refused when the list is loaded rather than
//! costing memory or time per decision. Matching is case-insensitive and
//! unanchored, as in postgrey. Perl features without a linear-time
//! implementation (look-around, back-references) are refused at load.

use std::fmt;
use std::sync::Arc;

use regex::bytes::{RegexBuilder, RegexSet, RegexSetBuilder};

use super::list_action::ListAction;

/// Compiled size allowed for one expression. Real entries compile to a few
/// KiB; `(\w{100}){100}` would need hundreds of MiB.
pub const PATTERN_SIZE_LIMIT: usize = 256 << 10;
/// Compiled size allowed for all the expressions of one list together.
pub const SET_SIZE_LIMIT: usize = 32 << 20;
/// Lazy-DFA cache per list; beyond it the crate falls back to slower, still
/// linear, matching instead of growing.
const DFA_CACHE_LIMIT: usize = 4 << 20;
/// Deepest nesting of groups and repetitions.
const NEST_LIMIT: u32 = 64;

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    /// Which of the entries given to [`Patterns::new`].
    pub index: usize,
    /// Byte offset inside that expression, when the error has one.
    pub offset: Option<usize>,
    pub message: String,
}

#[derive(Clone, Default)]
pub struct Patterns {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    set: RegexSet,
    entries: Vec<(String, ListAction)>,
}

impl Patterns {
    /// Checks each expression on its own (for a precise error), then
    /// compiles them together.
    pub fn new(entries: Vec<(String, ListAction)>) -> Result<Patterns, PatternError> {
        if entries.is_empty() {
            return Ok(Patterns::default());
        }
        for (index, (source, _)) in entries.iter().enumerate() {
            check(source).map_err(|(offset, message)| PatternError {
                index,
                offset,
                message,
            })?;
        }
        let set = RegexSetBuilder::new(entries.iter().map(|(s, _)| s.as_str()))
            .case_insensitive(true)
            .size_limit(SET_SIZE_LIMIT)
            .dfa_size_limit(DFA_CACHE_LIMIT)
            .nest_limit(NEST_LIMIT)
            .build()
            .map_err(|e| PatternError {
                index: 0,
                offset: None,
                message: format!(
                    "the {} regular expressions of this list together are too large: {}",
                    entries.len(),
                    one_line(&e.to_string())
                ),
            })?;
        Ok(Patterns {
            inner: Some(Arc::new(Inner { set, entries })),
        })
    }

    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.entries.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The action of the matching expression; when several match, the most
    /// restrictive (reject, then greylist, then accept), and the first of
    /// those.
    pub fn find(&self, text: &[u8]) -> Option<ListAction> {
        let inner = self.inner.as_ref()?;
        if !inner.set.is_match(text) {
            return None;
        }
        let mut best: Option<ListAction> = None;
        for i in inner.set.matches(text).iter() {
            if let Some((_, a)) = inner.entries.get(i)
                && best.is_none_or(|b| rank(*a) > rank(b))
            {
                best = Some(*a);
            }
        }
        best
    }

    /// Approximate bytes held (sources and actions; the compiled automaton
    /// is bounded by [`SET_SIZE_LIMIT`]).
    pub fn heap_bytes(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| {
            i.entries
                .iter()
                .map(|(s, _)| s.capacity() + std::mem::size_of::<(String, ListAction)>())
                .sum()
        })
    }
}

/// Which of two actions for the same key wins: the more restrictive.
pub fn rank(a: ListAction) -> u8 {
    match a {
        ListAction::Accept | ListAction::Allow => 0,
        ListAction::Greylist { .. } => 1,
        ListAction::Reject => 2,
    }
}

fn check(source: &str) -> Result<(), (Option<usize>, String)> {
    regex_syntax::ast::parse::ParserBuilder::new()
        .nest_limit(NEST_LIMIT)
        .build()
        .parse(source)
        .map_err(|e| {
            (
                Some(e.span().start.offset),
                format!("invalid regular expression: {}", e.kind()),
            )
        })?;
    RegexBuilder::new(source)
        .case_insensitive(true)
        .size_limit(PATTERN_SIZE_LIMIT)
        .nest_limit(NEST_LIMIT)
        .build()
        .map(drop)
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => (
                None,
                format!(
                    "regular expression too large: it would compile to more than {limit} bytes"
                ),
            ),
            other => (
                None,
                format!(
                    "invalid regular expression: {}",
                    one_line(&other.to_string())
                ),
            ),
        })
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl PartialEq for Patterns {
    fn eq(&self, other: &Patterns) -> bool {
        match (&self.inner, &other.inner) {
            (None, None) => true,
            (Some(a), Some(b)) => a.entries == b.entries,
            _ => false,
        }
    }
}

impl fmt::Debug for Patterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sources: Vec<&str> = self
            .inner
            .iter()
            .flat_map(|i| i.entries.iter().map(|(s, _)| s.as_str()))
            .collect();
        f.debug_tuple("Patterns").field(&sources).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ListAction = ListAction::Accept;
    const R: ListAction = ListAction::Reject;

    #[test]
    fn case_insensitive_unanchored_and_most_restrictive_wins() {
        let p = Patterns::new(vec![
            (r"^mail[0-9]+\.example\.com$".into(), A),
            (r"bad".into(), R),
        ])
        .unwrap();
        assert_eq!(p.find(b"MAIL42.Example.COM"), Some(A));
        assert_eq!(p.find(b"mail42.bad.example.com"), Some(R));
        assert_eq!(p.find(b"mailx.example.com"), None);
        let p = Patterns::new(vec![(r"mail".into(), A), (r"mailbad".into(), R)]).unwrap();
        assert_eq!(p.find(b"mailbad"), Some(R));
        assert_eq!(Patterns::default().find(b"x"), None);
    }

    #[test]
    fn refused_expressions_say_where_and_why() {
        let e = Patterns::new(vec![("ok".into(), A), ("a(b".into(), A)]).unwrap_err();
        assert_eq!(e.index, 1);
        assert_eq!(e.offset, Some(1));
        assert!(e.message.contains("unclosed group"), "{e:?}");
        let e = Patterns::new(vec![(r"(\w{100}){100}".into(), A)]).unwrap_err();
        assert_eq!(e.offset, None);
        assert!(e.message.contains("too large"), "{e:?}");
        let e = Patterns::new(vec![(r"(?=x)".into(), A)]).unwrap_err();
        assert!(e.message.contains("look-around"), "{e:?}");
        let e = Patterns::new(vec![(r"(a)\1".into(), A)]).unwrap_err();
        assert!(e.message.contains("backreference"), "{e:?}");
    }

    #[test]
    fn nested_quantifiers_are_linear() {
        // Catastrophic for a backtracking engine; one pass here.
        let p = Patterns::new(vec![(r"^(a+)+$".into(), A)]).unwrap();
        let mut text = vec![b'a'; 100_000];
        text.push(b'!');
        assert_eq!(p.find(&text), None);
    }
}
