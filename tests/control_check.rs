//! `greymilter check` says what the daemon then does. Random cases
//! (client, client name, sender, recipient, authentication, the tuple's
//! history, and so the DNS facts its client and sender have in the test
//! zone) are asked through the control socket, then sent as a milter
//! session; the decision logged must be the one `check` described, field
//! for field (action, reason, waited, remaining). With and without DNS
//! checks (allow zone, block zone, SPF-keyed tuples), on a lone node and
//! on a cluster node with a real redis-server. The daemons are the real
//! ones in process, on a manual clock that does not move between the check
//! and the session; the DNS server is real, on loopback.
//!
//! One test function: tracing caches per-callsite interest globally, and
//! the decision log is read from a subscriber of this thread.

#[path = "support/cluster/mod.rs"]
mod cluster_support;
#[path = "support/dns/mod.rs"]
mod dns_support;
#[path = "support/log/mod.rs"]
mod log_support;
#[path = "support/rng.rs"]
#[allow(dead_code)]
mod rng;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cluster_support::{Redis, redis_present};
use greymilter::cluster::{Cluster, Options, SharedSecret};
use greymilter::config::Config;
use greymilter::daemon::bind_admin;
use greymilter::daemon::{Daemon, Event, Setup};
use greymilter::greylist::clock::ManualClock;
use greymilter::milter::client::{ClientBuilder, ConnectAddr};
use greymilter::milter::listener::{ListenSpec, Listener, UnixSocketOptions};
use log_support::Captured;
use rng::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

const CASES: usize = 20;

/// Clients and what the test zone says of them: an allow-zone and a
/// block-zone client, two networks of `provider.test`'s SPF record, a
/// client nobody lists, and one the `[lists]` accept.
const CLIENTS: [&str; 6] = [
    "192.0.2.10",
    "192.0.2.20",
    "192.0.2.1",
    "198.51.100.2",
    "100.64.9.9",
    "198.51.100.99",
];
const NAMES: [&str; 3] = ["", "mail.example.com", "dyn-100-64-9-9.pool.example"];
/// SPF pass from the provider's networks, none, fail, the null sender, and
/// a sender domain the lists greylist with a longer delay.
const SENDERS: [&str; 5] = [
    "bounce@provider.test",
    "x@nospf.test",
    "y@fail.test",
    "",
    "z@slow.test",
];
const RECIPIENTS: [&str; 3] = [
    "user@example.net",
    "other@example.net",
    "closed@example.net",
];

struct Node {
    spec: ListenSpec,
    control: PathBuf,
    events: UnboundedSender<Event>,
    done: tokio::task::JoinHandle<()>,
}

fn config(dir: &Path, dns: Option<SocketAddr>, redis: Option<&Redis>) -> String {
    let mut text = format!(
        "[greylist]\ndelay = \"10m\"\nretry_window = \"2h\"\nauto_whitelist_after = 2\n\
         [lists]\nclients = {{ \"198.51.100.99\" = \"accept\" }}\n\
         recipients = {{ \"closed@example.net\" = \"reject\" }}\n\
         sender_domains = {{ \"slow.test\" = {{ action = \"greylist\", delay = \"20m\" }} }}\n\
         [control]\nsocket = \"{}\"\n",
        dir.join("control.sock").display()
    );
    if let Some(dns) = dns {
        text = text.replace(
            "[lists]",
            "spf = \"key\"\nallow_zones = [\"wl.test=127.0.0.2\"]\nblock_zones = [\"bl.test\"]\n\
             block_delay = \"30m\"\n[lists]",
        );
        text.push_str(&format!("[dns]\nservers = [\"{dns}\"]\ntimeout = \"2s\"\n"));
    }
    if let Some(r) = redis {
        let key = dir.join("cluster.key");
        std::fs::write(&key, [7u8; 32]).unwrap();
        text.push_str(&format!(
            "[cluster]\nredis = \"{}\"\nsecret_file = \"{}\"\ntimeout = \"1s\"\n",
            r.url(),
            key.display()
        ));
    }
    text
}

async fn start(dir: &Path, text: &str, clock: &ManualClock, redis: Option<&Redis>) -> Node {
    let path = dir.join("greylist.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    let listener = Listener::bind(
        &ListenSpec::Tcp("127.0.0.1:0".parse().unwrap()),
        &UnixSocketOptions::default(),
    )
    .unwrap();
    let port = listener.tcp_port().unwrap();
    let admin = bind_admin(&config, None).unwrap();
    let setup = Setup {
        config_path: Some(path),
        logging: None,
        identity: None,
        clock: Box::new(clock.clone()),
    };
    let mut daemon = Daemon::start(config, setup).unwrap().with_admin(admin);
    if let Some(r) = redis {
        let opts = Options {
            url: r.url(),
            secret: SharedSecret::from_bytes(&[7u8; 32]).unwrap(),
            timeout: Duration::from_secs(1),
            tls: None,
        };
        let cluster = Cluster::connect(&opts).await.unwrap();
        daemon = daemon.with_cluster(cluster, opts.secret.secret);
    }
    let (events, rx) = unbounded_channel();
    let done = tokio::task::spawn_local(daemon.serve(listener, rx));
    Node {
        spec: ListenSpec::Tcp(format!("127.0.0.1:{port}").parse().unwrap()),
        control: dir.join("control.sock"),
        events,
        done,
    }
}

