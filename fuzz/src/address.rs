//! Envelope address normalisation (`greylist::envelope_address`) and the CONNECT
//! address parser (`milter::client_address::client_ip`).
//!
//! Input: the first byte is the CONNECT family byte for `client_ip`; the
//! whole input is also the MAIL/RCPT argument.

use std::net::IpAddr;

use greymilter::greylist::envelope_address::{
    MAX_ADDRESS_LEN, MAX_LOGGED_LEN, base_form, domain_of, push_loggable, sender_form,
};
use greymilter::milter::client_address::client_ip;
use greymilter::milter::codec::Family;

pub fn check(data: &[u8]) {
    let mut base = Vec::new();
    base_form(data, &mut base);
    assert!(
        base.len() <= MAX_ADDRESS_LEN,
        "base form of {} bytes",
        base.len()
    );
    assert!(
        !base.iter().any(u8::is_ascii_uppercase),
        "base form not lower-cased: {base:?}"
    );

    let mut plain = Vec::new();
    sender_form(data, false, &mut plain);
    assert_eq!(
        plain, base,
        "sender form without normalisation is the base form"
    );

    let mut sender = Vec::new();
    sender_form(data, true, &mut sender);
    // The sender rules only ever drop or shorten parts of the local part.
    assert!(
        sender.len() <= base.len(),
        "normalised {sender:?} longer than {base:?}"
    );
    assert!(
        !sender.iter().any(u8::is_ascii_uppercase),
        "normalised not lower-cased: {sender:?}"
    );
    assert_eq!(
        domain_of(&sender),
        domain_of(&base),
        "normalisation changed the domain"
    );
    // The output buffer is reused by the engine: a second call must not
    // depend on what the buffer held.
    let mut reused = b"PREVIOUS@CONTENT".to_vec();
    sender_form(data, true, &mut reused);
    assert_eq!(reused, sender);

    let mut line = String::new();
    push_loggable(&mut line, data);
    assert!(
        line.len() <= MAX_LOGGED_LEN * 4 + 3,
        "log form of {} bytes",
        line.len()
    );
    assert!(
        line.bytes().all(|b| b.is_ascii_graphic()),
        "log form holds a space or control byte: {line:?}"
    );
    if data.len() <= MAX_LOGGED_LEN && data.iter().all(|&b| b.is_ascii_graphic() && b != b'\\') {
        assert_eq!(line.as_bytes(), data, "plain text must be logged as is");
    }

    let Some((&family, address)) = data.split_first() else {
        return;
    };
    let family = Family::from_byte(family);
    match client_ip(family, address) {
        None => {}
        Some(ip) => {
            assert!(
                matches!(family, Family::Inet4 | Family::Inet6),
                "{family:?} gave {ip}"
            );
            if let IpAddr::V6(v6) = ip {
                assert!(
                    v6.to_ipv4_mapped().is_none(),
                    "IPv4-mapped {v6} not turned into IPv4"
                );
            }
        }
    }
}
