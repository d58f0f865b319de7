//! The daemon with DNS checks, end to end through the milter protocol:
//! the real binary, real DNS servers on loopback (in this test process).
//! A provider retrying from six /24s its SPF record authorises is deferred
//! once, then passes (`spf = "key"`); other senders from the same networks
//! are still greylisted; a dead resolver never causes a 5xx nor holds a
//! recipient past the budget, and a healthy client beside it is served.

#[path = "support/dns/mod.rs"]
mod dns_support;
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dns_support::{PROVIDER_POOL as POOL, Servers, ip};
use greymilter::milter::client::{ConnectAddr, Response};
use nix::sys::signal::Signal;
use support::Daemon;
use support::healthy::{Client, REPLY_TIMEOUT, is_greylisted, negotiated};
use support::watch::Report;

fn config(server: SocketAddr, timeout: &str) -> String {
    format!(
        "[greylist]\ndelay = \"2s\"\nauto_whitelist_after = 0\nspf = \"key\"\n\
         allow_zones = [\"wl.test=127.0.0.2\"]\nblock_zones = [\"bl.test\"]\n\
         [dns]\nservers = [\"{server}\"]\ntimeout = \"{timeout}\"\n\
         [stats]\nfile = \"{{dir}}/stats\"\n"
    )
}

/// One transaction; the RCPT reply.
async fn deliver(addr: SocketAddr, client: &str, name: &str, from: &str) -> Response {
    let mut c: Client = negotiated(addr).await;
    let r = c
        .connect(name, &ConnectAddr::Ip(ip(client), 25))
        .await
        .unwrap();
    assert_eq!(r, Response::Continue);
    c.macros(b'M', &[("s", "mx.sender.example")]).await.unwrap();
    assert_eq!(c.mail(&[from]).await.unwrap(), Response::Continue);
    let r = c.rcpt(&["<user@our.example>"]).await.unwrap();
    c.quit().await.ok();
    r
}

fn rt() -> tokio::runtime::Runtime {
    dns_support::runtime()
}

fn report(d: &Daemon) -> Report {
    let mark = d.log_len();
    d.signal(Signal::SIGUSR1);
    d.wait_for_log_after(mark, |l| l.contains("DNS-Errors"));
    Report {
        text: std::fs::read_to_string(d.dir.join("stats")).unwrap(),
    }
}

#[test]
fn provider_pool_passes_after_one_deferral_in_key_mode() {
    let s = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), &config(s.good, "2s"));
    let addr = d.milter_addr();
    rt().block_on(async {
        let from = "<bounce-1@provider.test>";
        let first = deliver(addr, POOL[0], "out.provider.test", from).await;
        assert!(is_greylisted(&first), "{first:?}");
        // The retry comes after the delay, from each other network.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        for client in &POOL[1..] {
            let r = deliver(addr, client, "out.provider.test", from).await;
            assert_eq!(r, Response::Continue, "retry from {client}");
        }
        // Other senders on the same networks: SPF passes for their own
        // domain (amech.test authorises 192.0.2.7) or not at all.
        for (client, from) in [
            ("192.0.2.7", "<x@amech.test>"),
            ("198.51.100.9", "<x@fail.test>"),
            ("203.0.113.50", "<x@nospf.test>"),
        ] {
            let r = deliver(addr, client, "[x]", from).await;
            assert!(is_greylisted(&r), "{client} {from}: {r:?}");
        }
        // Allow zone: not greylisted; block zone: its own longer delay.
        let r = deliver(addr, "192.0.2.10", "x.example", "<x@nospf.test>").await;
        assert_eq!(r, Response::Continue);
        let r = deliver(addr, "192.0.2.20", "x.example", "<x@nospf.test>").await;
        assert!(is_greylisted(&r), "{r:?}");
    });
    // The resolver started no thread in the daemon (the checkpoint fork
    // needs exactly one).
    let threads = support::watch::proc_status(d.pid().as_raw(), "Threads");
    assert_eq!(threads, 1);
    // Decision lines are batched: wait for them rather than read at once.
    d.wait_for_log(|l| l.contains("spf=pass"));
    d.wait_for_log(|l| l.contains("reason=dnswl"));
    let r = report(&d);
    assert!(r.is_complete(), "{}", r.text);
    assert_eq!(r.num("SPF-Keyed"), 7, "{}", r.text);
    assert_eq!(r.num("DNSWL-Passed"), 1, "{}", r.text);
    assert_eq!(r.num("DNSBL-Listed"), 1, "{}", r.text);
    assert_eq!(r.num("DNS-Timeouts") + r.num("DNS-Errors"), 0, "{}", r.text);
}

