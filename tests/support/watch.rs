//! What the tests read about a running daemon besides its replies: /proc
//! (memory, threads), the statistics report, and warn lines in the log.

use std::fs;
use std::path::Path;
use std::time::Instant;

use nix::sys::signal::Signal;

use super::{Daemon, PATIENCE};

/// Every label of the SIGUSR1 report, in order.
pub const REPORT_LABELS: [&str; 26] = [
    "Start",
    "End",
    "Running time",
    "IPs",
    "Requests",
    "Requests-Cu",
    "Tuples",
    "Graylisted",
    "Whitelisted",
    "Graylist-Expired",
    "Whitelist-Expired",
    "Requests-Cu-Max",
    "Requests-Cu-Ave",
    "Passed",
    "Deferred",
    "Accepted-By-List",
    "Rejected-By-List",
    "Authenticated",
    "Auto-Whitelisted",
    "Auto-WL-Passes",
    "Evicted",
    "Tuples-High",
    "Restored",
    "Sessions",
    "Protocol-Errors",
    "Timeouts",
];

/// The lines that follow when a `[state] file` is configured.
pub const CHECKPOINT_LABELS: [&str; 4] = [
    "Checkpoints",
    "Checkpoint-Failed",
    "Checkpoint-Busy",
    "Checkpoint-Last",
];

/// The lines added since the first release, always last.
pub const LATER_LABELS: [&str; 11] = [
    "Decision-Timeouts",
    "SPF-Keyed",
    "SPF-Skipped",
    "DNSWL-Passed",
    "DNSBL-Listed",
    "DNS-Timeouts",
    "DNS-Errors",
    "Would-Greylist",
    "Allowed",
    "Forgotten",
    "Loop-Lag-Max",
];

/// A `/proc/PID/status` field in kB (`VmRSS`, `VmHWM`) or as a count (`Threads`).
pub fn proc_status(pid: i32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The daemon's resident memory in KiB.
pub fn rss_kib(d: &Daemon) -> u64 {
    proc_status(d.pid().as_raw(), "VmRSS")
}

/// A parsed statistics report.
#[derive(Debug, Clone)]
pub struct Report {
    pub text: String,
}

impl Report {
    /// The labels in the order they appear.
    pub fn labels(&self) -> Vec<&str> {
        self.text
            .lines()
            .map(|l| l.split("  ").next().unwrap_or("").trim())
            .collect()
    }

    /// True when every label is there, in order, each with a value (the
    /// checkpoint lines all or none).
    pub fn is_complete(&self) -> bool {
        let labels = self.labels();
        let (engine, rest) = labels.split_at(labels.len().min(REPORT_LABELS.len()));
        let checkpoint = rest
            .strip_suffix(&LATER_LABELS[..])
            .unwrap_or(&["(missing)"]);
        engine == REPORT_LABELS
            && (checkpoint.is_empty() || checkpoint == CHECKPOINT_LABELS)
            && self.text.ends_with('\n')
            && self
                .text
                .lines()
                .all(|l| l.get(19..).is_some_and(|v| !v.trim().is_empty()))
    }

    /// The value of a numeric line.
    pub fn num(&self, label: &str) -> u64 {
        self.text
            .lines()
            .find_map(|l| {
                let rest = l.strip_prefix(label)?;
                rest.starts_with("  ")
                    .then(|| rest.trim().parse().ok())
                    .flatten()
            })
            .unwrap_or_else(|| panic!("no numeric {label} in report:\n{}", self.text))
    }

    pub fn has_checkpoint_lines(&self) -> bool {
        let labels = self.labels();
        labels
            .strip_suffix(&LATER_LABELS[..])
            .is_some_and(|l| l.ends_with(&CHECKPOINT_LABELS))
    }

    /// `Tuples = Restored + Graylisted − Graylist-Expired − Whitelist-Expired − Evicted`.
    pub fn assert_identity(&self) {
        let lhs = self.num("Tuples");
        let rhs = self.num("Restored") + self.num("Graylisted") + self.num("Allowed")
            - self.num("Graylist-Expired")
            - self.num("Whitelist-Expired")
            - self.num("Evicted")
            - self.num("Forgotten");
        assert_eq!(lhs, rhs, "statistics identity broken:\n{}", self.text);
    }
}

/// Sends SIGUSR1 and returns the fresh report from `stats_file` (the
/// daemon's `[stats] file`), removed first so an old one cannot be read.
pub fn fetch_report(d: &Daemon, stats_file: &Path) -> Report {
    let _ = fs::remove_file(stats_file);
    d.signal(Signal::SIGUSR1);
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(text) = fs::read_to_string(stats_file) {
            let report = Report { text };
            assert!(report.is_complete(), "incomplete report:\n{}", report.text);
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "no report in {}; log:\n{}",
            stats_file.display(),
            d.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Log lines at WARN (or ERROR) that contain `what`, written after byte `from`.
pub fn warn_lines(d: &Daemon, from: usize, what: &str) -> Vec<String> {
    d.log_text()
        .get(from..)
        .unwrap_or("")
        .lines()
        .filter(|l| (l.contains(" WARN ") || l.contains(" ERROR ")) && l.contains(what))
        .map(str::to_string)
        .collect()
}

/// Panics if the daemon died or a task panicked.
pub fn assert_alive(d: &mut Daemon) {
    let log = d.log_text();
    assert!(!log.contains("panicked"), "a panic in the log:\n{log}");
    let child = d.child.as_mut().expect("daemon started");
    if let Some(status) = child.try_wait().unwrap() {
        panic!("the daemon exited ({status}); log:\n{log}");
    }
}
