//! The control line parser under random input (the fuzz target
//! `control_line` runs the same property for longer): never a panic, and
//! what parses reads back from its own `to_line`.

use greymilter::control::protocol::{MAX_LINE, parse};
use proptest::prelude::*;

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("check".to_string()),
        Just("allow".to_string()),
        Just("forget".to_string()),
        Just("flush".to_string()),
        Just("pending".to_string()),
        Just("stats".to_string()),
        Just("reload".to_string()),
        Just("client=192.0.2.1".to_string()),
        Just("client=::ffff:10.0.0.1".to_string()),
        Just("from=<>".to_string()),
        Just("from=<a@b>".to_string()),
        Just("to=x@y".to_string()),
        Just("network=10.1.2.3/8".to_string()),
        Just("sender-domain=@Ex-ample.ORG".to_string()),
        Just("for=1d".to_string()),
        Just("for=1.5s".to_string()),
        Just("auth=yes".to_string()),
        Just("name=mx=1".to_string()),
        "[ -~]{0,12}",
        "\\PC{0,6}",
    ]
}

proptest! {
    #[test]
    fn parses_or_errs_and_reads_back(words in proptest::collection::vec(word(), 0..8), raw in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse(&raw);
        let line = words.join(" ");
        if let Ok(c) = parse(line.as_bytes()) {
            let again = c.to_line();
            if again.len() <= MAX_LINE {
                prop_assert_eq!(parse(again.as_bytes()), Ok(c));
            }
        }
    }
}
