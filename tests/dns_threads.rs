//! The resolver must not start a thread: the checkpoint forks only while
//! /proc/self/status says `Threads: 1`. Own binary without the test
//! harness (whose worker threads would be counted), on the daemon's kind
//! of runtime: current_thread + LocalSet. Also `greymilter spf-walk`'s
//! walker.

#[path = "support/dns/mod.rs"]
mod dns_support;

use std::rc::Rc;
use std::time::Duration;

use dns_support::{Misbehaviour, authoritative, ip, misbehaving, settings};
use greymilter::daemon::thread_count;
use greymilter::dns::{Dns, DnsSettings};

fn main() {
    assert_eq!(
        thread_count().unwrap(),
        1,
        "the test binary starts with one thread"
    );
    let rt = dns_support::runtime();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let good = authoritative().await;
        let silent = misbehaving(Misbehaviour::Silent).await;
        let truncating = misbehaving(Misbehaviour::Truncating).await;
        // Also the /etc/resolv.conf path.
        let system = Rc::new(Dns::new(DnsSettings {
            spf: true,
            ..DnsSettings::default()
        }));
        drop(system);
        for server in [good.addr, silent.addr, truncating.addr] {
            let dns = Rc::new(Dns::new(settings(server, Duration::from_millis(300))));
            let spf = tokio::task::spawn_local(Rc::clone(&dns).spf(
                ip("192.0.2.7"),
                "h".into(),
                "a@ptr.test".into(),
            ));
            let client =
                tokio::task::spawn_local(Rc::clone(&dns).client(ip("192.0.2.10"), b"x".to_vec()));
            // While the lookups are in flight.
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                assert_eq!(
                    thread_count().unwrap(),
                    1,
                    "during lookups against {server}"
                );
            }
            let _ = spf.await.unwrap();
            let _ = client.await.unwrap();
            assert_eq!(thread_count().unwrap(), 1, "after lookups against {server}");
        }
        // `greymilter spf-walk`'s walker on the same resolver.
        let resolver =
            greymilter::dns::build_resolver(&settings(good.addr, Duration::from_secs(2))).unwrap();
        let domains = ["top.walk.test".to_string(), "deep.walk.test".to_string()];
        let walk = tokio::task::spawn_local(async move {
            greymilter::dns::spf_walk(&resolver, &domains).await
        });
        // Lets the walker send its first query.
        tokio::task::yield_now().await;
        assert_eq!(thread_count().unwrap(), 1, "during spf-walk");
        let walk = walk.await.unwrap();
        assert_eq!(walk.domains.len(), 2);
        assert!(walk.domains[0].error.is_none() && walk.domains[1].error.is_some());
        assert_eq!(thread_count().unwrap(), 1, "after spf-walk");
    });
    println!("dns_threads: 1 passed, 0 failed");
}