#[derive(Debug, Clone, Copy)]
struct Case {
    client: &'static str,
    name: &'static str,
    sender: &'static str,
    recipient: &'static str,
    authenticated: bool,
}

impl Case {
    fn random(rng: &mut Rng) -> Case {
        let pick = |rng: &mut Rng, n: usize| rng.below(n as u64) as usize;
        Case {
            client: CLIENTS[pick(rng, CLIENTS.len())],
            name: NAMES[pick(rng, NAMES.len())],
            sender: SENDERS[pick(rng, SENDERS.len())],
            recipient: RECIPIENTS[pick(rng, RECIPIENTS.len())],
            authenticated: rng.below(8) == 0,
        }
    }
}

/// `(action, reason, waited, remaining)`.
type Said = (String, String, String, String);

/// `check` over the control socket, as the CLI sends it.
async fn check(node: &Node, c: &Case) -> Said {
    let mut line = format!(
        "check client={} from=<{}> to=<{}>",
        c.client, c.sender, c.recipient
    );
    if !c.name.is_empty() {
        line.push_str(&format!(" name={}", c.name));
    }
    if c.authenticated {
        line.push_str(" auth=yes");
    }
    line.push('\n');
    let mut s = tokio::net::UnixStream::connect(&node.control)
        .await
        .unwrap();
    s.write_all(line.as_bytes()).await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    let field = |label: &str| {
        answer
            .lines()
            .find_map(|l| l.strip_prefix(label)?.strip_prefix(": "))
            .unwrap_or_else(|| panic!("no {label} in {answer}"))
            .to_string()
    };
    (
        field("action"),
        field("reason"),
        field("waited"),
        field("remaining"),
    )
}

/// One delivery attempt (no HELO, as `check` has none); the decision
/// logged for it.
async fn attempt(node: &Node, c: &Case, log: &Captured) -> Said {
    let before = log.text().len();
    let mut m = ClientBuilder::new().connect(&node.spec).await.unwrap();
    m.negotiate().await.unwrap();
    let addr: IpAddr = c.client.parse().unwrap();
    let hostname = if c.name.is_empty() {
        format!("[{addr}]")
    } else {
        c.name.to_string()
    };
    m.connect(&hostname, &ConnectAddr::Ip(addr, 40_000))
        .await
        .unwrap();
    if c.authenticated {
        m.macros(b'M', &[("{auth_authen}", "user")]).await.unwrap();
    }
    m.mail(&[&format!("<{}>", c.sender)]).await.unwrap();
    m.rcpt(&[&format!("<{}>", c.recipient)]).await.unwrap();
    m.abort().await.unwrap();
    m.quit().await.unwrap();
    assert!(m.closed().await.unwrap());
    let text = log.text();
    let line = text[before..]
        .lines()
        .rfind(|l| l.contains("action="))
        .unwrap_or_else(|| panic!("no decision logged for {c:?}:\n{}", &text[before..]))
        .to_string();
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name}= in {line}"))
            .to_string()
    };
    (
        field("action"),
        field("reason"),
        field("delay"),
        field("remaining"),
    )
}

/// 20 random cases against one daemon; returns the decisions seen.
async fn agree(label: &str, dns: bool, redis: Option<&Redis>, log: &Captured, seed: u64) {
    let mut rng = Rng::new(seed);
    let server = if dns {
        Some(dns_support::authoritative().await)
    } else {
        None
    };
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), server.as_ref().map(|s| s.addr), redis);
    // Redis expiries are absolute: the clock starts at the real time.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let clock = ManualClock::new(now.as_secs());
    let node = start(dir.path(), &text, &clock, redis).await;
    let mut seen = Vec::new();
    for i in 0..CASES {
        let case = Case::random(&mut rng);
        // The tuple's history: up to three earlier attempts, minutes apart
        // (new, early, retried, whitelisted, auto-whitelisted, expired).
        for _ in 0..rng.below(4) {
            attempt(&node, &case, log).await;
            clock.advance(rng.below(25 * 60));
        }
        let said = check(&node, &case).await;
        let done = attempt(&node, &case, log).await;
        assert_eq!(said, done, "{label} case {i}: {case:?} (seed {seed})");
        seen.push(format!("{}/{}", done.0, done.1));
        clock.advance(rng.below(5 * 60));
    }
    seen.sort();
    seen.dedup();
    eprintln!("{label}: {CASES} cases agree; decisions seen: {seen:?}");
    node.events.send(Event::Shutdown).unwrap();
    node.done.await.unwrap();
}

#[test]
fn check_and_the_daemon_agree_with_and_without_dns_alone_and_in_a_cluster() {
    let log = Captured::default();
    let sink = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .without_time()
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let seed = Rng::from_env("control_check").next();
    cluster_support::run(async {
        agree("standalone, no DNS", false, None, &log, seed).await;
        agree("standalone, DNS", true, None, &log, seed ^ 1).await;
        if !redis_present() {
            return;
        }
        let redis = Redis::start(&[]);
        agree("cluster, no DNS", false, Some(&redis), &log, seed ^ 2).await;
        let redis = Redis::start(&[]);
        agree("cluster, DNS", true, Some(&redis), &log, seed ^ 3).await;
    });
}
