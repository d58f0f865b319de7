//! The cluster module against a real redis-server: several `Cluster`
//! handles on one Redis are several MX nodes.

#[path = "support/cluster/mod.rs"]
mod cluster_support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use cluster_support::{Redis, redis_present, run, unix_now};
use greymilter::cluster::{Args, Cluster, Options, Outcome, SharedSecret};
use greymilter::greylist::key::{Network, TupleKey};

const DELAY: u32 = 300;
const WINDOW: u32 = 4 * 3600;
const LIFE: u32 = 36 * 86_400;

fn now() -> u32 {
    unix_now()
}

fn secret(bytes: &[u8]) -> SharedSecret {
    SharedSecret::from_bytes(bytes).unwrap()
}

fn opts(url: &str, timeout: Duration) -> Options {
    Options {
        url: url.to_string(),
        secret: secret(b"the cluster secret, 32 bytes...."),
        timeout,
        tls: None,
    }
}

fn key(s: &SharedSecret, ip: &str, from: &str, to: &str) -> TupleKey {
    let net = Network::of(ip.parse::<IpAddr>().unwrap(), 24, 64);
    s.secret.tuple_key(&net, from.as_bytes(), to.as_bytes())
}

fn args(now: u32, awl: u32) -> Args {
    Args {
        now,
        delay: DELAY,
        retry_window: WINDOW,
        lifetime: LIFE,
        auto_whitelist_after: awl,
        forced: false,
        hint: 0,
        hint_white: false,
    }
}

async fn ask(node: &Cluster, k: &TupleKey, a: Args) -> Option<Outcome> {
    node.decide(k, a)?.await.map(|r| r.outcome)
}

fn expiretime(r: &Redis, key: &str) -> i64 {
    redis::cmd("EXPIRETIME")
        .arg(key)
        .query(&mut r.conn())
        .unwrap()
}

#[test]
fn three_nodes_share_tuples_expiry_and_the_auto_whitelist() {
    if !redis_present() {
        return;
    }
    let r = Redis::start(&[]);
    run(async {
        let o = opts(&r.url(), Duration::from_secs(2));
        let (a, b, c) = (
            Cluster::connect(&o).await.unwrap(),
            Cluster::connect(&o).await.unwrap(),
            Cluster::connect(&o).await.unwrap(),
        );
        let k = key(&o.secret, "192.0.2.1", "a@example.org", "b@example.net");
        let (tk, nk) = greymilter::cluster::keys(&k);
        let t0 = now();
        assert_eq!(
            ask(&a, &k, args(t0, 1)).await,
            Some(Outcome::New { remaining: DELAY })
        );
        assert_eq!(expiretime(&r, &tk), i64::from(t0 + WINDOW));
        // An early retry at B neither passes nor extends the pending tuple.
        assert_eq!(
            ask(&b, &k, args(t0 + 10, 1)).await,
            Some(Outcome::Early {
                waited: 10,
                remaining: DELAY - 10
            })
        );
        assert_eq!(expiretime(&r, &tk), i64::from(t0 + WINDOW));
        // The retry after the delay lands at B and passes.
        assert_eq!(
            ask(&b, &k, args(t0 + DELAY + 5, 1)).await,
            Some(Outcome::Retried { waited: DELAY + 5 })
        );
        assert_eq!(expiretime(&r, &tk), i64::from(t0 + DELAY + 5 + LIFE));
        // That pass whitelisted the network (auto_whitelist_after = 1):
        // another tuple from it passes at C without greylisting.
        let other = key(&o.secret, "192.0.2.77", "x@example.org", "y@example.net");
        assert_eq!(
            ask(&c, &other, args(t0 + DELAY + 6, 1)).await,
            Some(Outcome::AutoWhitelisted)
        );
        assert!(expiretime(&r, &nk) >= i64::from(t0 + DELAY + 6 + LIFE));
        // Without the auto-whitelist, C sees the whitelisted tuple, and its
        // use refreshes the lifetime.
        assert_eq!(
            ask(&c, &k, args(t0 + DELAY + 100, 0)).await,
            Some(Outcome::Whitelisted)
        );
        assert_eq!(expiretime(&r, &tk), i64::from(t0 + DELAY + 100 + LIFE));
        // A late call (an older `now`) never shortens it.
        assert_eq!(
            ask(&a, &k, args(t0 + DELAY + 50, 0)).await,
            Some(Outcome::Whitelisted)
        );
        assert_eq!(expiretime(&r, &tk), i64::from(t0 + DELAY + 100 + LIFE));
        // A pending tuple past its window starts over.
        let stale = key(&o.secret, "198.51.100.1", "s@example.org", "t@example.net");
        assert!(matches!(
            ask(&a, &stale, args(t0, 0)).await,
            Some(Outcome::New { .. })
        ));
        assert_eq!(
            ask(&b, &stale, args(t0 + WINDOW, 0)).await,
            Some(Outcome::New { remaining: DELAY })
        );
        let ca = a.counters();
        assert_eq!(ca.round_trips, 3);
        assert_eq!(ca.timeouts + ca.errors + ca.fallbacks, 0);
    });
}

