//! Postfix's policy request, parsed without I/O.
//!
//! A request is `name=value` lines, each ending in `\n`, then an empty
//! line (Postfix's SMTPD_POLICY_README). [`parse`] looks at the start of
//! a buffer and says: a complete request and how many bytes it spans,
//! not complete yet (read more), or an error that closes the connection.
//! The request borrows its values from the buffer: nothing is allocated.
//!
//! Names greymilter does not use are skipped (Postfix adds attributes in
//! new versions); a name given twice keeps its last value. A `\r` before
//! the `\n` is tolerated. Every bound in [`Limits`] is checked on
//! incomplete input too, so a client that never ends its line or its
//! request is cut off as soon as it passes the bound.

use std::fmt;

/// Bounds on one request. Postfix 3.7 sends about 30 attributes of a
/// few dozen bytes each (under 1 KiB in all); client certificate subjects
/// are the longest values, far below a line's bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, `\n` excluded.
    pub max_line: usize,
    /// Most `name=value` lines in one request.
    pub max_attributes: usize,
    /// Largest request, final empty line included.
    pub max_request: usize,
}

pub const LIMITS: Limits = Limits {
    max_line: 2048,
    max_attributes: 100,
    max_request: 16 * 1024,
};

/// The attributes greymilter uses; an attribute Postfix did not send is
/// empty (as `sender` is for the null sender).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Request<'a> {
    /// `CONNECT`, `EHLO`, `HELO`, `MAIL`, `RCPT`, `DATA`, `END-OF-MESSAGE`,
    /// `VRFY`, `ETRN`.
    pub protocol_state: &'a str,
    /// The client IP address, as Postfix prints it (no brackets, no `IPv6:`).
    pub client_address: &'a str,
    /// The verified client name, `unknown` when there is none.
    pub client_name: &'a str,
    /// The HELO/EHLO argument.
    pub helo_name: &'a str,
    /// The MAIL FROM address without angle brackets; empty for `<>`.
    pub sender: &'a str,
    /// The RCPT TO address without angle brackets.
    pub recipient: &'a str,
    /// Set when the client authenticated with SASL.
    pub sasl_username: &'a str,
    pub queue_id: &'a str,
    /// The same for every request about one message.
    pub instance: &'a str,
}

/// Why a connection is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// Line number (1-based within the request) of a line over the bound.
    LineTooLong(usize),
    TooManyAttributes,
    TooLarge,
    /// Line number of a line that is not UTF-8.
    NotUtf8(usize),
    /// Line number of a line with no `=`, or with an empty name.
    NotAnAttribute(usize),
    /// The `request` attribute is missing or is not `smtpd_access_policy`
    /// (its value, cut to 64 bytes).
    NotAccessPolicy(Option<String>),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &LIMITS;
        match self {
            RequestError::LineTooLong(n) => {
                write!(f, "line {n} of a request is over {} bytes", l.max_line)
            }
            RequestError::TooManyAttributes => {
                write!(f, "request has more than {} attributes", l.max_attributes)
            }
            RequestError::TooLarge => write!(f, "request is over {} bytes", l.max_request),
            RequestError::NotUtf8(n) => write!(f, "line {n} of a request is not UTF-8"),
            RequestError::NotAnAttribute(n) => {
                write!(f, "line {n} of a request is not name=value")
            }
            RequestError::NotAccessPolicy(None) => {
                f.write_str("request has no request=smtpd_access_policy")
            }
            RequestError::NotAccessPolicy(Some(v)) => {
                write!(
                    f,
                    "request=\"{}\" is not smtpd_access_policy",
                    v.escape_debug()
                )
            }
        }
    }
}

impl std::error::Error for RequestError {}

/// The request at the start of `buf`, and its length in bytes; `Ok(None)`
/// when the request is not complete yet and no bound is passed.
pub fn parse(buf: &[u8]) -> Result<Option<(Request<'_>, usize)>, RequestError> {
    parse_with(buf, &LIMITS)
}

