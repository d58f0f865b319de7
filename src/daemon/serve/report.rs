//! SIGUSR1's statistics report (to the log and the stats file) and the
//! loop-lag figures the metrics endpoint renders.

use super::Daemon;
use crate::files::atomic::write_atomically;
use crate::greylist::stats::push_line;

impl Daemon {
    /// SIGUSR1: the report to the log and, if configured, to the stats file.
    pub(super) fn write_stats(&mut self) {
        let report = self.report();
        // The file first: whoever sees the report in the log (a script, a
        // test) may read the file at once.
        if let Some(path) = &self.config.stats.file {
            // A report is not worth an fsync; the rename keeps it whole.
            if let Err(e) = write_atomically(path, false, |w| w.write_all(report.as_bytes())) {
                tracing::error!("cannot write the statistics report: {e}");
            }
        }
        for line in report.lines() {
            tracing::info!(target: "greymilter::stats", "{line}");
        }
    }

    pub fn report(&self) -> String {
        let mut report = self.engine.borrow().stats_report();
        let sessions = self.factory.counters();
        sessions.push_report(&mut report);
        if let Some(cp) = &self.checkpointer {
            let s = cp.stats;
            let last = s
                .last_duration
                .map_or_else(|| "-".to_string(), |d| format!("{} ms", d.as_millis()));
            push_line(&mut report, "Checkpoints", &s.written);
            push_line(&mut report, "Checkpoint-Failed", &s.failed);
            push_line(&mut report, "Checkpoint-Busy", &s.skipped_busy);
            push_line(&mut report, "Checkpoint-Last", &last);
        }
        // Lines added after the first release come last, so the older
        // report stays a prefix that existing tools parse unchanged.
        push_line(
            &mut report,
            "Decision-Timeouts",
            &sessions.decisions_expired(),
        );
        if let Some(cluster) = self.factory.pipeline().cluster() {
            cluster.counters().report(&mut report);
        }
        self.engine.borrow().dns_counters().push_report(&mut report);
        self.engine.borrow().stats().push_later(&mut report);
        push_line(
            &mut report,
            "Loop-Lag-Max",
            &self.loop_lag.borrow().report_value(),
        );
        report
    }

    pub(super) fn loop_lag_histogram(&self) -> crate::metrics::render::HistogramData {
        let lag = self.loop_lag.borrow();
        crate::metrics::render::HistogramData {
            sum: lag.sum_seconds(),
            count: lag.count(),
            buckets: lag.buckets(),
        }
    }
}
