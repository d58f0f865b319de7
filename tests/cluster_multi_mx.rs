//! Two MX hosts, senders that retry at either: with a table per host a
//! retry that lands on the other host is deferred again (and a provider
//! retrying from a pool of networks often never gets through); with the
//! table shared in Redis no legitimate single-IP sender is deferred twice,
//! and with SPF-keyed tuples no pool sender either. Real daemons in
//! process, a real DNS server and a real redis-server on loopback, a manual
//! clock for the hours of retries (`tests/support/multi_mx`).

#[path = "support/cluster/mod.rs"]
mod cluster_support;
#[path = "support/dns/mod.rs"]
mod dns_support;
#[path = "support/multi_mx/mod.rs"]
mod multi_mx_support;
#[path = "support/rng.rs"]
#[allow(dead_code)]
mod rng;

use std::time::Duration;

use cluster_support::{redis_present, run};
use multi_mx_support::{Lab, Outcome, SCENARIOS};

const MESSAGES: u32 = 40;

async fn outcome(lab: &Lab, name: &str) -> Outcome {
    let s = SCENARIOS.iter().find(|s| s.name == name).unwrap();
    let out = lab.run(s).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    for t in [out.single, out.pool] {
        assert_eq!(t.messages, MESSAGES, "{name}: {out:?}");
        assert_eq!(
            t.other, 0,
            "{name}: a reply was neither 451 4.7.1 nor CONTINUE: {out:?}"
        );
    }
    out
}

#[test]
fn a_shared_table_defers_each_message_once() {
    if !redis_present() {
        return;
    }
    run(async {
        let seed = rng::Rng::from_env("cluster_multi_mx").next();
        let mut lab = Lab::start(MESSAGES, seed, true).await;
        // Sharing, not speed: a deadline a loaded CI machine meets, so no
        // recipient is decided by the local table instead.
        lab.cluster_timeout = Duration::from_secs(2);

        // The experiment sees the problem: separate tables defer retries
        // that land on the other host (a message has 1 in 2 chances of it).
        let apart = outcome(&lab, "two-mx").await;
        assert!(apart.single.extra_deferrals() > 0, "{apart:?}");
        assert!(
            apart.pool.extra_deferrals() > apart.single.extra_deferrals(),
            "{apart:?}"
        );

        let shared = outcome(&lab, "cluster").await;
        assert_eq!(shared.redis.fallbacks, 0, "{shared:?}");
        assert_eq!(shared.single.extra_deferrals(), 0, "{shared:?}");
        assert_eq!(shared.single.delivered, MESSAGES, "{shared:?}");
        assert!(shared.redis.calls >= u64::from(2 * MESSAGES), "{shared:?}");

        let keyed = outcome(&lab, "cluster spf=key").await;
        assert_eq!(keyed.redis.fallbacks, 0, "{keyed:?}");
        for t in [keyed.single, keyed.pool] {
            assert_eq!(t.extra_deferrals(), 0, "{keyed:?}");
            assert_eq!(t.delivered, MESSAGES, "{keyed:?}");
        }
    });
}