/// [`parse`] with other bounds (tests).
pub fn parse_with<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Option<(Request<'a>, usize)>, RequestError> {
    let mut request = Request::default();
    let mut kind: Option<&str> = None;
    let mut rest = buf;
    let mut number = 0;
    loop {
        number += 1;
        let Some(newline) = memchr::memchr(b'\n', rest) else {
            if rest.len() > limits.max_line {
                return Err(RequestError::LineTooLong(number));
            }
            if buf.len() > limits.max_request {
                return Err(RequestError::TooLarge);
            }
            return Ok(None);
        };
        let (line, after) = rest.split_at(newline);
        rest = after.get(1..).unwrap_or_default();
        let end = buf.len() - rest.len();
        if newline > limits.max_line {
            return Err(RequestError::LineTooLong(number));
        }
        if end > limits.max_request {
            return Err(RequestError::TooLarge);
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return match kind {
                Some("smtpd_access_policy") => Ok(Some((request, end))),
                other => Err(RequestError::NotAccessPolicy(other.map(|v| cut(v, 64)))),
            };
        }
        if number > limits.max_attributes {
            return Err(RequestError::TooManyAttributes);
        }
        // Bytes until a value is kept: an ASCII line (all of Postfix's)
        // needs no UTF-8 decoding, and `str` searches cost more than the
        // rest of the parse.
        if !line.is_ascii() && std::str::from_utf8(line).is_err() {
            return Err(RequestError::NotUtf8(number));
        }
        let eq = memchr::memchr(b'=', line);
        let (Some(name), Some(value)) = (
            eq.and_then(|i| line.get(..i)).filter(|n| !n.is_empty()),
            eq.and_then(|i| line.get(i + 1..)),
        ) else {
            return Err(RequestError::NotAnAttribute(number));
        };
        let slot = match name {
            b"request" => {
                kind = Some(utf8(value, number)?);
                continue;
            }
            b"protocol_state" => &mut request.protocol_state,
            b"client_address" => &mut request.client_address,
            b"client_name" => &mut request.client_name,
            b"helo_name" => &mut request.helo_name,
            b"sender" => &mut request.sender,
            b"recipient" => &mut request.recipient,
            b"sasl_username" => &mut request.sasl_username,
            b"queue_id" => &mut request.queue_id,
            b"instance" => &mut request.instance,
            _ => continue,
        };
        *slot = utf8(value, number)?;
    }
}

