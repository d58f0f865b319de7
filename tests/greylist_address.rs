//! Address normalisation: the table of examples promised in the docs.

use greymilter::greylist::envelope_address::{base_form, sender_form};

fn sender(raw: &str, normalize: bool) -> String {
    let mut out = Vec::new();
    sender_form(raw.as_bytes(), normalize, &mut out);
    String::from_utf8(out).unwrap()
}

fn base(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    base_form(raw, &mut out);
    out
}

#[test]
fn base_form_table() {
    let table: &[(&str, &str)] = &[
        ("<User@Example.COM>", "user@example.com"),
        ("user@example.com", "user@example.com"),
        ("  <user@example.com>  ", "user@example.com"),
        ("<>", ""),
        ("", ""),
        (
            "<@relay.example,@hop.example:Bob@Example.org>",
            "bob@example.org",
        ),
        ("<@relay.example:bob@example.org>", "bob@example.org"),
        ("<\"John Doe\"@Example.org>", "\"john doe\"@example.org"),
        ("<postmaster>", "postmaster"),
    ];
    for (raw, want) in table {
        assert_eq!(
            base(raw.as_bytes()),
            want.as_bytes(),
            "base form of {raw:?}"
        );
    }
}

#[test]
fn sender_normalization_table() {
    let table: &[(&str, &str)] = &[
        // BATV
        ("<prvs=1234abcdef=bob@example.org>", "bob@example.org"),
        ("<PRVS=0123ABCDEF=Bob@Example.org>", "bob@example.org"),
        (
            "<msprvs1=17abcdEF=bounces-x@example.org>",
            "bounces-x@example.org",
        ),
        ("<btv1==1234abcdef==bob@example.org>", "bob@example.org"),
        // not a BATV tag: too short, kept
        ("<prvs=ab=bob@example.org>", "prvs=ab=bob@example.org"),
        // SRS0: hash and timestamp dropped
        (
            "<SRS0=HHHH=TT=orig.example=alice@fwd.example>",
            "srs0=orig.example=alice@fwd.example",
        ),
        (
            "<SRS0=zzzz=QQ=orig.example=alice@fwd.example>",
            "srs0=orig.example=alice@fwd.example",
        ),
        (
            "<SRS0+HHHH=TT=orig.example=alice@fwd.example>",
            "srs0=orig.example=alice@fwd.example",
        ),
        // SRS1: both hashes and the timestamp dropped
        (
            "<SRS1=XXXX=fwd1.example==HHHH=TT=orig.example=alice@fwd2.example>",
            "srs1=fwd1.example==orig.example=alice@fwd2.example",
        ),
        (
            "<SRS1-XXXX=fwd1.example==HHHH=TT=orig.example=a+b@fwd2.example>",
            "srs1=fwd1.example==orig.example=a+b@fwd2.example",
        ),
        // SRS that does not parse: kept, and no +extension rule either
        ("<srs0=hhhh=tt+x@fwd.example>", "srs0=hhhh=tt+x@fwd.example"),
        ("<srs1=a=b=c@fwd.example>", "srs1=a=b=c@fwd.example"),
        // digit runs at either end of the local part
        ("<42-news-7@example.org>", "#-news-#@example.org"),
        // +extension
        ("<bob+lists@example.org>", "bob@example.org"),
        ("<bob+a+b@example.org>", "bob@example.org"),
        ("<+leading@example.org>", "+leading@example.org"),
        // VERP / bounce digit runs
        (
            "<bounce-12345-67@lists.example>",
            "bounce-#-#@lists.example",
        ),
        (
            "<owner-list=1699999999@lists.example>",
            "owner-list=#@lists.example",
        ),
        ("<123456@bounces.example>", "#@bounces.example"),
        ("<bounces+4711-abcd@mail.example>", "bounces@mail.example"),
        // digits glued to letters are a stable name
        ("<john1980@example.com>", "john1980@example.com"),
        ("<mx2-bounces@example.com>", "mx2-bounces@example.com"),
        // digits in the domain are kept
        ("<a@mail-123.example>", "a@mail-123.example"),
        // null sender stays null
        ("<>", ""),
        // combined: BATV around a VERP address
        (
            "<prvs=1234abcdef=list-42@example.org>",
            "list-#@example.org",
        ),
    ];
    for (raw, want) in table {
        assert_eq!(sender(raw, true), *want, "sender form of {raw:?}");
    }
}

#[test]
fn normalization_can_be_turned_off() {
    assert_eq!(
        sender("<prvs=1234abcdef=Bob+x-42@example.org>", false),
        "prvs=1234abcdef=bob+x-42@example.org"
    );
}

/// Hostile addresses give a bounded key form, the same every time: an
/// over-long address is cut to 512 bytes in both forms, and each odd input
/// has the key form pinned here (bytes that are not UTF-8 pass through).
#[test]
fn hostile_input_is_bounded_and_never_panics() {
    let mut out = Vec::new();
    let mut raw = b"<".to_vec();
    raw.extend(std::iter::repeat_n(b'a', 60_000));
    raw.extend_from_slice(b"@example.org>");
    sender_form(&raw, true, &mut out);
    assert_eq!(out.len(), 512);
    assert_eq!(base(&raw).len(), 512);
    assert!(out.iter().all(|&b| b == b'a'));
    let table: &[(&[u8], &[u8], &[u8])] = &[
        // (raw, sender form with normalisation, base form)
        (
            &[0xff, 0xfe, b'@', 0x80],
            &[0xff, 0xfe, b'@', 0x80],
            &[0xff, 0xfe, b'@', 0x80],
        ),
        (b"<<<>>>", b"<<>>", b"<<>>"),
        (b"<@@@:::@>", b"::@", b"::@"),
        (b"SRS0=====@", b"srs0===@", b"srs0=====@"),
        (b"SRS1==========@", b"srs1=======@", b"srs1==========@"),
        (b"btv1====@", b"btv1====@", b"btv1====@"),
        (b"1@", b"#@", b"1@"),
    ];
    for &(raw, want_sender, want_base) in table {
        sender_form(raw, true, &mut out);
        assert_eq!(out, want_sender, "sender form of {raw:?}");
        assert_eq!(base(raw), want_base, "base form of {raw:?}");
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(raw in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut out = Vec::new();
            sender_form(&raw, true, &mut out);
            prop_assert!(out.len() <= 512);
            base_form(&raw, &mut out);
            prop_assert!(out.len() <= 512);
        }

        #[test]
        fn case_never_matters(local in "[a-zA-Z0-9.+-]{1,20}", domain in "[a-zA-Z0-9.-]{1,20}") {
            let a = sender(&format!("<{local}@{domain}>"), true);
            let b = sender(&format!("<{}@{}>", local.to_uppercase(), domain.to_uppercase()), true);
            prop_assert_eq!(a, b);
        }
    }
}
