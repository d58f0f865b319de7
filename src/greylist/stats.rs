//! Statistics: counters kept by the engine and the report printed on
//! SIGUSR1. Labels and order of the first block follow x-grey's `gld`
//! (docs/statistics.md), then ours. All counters start at zero when
//! the process starts; a restored table shows up as `Restored`, so that
//! `Tuples = Restored + Graylisted − Graylist-Expired − Whitelist-Expired −
//! Evicted` holds at every moment.

use std::fmt::Write as _;

use super::date::rfc3339;

/// Counters the engine bumps outside the tuple table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// RCPT decisions since start.
    pub requests: u64,
    /// Tempfails sent (every deferral, not just new tuples).
    pub deferred: u64,
    pub accepted_by_list: u64,
    pub rejected_by_list: u64,
    /// Transactions accepted because the client authenticated.
    pub authenticated: u64,
    /// Recipients passed because their network is auto-whitelisted.
    pub auto_whitelist_passes: u64,
    /// Learning mode: recipients that would have been deferred.
    pub would_greylist: u64,
    pub dns: DnsCounters,
}

/// Counters of the DNS-based decisions (issue 12), reported after the rest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsCounters {
    /// Table decisions keyed by an SPF-authenticated domain.
    pub spf_keyed: u64,
    /// Recipients passed because SPF passed (`spf = "skip"`).
    pub spf_skipped: u64,
    /// Recipients passed because the client is in an allow zone.
    pub dnswl_passed: u64,
    /// Recipients of clients in a block zone (greylisted with block_delay).
    pub dnsbl_listed: u64,
    pub dns_timeouts: u64,
    pub dns_errors: u64,
}

impl DnsCounters {
    /// The DNS report lines. They were added after the first release, so
    /// the daemon appends them after every older line.
    pub fn push_report(&self, out: &mut String) {
        push_line(out, "SPF-Keyed", &self.spf_keyed);
        push_line(out, "SPF-Skipped", &self.spf_skipped);
        push_line(out, "DNSWL-Passed", &self.dnswl_passed);
        push_line(out, "DNSBL-Listed", &self.dnsbl_listed);
        push_line(out, "DNS-Timeouts", &self.dns_timeouts);
        push_line(out, "DNS-Errors", &self.dns_errors);
    }
}

/// The `Requests-Cu` bookkeeping: requests per completed cleanup interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interval {
    /// When the running interval started.
    pub started: u64,
    /// `requests` when it started.
    pub requests_at_start: u64,
    /// Requests in the last completed interval.
    pub last: u64,
    pub max: u64,
    pub completed: u64,
}

impl Interval {
    pub fn new(now: u64) -> Interval {
        Interval {
            started: now,
            ..Interval::default()
        }
    }

    /// Closes the running interval if `length` has passed. An interval
    /// that spans a long stall is closed as one.
    pub fn roll(&mut self, now: u64, length: u64, requests: u64) {
        if now < self.started.saturating_add(length.max(1)) {
            return;
        }
        self.last = requests.saturating_sub(self.requests_at_start);
        self.max = self.max.max(self.last);
        self.completed += 1;
        self.started = now;
        self.requests_at_start = requests;
    }

    /// Mean requests per completed interval, rounded; 0 before the first.
    pub fn average(&self) -> u64 {
        if self.completed == 0 {
            return 0;
        }
        (self.requests_at_start + self.completed / 2) / self.completed
    }
}

/// Everything the report shows, at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub start: u64,
    pub now: u64,
    pub ips: u64,
    pub requests: u64,
    pub requests_cu: u64,
    pub tuples: u64,
    pub graylisted: u64,
    pub whitelisted: u64,
    pub graylist_expired: u64,
    pub whitelist_expired: u64,
    pub requests_cu_max: u64,
    pub requests_cu_ave: u64,
    pub passed: u64,
    pub deferred: u64,
    pub accepted_by_list: u64,
    pub rejected_by_list: u64,
    pub authenticated: u64,
    pub auto_whitelisted: u64,
    pub auto_whitelist_passes: u64,
    pub evicted: u64,
    pub tuples_high: u64,
    pub restored: u64,
    pub would_greylist: u64,
    /// Tuples the administrator whitelisted that were not stored.
    pub allowed: u64,
    /// Tuples the administrator removed.
    pub forgotten: u64,
}

