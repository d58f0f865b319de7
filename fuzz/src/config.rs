//! The configuration parser (`Config::parse`).
//!
//! Input: configuration text (non-UTF-8 input is skipped: a file that is not
//! UTF-8 is refused by `Config::load` before parsing).
//!
//! Checked: no panic; an error has a position; an accepted configuration
//! prints (`to_toml`, what `check-config` shows) to text that parses back
//! to an equal configuration, compiles into lists, and its reply templates
//! render replies both MTAs accept, whatever the placeholders hold.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use greymilter::config::Config;
use greymilter::greylist::lists::Lists;
use greymilter::reply::Reply;

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::parse(text, "fuzz.toml") {
        Ok(config) => config,
        Err(e) => {
            assert!(
                e.line >= 1 && e.column >= 1,
                "error without a position: {e}"
            );
            return;
        }
    };
    let printed = config.to_toml();
    let back = Config::parse(&printed, "printed.toml")
        .unwrap_or_else(|e| panic!("printed configuration does not parse: {e}\n{printed}"));
    assert_eq!(back, config, "printed configuration differs:\n{printed}");

    let settings = config.settings();
    let lists = Lists::compile(&settings.lists, settings.normalize_sender);
    for ip in [
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    ] {
        let _ = lists.lookup_client(ip, b"mx.example.com");
    }
    let _ = lists.lookup_sender(b"user@example.com");
    let _ = lists.lookup_recipient(b"user@example.com");

    for (template, class) in [(&settings.reply, 4), (&settings.reject_reply, 5)] {
        for (remaining, recipient) in [(0, ""), (u64::MAX, "<a\r\n%b\u{e9}@x>")] {
            let reply = template.render(remaining, recipient);
            let line = reply.as_str();
            let parsed = Reply::parse(line).unwrap_or_else(|e| {
                panic!("{:?} renders invalid {line:?}: {e}", template.source())
            });
            assert_eq!(parsed.class(), class, "{line:?}");
        }
    }
}
