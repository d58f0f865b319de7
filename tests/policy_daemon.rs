//! The policy front end through the real binary: Postfix's requests on
//! `[policy] listen` with the milter switched off, the answers Postfix
//! reads, the one recipient pipeline behind them (lists, authentication,
//! the decision log line with `proto=policy`), and bad input: a
//! rate-limited log line and that connection closed, a healthy client
//! beside it still served.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{Daemon, PATIENCE};

const CONFIG: &str = "[milter]\nenabled = false\n[policy]\nlisten = \"inet:0@127.0.0.1\"\n{policy}\n[greylist]\ndelay = \"1s\"\n[lists]\nsenders = { \"spam@example.org\" = \"reject\" }\n";

fn start(dir: &std::path::Path, policy: &str) -> Daemon {
    let d = Daemon::start_in(dir, &CONFIG.replace("{policy}", policy));
    assert_ne!(d.port, 0, "{}", d.log_text());
    assert!(
        d.log_text().contains("policy service listening"),
        "{}",
        d.log_text()
    );
    d
}

/// One request of Postfix's shape.
fn request(attrs: &[(&str, &str)]) -> String {
    let mut req = String::from(
        "request=smtpd_access_policy\nprotocol_name=ESMTP\nclient_name=unknown\nhelo_name=mx.example.org\nsasl_username=\n",
    );
    for (k, v) in attrs {
        req.push_str(&format!("{k}={v}\n"));
    }
    req.push('\n');
    req
}

struct Client(TcpStream);

impl Client {
    fn connect(d: &Daemon) -> Client {
        let s = TcpStream::connect(d.milter_addr()).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        Client(s)
    }

    /// One request of Postfix's shape; the answer's action line.
    fn ask(&mut self, attrs: &[(&str, &str)]) -> String {
        self.0.write_all(request(attrs).as_bytes()).unwrap();
        self.answer()
    }

    fn answer(&mut self) -> String {
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while !answer.ends_with(b"\n\n") {
            assert_eq!(
                self.0.read(&mut byte).unwrap(),
                1,
                "closed after {answer:?}"
            );
            answer.push(byte[0]);
        }
        let text = String::from_utf8(answer).unwrap();
        assert_eq!(text.matches('\n').count(), 2, "{text:?}");
        text.trim_end().to_string()
    }

    fn rcpt(&mut self, client: &str, from: &str, to: &str, instance: &str) -> String {
        self.ask(&[
            ("protocol_state", "RCPT"),
            ("client_address", client),
            ("sender", from),
            ("recipient", to),
            ("instance", instance),
        ])
    }

    /// True once the server closed the connection.
    fn closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.0.read(&mut byte), Ok(0) | Err(_))
    }
}

#[test]
fn policy_requests_go_through_the_pipeline_with_the_milter_off() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "");
    assert!(
        !d.log_text().contains("INFO listening listen="),
        "the milter listens: {}",
        d.log_text()
    );
    let mut c = Client::connect(&d);

    // Other states: no opinion.
    assert_eq!(
        c.ask(&[
            ("protocol_state", "CONNECT"),
            ("client_address", "192.0.2.7")
        ]),
        "action=DUNNO"
    );
    // A new tuple: deferred, unless a later reject rule applies.
    let first = Instant::now();
    let a = c.rcpt("192.0.2.7", "alice@example.org", "bob@example.net", "m1");
    assert!(
        a.starts_with("action=DEFER_IF_PERMIT 4.7.1 Greylisted"),
        "{a}"
    );
    let a = c.rcpt("192.0.2.7", "alice@example.org", "carol@example.net", "m1");
    assert!(a.starts_with("action=DEFER_IF_PERMIT 4.7.1 "), "{a}");
    // A reject-list hit.
    let a = c.rcpt("192.0.2.7", "spam@example.org", "bob@example.net", "m2");
    assert!(a.starts_with("action=REJECT 5.7.1 "), "{a}");
    // An authenticated sender is not greylisted (skip_authenticated).
    let a = c.ask(&[
        ("protocol_state", "RCPT"),
        ("client_address", "198.51.100.3"),
        ("sender", "dave@example.org"),
        ("recipient", "erin@example.net"),
        ("sasl_username", "dave"),
        ("instance", "m3"),
    ]);
    assert_eq!(a, "action=DUNNO");

    // The retry of the message after the delay: the header once, on the
    // first recipient; the second passes without a second header.
    let deadline = first + PATIENCE;
    let mut n = 0;
    let a = loop {
        n += 1;
        let a = c.rcpt(
            "192.0.2.7",
            "alice@example.org",
            "bob@example.net",
            &format!("retry{n}"),
        );
        if !a.starts_with("action=DEFER_IF_PERMIT") || Instant::now() > deadline {
            break a;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(a.starts_with("action=PREPEND X-Greylist: delayed "), "{a}");
    let a = c.rcpt(
        "192.0.2.7",
        "alice@example.org",
        "carol@example.net",
        &format!("retry{n}"),
    );
    assert_eq!(a, "action=DUNNO");
    // Whitelisted now: no header any more.
    let a = c.rcpt("192.0.2.7", "alice@example.org", "bob@example.net", "m4");
    assert_eq!(a, "action=DUNNO");

    // Still one thread (the fork rule of docs/architecture.md).
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    assert!(status.contains("\nThreads:\t1\n"), "{status}");
    let log = d.log_text();
    assert!(
        log.contains("action=greylist") && log.contains("proto=policy"),
        "{log}"
    );
    assert!(log.contains("to=<bob@example.net>"), "{log}");
}

#[test]
fn defer_action_defer_defers_outright() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "defer_action = \"DEFER\"");
    let mut c = Client::connect(&d);
    let a = c.rcpt("192.0.2.9", "x@example.org", "y@example.net", "m1");
    assert!(a.starts_with("action=DEFER 4.7.1 Greylisted"), "{a}");
}

