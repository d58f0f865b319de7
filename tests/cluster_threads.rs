//! The Redis client never starts a thread (the checkpoint forks only with
//! one): not for a host name in the URL (resolved once, in the caller), not
//! for calls, not for reconnecting. Alone in its binary so that no other
//! test's thread is counted.

mod cluster_support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cluster_support::{Redis, redis_present, threads};
use greymilter::cluster::{Args, Cluster, Options, SharedSecret};
use greymilter::greylist::key::TupleKey;

#[test]
fn the_redis_client_starts_no_thread() {
    if !redis_present() {
        return;
    }
    let mut r = Redis::start(&[]);
    let before = threads("self");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, async {
        let o = Options {
            url: format!("redis://localhost:{}/0", r.port),
            secret: SharedSecret::from_bytes(b"0123456789abcdef").unwrap(),
            timeout: Duration::from_millis(500),
        };
        let a = Cluster::connect(&o).await.unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as u32;
        let args = Args {
            now,
            delay: 300,
            retry_window: 3600,
            lifetime: 86_400,
            auto_whitelist_after: 1,
            forced: false,
            hint: 0,
            hint_white: false,
        };
        for i in 0..50 {
            let call = a.decide(&TupleKey([1, i]), args).unwrap();
            assert!(call.await.is_some());
        }
        assert_eq!(threads("self"), before);
        r.restart();
        let mut shared = false;
        for i in 0..200 {
            if let Some(call) = a.decide(&TupleKey([2, i]), args) {
                shared = call.await.is_some();
            }
            if shared {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(shared, "redis never answered after the restart");
        assert_eq!(threads("self"), before);
    });
}
