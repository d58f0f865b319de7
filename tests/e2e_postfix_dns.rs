//! End-to-end: the DNS checks (SPF, DNS lists) behind a real, private Postfix. The SPF zone of
//! `tests/support/dns` is served in this process on loopback and greymilter's `[dns] servers`
//! points at it. Needs root and `.ci/install-mtas.sh`; under `CI` a missing Postfix fails.

#[path = "support/dns/mod.rs"]
mod dns_support;
#[allow(dead_code, unused_imports)]
#[path = "support/e2e/mod.rs"]
mod e2e;

use std::time::Instant;

use dns_support::{PROVIDER_POOL, Servers};
use e2e::{
    Greymilter, GreymilterConfig, PostfixInstance, PostfixOptions, Xclient, assert_greylisted,
    require_postfix, wait_out,
};

/// A provider whose SPF record authorises six /24s retries from another of them: the first
/// attempt gets 451, the retry after the delay is delivered (`spf = "key"`), and the decision
/// log says `spf=pass`. A sender without SPF retrying the same way is still greylisted.
#[test]
fn scenario_14_spf_keyed_retry_from_another_network_is_delivered() {
    if !require_postfix() {
        return;
    }
    let dns = Servers::start();
    // 192.0.2.0/24 is accepted by the harness's list: the two networks are others of the pool.
    let (first_net, second_net) = (PROVIDER_POOL[1], PROVIDER_POOL[2]);
    let config = GreymilterConfig::new()
        .delay("1s")
        .greylist("spf = \"key\"\n")
        .extra(&format!(
            "[dns]\nservers = [\"{}\"]\ntimeout = \"2s\"\n",
            dns.good
        ));
    let daemon = Greymilter::start(config);
    let postfix = PostfixInstance::start(&PostfixOptions::milter(&daemon.postfix_spec()));
    let send = |client: &str, from: &str| {
        postfix
            .envelope(from, &["alice@example.test"])
            .xclient(Xclient::addr(client))
            .send()
    };

    let since = Instant::now();
    let provider = send(first_net, "bounce-7@provider.test");
    let announced = assert_greylisted(provider.rcpt());
    assert!(!provider.delivered(), "{provider:#?}");
    let spammer = send(first_net, "x@nospf.test");
    assert_greylisted(spammer.rcpt());

    wait_out(announced, since);
    let retry = send(second_net, "bounce-7@provider.test");
    assert_eq!(retry.rcpt().code, 250, "{retry:#?}");
    assert!(retry.delivered(), "{retry:#?}");
    let mark = daemon.log().len();
    let spammer = send(second_net, "x@nospf.test");
    assert_greylisted(spammer.rcpt());

    // The last attempt's decision line, once written (lines are batched).
    daemon.wait_for_log_after(mark, |l| {
        l.contains("from=<x@nospf.test>") && l.contains("reason=")
    });
    let log = daemon.log();
    let passed = log
        .lines()
        .find(|l| l.contains("reason=retried"))
        .unwrap_or_else(|| panic!("no retried decision in:\n{log}"));
    assert!(
        passed.contains(&format!("[{second_net}]")) && passed.contains("spf=pass"),
        "{passed}"
    );
    assert!(
        log.lines()
            .filter(|l| l.contains("from=<x@nospf.test>"))
            .all(|l| l.contains("action=greylist") && l.contains("spf=none")),
        "{log}"
    );
    postfix.wait_for_log("the provider's retry delivered", |line| {
        line.contains("postfix/virtual") && line.contains("status=sent")
    });
}
