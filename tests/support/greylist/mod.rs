//! Shared helpers for the greylist engine tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::IpAddr;

use greymilter::greylist::clock::ManualClock;
use greymilter::greylist::settings::Settings;
use greymilter::greylist::{Decision, Engine, Request};
use greymilter::milter::decision::Macros;

pub const T0: u64 = 1_700_000_000;

pub fn engine(settings: Settings) -> (Engine, ManualClock) {
    let clock = ManualClock::new(T0);
    (Engine::new(settings, Box::new(clock.clone())), clock)
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// One RCPT decision from an unauthenticated client.
pub fn rcpt(e: &mut Engine, client: &str, from: &str, to: &str) -> Decision {
    e.decide_rcpt(&Request {
        client_addr: Some(ip(client)),
        client_name: b"[unverified]",
        sender: from.as_bytes(),
        recipient: to.as_bytes(),
        authenticated: false,
    })
}

/// Macros from a fixed map.
#[derive(Default)]
pub struct MapMacros(pub HashMap<String, Vec<u8>>);

impl MapMacros {
    pub fn with(pairs: &[(&str, &str)]) -> MapMacros {
        MapMacros(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        )
    }
}

impl Macros for MapMacros {
    fn get(&self, name: &str) -> Option<&[u8]> {
        let bare = name.trim_start_matches('{').trim_end_matches('}');
        self.0.get(bare).map(Vec::as_slice)
    }
}

/// The stored state of a tuple, if any.
pub fn peek(
    e: &mut Engine,
    client: &str,
    from: &str,
    to: &str,
) -> Option<greymilter::greylist::TupleInfo> {
    e.peek(&Request {
        client_addr: Some(ip(client)),
        client_name: b"",
        sender: from.as_bytes(),
        recipient: to.as_bytes(),
        authenticated: false,
    })
}

/// `Tuples = Restored + Graylisted + Allowed − Graylist-Expired −
/// Whitelist-Expired − Evicted − Forgotten`.
pub fn assert_identity(e: &Engine) {
    let s = e.stats();
    assert_eq!(
        s.tuples as i128,
        s.restored as i128 + s.graylisted as i128 + s.allowed as i128
            - s.graylist_expired as i128
            - s.whitelist_expired as i128
            - s.evicted as i128
            - s.forgotten as i128,
        "statistics identity broken: {s:?}"
    );
    assert!(s.whitelisted <= s.tuples);
    assert!(s.ips <= s.tuples);
    assert!(s.tuples_high >= s.tuples);
}