#[test]
fn a_dead_resolver_decides_within_the_budget_and_never_rejects() {
    let s = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    let budget = Duration::from_millis(500);
    let d = Daemon::start_in(dir.path(), &config(s.silent, "500ms"));
    let addr = d.milter_addr();
    rt().block_on(async {
        // Three at once plus a client of the same provider: every answer a
        // greylisting 451 (decided as without DNS), each within the budget.
        let mut tasks = Vec::new();
        for (i, client) in POOL.iter().enumerate() {
            tasks.push(async move {
                let t = Instant::now();
                let r = deliver(
                    addr,
                    client,
                    "mail.example",
                    &format!("<a{i}@provider.test>"),
                )
                .await;
                (r, t.elapsed())
            });
        }
        for (r, took) in futures_util::future::join_all(tasks).await {
            assert!(is_greylisted(&r), "{r:?}");
            assert!(took < budget + REPLY_TIMEOUT / 4, "{took:?}");
        }
    });
    let r = report(&d);
    assert!(r.num("DNS-Timeouts") >= 1, "{}", r.text);
    assert_eq!(r.num("Decision-Timeouts"), 0, "{}", r.text);
}

/// `[dns]` and `spf` changed by SIGHUP apply to the next transaction of a
/// session already open, not only to sessions that start after it.
#[test]
fn a_reload_swaps_the_dns_checks_for_open_sessions() {
    let s = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "[greylist]\ndelay = \"2s\"\n");
    let addr = d.milter_addr();
    rt().block_on(async {
        let mut c: Client = negotiated(addr).await;
        let r = c
            .connect("out.provider.test", &ConnectAddr::Ip(ip(POOL[0]), 25))
            .await
            .unwrap();
        assert_eq!(r, Response::Continue);
        let from = "<bounce-9@provider.test>";
        assert_eq!(c.mail(&[from]).await.unwrap(), Response::Continue);
        let r = c.rcpt(&["<user@our.example>"]).await.unwrap();
        assert!(is_greylisted(&r), "{r:?}");
        // The deferral's own line first (lines are batched), so that the
        // absence of spf= is read from a log that holds it.
        let line = d.wait_for_log(|l| l.contains("to=<user@our.example>") && l.contains("reason="));
        assert!(!line.contains("spf="), "{line}");
        assert!(!d.log_text().contains("spf="));

        let text = format!(
            "[milter]\nlisten = \"inet:{}@127.0.0.1\"\n{}",
            addr.port(),
            config(s.good, "2s")
        )
        .replace("{dir}", &dir.path().display().to_string());
        std::fs::write(&d.config, text).unwrap();
        let mark = d.log_len();
        d.signal(Signal::SIGHUP);
        d.wait_for_log_after(mark, |l| {
            l.contains("configuration reloaded") || l.contains("reload failed")
        });
        assert!(d.log_text().contains("configuration reloaded"));

        c.abort().await.unwrap();
        assert_eq!(c.mail(&[from]).await.unwrap(), Response::Continue);
        let r = c.rcpt(&["<user@our.example>"]).await.unwrap();
        assert!(is_greylisted(&r), "{r:?}");
        c.quit().await.ok();
    });
    let line = d.wait_for_log(|l| l.contains("spf=pass"));
    assert!(line.contains("from=<bounce-9@provider.test>"), "{line}");
}
