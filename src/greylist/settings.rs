//! Everything the engine is told by the configuration. Built and validated by
//! `config.rs`; swapped in whole on SIGHUP.

use super::facts::DnsPolicy;
use std::fmt::Write as _;
use std::time::Duration;

use ipnet::IpNet;

use super::patterns::Patterns;
use crate::reply::{Reply, ReplyError};

pub use super::list_action::ListAction;

/// The `[lists]` table and the list files, entries already parsed. Order
/// inside a list does not matter: the most specific entry wins (longest
/// prefix, exact name before suffix, address before local part before
/// domain, regular expressions last); for one key the most restrictive
/// action wins (reject, greylist, accept).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListSpec {
    pub clients: Vec<(IpNet, ListAction)>,
    /// `mx.example.com` (exact) or `.example.com` (the domain's subdomains).
    pub client_names: Vec<(String, ListAction)>,
    pub senders: Vec<(String, ListAction)>,
    pub sender_domains: Vec<(String, ListAction)>,
    pub recipients: Vec<(String, ListAction)>,
    pub recipient_domains: Vec<(String, ListAction)>,
    /// Local parts (`postmaster` from `postmaster@`): any domain.
    pub sender_locals: Vec<(String, ListAction)>,
    pub recipient_locals: Vec<(String, ListAction)>,
    /// `/regex/` entries, compiled when the list files were loaded.
    pub client_name_patterns: Patterns,
    pub sender_patterns: Patterns,
    pub recipient_patterns: Patterns,
}

/// `[greylist] mode`: whether a deferral is sent or only recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Tempfail new and early tuples.
    #[default]
    Enforce,
    /// Record tuples exactly as `Enforce` does, but let the recipient
    /// through (`action=would-greylist`): a safe roll-out on a live MX.
    Learn,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub mode: Mode,
    pub delay: Duration,
    pub retry_window: Duration,
    pub whitelist_lifetime: Duration,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    pub normalize_sender: bool,
    /// 0 = off.
    pub auto_whitelist_after: u32,
    pub skip_authenticated: bool,
    pub max_tuples: usize,
    pub reply: ReplyTemplate,
    pub reject_reply: ReplyTemplate,
    /// Add `X-Greylist` to the first message that passes after a delay.
    pub header: bool,
    /// Length of the interval behind `Requests-Cu`.
    pub cleanup_interval: Duration,
    pub lists: ListSpec,
    /// SPF, allow/block zones, selective greylisting.
    pub dns: DnsPolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::Enforce,
            delay: Duration::from_secs(300),
            retry_window: Duration::from_secs(24 * 3600),
            whitelist_lifetime: Duration::from_secs(36 * 24 * 3600),
            ipv4_prefix: 24,
            ipv6_prefix: 64,
            normalize_sender: true,
            auto_whitelist_after: 5,
            skip_authenticated: true,
            max_tuples: 10_000_000,
            reply: ReplyTemplate::default_reply(),
            reject_reply: ReplyTemplate::default_reject_reply(),
            header: true,
            cleanup_interval: Duration::from_secs(300),
            lists: ListSpec::default(),
            dns: DnsPolicy::default(),
        }
    }
}

pub const DEFAULT_REPLY: &str = "451 4.7.1 Greylisted, please try again in {remaining} seconds";
pub const DEFAULT_REJECT_REPLY: &str = "550 5.7.1 Message refused";

/// A reply with placeholders: `{remaining}` (seconds left, for tempfails) and
/// `{recipient}` (the recipient as the client sent it, sanitised).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyTemplate {
    source: String,
    /// Code and enhanced code, validated.
    prefix: Reply,
    text: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(String),
    Remaining,
    Recipient,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TemplateError {
    Reply(ReplyError),
    UnknownPlaceholder(String),
    UnclosedBrace,
    PlaceholderInCode,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateError::Reply(e) => e.fmt(f),
            TemplateError::UnknownPlaceholder(p) => {
                write!(
                    f,
                    "unknown placeholder {{{p}}}; known: {{remaining}}, {{recipient}}"
                )
            }
            TemplateError::UnclosedBrace => write!(f, "'{{' without a closing '}}'"),
            TemplateError::PlaceholderInCode => write!(
                f,
                "placeholders may appear only in the text after the status codes"
            ),
        }
    }
}

impl std::error::Error for TemplateError {}

/// Placeholder values used to validate a template at load time: the longest
/// a `{remaining}` can be.
const SAMPLE_REMAINING: u64 = u32::MAX as u64;