#[test]
fn a_thousand_simultaneous_first_attempts_at_two_nodes_give_one_new_each() {
    if !redis_present() {
        return;
    }
    let r = Redis::start(&[]);
    run(async {
        // Atomicity, not speed: a generous deadline on a shared machine.
        let o = opts(&r.url(), Duration::from_secs(10));
        let (a, b) = (
            Cluster::connect(&o).await.unwrap(),
            Cluster::connect(&o).await.unwrap(),
        );
        let t0 = now();
        let mut calls = Vec::new();
        for i in 0..1000 {
            let k = key(
                &o.secret,
                "203.0.113.9",
                &format!("s{i}@example.org"),
                "r@example.net",
            );
            calls.push(a.decide(&k, args(t0, 0)).unwrap());
            calls.push(b.decide(&k, args(t0, 0)).unwrap());
        }
        let replies = futures_util::future::join_all(calls).await;
        for pair in replies.chunks(2) {
            let outcomes: Vec<_> = pair.iter().map(|r| r.unwrap().outcome).collect();
            let new = outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::New { .. }))
                .count();
            assert_eq!(new, 1, "{outcomes:?}");
            assert!(
                outcomes
                    .iter()
                    .any(|o| matches!(o, Outcome::Early { waited: 0, .. })),
                "{outcomes:?}"
            );
        }
    });
}

#[test]
fn junk_at_a_greymilter_key_is_treated_as_absent() {
    if !redis_present() {
        return;
    }
    let r = Redis::start(&[]);
    run(async {
        let o = opts(&r.url(), Duration::from_secs(2));
        let a = Cluster::connect(&o).await.unwrap();
        let t0 = now();
        let mut c = r.conn();
        let cases: [(&str, &[&str]); 4] = [
            ("wrong type", &["LPUSH", "T", "x"]),
            ("not a number", &["SET", "T", "hello"]),
            ("too long", &["SET", "T", "123456789012345678901234567890"]),
            ("a fraction", &["SET", "T", "12.5"]),
        ];
        for (i, (what, cmd)) in cases.iter().enumerate() {
            let k = key(
                &o.secret,
                "192.0.2.1",
                &format!("j{i}@example.org"),
                "b@example.net",
            );
            let (tk, nk) = greymilter::cluster::keys(&k);
            let mut junk = redis::cmd(cmd[0]);
            junk.arg(tk.as_str()).arg(cmd[2]);
            let _: () = junk.query(&mut c).unwrap();
            let _: () = redis::cmd("HSET")
                .arg(&nk)
                .arg("f")
                .arg("v")
                .query(&mut c)
                .unwrap();
            let reply = a.decide(&k, args(t0, 3)).unwrap().await.unwrap();
            assert_eq!(reply.outcome, Outcome::New { remaining: DELAY }, "{what}");
            assert!(reply.junk_tuple && reply.junk_network, "{what}: {reply:?}");
            // Overwritten with a well-formed tuple.
            assert_eq!(
                ask(&a, &k, args(t0 + 1, 3)).await,
                Some(Outcome::Early {
                    waited: 1,
                    remaining: DELAY - 1
                }),
                "{what}"
            );
        }
        assert_eq!(a.counters().junk, 4);
        assert_eq!(a.counters().errors, 0);
    });
}

#[test]
fn a_node_with_another_secret_refuses_to_start() {
    if !redis_present() {
        return;
    }
    let r = Redis::start(&[]);
    run(async {
        let o = opts(&r.url(), Duration::from_secs(2));
        Cluster::connect(&o).await.unwrap();
        let mut other = o.clone();
        other.secret = secret(b"another secret, also 32 bytes...");
        let err = Cluster::connect(&other).await.err().unwrap();
        assert!(
            err.contains("fingerprint") && err.contains("secret_file"),
            "{err}"
        );
        // The first one still starts.
        Cluster::connect(&o).await.unwrap();
    });
}

