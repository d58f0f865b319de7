//! The answer to a policy request: `action=WHAT`, then an empty line.
//!
//! Replies come from greymilter's validated [`Reply`] (`451 4.7.1 text`):
//! Postfix picks the numeric code of `DEFER_IF_PERMIT`, `DEFER` and
//! `REJECT` itself (`access_map_defer_code`, `access_map_reject_code`) and
//! reads an enhanced status code at the start of the text, so the answer
//! carries the reply without its three digits. A header is written as
//! `PREPEND name: value`. Nothing in an answer can hold a line break: a
//! `Reply` is printable ASCII, and header text is cleaned here.

use crate::reply::Reply;

/// What to tell Postfix about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    /// No opinion: the next restriction decides.
    Dunno,
    /// Defer unless a later restriction rejects (postgrey's default).
    DeferIfPermit(&'a Reply),
    /// Defer now.
    Defer(&'a Reply),
    Reject(&'a Reply),
    /// Pass, adding a header to the message.
    Prepend {
        name: &'a str,
        value: &'a str,
    },
}

/// Appends the answer, final empty line included, to `out`.
pub fn write(out: &mut Vec<u8>, answer: &Answer<'_>) {
    out.extend_from_slice(b"action=");
    match answer {
        Answer::Dunno => out.extend_from_slice(b"DUNNO"),
        Answer::DeferIfPermit(reply) => action_with_reply(out, b"DEFER_IF_PERMIT", reply),
        Answer::Defer(reply) => action_with_reply(out, b"DEFER", reply),
        Answer::Reject(reply) => action_with_reply(out, b"REJECT", reply),
        Answer::Prepend { name, value } => {
            out.extend_from_slice(b"PREPEND ");
            push_clean(out, name);
            out.extend_from_slice(b": ");
            push_clean(out, value);
        }
    }
    out.extend_from_slice(b"\n\n");
}

fn action_with_reply(out: &mut Vec<u8>, action: &[u8], reply: &Reply) {
    out.extend_from_slice(action);
    // A Reply always starts with three digits and a space.
    if let Some(rest) = reply.as_str().get(4..).filter(|r| !r.is_empty()) {
        out.push(b' ');
        out.extend_from_slice(rest.as_bytes());
    }
}

/// Control characters (line breaks above all) become spaces.
fn push_clean(out: &mut Vec<u8>, text: &str) {
    out.extend(
        text.bytes()
            .map(|b| if b.is_ascii_control() { b' ' } else { b }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(answer: Answer<'_>) -> String {
        let mut out = Vec::new();
        write(&mut out, &answer);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn each_action_is_one_line_and_an_empty_line() {
        let defer = Reply::parse("451 4.7.1 Greylisted, try again in 300 seconds").unwrap();
        let reject = Reply::parse("550 5.7.1 Go away").unwrap();
        assert_eq!(text(Answer::Dunno), "action=DUNNO\n\n");
        assert_eq!(
            text(Answer::DeferIfPermit(&defer)),
            "action=DEFER_IF_PERMIT 4.7.1 Greylisted, try again in 300 seconds\n\n"
        );
        assert_eq!(
            text(Answer::Defer(&defer)),
            "action=DEFER 4.7.1 Greylisted, try again in 300 seconds\n\n"
        );
        assert_eq!(
            text(Answer::Reject(&reject)),
            "action=REJECT 5.7.1 Go away\n\n"
        );
        assert_eq!(
            text(Answer::Prepend {
                name: "X-Greylist",
                value: "delayed 300 seconds\r\nX-Evil: yes"
            }),
            "action=PREPEND X-Greylist: delayed 300 seconds  X-Evil: yes\n\n"
        );
    }

    #[test]
    fn a_reply_without_text_gives_its_enhanced_code() {
        let bare = Reply::parse("451 4.7.1").unwrap();
        assert_eq!(
            text(Answer::DeferIfPermit(&bare)),
            "action=DEFER_IF_PERMIT 4.7.1\n\n"
        );
    }
}