impl ReplyTemplate {
    /// Parses and validates a template whose code must be of `class` (4 or 5).
    pub fn parse(source: &str, class: u8) -> Result<ReplyTemplate, TemplateError> {
        // "451 4.7.1 text": the code and enhanced code are the first two words.
        let mut words = source.splitn(3, ' ');
        let code = words.next().unwrap_or("");
        let enhanced = words.next().unwrap_or("");
        let text = words.next().unwrap_or("");
        let head = format!("{code} {enhanced}");
        if head.contains('{') {
            return Err(TemplateError::PlaceholderInCode);
        }
        let prefix = Reply::parse_class(&head, class).map_err(TemplateError::Reply)?;
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some((literal, after)) = rest.split_once('{') {
            if !literal.is_empty() {
                pieces.push(Piece::Literal(literal.to_string()));
            }
            let (name, after) = after.split_once('}').ok_or(TemplateError::UnclosedBrace)?;
            pieces.push(match name {
                "remaining" => Piece::Remaining,
                "recipient" => Piece::Recipient,
                other => return Err(TemplateError::UnknownPlaceholder(other.to_string())),
            });
            rest = after;
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.to_string()));
        }
        let template = ReplyTemplate {
            source: source.to_string(),
            prefix,
            text: pieces,
        };
        // The literal parts must be valid on their own (CR/LF, non-ASCII),
        // and the longest rendering must fit.
        let sample = template.render_text(SAMPLE_REMAINING, "");
        Reply::parse(&format!(
            "{} {}",
            template.prefix.code_and_enhanced(),
            sample
        ))
        .map_err(TemplateError::Reply)?;
        Ok(template)
    }

    /// [`DEFAULT_REPLY`].
    // A constant, not input: `default_templates_render` proves it valid.
    #[allow(clippy::expect_used)]
    pub fn default_reply() -> ReplyTemplate {
        ReplyTemplate::parse(DEFAULT_REPLY, 4).expect("the default reply is valid")
    }

    /// [`DEFAULT_REJECT_REPLY`].
    // A constant, not input: `default_templates_render` proves it valid.
    #[allow(clippy::expect_used)]
    pub fn default_reject_reply() -> ReplyTemplate {
        ReplyTemplate::parse(DEFAULT_REJECT_REPLY, 5).expect("the default reject reply is valid")
    }

    /// The template as configured.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the reply. Never fails: network-supplied text is sanitised
    /// and cut to fit (see [`Reply::with_text`]).
    pub fn render(&self, remaining_secs: u64, recipient: &str) -> Reply {
        if self.text.is_empty() {
            return self.prefix.clone();
        }
        Reply::with_text(&self.prefix, &self.render_text(remaining_secs, recipient))
    }

    fn render_text(&self, remaining_secs: u64, recipient: &str) -> String {
        let mut out = String::new();
        for piece in &self.text {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Remaining => {
                    let _ = write!(out, "{remaining_secs}");
                }
                Piece::Recipient => out.push_str(recipient),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_templates_render() {
        let s = Settings::default();
        assert_eq!(
            s.reply.render(42, "x@y").as_str(),
            "451 4.7.1 Greylisted, please try again in 42 seconds"
        );
        assert_eq!(
            s.reject_reply.render(0, "x@y").as_str(),
            "550 5.7.1 Message refused"
        );
    }

    #[test]
    fn template_errors() {
        assert!(matches!(
            ReplyTemplate::parse("451 4.7.1 wait {minutes}", 4),
            Err(TemplateError::UnknownPlaceholder(_))
        ));
        assert!(matches!(
            ReplyTemplate::parse("451 4.7.1 wait {remaining", 4),
            Err(TemplateError::UnclosedBrace)
        ));
        assert!(matches!(
            ReplyTemplate::parse("550 5.7.1 no", 4),
            Err(TemplateError::Reply(ReplyError::WrongClass { .. }))
        ));
        assert!(matches!(
            ReplyTemplate::parse("451 4.7.1 a\nb", 4),
            Err(TemplateError::Reply(ReplyError::BadCharacter('\n')))
        ));
        assert!(matches!(
            ReplyTemplate::parse("Greylisted", 4),
            Err(TemplateError::Reply(_))
        ));
    }

    #[test]
    fn placeholders_anywhere_in_the_text() {
        let t = ReplyTemplate::parse("451 4.7.1 {remaining}{recipient}", 4).unwrap();
        assert_eq!(t.render(7, "r").as_str(), "451 4.7.1 7r");
        let t = ReplyTemplate::parse("451 4.7.1 a{remaining}b{recipient}c", 4).unwrap();
        assert_eq!(t.render(7, "r").as_str(), "451 4.7.1 a7brc");
        let t = ReplyTemplate::parse("451 4.7.1 }{recipient", 4);
        assert_eq!(t, Err(TemplateError::UnclosedBrace));
        let t = ReplyTemplate::parse("451 4.7.1 {}", 4);
        assert_eq!(t, Err(TemplateError::UnknownPlaceholder(String::new())));
    }

    #[test]
    fn recipient_from_the_network_is_sanitised() {
        let t = ReplyTemplate::parse("451 4.7.1 {recipient} 50% greylisted", 4).unwrap();
        let r = t.render(1, "<a\r\nb@c>");
        assert_eq!(r.as_str(), "451 4.7.1 <a??b@c> 50% greylisted");
    }
}