/// A value of a line already checked to be UTF-8.
fn utf8(value: &[u8], line: usize) -> Result<&str, RequestError> {
    std::str::from_utf8(value).map_err(|_| RequestError::NotUtf8(line))
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Postfix 3.7 sends at RCPT (SMTPD_POLICY_README's example, with
    /// the attributes 3.7 adds).
    const POSTFIX_RCPT: &[u8] = b"request=smtpd_access_policy\n\
protocol_state=RCPT\n\
protocol_name=ESMTP\n\
client_address=192.0.2.7\n\
client_name=mail.example.org\n\
client_port=40123\n\
reverse_client_name=mail.example.org\n\
server_address=127.0.0.1\n\
server_port=25\n\
helo_name=mail.example.org\n\
sender=alice@example.org\n\
recipient=bob@example.net\n\
recipient_count=0\n\
queue_id=\n\
instance=1b2c.6570a1b2.3c4d5.0\n\
size=0\n\
etrn_domain=\n\
stress=\n\
sasl_method=\n\
sasl_username=\n\
sasl_sender=\n\
ccert_subject=\n\
ccert_issuer=\n\
ccert_fingerprint=\n\
ccert_pubkey_fingerprint=\n\
encryption_protocol=\n\
encryption_cipher=\n\
encryption_keysize=0\n\
policy_context=\n\
compatibility_level=3.6\n\
mail_version=3.7.11\n\
\n";

    #[test]
    fn a_postfix_request_parses_and_unknown_attributes_are_skipped() {
        let (r, len) = parse(POSTFIX_RCPT).unwrap().unwrap();
        assert_eq!(len, POSTFIX_RCPT.len());
        assert_eq!(
            r,
            Request {
                protocol_state: "RCPT",
                client_address: "192.0.2.7",
                client_name: "mail.example.org",
                helo_name: "mail.example.org",
                sender: "alice@example.org",
                recipient: "bob@example.net",
                sasl_username: "",
                queue_id: "",
                instance: "1b2c.6570a1b2.3c4d5.0",
            }
        );
    }

    #[test]
    fn every_prefix_is_incomplete_and_requests_follow_each_other() {
        for n in 0..POSTFIX_RCPT.len() {
            assert_eq!(parse(&POSTFIX_RCPT[..n]), Ok(None), "prefix of {n} bytes");
        }
        let second = b"request=smtpd_access_policy\r\nprotocol_state=DATA\r\nsender=\r\n\r\n";
        let mut both = POSTFIX_RCPT.to_vec();
        both.extend_from_slice(second);
        let (_, first_len) = parse(&both).unwrap().unwrap();
        let (r, len) = parse(&both[first_len..]).unwrap().unwrap();
        assert_eq!(len, second.len());
        assert_eq!(r.protocol_state, "DATA");
        assert_eq!(r.sender, "", "the null sender");
    }

    #[test]
    fn values_keep_equals_signs_and_the_last_of_a_repeated_name_wins() {
        let req = b"request=smtpd_access_policy\nsender=a=b@example.org\nrecipient=x@y\nrecipient=z@y\n\n";
        let (r, _) = parse(req).unwrap().unwrap();
        assert_eq!(r.sender, "a=b@example.org");
        assert_eq!(r.recipient, "z@y");
    }

    #[test]
    fn a_request_of_another_kind_or_none_is_refused() {
        assert_eq!(
            parse(b"protocol_state=RCPT\n\n"),
            Err(RequestError::NotAccessPolicy(None))
        );
        assert_eq!(
            parse(b"request=junk\n\n"),
            Err(RequestError::NotAccessPolicy(Some("junk".into())))
        );
        assert_eq!(parse(b"\n"), Err(RequestError::NotAccessPolicy(None)));
        let long = format!("request={}\n\n", "é".repeat(100));
        let Err(RequestError::NotAccessPolicy(Some(v))) = parse(long.as_bytes()) else {
            panic!()
        };
        assert!(v.len() <= 64 && v.starts_with('é'));
    }

    #[test]
    fn malformed_lines_are_refused() {
        assert_eq!(
            parse(b"request=smtpd_access_policy\nno equals sign\n\n"),
            Err(RequestError::NotAnAttribute(2))
        );
        assert_eq!(parse(b"=value\n\n"), Err(RequestError::NotAnAttribute(1)));
        assert_eq!(
            parse(b"request=smtpd_access_policy\nsender=\xff\xfe\n\n"),
            Err(RequestError::NotUtf8(2))
        );
    }

    #[test]
    fn bounds_hold_on_complete_and_incomplete_input() {
        let limits = Limits {
            max_line: 20,
            max_attributes: 3,
            max_request: 60,
        };
        // A line at the bound passes; one byte more does not, ended or not.
        let at = format!("request=smtpd_access_policy\nsender={}\n\n", "a".repeat(13));
        assert!(
            parse_with(
                at.as_bytes(),
                &Limits {
                    max_line: 27,
                    ..limits
                }
            )
            .is_ok()
        );
        let over = format!("sender={}", "a".repeat(14));
        assert_eq!(
            parse_with(over.as_bytes(), &limits),
            Err(RequestError::LineTooLong(1))
        );
        assert_eq!(
            parse_with(format!("{over}\n").as_bytes(), &limits),
            Err(RequestError::LineTooLong(1))
        );
        assert_eq!(
            parse_with(b"a=1\nb=2\nc=3\nd=4\n", &limits),
            Err(RequestError::TooManyAttributes)
        );
        // Many short lines that never end the request: cut at the size bound.
        let mut endless = Vec::new();
        let big = Limits {
            max_attributes: 1000,
            ..limits
        };
        while endless.len() <= 60 {
            endless.extend_from_slice(b"a=1\n");
        }
        assert_eq!(parse_with(&endless, &big), Err(RequestError::TooLarge));
        // The defaults: a 2 KiB value passes, a 3 KiB one does not.
        let ok = format!(
            "request=smtpd_access_policy\nccert_subject={}\n\n",
            "x".repeat(2000)
        );
        assert!(parse(ok.as_bytes()).unwrap().is_some());
        let junk = vec![b'x'; 3000];
        assert_eq!(parse(&junk), Err(RequestError::LineTooLong(1)));
    }

    #[test]
    fn errors_read_as_log_text() {
        assert_eq!(
            RequestError::LineTooLong(3).to_string(),
            "line 3 of a request is over 2048 bytes"
        );
        assert_eq!(
            RequestError::NotAccessPolicy(Some("a\nb".into())).to_string(),
            "request=\"a\\nb\" is not smtpd_access_policy"
        );
    }
}
