//! End-to-end: greymilter as Postfix's policy service (`check_policy_service`, the line
//! postgrey sites already have), behind a real, private Postfix 3.7: the first attempt is
//! deferred with a valid 4xx reply, the retry after the delay is delivered with the
//! X-Greylist header, recipients of one transaction get their own verdicts, an authenticated
//! session is not greylisted, a stopped greymilter lets mail through
//! (`default_action=DUNNO`), and a milter Postfix and a policy Postfix on one greymilter share
//! one table. Needs root and `.ci/install-mtas.sh`; under `CI` a missing Postfix fails.

#[allow(dead_code, unused_imports)]
#[path = "support/e2e/mod.rs"]
mod e2e;

use std::time::{Duration, Instant};

use e2e::{
    Greymilter, GreymilterConfig, PostfixInstance, PostfixOptions, Reply, Xclient,
    assert_greylist_header, require_postfix, wait_out,
};

const POLICY: &str = "[policy]\nlisten = \"inet:0@127.0.0.1\"\n";

/// The policy port, from the daemon's "policy service listening" line (logged after the
/// milter's, which is all `Greymilter::start` waits for: wait for it, up to 10 s).
fn policy_port(daemon: &Greymilter) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = daemon.log();
        let port = log
            .lines()
            .find(|l| l.contains("policy service listening"))
            .and_then(|l| l.rsplit(':').next())
            .and_then(|p| p.trim().parse().ok());
        match port {
            Some(port) => return port,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            None => panic!("no policy listener in:\n{log}"),
        }
    }
}

/// A deferral Postfix made of `DEFER_IF_PERMIT 4.7.1 text`: a 450 with a 4.x.x code, and
/// greymilter's text with the announced wait.
fn assert_deferred(reply: &Reply) -> Duration {
    let line = reply.last_line();
    assert!(
        (reply.code == 450 || reply.code == 451) && line.contains(" 4.7.1 "),
        "expected a 450/451 4.7.1 deferral, got {line:?}"
    );
    let seconds = line
        .split("Greylisted, please try again in ")
        .nth(1)
        .and_then(|r| r.strip_suffix(" seconds"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not greymilter's text: {line:?}"));
    Duration::from_secs(seconds)
}

#[test]
fn policy_service_greylists_delivers_and_fails_open() {
    if !require_postfix() {
        return;
    }
    let mut daemon = Greymilter::start(GreymilterConfig::new().extra(POLICY));
    let postfix = PostfixInstance::start(&PostfixOptions::policy(policy_port(&daemon)));
    let client = |addr: &str, to: &[&str]| {
        postfix
            .envelope("a@sender.test", to)
            .xclient(Xclient::addr(addr))
    };

    // First attempt deferred; the retry after the delay delivered with the header.
    let envelope = client("203.0.113.10", &["alice@example.test"]);
    let started = Instant::now();
    let first = envelope.send();
    let announced = assert_deferred(first.rcpt());
    assert!(!first.delivered(), "{first:#?}");
    wait_out(announced, Instant::now());
    let retry = envelope.send();
    assert_eq!(retry.rcpt().code, 250, "{retry:#?}");
    assert!(retry.delivered(), "{retry:#?}");
    let waited = started.elapsed();
    postfix.wait_delivered(&retry, envelope.subject());
    let message = postfix.wait_for_message("alice@example.test", envelope.subject());
    let header = message
        .header("X-Greylist")
        .unwrap_or_else(|| panic!("no X-Greylist header:\n{}", message.text));
    assert_greylist_header(header, Duration::from_secs(2), waited);
    assert_eq!(
        message.text.matches("X-Greylist:").count(),
        1,
        "{}",
        message.text
    );

    // One transaction, mixed: whitelisted, new, accept-listed recipient.
    let recipients = [
        "alice@example.test",
        "bob@example.test",
        "postmaster@example.test",
    ];
    let mixed = client("203.0.113.10", &recipients);
    let outcome = mixed.send();
    let codes: Vec<u16> = outcome.rcpts.iter().map(|r| r.code).collect();
    assert_eq!(codes, [250, 450, 250], "{outcome:#?}");
    assert_deferred(&outcome.rcpts[1]);
    assert!(outcome.delivered(), "{outcome:#?}");

    // An authenticated session (XCLIENT LOGIN: Postfix sends sasl_username) is not greylisted.
    let authenticated = postfix
        .envelope("a@sender.test", &["carol@example.test"])
        .xclient(Xclient {
            login: Some("alice".into()),
            ..Xclient::addr("203.0.113.20")
        });
    let outcome = authenticated.send();
    assert_eq!(outcome.rcpt().code, 250, "{outcome:#?}");
    assert!(outcome.delivered(), "{outcome:#?}");
    // Decision lines are batched: wait for it rather than read at once.
    let line = daemon.wait_for_log_after(0, |l| l.contains("reason=authenticated"));
    assert!(line.contains("proto=policy"), "{line}");

    // greymilter stopped: default_action=DUNNO lets mail through.
    assert!(daemon.terminate().success());
    let outcome = client("198.51.100.30", &["dave@example.test"]).send();
    assert_eq!(outcome.rcpt().code, 250, "{outcome:#?}");
    assert!(outcome.delivered(), "{outcome:#?}");
}

/// One greymilter, two Postfix instances: one asks it as a milter, the other as a policy
/// service. A tuple greylisted through the milter passes through the policy service after
/// the delay (one table), and is whitelisted for the milter afterwards.
#[test]
fn milter_and_policy_front_ends_share_one_table() {
    if !require_postfix() {
        return;
    }
    let daemon = Greymilter::start(GreymilterConfig::new().extra(POLICY));
    let milter = PostfixInstance::start(&PostfixOptions::milter(&daemon.postfix_spec()));
    let policy = PostfixInstance::start(&PostfixOptions::policy(policy_port(&daemon)));
    let to = ["erin@example.test"];
    let via = |postfix: &PostfixInstance| {
        postfix
            .envelope("b@sender.test", &to)
            .xclient(Xclient::addr("203.0.113.40"))
    };
    let first = via(&milter).send();
    assert_eq!(first.rcpt().code, 451, "{first:#?}");
    let announced = assert_deferred(first.rcpt());
    wait_out(announced, Instant::now());
    let retry = via(&policy).send();
    assert_eq!(retry.rcpt().code, 250, "{retry:#?}");
    assert!(retry.delivered(), "{retry:#?}");
    let mark = daemon.log().len();
    let again = via(&milter).send();
    assert_eq!(again.rcpt().code, 250, "{again:#?}");
    // The last decision's line first (lines are batched), so that the
    // count covers every decision.
    daemon.wait_for_log_after(mark, |l| {
        l.contains("to=<erin@example.test>") && l.contains("reason=")
    });
    let log = daemon.log();
    assert_eq!(log.matches("reason=new").count(), 1, "{log}");
}
