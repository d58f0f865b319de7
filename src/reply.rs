//! SMTP replies that both MTAs accept from a milter (SMFIR_REPLYCODE).
//!
//! Sendmail turns a malformed reply at RCPT into a *permanent* 550, so a
//! `Reply` can only be built through constructors that enforce the strictest
//! rules of both MTAs (docs/milter.md, "Replies"): one line, `[45]dd`, a space, an
//! enhanced status code whose class equals the first digit, printable ASCII
//! text, and at most [`MAX_WIRE_LEN`] bytes once `%` has been doubled.

use std::fmt;

/// RFC 5321 reply-line limit; libmilter allows 980, we stay well under.
pub const MAX_WIRE_LEN: usize = 512;

/// A validated single-line SMTP reply, stored as the client will read it
/// (`%` not yet doubled: the milter codec does that for Sendmail).
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    line: Box<str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// The line does not start with a 4xx or 5xx code followed by a space.
    BadCode,
    /// `421`/`521` make the MTA drop the SMTP connection.
    Disconnecting,
    /// The enhanced status code is missing, malformed or of another class.
    BadEnhancedCode,
    /// CR, LF, NUL or another byte outside printable ASCII.
    BadCharacter(char),
    /// Longer than [`MAX_WIRE_LEN`] bytes on the wire.
    TooLong(usize),
    /// The class is not the one the verdict needs (4 for tempfail, 5 for reject).
    WrongClass { expected: u8, found: u8 },
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::BadCode => write!(f, "reply must start with a 4xx or 5xx code and a space"),
            ReplyError::Disconnecting => write!(
                f,
                "421 and 521 replies disconnect the client; use another code"
            ),
            ReplyError::BadEnhancedCode => write!(
                f,
                "reply needs an enhanced status code (like 4.7.1) whose first digit matches the reply code"
            ),
            ReplyError::BadCharacter(c) => {
                write!(f, "reply text may hold only printable ASCII, found {:?}", c)
            }
            ReplyError::TooLong(n) => write!(
                f,
                "reply is {n} bytes on the wire, the limit is {MAX_WIRE_LEN}"
            ),
            ReplyError::WrongClass { expected, found } => {
                write!(f, "reply must be a {expected}xx code here, found {found}xx")
            }
        }
    }
}

impl std::error::Error for ReplyError {}

impl Reply {
    /// Validates a complete reply line such as `451 4.7.1 Greylisted`.
    /// Strict: any byte outside printable ASCII is an error (config input).
    pub fn parse(line: &str) -> Result<Reply, ReplyError> {
        if let Some(c) = line.chars().find(|c| !is_printable(*c)) {
            return Err(ReplyError::BadCharacter(c));
        }
        let Some(&[class, tens, units, b' ']) = line.as_bytes().first_chunk::<4>() else {
            return Err(ReplyError::BadCode);
        };
        if !matches!(class, b'4' | b'5') || !tens.is_ascii_digit() || !units.is_ascii_digit() {
            return Err(ReplyError::BadCode);
        }
        if [class, tens, units] == *b"421" || [class, tens, units] == *b"521" {
            return Err(ReplyError::Disconnecting);
        }
        // The first four bytes are ASCII: byte 4 starts a character.
        let rest = line.get(4..).unwrap_or_default();
        let enhanced = rest.split(' ').next().unwrap_or("");
        if !valid_enhanced(enhanced, class) {
            return Err(ReplyError::BadEnhancedCode);
        }
        let wire = wire_len(line);
        if wire > MAX_WIRE_LEN {
            return Err(ReplyError::TooLong(wire));
        }
        Ok(Reply { line: line.into() })
    }

    /// Like [`Reply::parse`], and also checks the class (4 or 5).
    pub fn parse_class(line: &str, class: u8) -> Result<Reply, ReplyError> {
        let reply = Reply::parse(line)?;
        let found = reply.class();
        if found != class {
            return Err(ReplyError::WrongClass {
                expected: class,
                found,
            });
        }
        Ok(reply)
    }

    /// Builds a reply from a validated `prefix` (code and enhanced code, as
    /// from [`Reply::parse`]) and text that may come from the network: bytes
    /// outside printable ASCII become `?`, and the text is cut so the wire
    /// form fits [`MAX_WIRE_LEN`]. Never fails.
    pub fn with_text(prefix: &Reply, text: &str) -> Reply {
        let head = prefix.code_and_enhanced();
        let mut line = String::with_capacity(head.len() + 1 + text.len().min(MAX_WIRE_LEN));
        line.push_str(head);
        let mut budget = MAX_WIRE_LEN.saturating_sub(wire_len(head));
        if !text.is_empty() && budget > 1 {
            line.push(' ');
            budget -= 1;
            for c in text.chars() {
                let c = if is_printable(c) { c } else { '?' };
                let cost = if c == '%' { 2 } else { 1 };
                if cost > budget {
                    break;
                }
                budget -= cost;
                line.push(c);
            }
        }
        Reply { line: line.into() }
    }

