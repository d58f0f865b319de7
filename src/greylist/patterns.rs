//! `/regex/` list entries: a few [`RegexSet`]s per list, so a look-up
//! scans the text once per set whatever the number of expressions.
//!
//! The `regex` crate matches in time linear in the text (no backtracking:
//! `(a+)+$` is harmless), and its compiled size is bounded here, so a
//! pathological expression is refused when the list is loaded rather than
//! costing memory or time per decision. Matching is case-insensitive and
//! unanchored, as in postgrey. Perl features without a linear-time
//! implementation (look-around, back-references) are refused at load.
//!
//! Compiling is loop work at a reload: each expression is checked (and
//! compiled) on its own, one slice of the [`Pacer`] at most, and the sets
//! are cut so that each compiles within about the pacer's budget. Start-up
//! and `check-config` build one set. The worst single expression is
//! bounded by [`MAX_SOURCE`] and [`PATTERN_SIZE_LIMIT`] (about 2 ms to
//! compile, or to refuse, on the reference machine: BENCHMARKS.md).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::bytes::{RegexBuilder, RegexSet, RegexSetBuilder};

use super::list_action::ListAction;
use crate::pace::Pacer;

/// Compiled size allowed for one expression. Real entries compile to a few
/// KiB; `(\w{100}){100}` would need hundreds of MiB.
pub const PATTERN_SIZE_LIMIT: usize = 256 << 10;
/// Longest expression, in bytes: postgrey's longest is under 100; a longer
/// one costs parsing time before the size limit can refuse it.
pub const MAX_SOURCE: usize = 1024;
/// Compiled size allowed for the expressions of one set together.
pub const SET_SIZE_LIMIT: usize = 32 << 20;
/// Lazy-DFA cache per set; beyond it the crate falls back to slower, still
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
    /// Consecutive runs of `entries`: (index of the run's first entry, its
    /// set).
    sets: Vec<(usize, RegexSet)>,
    entries: Vec<(String, ListAction)>,
}

impl Patterns {
    /// Checks each expression on its own (for a precise error), then
    /// compiles them together, in one go.
    pub fn new(entries: Vec<(String, ListAction)>) -> Result<Patterns, PatternError> {
        crate::pace::run_now(Patterns::new_paced(entries, &mut Pacer::unpaced()))
    }

    /// [`Patterns::new`] in slices of `pacer`: one step per expression
    /// checked, one per set; a set gathers the expressions whose checks
    /// took the pacer's budget together (one set when it has none).
    pub async fn new_paced(
        entries: Vec<(String, ListAction)>,
        pacer: &mut Pacer<'_>,
    ) -> Result<Patterns, PatternError> {
        if entries.is_empty() {
            return Ok(Patterns::default());
        }
        let budget = pacer.budget();
        let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
        let mut first = 0;
        let mut spent = Duration::ZERO;
        for (index, (source, _)) in entries.iter().enumerate() {
            if budget.is_some_and(|b| index > first && spent >= b) {
                runs.push(first..index);
                first = index;
                spent = Duration::ZERO;
            }
            let started = Instant::now();
            check(source).map_err(|(offset, message)| PatternError {
                index,
                offset,
                message,
            })?;
            spent += started.elapsed();
            pacer.step_costly().await;
        }
        runs.push(first..entries.len());
        let mut sets = Vec::with_capacity(runs.len());
        for run in runs {
            let set = build_set(entries.get(run.clone()).unwrap_or_default(), run.start)?;
            sets.push((run.start, set));
            pacer.step_costly().await;
        }
        Ok(Patterns {
            inner: Some(Arc::new(Inner { sets, entries })),
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
        let mut best: Option<ListAction> = None;
        for (first, set) in &inner.sets {
            if !set.is_match(text) {
                continue;
            }
            for i in set.matches(text).iter() {
                if let Some((_, a)) = inner.entries.get(first + i)
                    && best.is_none_or(|b| rank(*a) > rank(b))
                {
                    best = Some(*a);
                }
            }
        }
        best
    }

    /// Approximate bytes held (sources and actions; each compiled automaton
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

/// One set of `entries` (the first of them at `first` in the list).
fn build_set(entries: &[(String, ListAction)], first: usize) -> Result<RegexSet, PatternError> {
    RegexSetBuilder::new(entries.iter().map(|(s, _)| s.as_str()))
        .case_insensitive(true)
        .size_limit(SET_SIZE_LIMIT)
        .dfa_size_limit(DFA_CACHE_LIMIT)
        .nest_limit(NEST_LIMIT)
        .build()
        .map_err(|e| PatternError {
            index: first,
            offset: None,
            message: format!(
                "the {} regular expressions of this list together are too large: {}",
                entries.len(),
                one_line(&e.to_string())
            ),
        })
}

fn check(source: &str) -> Result<(), (Option<usize>, String)> {
    if source.len() > MAX_SOURCE {
        return Err((
            None,
            format!(
                "regular expression too long: {} bytes, at most {MAX_SOURCE}",
                source.len()
            ),
        ));
    }
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

    /// Paced by a counting pacer, each expression is checked in a slice of
    /// its own and gets a set of its own; the matches are those of one set.
    #[test]
    fn paced_compilation_gives_one_set_per_slice_and_the_same_matches() {
        let entries: Vec<(String, ListAction)> = vec![
            (r"^mail[0-9]+\.example\.com$".into(), A),
            (r"bad".into(), R),
            (r"mail".into(), A),
        ];
        let mut pacer = Pacer::new(1000, || std::future::ready(()));
        let paced = crate::pace::run_now(Patterns::new_paced(entries.clone(), &mut pacer)).unwrap();
        assert_eq!(pacer.pauses(), 6);
        let sets = |p: &Patterns| p.inner.as_ref().map_or(0, |i| i.sets.len());
        let whole = Patterns::new(entries).unwrap();
        assert_eq!((sets(&paced), sets(&whole)), (3, 1));
        for text in ["MAIL42.Example.COM", "mail42.bad.example", "mailx", "x"] {
            assert_eq!(
                paced.find(text.as_bytes()),
                whole.find(text.as_bytes()),
                "{text}"
            );
        }
        assert_eq!(paced.find(b"mail42.bad.example"), Some(R));
        let e = crate::pace::run_now(Patterns::new_paced(
            vec![("ok".into(), A), ("a(b".into(), A)],
            &mut Pacer::new(1, || std::future::ready(())),
        ))
        .unwrap_err();
        assert_eq!((e.index, e.offset), (1, Some(1)));
    }

    #[test]
    fn an_expression_longer_than_the_limit_is_refused_before_parsing() {
        let long = "a".repeat(MAX_SOURCE + 1);
        let e = Patterns::new(vec![("x".into(), A), (long, A)]).unwrap_err();
        assert_eq!(e.index, 1);
        assert!(e.message.contains("too long"), "{e:?}");
        assert!(Patterns::new(vec![("a".repeat(MAX_SOURCE), A)]).is_ok());
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
