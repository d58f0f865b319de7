//! `rediss://`: a real redis-server with a TLS port and certificates from
//! a CA the test makes. Decisions are shared over TLS with a verified
//! certificate; a wrong CA, a wrong name or an expired certificate never
//! gets a tuple (decisions fall back locally, nothing reaches Redis).

#[path = "support/cluster/mod.rs"]
mod cluster_support;
mod support;

use std::path::Path;
use std::time::Duration;

use cluster_support::tls::{Ca, TlsRedis, TlsSentinel, write_pair};
use cluster_support::{options, plain_args, redis_present, run, unix_now};
use greymilter::cluster::{Cluster, Outcome};
use greymilter::cluster::{TlsFiles, TlsSetup};
use greymilter::greylist::key::TupleKey;
use support::Daemon;

fn tls(files: TlsFiles) -> TlsSetup {
    TlsSetup::load(&files).unwrap_or_else(|(k, e)| panic!("{k}: {e}"))
}

fn with_ca(dir: &Path, ca: &Ca) -> TlsFiles {
    TlsFiles {
        ca_file: Some(ca.write(dir, "trusted")),
        ..TlsFiles::default()
    }
}

/// Keys in Redis, read through its plain port.
fn dbsize(r: &TlsRedis) -> u64 {
    redis::cmd("DBSIZE").query(&mut r.redis.conn()).unwrap()
}

/// One decision through a node with `setup` at `url`: `None` = local.
fn decide_once(url: String, setup: TlsSetup, key: u64) -> Option<Outcome> {
    run(async {
        let mut o = options(url, Duration::from_millis(1500));
        o.tls = Some(setup);
        let node = Cluster::connect(&o).await.unwrap();
        let call = node.decide(&TupleKey([key, 1]), plain_args(unix_now(), 1))?;
        call.await.map(|r| r.outcome)
    })
}

#[test]
fn decisions_are_shared_over_verified_tls() {
    if !redis_present() {
        return;
    }
    let ca = Ca::new("gm test CA");
    // The certificate names only "localhost": the host as written in the
    // URL is what is checked, although the socket goes to 127.0.0.1.
    let r = TlsRedis::start(&ca, &ca.issue(&["localhost"], false), "no");
    let dir = tempfile::tempdir().unwrap();
    let setup = tls(with_ca(dir.path(), &ca));
    let first = decide_once(r.url("localhost"), setup.clone(), 7);
    assert!(matches!(first, Some(Outcome::New { .. })), "{first:?}");
    // Another node (another connection) sees the same record over TLS.
    let second = decide_once(r.url("localhost"), setup.clone(), 7);
    assert!(matches!(second, Some(Outcome::Early { .. })), "{second:?}");
    assert!(dbsize(&r) > 0);
    // The same server by its address: the certificate does not name it.
    let before = dbsize(&r);
    assert_eq!(decide_once(r.url("127.0.0.1"), setup, 8), None);
    assert_eq!(
        dbsize(&r),
        before,
        "a tuple crossed an unverified connection"
    );
}

#[test]
fn a_certificate_from_another_ca_or_expired_never_gets_a_tuple() {
    if !redis_present() {
        return;
    }
    let ca = Ca::new("gm test CA");
    let other = Ca::new("someone else");
    let dir = tempfile::tempdir().unwrap();
    // Redis presents a certificate of another CA.
    let r = TlsRedis::start(&other, &other.issue(&["127.0.0.1"], false), "no");
    assert_eq!(
        decide_once(r.url("127.0.0.1"), tls(with_ca(dir.path(), &ca)), 1),
        None
    );
    assert_eq!(dbsize(&r), 0);
    drop(r);
    // Our CA, but the certificate expired in 2020.
    let r = TlsRedis::start(&ca, &ca.issue(&["127.0.0.1"], true), "no");
    assert_eq!(
        decide_once(r.url("127.0.0.1"), tls(with_ca(dir.path(), &ca)), 2),
        None
    );
    assert_eq!(dbsize(&r), 0);
    // tls_insecure (tests only) takes it anyway: the server is fine.
    let insecure = tls(TlsFiles {
        insecure: true,
        ..TlsFiles::default()
    });
    let taken = decide_once(r.url("127.0.0.1"), insecure, 3);
    assert!(matches!(taken, Some(Outcome::New { .. })), "{taken:?}");
}

#[test]
fn a_redis_that_requires_client_certificates_gets_ours() {
    if !redis_present() {
        return;
    }
    let ca = Ca::new("gm test CA");
    let r = TlsRedis::start(&ca, &ca.issue(&["127.0.0.1"], false), "yes");
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        decide_once(r.url("127.0.0.1"), tls(with_ca(dir.path(), &ca)), 1),
        None,
        "redis took a client without a certificate"
    );
    let (cert, key) = write_pair(dir.path(), "client", &ca.issue(&["mx1.test"], false));
    let files = TlsFiles {
        cert_file: Some(cert),
        key_file: Some(key),
        ..with_ca(dir.path(), &ca)
    };
    let shared = decide_once(r.url("127.0.0.1"), tls(files), 2);
    assert!(matches!(shared, Some(Outcome::New { .. })), "{shared:?}");
}

