//! End-to-end: two MX hosts, each a real private Postfix with its own greymilter, the two
//! greymilters sharing one real redis-server (`[cluster]`). A message deferred at
//! one MX is delivered when its retry reaches the other, and later mail passes at the first.
//! Needs root, `.ci/install-mtas.sh` and `.ci/install-redis.sh`; under `CI` a missing Postfix
//! or redis-server fails.

#[path = "support/cluster/mod.rs"]
mod cluster_support;
#[allow(dead_code, unused_imports)]
#[path = "support/e2e/mod.rs"]
mod e2e;

use std::fs;
use std::time::Instant;

use cluster_support::{Redis, redis_present};
use e2e::{
    Greymilter, GreymilterConfig, PostfixInstance, PostfixOptions, Xclient, assert_greylisted,
    require_postfix, wait_out,
};

#[test]
fn scenario_15_a_retry_at_the_other_mx_is_delivered() {
    if !require_postfix() || !redis_present() {
        return;
    }
    let redis = Redis::start(&[]);
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("cluster.key");
    fs::write(&key, [5u8; 32]).unwrap();
    let config = GreymilterConfig::new().delay("1s").extra(&format!(
        "[cluster]\nredis = \"{}\"\nsecret_file = \"{}\"\ntimeout = \"2s\"\n",
        redis.url(),
        key.display()
    ));
    let (gm_a, gm_b) = (Greymilter::start(config.clone()), Greymilter::start(config));
    let mx_a = PostfixInstance::start(&PostfixOptions::milter(&gm_a.postfix_spec()));
    let mx_b = PostfixInstance::start(&PostfixOptions::milter(&gm_b.postfix_spec()));
    let send = |mx: &PostfixInstance| {
        mx.envelope("news@sender.test", &["alice@example.test"])
            .xclient(Xclient::addr("198.51.100.25"))
            .send()
    };

    let since = Instant::now();
    let first = send(&mx_a);
    let announced = assert_greylisted(first.rcpt());
    assert!(!first.delivered(), "{first:#?}");
    wait_out(announced, since);

    let retry = send(&mx_b);
    assert_eq!(retry.rcpt().code, 250, "{retry:#?}");
    assert!(retry.delivered(), "{retry:#?}");
    // B's one decision, once written (lines are batched): then the log
    // holds whatever B decided.
    gm_b.wait_for_log_after(0, |l| {
        l.contains("to=<alice@example.test>") && l.contains("reason=")
    });
    let log_b = gm_b.log();
    let passed = log_b
        .lines()
        .find(|l| l.contains("reason=retried"))
        .unwrap_or_else(|| panic!("no retried decision at B:\n{log_b}"));
    assert!(passed.contains("src=redis"), "{passed}");
    assert!(
        !log_b.contains("reason=new"),
        "B must not see the tuple as new:\n{log_b}"
    );

    // The next message takes the first MX again and passes there, whitelisted.
    let mark = gm_a.log().len();
    let later = send(&mx_a);
    assert_eq!(later.rcpt().code, 250, "{later:#?}");
    assert!(later.delivered(), "{later:#?}");
    gm_a.wait_for_log_after(mark, |l| {
        l.contains("to=<alice@example.test>") && l.contains("reason=")
    });
    let log_a = gm_a.log();
    assert!(
        log_a
            .lines()
            .any(|l| l.contains("reason=whitelisted") && l.contains("src=redis")),
        "{log_a}"
    );
    for mx in [&mx_a, &mx_b] {
        mx.wait_for_log("a message delivered", |line| {
            line.contains("postfix/virtual") && line.contains("status=sent")
        });
    }
}