#[test]
fn bad_requests_close_their_connection_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "idle_timeout = \"2s\"");
    let mut healthy = Client::connect(&d);
    let bad: [&[u8]; 5] = [
        b"request=junk\nprotocol_state=RCPT\n\n",
        b"no equals sign\n\n",
        b"request=smtpd_access_policy\nsender=\xff\xfe\n\n",
        &[b'x'; 3000],
        b"protocol_state=RCPT\n\n",
    ];
    for bytes in bad {
        let mut c = Client::connect(&d);
        c.0.write_all(bytes).unwrap();
        assert!(c.closed(), "{:?}", String::from_utf8_lossy(bytes));
        let a = healthy.rcpt("192.0.2.10", "a@example.org", "b@example.net", "h");
        assert!(a.starts_with("action=DEFER_IF_PERMIT"), "{a}");
    }
    // Many attributes, and a request that never ends, within the bounds
    // until they are passed.
    let mut c = Client::connect(&d);
    let many: String = (0..200).map(|i| format!("x{i}=1\n")).collect();
    c.0.write_all(many.as_bytes()).unwrap();
    assert!(c.closed());
    // An idle connection is closed after idle_timeout.
    let mut idle = Client::connect(&d);
    assert!(idle.closed());
    let log = d.log_text();
    // One line for the burst (rate-limited), naming the first peer's fault.
    assert!(
        log.contains("policy connection closed: request=\"junk\" is not smtpd_access_policy"),
        "{log}"
    );
    assert_eq!(
        log.matches("policy connection closed: request").count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("policy connection closed: idle for 2s"),
        "{log}"
    );
    // The healthy client idled as long (and was closed the same way):
    // the daemon serves the next connection.
    assert!(healthy.closed());
    let mut next = Client::connect(&d);
    let a = next.rcpt("198.51.100.77", "a@example.org", "b@example.net", "h2");
    assert!(a.starts_with("action=DEFER_IF_PERMIT"), "{a}");
}

/// Hostile peers on the policy port, each beside a healthy client that must
/// keep being answered: one byte at a time (a slow request is still a
/// request), a flood of requests from a peer that never reads its answers
/// (cut off after idle_timeout, its buffer bounded), and many connections
/// past `max_connections` (they wait; the healthy one already in is served).
#[test]
fn hostile_peers_beside_a_healthy_client() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "idle_timeout = \"3s\"\nmax_connections = 8");
    let mut healthy = Client::connect(&d);
    let served = |c: &mut Client, n: u32| {
        let a = c.rcpt(
            &format!("198.51.100.{n}"),
            "h@example.org",
            "h@example.net",
            &format!("h{n}"),
        );
        // Answered (deferred, or passed once the 1 s delay is over).
        assert!(
            a.starts_with("action=DEFER_IF_PERMIT")
                || a.starts_with("action=PREPEND")
                || a == "action=DUNNO",
            "{a}"
        );
    };

    // Byte by byte.
    let mut slow = Client::connect(&d);
    let req = b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=203.0.113.5\nsender=s@example.org\nrecipient=r@example.net\n\n";
    for (i, b) in req.iter().enumerate() {
        slow.0.write_all(&[*b]).unwrap();
        if i % 40 == 0 {
            served(&mut healthy, 1);
        }
    }
    assert!(slow.answer().starts_with("action=DEFER_IF_PERMIT"));

    // A flood without reading: the server stops reading it while its
    // answers back up, then closes it after idle_timeout.
    let mut flood = Client::connect(&d);
    flood.0.set_nonblocking(true).unwrap();
    let one = b"request=smtpd_access_policy\nprotocol_state=DATA\n\n";
    let started = Instant::now();
    let mut sent = 0usize;
    while started.elapsed() < Duration::from_secs(1) {
        match flood.0.write(one) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(_) => break,
        }
    }
    assert!(sent > 0);
    served(&mut healthy, 2);
    flood.0.set_nonblocking(false).unwrap();
    // Drain what it answered, then see it closed.
    flood.0.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut sink = [0u8; 65536];
    let deadline = Instant::now() + PATIENCE;
    loop {
        match flood.0.read(&mut sink) {
            Ok(0) => break,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the flood is never cut off: {e}"),
            Ok(_) => assert!(Instant::now() < deadline, "the flood is never cut off"),
        }
    }

    // (The healthy client idled as long as the flood was: a new one.)
    let mut healthy = Client::connect(&d);
    served(&mut healthy, 5);
    // Connections past max_connections wait in the backlog; the healthy
    // client (already in) is answered meanwhile.
    let mut crowd: Vec<Client> = (0..12).map(|_| Client::connect(&d)).collect();
    served(&mut healthy, 3);
    drop(crowd.drain(..));
    let mut later = Client::connect(&d);
    served(&mut later, 4);
}