#[test]
fn a_unix_socket_and_a_password_work() {
    if !redis_present() {
        return;
    }
    let r = Redis::start(&["--requirepass", "s3cret"]);
    run(async {
        let path = r.unix_path();
        let url = format!("unix:{}?pass=s3cret", path.display());
        let o = opts(&url, Duration::from_secs(2));
        let a = Cluster::connect(&o).await.unwrap();
        let k = key(&o.secret, "192.0.2.1", "a@example.org", "b@example.net");
        assert!(matches!(
            ask(&a, &k, args(now(), 0)).await,
            Some(Outcome::New { .. })
        ));
        let tcp = opts(
            &format!("redis://:s3cret@127.0.0.1:{}/0", r.port),
            Duration::from_secs(2),
        );
        let b = Cluster::connect(&tcp).await.unwrap();
        assert!(matches!(
            ask(&b, &k, args(now(), 0)).await,
            Some(Outcome::Early { .. })
        ));
        // A wrong password: the node starts, and decides locally.
        let bad = opts(
            &format!("redis://:wrong@127.0.0.1:{}/0", r.port),
            Duration::from_secs(2),
        );
        let c = Cluster::connect(&bad).await.unwrap();
        assert_eq!(ask(&c, &k, args(now(), 0)).await, None);
        assert_eq!(c.counters().errors, 1);
    });
}

