//! `[metrics] listen`: the Prometheus endpoint of the real binary, scraped
//! over raw HTTP; `promtool check metrics` validates the text (Debian's
//! prometheus package; skipped locally when missing, a failure under CI).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

use support::{Daemon, PATIENCE, metrics_addr, watch};

const CONFIG: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n\
[state]\nfile = \"{dir}/state\"\n";

/// One raw HTTP exchange: the whole answer as text.
fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A scrape as Prometheus makes it (OpenMetrics) or as curl does (classic).
fn scrape_as(addr: SocketAddr, openmetrics: bool) -> String {
    let request = if openmetrics {
        "GET /metrics HTTP/1.1\r\nHost: x\r\n\
         Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n"
    } else {
        "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    };
    let answer = http(addr, request.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let content_type = if openmetrics {
        "content-type: application/openmetrics-text; version=1.0.0"
    } else {
        "content-type: text/plain; version=0.0.4"
    };
    assert!(answer.contains(content_type), "{answer}");
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

#[test]
fn decisions_tables_and_sessions_are_exported_on_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), CONFIG);
    let addr = metrics_addr(&d);
    assert_eq!(
        d.query("192.0.2.1", "a@example.org", &["b@example.net"])
            .status,
        4
    );
    let body = scrape_as(addr, true);
    for want in [
        "greymilter_decisions_total{action=\"greylist\",reason=\"new\"} 1\n",
        "greymilter_tuples{state=\"pending\"} 1\n",
        "greymilter_table_flows_total{flow=\"graylisted\"} 1\n",
        "greymilter_sessions_total 1\n",
        "greymilter_checkpoints_total{result=\"written\"} 0\n",
        "# TYPE greymilter_checkpoint_last_duration_seconds gauge\n",
        "# TYPE greymilter_event_loop_lag_seconds histogram\n",
        "greymilter_event_loop_lag_seconds_bucket{le=\"+Inf\"} ",
        "# EOF\n",
    ] {
        assert!(body.contains(want), "{want:?} missing in:\n{body}");
    }
    assert_eq!(watch::proc_status(d.pid().as_raw(), "Threads"), 1);

    // Only GET /metrics; a huge head is refused; the daemon goes on.
    let post = http(
        addr,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    let other = http(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(other.starts_with("HTTP/1.1 404 "), "{other}");
    let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let refused = http(addr, &huge);
    assert!(!refused.contains(" 200 OK"), "{refused}");
    assert!(!http(addr, b"garbage\r\n\r\n").contains(" 200 OK"));
    let body = scrape_as(addr, false);
    assert!(body.contains("greymilter_requests_total 1\n"), "{body}");
    assert!(
        body.contains("# TYPE greymilter_requests_total counter\n"),
        "{body}"
    );
    assert_eq!(watch::proc_status(d.pid().as_raw(), "Threads"), 1);

    // promtool's own parser and linter, on the classic text.
    let Ok(mut promtool) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool missing: .ci/install-ops.sh installs Debian's prometheus"
        );
        eprintln!("skipped promtool: not installed (apt-get install prometheus)");
        return;
    };
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