impl Snapshot {
    /// The engine's lines added after the first release, which the daemon
    /// appends at the very end of its report (older tools parse a prefix).
    pub fn push_later(&self, out: &mut String) {
        push_line(out, "Would-Greylist", &self.would_greylist);
        push_line(out, "Allowed", &self.allowed);
        push_line(out, "Forgotten", &self.forgotten);
    }

    /// One `Label  value` line per statistic, in the documented order.
    pub fn report(&self) -> String {
        let mut out = String::with_capacity(1024);
        let mut line =
            |label: &str, value: &dyn std::fmt::Display| push_line(&mut out, label, value);
        line("Start", &rfc3339(self.start));
        line("End", &rfc3339(self.now));
        line(
            "Running time",
            &running_time(self.now.saturating_sub(self.start)),
        );
        line("IPs", &self.ips);
        line("Requests", &self.requests);
        line("Requests-Cu", &self.requests_cu);
        line("Tuples", &self.tuples);
        line("Graylisted", &self.graylisted);
        line("Whitelisted", &self.whitelisted);
        line("Graylist-Expired", &self.graylist_expired);
        line("Whitelist-Expired", &self.whitelist_expired);
        line("Requests-Cu-Max", &self.requests_cu_max);
        line("Requests-Cu-Ave", &self.requests_cu_ave);
        line("Passed", &self.passed);
        line("Deferred", &self.deferred);
        line("Accepted-By-List", &self.accepted_by_list);
        line("Rejected-By-List", &self.rejected_by_list);
        line("Authenticated", &self.authenticated);
        line("Auto-Whitelisted", &self.auto_whitelisted);
        line("Auto-WL-Passes", &self.auto_whitelist_passes);
        line("Evicted", &self.evicted);
        line("Tuples-High", &self.tuples_high);
        line("Restored", &self.restored);
        out
    }
}

/// Appends one report line, `Label` padded to the value column. Lines that
/// other layers add to the report (sessions, checkpoints, …) use it too.
pub fn push_line(out: &mut String, label: &str, value: &dyn std::fmt::Display) {
    let _ = writeln!(out, "{label:<18} {value}");
}

/// `17h 13m 23s`, `2d 0h 0m 5s`, `0s`: units from the first non-zero one.
pub fn running_time(secs: u64) -> String {
    let units = [
        (secs / (365 * 86_400), 'y'),
        (secs % (365 * 86_400) / 86_400, 'd'),
        (secs % 86_400 / 3600, 'h'),
        (secs % 3600 / 60, 'm'),
        (secs % 60, 's'),
    ];
    let mut out = String::new();
    for (v, u) in units {
        if v > 0 || !out.is_empty() || u == 's' {
            if !out.is_empty() {
                out.push(' ');
            }
            let _ = write!(out, "{v}{u}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_time_format() {
        assert_eq!(running_time(0), "0s");
        assert_eq!(running_time(17 * 3600 + 13 * 60 + 23), "17h 13m 23s");
        assert_eq!(running_time(2 * 86_400 + 5), "2d 0h 0m 5s");
        assert_eq!(running_time(366 * 86_400), "1y 1d 0h 0m 0s");
    }

    #[test]
    fn interval_rolls_and_averages() {
        let mut i = Interval::new(0);
        i.roll(100, 300, 10);
        assert_eq!(i.completed, 0);
        i.roll(300, 300, 10);
        assert_eq!((i.last, i.max, i.completed), (10, 10, 1));
        i.roll(600, 300, 14);
        assert_eq!((i.last, i.max, i.completed, i.average()), (4, 10, 2, 7));
    }

    #[test]
    fn report_order_and_labels() {
        let r = Snapshot::default().report();
        let labels: Vec<&str> = r
            .lines()
            .map(|l| l.split("  ").next().unwrap_or("").trim())
            .collect();
        assert_eq!(
            &labels[..11],
            [
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
                "Whitelist-Expired"
            ]
        );
        assert!(r.starts_with("Start              1970-01-01T00:00:00Z\n"));
    }

    /// Found by the `session` fuzz target: the report panicked once the
    /// clock passed year 9999 (humantime refuses to format it).
    #[test]
    fn report_of_a_far_future_clock() {
        for now in [253_402_300_800, u64::MAX] {
            let r = Snapshot {
                now,
                ..Snapshot::default()
            }
            .report();
            let end = r.lines().nth(1).unwrap_or_default();
            assert!(end.starts_with("End") && end.ends_with('Z'), "{end}");
        }
    }
}
