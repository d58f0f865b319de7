//! The Redis client never starts a thread (the checkpoint forks only with
//! one): not for a host name in the URL (resolved once, in the caller), not
//! for calls, not for reconnecting, not for a Redis Cluster's routing.
//! Alone in its binary so that no other test's thread is counted.

#[path = "support/cluster/mod.rs"]
mod cluster_support;

use std::time::Duration;

use cluster_support::shard::RedisCluster;
use cluster_support::tls::{Ca, TlsRedis};
use cluster_support::{Redis, options, plain_args, redis_present, run, unix_now};
use greymilter::cluster::Cluster;
use greymilter::cluster::{TlsFiles, TlsSetup};
use greymilter::daemon::thread_count;
use greymilter::greylist::key::TupleKey;

#[test]
fn the_redis_client_starts_no_thread() {
    if !redis_present() {
        return;
    }
    let mut r = Redis::start(&[]);
    let url = format!("redis://localhost:{}/0", r.port);
    calls_and_a_restart_start_no_thread(&mut r, options(url, Duration::from_millis(500)));
    // The same over TLS (rustls with ring, our reconnecting connection),
    // a host name verified against the certificate.
    let ca = Ca::new("gm test CA");
    let mut t = TlsRedis::start(&ca, &ca.issue(&["localhost"], false), "no");
    let files = TlsFiles {
        ca_file: Some(ca.write(t.files.path(), "trusted")),
        ..TlsFiles::default()
    };
    let mut o = options(t.url("localhost"), Duration::from_millis(500));
    o.tls = Some(TlsSetup::load(&files).unwrap_or_else(|(k, e)| panic!("{k}: {e}")));
    calls_and_a_restart_start_no_thread(&mut t.redis, o);
    // The same on a sharded Redis Cluster (one connection per primary,
    // slot map reloads), a primary restarted.
    let mut c = RedisCluster::start();
    let o = options(c.url(3), Duration::from_millis(500));
    calls_and_a_restart_start_no_thread(&mut c.nodes[0], o);
}

fn calls_and_a_restart_start_no_thread(r: &mut Redis, o: greymilter::cluster::Options) {
    let before = thread_count().unwrap();
    run(async {
        let a = Cluster::connect(&o).await.unwrap();
        let args = plain_args(unix_now(), 1);
        for i in 0..50 {
            let call = a.decide(&TupleKey([1, i]), args).unwrap();
            assert!(call.await.is_some());
        }
        assert_eq!(thread_count().unwrap(), before);
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
        assert_eq!(thread_count().unwrap(), before);
    });
}