/// Calls `node` until it answers from Redis, each call bounded; panics
/// after `patience`. Returns how many calls were decided locally.
async fn until_shared(node: &Cluster, k: &TupleKey, timeout: Duration, patience: Duration) -> u32 {
    let deadline = Instant::now() + patience;
    let mut local = 0;
    loop {
        let started = Instant::now();
        let answer = match node.decide(k, args(now(), 0)) {
            Some(call) => call.await,
            None => None,
        };
        assert!(
            started.elapsed() < timeout + Duration::from_millis(500),
            "a call took {:?}",
            started.elapsed()
        );
        if answer.is_some() {
            return local;
        }
        local += 1;
        assert!(Instant::now() < deadline, "redis never answered again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn redis_killed_restarted_frozen_and_thawed() {
    if !redis_present() {
        return;
    }
    let mut r = Redis::start(&[]);
    let timeout = Duration::from_millis(50);
    run(async {
        let o = opts(&r.url(), timeout);
        let a = Cluster::connect(&o).await.unwrap();
        let k = key(&o.secret, "192.0.2.1", "a@example.org", "b@example.net");
        assert!(ask(&a, &k, args(now(), 0)).await.is_some());

        // Killed: every call fails within the deadline, the breaker opens.
        r.kill();
        for _ in 0..20 {
            let started = Instant::now();
            if let Some(call) = a.decide(&k, args(now(), 0)) {
                assert_eq!(call.await, None);
            }
            assert!(started.elapsed() < timeout + Duration::from_millis(500));
        }
        assert_eq!(a.counters().breaker_openings, 1);
        // Restarted (empty, so the script cache is too): shared again.
        r.restart();
        until_shared(&a, &k, timeout, Duration::from_secs(30)).await;
        assert_eq!(a.counters().breaker_openings, 1);

        // Frozen: calls time out, then the breaker keeps them local.
        r.freeze();
        for _ in 0..10 {
            let started = Instant::now();
            if let Some(call) = a.decide(&k, args(now(), 0)) {
                assert_eq!(call.await, None);
            }
            assert!(started.elapsed() < timeout + Duration::from_millis(500));
        }
        let c = a.counters();
        assert_eq!(c.breaker_openings, 2);
        assert!(c.timeouts >= 3, "{c:?}");
        r.thaw();
        until_shared(&a, &k, timeout, Duration::from_secs(30)).await;
        assert!(a.counters().local_mode > Duration::ZERO);
    });
}

#[test]
fn redis_refusing_connections_at_start_then_coming_up() {
    if !redis_present() {
        return;
    }
    let mut r = Redis::start(&[]);
    r.kill();
    let timeout = Duration::from_millis(50);
    run(async {
        let o = opts(&r.url(), timeout);
        // Starts anyway, deciding locally.
        let a = Cluster::connect(&o).await.unwrap();
        let k = key(&o.secret, "192.0.2.1", "a@example.org", "b@example.net");
        for _ in 0..5 {
            if let Some(call) = a.decide(&k, args(now(), 0)) {
                assert_eq!(call.await, None);
            }
        }
        r.restart();
        until_shared(&a, &k, timeout, Duration::from_secs(30)).await;
        // The secret was checked (and stored) before the first shared call.
        let fp: String = redis::cmd("GET")
            .arg(greymilter::cluster::FINGERPRINT_KEY)
            .query(&mut r.conn())
            .unwrap();
        assert_eq!(fp, o.secret.fingerprint_hex());
    });
}

#[test]
fn a_mismatched_secret_found_after_an_unreachable_start_keeps_the_node_local() {
    if !redis_present() {
        return;
    }
    let r = Redis::start(&[]);
    let _: () = redis::cmd("SET")
        .arg(greymilter::cluster::FINGERPRINT_KEY)
        .arg("0000000000000000")
        .query(&mut r.conn())
        .unwrap();
    r.freeze();
    run(async {
        let o = opts(&r.url(), Duration::from_millis(50));
        let a = Cluster::connect(&o).await.unwrap();
        r.thaw();
        let k = key(&o.secret, "192.0.2.1", "a@example.org", "b@example.net");
        let deadline = Instant::now() + Duration::from_secs(30);
        while a.counters().errors == 0 {
            if let Some(call) = a.decide(&k, args(now(), 0)) {
                assert_eq!(call.await, None);
            }
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // From now on every call is local at once.
        assert!(a.decide(&k, args(now(), 0)).is_none());
    });
    // Nothing was written under our keys.
    let keys: Vec<String> = redis::cmd("KEYS").arg("gm{*").query(&mut r.conn()).unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[test]
fn redis_out_of_memory_is_an_error_decided_locally() {
    if !redis_present() {
        return;
    }
    let r = Redis::start(&["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]);
    // Fill Redis with someone else's data until it refuses writes.
    let mut c = r.conn();
    let blob = "x".repeat(64 * 1024);
    for i in 0..1000 {
        let res: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("other:{i}"))
            .arg(&blob)
            .query(&mut c);
        if res.is_err() {
            break;
        }
    }
    run(async {
        let o = opts(&r.url(), Duration::from_secs(2));
        // The fingerprint write is refused too: the node starts and
        // decides locally.
        let a = Cluster::connect(&o).await.unwrap();
        let k = key(&o.secret, "192.0.2.1", "a@example.org", "b@example.net");
        for _ in 0..3 {
            if let Some(call) = a.decide(&k, args(now(), 0)) {
                assert_eq!(call.await, None);
            }
        }
        assert!(a.counters().errors >= 1, "{:?}", a.counters());
    });
}

#[test]
fn what_a_node_learnt_while_redis_was_away_is_merged_not_forgotten() {
    if !redis_present() {
        return;
    }
    let r = Redis::start(&[]);
    run(async {
        let o = opts(&r.url(), Duration::from_secs(2));
        let a = Cluster::connect(&o).await.unwrap();
        let t0 = now();
        let with_hint = |now: u32, hint: u32, white: bool| Args {
            hint,
            hint_white: white,
            ..args(now, 0)
        };
        // Seen locally DELAY + 1 s ago: the retry passes and Redis learns it.
        let k = key(&o.secret, "192.0.2.1", "a@example.org", "b@example.net");
        assert_eq!(
            ask(&a, &k, with_hint(t0, t0 - DELAY - 1, false)).await,
            Some(Outcome::Retried { waited: DELAY + 1 })
        );
        assert_eq!(ask(&a, &k, args(t0, 0)).await, Some(Outcome::Whitelisted));
        // Seen locally 10 s ago: early, and pending in Redis from then.
        let k = key(&o.secret, "192.0.2.1", "c@example.org", "b@example.net");
        assert_eq!(
            ask(&a, &k, with_hint(t0, t0 - 10, false)).await,
            Some(Outcome::Early {
                waited: 10,
                remaining: DELAY - 10
            })
        );
        let (tk, _) = greymilter::cluster::keys(&k);
        assert_eq!(expiretime(&r, &tk), i64::from(t0 - 10 + WINDOW));
        // Whitelisted locally: whitelisted in Redis too.
        let k = key(&o.secret, "192.0.2.1", "d@example.org", "b@example.net");
        assert_eq!(
            ask(&a, &k, with_hint(t0, t0 - 5000, true)).await,
            Some(Outcome::Whitelisted)
        );
        let (tk, _) = greymilter::cluster::keys(&k);
        assert_eq!(expiretime(&r, &tk), i64::from(t0 + LIFE));
        // Redis' own record wins over a hint.
        assert_eq!(
            ask(&a, &k, with_hint(t0 + 1, t0 - DELAY - 1, false)).await,
            Some(Outcome::Whitelisted)
        );
    });
}

/// The administrator's calls (`cluster::admin`): a forgotten or flushed
/// tuple refuses a node's hint, flush keeps whitelisted tuples, `peek`
/// changes nothing, allowances are shared with an epoch.
#[test]
fn admin_calls_tombstone_flush_peek_and_share_allowances() {
    if !redis_present() {
        return;
    }
    let r = Redis::start(&[]);
    run(async {
        let node = Cluster::connect(&opts(&r.url(), Duration::from_secs(2)))
            .await
            .unwrap();
        let s = secret(b"the cluster secret, 32 bytes....");
        let (pending, white) = (
            key(&s, "192.0.2.1", "a@x", "b@y"),
            key(&s, "198.51.100.2", "a@x", "b@y"),
        );
        let t = now();
        assert_eq!(
            ask(&node, &pending, args(t, 0)).await,
            Some(Outcome::New { remaining: DELAY })
        );
        node.allow_tuple(&white, u64::from(t), u64::from(t + 60))
            .await
            .unwrap();
        assert_eq!(node.epoch().await.unwrap(), None);

        // peek reads both states and changes nothing: every key, its
        // value and its expiry are the same after the peeks.
        let stored = r.snapshot();
        let peeked = node.peek(&pending).await.unwrap();
        assert!(
            matches!(
                peeked.tuple,
                Some((greymilter::cluster::SharedTuple::Pending { first_seen }, Some(_)))
                    if first_seen == u64::from(t)
            ),
            "{peeked:?}"
        );
        let before = node.peek(&white).await.unwrap();
        assert_eq!(r.snapshot(), stored);
        assert_eq!(
            before.tuple,
            Some((
                greymilter::cluster::SharedTuple::Whitelisted {
                    first_seen: u64::from(t)
                },
                Some(u64::from(t + 60))
            ))
        );

        // flush: the pending tuple goes, the whitelisted one stays; a node
        // still remembering the pending tuple cannot hand it back.
        let progress = std::cell::Cell::new(0);
        let swept = node
            .flush_pending(Duration::from_secs(3), &progress)
            .await
            .unwrap();
        assert_eq!(progress.get(), 1);
        assert_eq!((swept.tuples, swept.complete), (1, true));
        let hinted = Args {
            hint: t,
            ..args(t + 10, 0)
        };
        assert_eq!(
            ask(&node, &pending, hinted).await,
            Some(Outcome::New { remaining: DELAY })
        );
        assert_eq!(
            ask(&node, &white, args(t + 10, 0)).await,
            Some(Outcome::Whitelisted)
        );

        // forget: same for a whitelisted tuple, and the epoch moves.
        assert!(
            node.forget_tuple(&white, u64::from(t) + 3600)
                .await
                .unwrap()
        );
        assert!(
            !node
                .forget_tuple(&white, u64::from(t) + 3600)
                .await
                .unwrap()
        );
        assert_eq!(node.epoch().await.unwrap(), Some(2));
        let hinted_white = Args {
            hint: t,
            hint_white: true,
            ..args(t + 20, 0)
        };
        assert_eq!(
            ask(&node, &white, hinted_white).await,
            Some(Outcome::New { remaining: DELAY })
        );

        // Allowances: added, capped, listed unexpired, removed.
        let now64 = u64::from(t);
        node.allow_shared("network 192.0.2.0/24", now64, now64 + 60, 2)
            .await
            .unwrap();
        node.allow_shared("sender-domain example.org", now64, now64 + 60, 2)
            .await
            .unwrap();
        assert!(
            node.allow_shared("sender-domain example.net", now64, now64 + 60, 2)
                .await
                .is_err()
        );
        let listed = node.allowances(now64, 10).await.unwrap();
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(listed.contains(&("network 192.0.2.0/24".to_string(), now64 + 60)));
        assert!(node.allowances(now64 + 60, 10).await.unwrap().is_empty());
        assert!(node.forget_shared("network 192.0.2.0/24").await.unwrap());
        assert_eq!(node.epoch().await.unwrap(), Some(5));
    });
}
