//! End-to-end: greymilter behind a real, private Sendmail 8.17 (issue 5, scenarios marked S).
//! Needs root and `.ci/install-mtas.sh`; under `CI` a missing Sendmail fails these tests.
//! Sendmail has no XCLIENT: tests present other clients by binding a 127/8 source address.

#[allow(dead_code, unused_imports)]
mod e2e;

use e2e::{SendmailInstance, SendmailOptions, free_port, require_sendmail};

/// Harness self-test: without a milter Sendmail accepts a message and queues it for exactly
/// its recipient; its syslog lines reach the catcher.
#[test]
fn harness_sendmail_accepts_and_queues() {
    if !require_sendmail() {
        return;
    }
    let sendmail = SendmailInstance::start(&SendmailOptions::without_milter());
    let envelope = sendmail.envelope("a@sender.test", &["alice@example.test"]);
    let outcome = envelope.send();
    assert_eq!(outcome.banner.code, 220, "{outcome:#?}");
    assert_eq!(outcome.rcpt().code, 250, "{outcome:#?}");
    assert!(outcome.delivered(), "{outcome:#?}");
    let qf = sendmail
        .queued_message(envelope.subject())
        .unwrap_or_else(|| panic!("message not in the queue: {outcome:#?}"));
    assert_eq!(
        SendmailInstance::queued_recipients(&qf),
        ["alice@example.test"]
    );
    sendmail.wait_for_log("queueing the message", |line| {
        line.contains("to=<alice@example.test>") && line.contains("stat=queued")
    });
}

/// Harness self-test: a client bound to another 127/8 address, and one over ::1, are seen
/// as such by Sendmail (it has no XCLIENT; this is how its tests play other clients).
#[test]
fn harness_sendmail_sees_the_bound_source_address_and_ipv6() {
    if !require_sendmail() {
        return;
    }
    let sendmail = SendmailInstance::start(&SendmailOptions::without_milter());
    let outcome = sendmail
        .envelope("b@sender.test", &["bob@example.test"])
        .source("127.9.8.7")
        .send();
    assert!(outcome.delivered(), "{outcome:#?}");
    sendmail.wait_for_log("naming the bound source address", |line| {
        line.contains("from=<b@sender.test>") && line.contains("[127.9.8.7]")
    });

    match sendmail.smtp_addr_v6() {
        Some(v6) => {
            let mut envelope = sendmail.envelope("c@sender.test", &["carol@example.test"]);
            envelope.server = v6;
            let outcome = envelope.send();
            assert!(outcome.delivered(), "{outcome:#?}");
            // Sendmail writes ::1 uncompressed: relay=[IPv6:0:0:0:0:0:0:0:1].
            sendmail.wait_for_log("naming the IPv6 client", |line| {
                line.contains("from=<c@sender.test>")
                    && line.contains("daemon=MTA6")
                    && line.contains("relay=[IPv6:0:0:0:0:0:0:0:1]")
            });
        }
        None => eprintln!("no ::1 on this host: IPv6 not exercised"),
    }
}

/// Harness self-test, Sendmail's side of scenario 12: with the milter down, no `F=` flag
/// (the production recommendation) lets mail through, and `F=T` tempfails it.
#[test]
fn harness_sendmail_dead_milter_follows_the_f_flag() {
    if !require_sendmail() {
        return;
    }
    let dead = free_port();
    let passing = SendmailInstance::start(&SendmailOptions {
        milter_port: Some(dead),
        milter_flag: None,
    });
    let outcome = passing
        .envelope("a@sender.test", &["alice@example.test"])
        .send();
    assert!(
        outcome.delivered(),
        "no F= flag must pass mail: {outcome:#?}"
    );

    let tempfailing = SendmailInstance::start(&SendmailOptions::milter(dead));
    let outcome = tempfailing
        .envelope("a@sender.test", &["alice@example.test"])
        .send();
    assert!(!outcome.delivered(), "{outcome:#?}");
    let refusal = std::iter::once(&outcome.banner)
        .chain(outcome.ehlo.iter())
        .chain(outcome.mail.iter())
        .chain(outcome.rcpts.iter())
        .find(|r| !r.is_positive())
        .unwrap_or_else(|| panic!("no refusal with F=T: {outcome:#?}"));
    assert!(
        refusal.starts_with("451 4.3.2 Please try again later"),
        "F=T must tempfail: {outcome:#?}"
    );
}