#[test]
fn bad_tls_files_are_refused_at_load_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let load = |files: TlsFiles| TlsSetup::load(&files).map(drop).unwrap_err();
    let (key, e) = load(TlsFiles {
        ca_file: Some(junk.clone()),
        ..TlsFiles::default()
    });
    assert_eq!(key, "ca_file");
    assert!(
        e.contains("junk.pem") && e.contains("no PEM certificate"),
        "{e}"
    );
    let (key, e) = load(TlsFiles {
        ca_file: Some(dir.path().join("missing.pem")),
        ..TlsFiles::default()
    });
    assert_eq!(key, "ca_file");
    assert!(e.contains("cannot read"), "{e}");
    let ca = Ca::new("gm test CA");
    let (cert, _) = write_pair(dir.path(), "client", &ca.issue(&["mx1.test"], false));
    let (key, e) = load(TlsFiles {
        ca_file: Some(ca.write(dir.path(), "ca")),
        cert_file: Some(cert),
        key_file: Some(junk),
        insecure: false,
    });
    assert_eq!(key, "key_file");
    assert!(e.contains("private key"), "{e}");
}

/// The daemon with a wrong CA: a clear error at start, mail decided
/// locally (a new tuple is deferred, not refused), nothing in Redis.
#[test]
fn a_daemon_with_the_wrong_ca_says_so_and_decides_locally() {
    if !redis_present() {
        return;
    }
    let ca = Ca::new("gm test CA");
    let other = Ca::new("someone else");
    let r = TlsRedis::start(&other, &other.issue(&["127.0.0.1"], false), "no");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    std::fs::write(&key, [1u8; 32]).unwrap();
    let ca_file = ca.write(dir.path(), "ca");
    let config = format!(
        "[cluster]\nredis = \"{}\"\nsecret_file = \"{}\"\nca_file = \"{}\"\ntimeout = \"1s\"\n",
        r.url("127.0.0.1"),
        key.display(),
        ca_file.display()
    );
    let d = Daemon::start_in(dir.path(), &config);
    let log = d.wait_for_log(|l| l.contains("invalid peer certificate"));
    assert!(log.contains("UnknownIssuer"), "{log}");
    let q = d.query("198.51.100.7", "a@example.org", &["b@example.net"]);
    assert_eq!(q.status, 4, "{q:?}");
    assert_eq!(dbsize(&r), 0);
}

/// A peer that accepts TCP and never answers the handshake: start-up is
/// bounded (`START_CHECK`), every decision by `timeout`, and both fall back
/// locally.
#[test]
fn a_stalled_handshake_is_bounded_by_the_timeout() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "rediss://127.0.0.1:{}/0",
        silent.local_addr().unwrap().port()
    );
    let setup = tls(TlsFiles {
        insecure: true,
        ..TlsFiles::default()
    });
    run(async {
        let mut o = options(url, Duration::from_millis(200));
        o.tls = Some(setup);
        let started = std::time::Instant::now();
        let node = Cluster::connect(&o).await.unwrap();
        let waited = started.elapsed();
        assert!(
            waited < greymilter::cluster::START_CHECK + Duration::from_secs(1),
            "{waited:?}"
        );
        for i in 0..3 {
            let started = std::time::Instant::now();
            let reply = match node.decide(&TupleKey([9, i]), plain_args(unix_now(), 1)) {
                Some(call) => call.await,
                None => None,
            };
            assert!(reply.is_none());
            // The timeout plus scheduling slack on a loaded machine.
            assert!(
                started.elapsed() < Duration::from_millis(1200),
                "{:?}",
                started.elapsed()
            );
        }
    });
    drop(silent);
}

/// `rediss+sentinel://`: the sentinel is asked over TLS, the primary it
/// names is reached over TLS, both certificates checked (they name
/// 127.0.0.1); with another CA nothing is shared.
#[test]
fn a_sentinel_over_tls_leads_to_the_primary_over_tls() {
    if !redis_present() {
        return;
    }
    let ca = Ca::new("gm test CA");
    let pair = ca.issue(&["127.0.0.1"], false);
    let r = TlsRedis::start(&ca, &pair, "no");
    let s = TlsSentinel::start(&r, &ca, &pair);
    let dir = tempfile::tempdir().unwrap();
    let shared = decide_once(s.url(), tls(with_ca(dir.path(), &ca)), 1);
    assert!(matches!(shared, Some(Outcome::New { .. })), "{shared:?}");
    let keys = dbsize(&r);
    assert!(keys > 0);
    let other = Ca::new("someone else");
    assert_eq!(
        decide_once(s.url(), tls(with_ca(dir.path(), &other)), 2),
        None
    );
    assert_eq!(dbsize(&r), keys);
}
