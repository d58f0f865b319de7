//! The control socket's command parser (`control::protocol::parse`), the
//! second network-facing parser: any bytes give a command or an error,
//! never a panic, and a parsed command written back with `to_line` parses
//! to the same command.

use greymilter::control::Reply;
use greymilter::control::protocol::{MAX_LINE, parse};

pub fn check(data: &[u8]) {
    let Ok(command) = parse(data) else {
        return;
    };
    assert!(
        data.len() <= MAX_LINE + 2,
        "a {} byte line parsed",
        data.len()
    );
    let line = command.to_line();
    // `for=1d` is written `for=86400s`: a line at the cap may grow past it.
    if line.len() <= MAX_LINE {
        assert_eq!(
            parse(line.as_bytes()),
            Ok(command.clone()),
            "{line:?} does not read back"
        );
    }
    // An error text on the wire is one line whatever it holds.
    let wire = Reply::error(format!("{command:?}")).to_wire();
    assert_eq!(wire.iter().filter(|&&b| b == b'\n').count(), 1);
}
