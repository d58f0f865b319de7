//! End-to-end: greymilter behind a real, private Postfix 3.7 (issue 5).
//! Needs root and `.ci/install-mtas.sh`; under `CI` a missing Postfix fails these tests.

#[allow(dead_code, unused_imports)]
mod e2e;

use e2e::{PostfixInstance, PostfixOptions, Xclient, free_port, require_postfix};

/// Harness self-test: without a milter, a message reaches exactly its recipient's Maildir.
#[test]
fn harness_postfix_delivers_into_the_recipients_maildir() {
    if !require_postfix() {
        return;
    }
    let postfix = PostfixInstance::start(&PostfixOptions::without_milter());
    let envelope = postfix.envelope("a@sender.test", &["alice@example.test"]);
    let outcome = envelope.send();
    assert_eq!(outcome.banner.code, 220, "{outcome:#?}");
    assert_eq!(outcome.rcpt().code, 250, "{outcome:#?}");
    assert!(outcome.delivered(), "{outcome:#?}");
    let holders = postfix.wait_delivered(&outcome, envelope.subject());
    assert_eq!(
        holders.into_iter().collect::<Vec<_>>(),
        ["alice@example.test"]
    );
    postfix.wait_for_log("virtual delivery to alice", |line| {
        line.contains("postfix/virtual")
            && line.contains("to=<alice@example.test>")
            && line.contains("status=sent")
    });
}

/// Harness self-test: XCLIENT changes the client Postfix sees, IPv4, IPv6 and SASL login.
#[test]
fn harness_xclient_changes_the_client_postfix_sees() {
    if !require_postfix() {
        return;
    }
    let postfix = PostfixInstance::start(&PostfixOptions::without_milter());

    let v4 = postfix
        .envelope("b@sender.test", &["bob@example.test"])
        .xclient(Xclient {
            name: Some("client.example".into()),
            login: Some("alice".into()),
            ..Xclient::addr("198.51.100.7")
        });
    let outcome = v4.send();
    assert_eq!(
        outcome.xclient.as_ref().map(|r| r.code),
        Some(220),
        "{outcome:#?}"
    );
    assert!(outcome.delivered(), "{outcome:#?}");
    postfix.wait_for_log("naming the XCLIENT client and login", |line| {
        line.contains("client=client.example[198.51.100.7]")
            && line.contains("sasl_method=XCLIENT")
            && line.contains("sasl_username=alice")
    });

    if postfix.ipv6() {
        let v6 = postfix
            .envelope("c@sender.test", &["carol@example.test"])
            .xclient(Xclient::addr("2001:db8:0::8"));
        let outcome = v6.send();
        assert_eq!(
            outcome.xclient.as_ref().map(|r| r.code),
            Some(220),
            "{outcome:#?}"
        );
        assert!(outcome.delivered(), "{outcome:#?}");
        postfix.wait_for_log("naming the IPv6 XCLIENT client", |line| {
            line.contains("client=unknown[2001:db8::8]")
        });
    } else {
        eprintln!("no ::1 on this host: IPv6 XCLIENT not exercised");
    }
}

/// Scenario 12: greymilter is not running. The shipped snippet's `default_action=accept`
/// lets mail through; the same instance with `default_action=tempfail` answers 451, which
/// shows the first half could have failed.
#[test]
fn scenario_12_milter_down_default_action_accept_delivers() {
    if !require_postfix() {
        return;
    }
    // Nothing listens here: the milter is "down".
    let dead = free_port();
    let spec = |action: &str| {
        format!(
            "{{ inet:127.0.0.1:{dead}, default_action={action}, connect_timeout=5s, command_timeout=10s }}"
        )
    };
    let mut postfix = PostfixInstance::start(&PostfixOptions::milter(&spec("accept")));
    let envelope = postfix.envelope("a@sender.test", &["alice@example.test"]);
    let outcome = envelope.send();
    assert!(
        outcome.delivered(),
        "default_action=accept must deliver: {outcome:#?}"
    );
    let holders = postfix.wait_delivered(&outcome, envelope.subject());
    assert_eq!(
        holders.into_iter().collect::<Vec<_>>(),
        ["alice@example.test"]
    );
    let refused = format!("connect to Milter service inet:127.0.0.1:{dead}: Connection refused");
    postfix.wait_for_log("about the refused milter connection", |l| {
        l.contains(&refused)
    });

    postfix.restart(&PostfixOptions::milter(&spec("tempfail")));
    let envelope = postfix.envelope("a@sender.test", &["alice@example.test"]);
    let outcome = envelope.send();
    assert!(!outcome.delivered(), "{outcome:#?}");
    let first_refusal = outcome
        .ehlo
        .iter()
        .chain(outcome.mail.iter())
        .chain(outcome.rcpts.iter())
        .find(|r| !r.is_positive())
        .unwrap_or_else(|| panic!("no 4xx reply with default_action=tempfail: {outcome:#?}"));
    assert!(
        first_refusal.starts_with("451 4.7.1 Service unavailable - try again later"),
        "{outcome:#?}"
    );
}
