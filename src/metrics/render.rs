//! The metrics, built fresh for each scrape from the counters the daemon
//! keeps anyway (the engine's snapshot, the session counters, the
//! checkpointer's): nothing is counted twice, nothing on the hot path.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::greylist::stats::Snapshot;

/// Everything one scrape shows.
#[derive(Debug, Clone, Default)]
pub struct Input {
    pub snapshot: Snapshot,
    /// RCPT decisions by (action, reason) since start.
    pub decisions: Vec<(String, String, u64)>,
    pub sessions: u64,
    pub protocol_errors: u64,
    pub session_timeouts: u64,
    pub decision_timeouts: u64,
    /// `None`: no state file, no checkpoints.
    pub checkpoint: Option<CheckpointFigures>,
    pub allowances: u64,
    /// The main loop's lateness (`crate::daemon::loop_lag`).
    pub loop_lag: Option<HistogramData>,
}

/// A histogram kept elsewhere, encoded as it stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramData {
    pub sum: f64,
    pub count: u64,
    /// `(upper bound, count in that bucket)`, not cumulative; the last
    /// bound `f64::INFINITY` (`+Inf`).
    pub buckets: Vec<(f64, u64)>,
}

impl EncodeMetric for HistogramData {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The checkpointer's figures, as plain data.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CheckpointFigures {
    pub written: u64,
    pub failed: u64,
    /// Ticks or SIGUSR2s that found a child still writing.
    pub busy: u64,
    /// 0 before the first checkpoint.
    pub last_duration_seconds: f64,
}

type Labels = Vec<(String, String)>;

fn counter(reg: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    reg.register(name, help, c);
}

fn gauge(reg: &mut Registry, name: &str, help: &str, value: u64) {
    let g = Gauge::<i64>::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    reg.register(name, help, g);
}

fn counters(reg: &mut Registry, name: &str, help: &str, rows: &[(&[(&str, &str)], u64)]) {
    let family = Family::<Labels, Counter<u64>>::default();
    for (labels, value) in rows {
        let labels: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        family.get_or_create(&labels).inc_by(*value);
    }
    reg.register(name, help, family);
}