    /// The reply as the SMTP client reads it.
    pub fn as_str(&self) -> &str {
        &self.line
    }

    /// The three-digit code, e.g. 451.
    pub fn code(&self) -> u16 {
        self.digits()
            .iter()
            .fold(0, |code, d| code * 10 + u16::from(d.wrapping_sub(b'0')))
    }

    /// 4 (transient) or 5 (permanent).
    pub fn class(&self) -> u8 {
        let [class, _, _] = self.digits();
        class.wrapping_sub(b'0')
    }

    /// The code's three ASCII digits (a `Reply` always starts with them).
    fn digits(&self) -> [u8; 3] {
        self.line
            .as_bytes()
            .first_chunk::<3>()
            .copied()
            .unwrap_or(*b"000")
    }

    /// `"451 4.7.1"`: the code and the enhanced code, without text.
    pub fn code_and_enhanced(&self) -> &str {
        let text_at = self
            .line
            .char_indices()
            .filter(|&(_, c)| c == ' ')
            .nth(1)
            .map_or(self.line.len(), |(i, _)| i);
        self.line.get(..text_at).unwrap_or(&self.line)
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reply({:?})", self.line)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

fn is_printable(c: char) -> bool {
    (' '..='~').contains(&c)
}

fn wire_len(s: &str) -> usize {
    s.len() + s.bytes().filter(|&b| b == b'%').count()
}

/// `class.subject.detail`: class equals the reply's first digit, subject
/// 1–3 digits, detail 1–3 digits (RFC 3463).
fn valid_enhanced(s: &str, class: u8) -> bool {
    let mut parts = s.split('.');
    let (Some(c), Some(subject), Some(detail), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits = |p: &str| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    c.as_bytes() == [class] && digits(subject) && digits(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_greylist_reply() {
        let r = Reply::parse("451 4.7.1 Greylisted, please try again in 300 seconds").unwrap();
        assert_eq!(r.code(), 451);
        assert_eq!(r.class(), 4);
        assert_eq!(r.code_and_enhanced(), "451 4.7.1");
    }

    #[test]
    fn code_class_and_head_of_every_shape() {
        for (line, code, head) in [
            ("451 4.7.1", 451, "451 4.7.1"),
            ("550 5.7.1 no", 550, "550 5.7.1"),
            ("452 4.2.2  two  spaces", 452, "452 4.2.2"),
            ("599 5.999.999 x", 599, "599 5.999.999"),
        ] {
            let r = Reply::parse(line).unwrap();
            assert_eq!(r.code(), code, "{line}");
            assert_eq!(u16::from(r.class()), code / 100, "{line}");
            assert_eq!(r.code_and_enhanced(), head, "{line}");
        }
        for short in ["", "4", "45", "451", "4510", "45x 4.7.1"] {
            assert_eq!(Reply::parse(short), Err(ReplyError::BadCode), "{short:?}");
        }
    }

    #[test]
    fn rejects_malformed_lines() {
        assert_eq!(Reply::parse("250 2.0.0 ok"), Err(ReplyError::BadCode));
        assert_eq!(Reply::parse("45 4.7.1 x"), Err(ReplyError::BadCode));
        assert_eq!(Reply::parse("451-4.7.1 x"), Err(ReplyError::BadCode));
        assert_eq!(
            Reply::parse("421 4.7.0 bye"),
            Err(ReplyError::Disconnecting)
        );
        assert_eq!(
            Reply::parse("451 5.7.1 x"),
            Err(ReplyError::BadEnhancedCode)
        );
        assert_eq!(
            Reply::parse("451 Greylisted"),
            Err(ReplyError::BadEnhancedCode)
        );
        assert_eq!(
            Reply::parse("451 4.7.1 a\r\nb"),
            Err(ReplyError::BadCharacter('\r'))
        );
        assert_eq!(
            Reply::parse("451 4.7.1 caf\u{e9}"),
            Err(ReplyError::BadCharacter('\u{e9}'))
        );
        assert!(matches!(
            Reply::parse(&format!("451 4.7.1 {}", "x".repeat(600))),
            Err(ReplyError::TooLong(_))
        ));
        assert_eq!(
            Reply::parse_class("550 5.7.1 no", 4),
            Err(ReplyError::WrongClass {
                expected: 4,
                found: 5
            })
        );
    }

    #[test]
    fn with_text_sanitizes_and_bounds_network_text() {
        let prefix = Reply::parse("451 4.7.1").unwrap();
        let r = Reply::with_text(&prefix, "to <b\u{e9}b@x>\r\n%");
        assert_eq!(r.as_str(), "451 4.7.1 to <b?b@x>??%");
        let long = Reply::with_text(&prefix, &"%".repeat(10_000));
        assert!(wire_len(long.as_str()) <= MAX_WIRE_LEN);
        assert!(Reply::parse(long.as_str()).is_ok());
    }
}