/// Decision lines are written in batches (one write per loop turn), yet
/// each is in the log as soon as the daemon idles, none is lost on a clean
/// stop, and all lines keep their order.
#[test]
fn decision_lines_are_batched_but_never_late_lost_or_reordered() {
    const CONNS: usize = 4;
    const REQS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let mut d = start(dir.path(), "");
    let mut clients: Vec<Client> = (0..CONNS).map(|_| Client::connect(&d)).collect();
    // Each burst: every client sends all its requests at once (pipelined,
    // as no Postfix does, to put many decisions in one loop turn), then
    // reads the answers.
    let burst = |clients: &mut Vec<Client>, round: usize| {
        for (c, client) in clients.iter_mut().enumerate() {
            let mut all = String::new();
            for r in 0..REQS {
                let to = format!("b{round}-c{c}-r{r}@example.net");
                let instance = format!("{round}.{c}.{r}");
                all.push_str(&request(&[
                    ("protocol_state", "RCPT"),
                    ("client_address", "192.0.2.7"),
                    ("sender", "alice@example.org"),
                    ("recipient", &to),
                    ("instance", &instance),
                ]));
            }
            client.0.write_all(all.as_bytes()).unwrap();
        }
        for client in clients.iter_mut() {
            for _ in 0..REQS {
                let a = client.answer();
                assert!(a.starts_with("action=DEFER_IF_PERMIT"), "{a}");
            }
        }
    };
    burst(&mut clients, 1);
    // The daemon idles now: the last line of every connection is out.
    for c in 0..CONNS {
        let last = format!("to=<b1-c{c}-r{}@example.net>", REQS - 1);
        d.wait_for_log(|l| l.contains(&last));
    }
    burst(&mut clients, 2);
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(d.wait_exit().success(), "{}", d.log_text());

    let log = d.log_text();
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines
            .last()
            .is_some_and(|l| l.ends_with("INFO greymilter stopped")),
        "{log}"
    );
    // Every decision once, each connection's in the order asked.
    for round in 1..=2 {
        for c in 0..CONNS {
            let mine: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.contains(&format!("to=<b{round}-c{c}-r")))
                .collect();
            assert_eq!(mine.len(), REQS, "round {round} conn {c}: {log}");
            for (r, line) in mine.iter().enumerate() {
                assert!(
                    line.contains(&format!("to=<b{round}-c{c}-r{r}@example.net>")),
                    "line {r} of round {round} conn {c} out of order: {line}"
                );
                assert!(line.contains(" INFO action=greylist reason=new client=unknown[192.0.2.7] from=<alice@example.org> "), "{line}");
                let conn = line.rsplit_once(" proto=policy conn=").map(|(_, n)| n);
                assert!(conn.is_some_and(|n| n.parse::<u64>().is_ok()), "{line}");
            }
        }
    }
    // All lines (the decisions and tracing's) in time order: RFC 3339
    // stamps of one width sort as text.
    let stamps: Vec<&str> = lines.iter().filter_map(|l| l.get(..27)).collect();
    assert!(stamps.len() == lines.len(), "{log}");
    for pair in stamps.windows(2) {
        assert!(pair[0] <= pair[1], "{} after {}: {log}", pair[1], pair[0]);
    }
}