/// The exposition text (OpenMetrics, which Prometheus reads natively).
pub fn render(input: &Input) -> String {
    let s = &input.snapshot;
    let mut reg = Registry::with_prefix("greymilter");
    let decisions = Family::<Labels, Counter<u64>>::default();
    for (action, reason, n) in &input.decisions {
        decisions
            .get_or_create(&vec![
                ("action".to_string(), action.clone()),
                ("reason".to_string(), reason.clone()),
            ])
            .inc_by(*n);
    }
    reg.register(
        "decisions",
        "Recipient decisions by action and reason",
        decisions,
    );
    counter(&mut reg, "requests", "Recipients decided", s.requests);
    counter(&mut reg, "deferred", "Tempfails sent", s.deferred);
    counter(
        &mut reg,
        "would_greylist",
        "Recipients learning mode let through that enforce mode would defer",
        s.would_greylist,
    );
    counter(
        &mut reg,
        "accepted_by_list",
        "Connections, messages or recipients accepted by a list entry",
        s.accepted_by_list,
    );
    counter(
        &mut reg,
        "authenticated",
        "Transactions accepted because the client authenticated",
        s.authenticated,
    );
    counters(
        &mut reg,
        "table_flows",
        "Tuples entering and leaving the table",
        &[
            (&[("flow", "restored")], s.restored),
            (&[("flow", "graylisted")], s.graylisted),
            (&[("flow", "allowed")], s.allowed),
            (&[("flow", "passed")], s.passed),
            (&[("flow", "graylist_expired")], s.graylist_expired),
            (&[("flow", "whitelist_expired")], s.whitelist_expired),
            (&[("flow", "evicted")], s.evicted),
            (&[("flow", "forgotten")], s.forgotten),
        ],
    );
    let tuples = Family::<Labels, Gauge<i64>>::default();
    for (state, n) in [
        ("pending", s.tuples.saturating_sub(s.whitelisted)),
        ("whitelisted", s.whitelisted),
    ] {
        tuples
            .get_or_create(&vec![("state".to_string(), state.to_string())])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    reg.register("tuples", "Tuples in the table", tuples);
    gauge(
        &mut reg,
        "tuples_high",
        "Most tuples held at once",
        s.tuples_high,
    );
    gauge(&mut reg, "networks", "Client networks with a tuple", s.ips);
    gauge(
        &mut reg,
        "auto_whitelisted_networks",
        "Client networks auto-whitelisted now",
        s.auto_whitelisted,
    );
    gauge(
        &mut reg,
        "runtime_allowances",
        "Network and sender-domain allowances made through the control socket",
        input.allowances,
    );
    counter(
        &mut reg,
        "sessions",
        "Milter sessions ended",
        input.sessions,
    );
    counter(
        &mut reg,
        "protocol_errors",
        "Milter sessions ended by a protocol error",
        input.protocol_errors,
    );
    counter(
        &mut reg,
        "session_timeouts",
        "Milter sessions ended by the idle timeout",
        input.session_timeouts,
    );
    counter(
        &mut reg,
        "decision_timeouts",
        "Recipients answered CONTINUE after decision_timeout",
        input.decision_timeouts,
    );
    gauge(
        &mut reg,
        "start_time_seconds",
        "Process start, unix time",
        s.start,
    );
    if let Some(cp) = &input.checkpoint {
        counters(
            &mut reg,
            "checkpoints",
            "Checkpoints by result",
            &[
                (&[("result", "written")], cp.written),
                (&[("result", "failed")], cp.failed),
                (&[("result", "busy")], cp.busy),
            ],
        );
        let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        g.set(cp.last_duration_seconds);
        reg.register(
            "checkpoint_last_duration_seconds",
            "How long the last checkpoint took to write",
            g,
        );
    }
    if let Some(lag) = &input.loop_lag {
        reg.register(
            "event_loop_lag_seconds",
            "How late the main loop woke up for its 10 ms ticker",
            lag.clone(),
        );
    }
    let mut out = String::with_capacity(4096);
    if encode(&mut out, &reg).is_err() {
        out.clear();
    }
    out
}

/// The classic Prometheus text format (0.0.4) of an OpenMetrics text, for
/// scrapers that do not ask for OpenMetrics (`curl`, `promtool check
/// metrics`): a counter family is named with its `_total` suffix in HELP
/// and TYPE, as its samples are, and the `# EOF` and `# UNIT` lines go.
pub fn classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 256);
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_names_counters_with_total_and_drops_eof() {
        let om = render(&Input {
            decisions: vec![("greylist".into(), "new".into(), 3)],
            loop_lag: Some(HistogramData {
                sum: 0.5,
                count: 3,
                buckets: vec![(0.005, 2), (f64::INFINITY, 1)],
            }),
            ..Input::default()
        });
        assert!(om.ends_with("# EOF\n"));
        let c = classic(&om);
        assert!(c.contains("# HELP greymilter_decisions_total Recipient decisions"));
        assert!(c.contains("# TYPE greymilter_decisions_total counter\n"));
        assert!(c.contains("greymilter_decisions_total{action=\"greylist\",reason=\"new\"} 3\n"));
        assert!(c.contains("# TYPE greymilter_tuples gauge\n"));
        assert!(!c.contains("# EOF"));
        assert!(c.contains("# TYPE greymilter_event_loop_lag_seconds histogram\n"));
        assert!(c.contains("greymilter_event_loop_lag_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(
            c.contains("greymilter_event_loop_lag_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{c}"
        );
        assert!(c.contains("greymilter_event_loop_lag_seconds_count 3\n"));
    }
}
