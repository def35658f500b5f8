//! Counters for operators, rendered in the Prometheus text format.
//!
//! Plain atomics: recording a value costs one relaxed add, so the send path
//! can afford it.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Upper bounds (µs) of the commit latency histogram buckets.
const LATENCY_BUCKETS_US: [u64; 10] = [
    250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 500_000,
];
/// Upper bounds of the commit batch size histogram buckets.
const BATCH_BUCKETS: [u64; 8] = [1, 2, 4, 8, 16, 64, 256, 512];

/// Server-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open client connections.
    pub connections: AtomicI64,
    /// Connections refused at the cap.
    pub connections_refused: AtomicU64,
    /// Messages durably stored.
    pub sends: AtomicU64,
    /// `message` pushes queued to connections.
    pub deliveries: AtomicU64,
    /// Failed logins and enrolments.
    pub auth_failures: AtomicU64,
    /// Connections dropped because their outbound queue was full.
    pub queue_drops: AtomicU64,
    /// Requests refused by the rate limit.
    pub rate_limited: AtomicU64,
    commit_batches: AtomicU64,
    batch_hist: [AtomicU64; BATCH_BUCKETS.len() + 1],
    batch_sum: AtomicU64,
    latency_hist: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
}

fn bucket(bounds: &[u64], v: u64) -> usize {
    bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len())
}

impl Metrics {
    /// Records one group commit of `size` messages taking `micros`.
    pub fn record_commit(&self, size: usize, micros: u64) {
        self.commit_batches.fetch_add(1, Ordering::Relaxed);
        self.batch_sum.fetch_add(size as u64, Ordering::Relaxed);
        self.batch_hist[bucket(&BATCH_BUCKETS, size as u64)].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(micros, Ordering::Relaxed);
        self.latency_hist[bucket(&LATENCY_BUCKETS_US, micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, connected_devices: usize) -> String {
        let mut out = String::new();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            "wardline_sends_total",
            "Messages durably stored.",
            get(&self.sends),
        );
        counter(
            "wardline_deliveries_total",
            "Message pushes queued to connections.",
            get(&self.deliveries),
        );
        counter(
            "wardline_auth_failures_total",
            "Failed logins and enrolments.",
            get(&self.auth_failures),
        );
        counter(
            "wardline_queue_drops_total",
            "Connections closed because they fell behind.",
            get(&self.queue_drops),
        );
        counter(
            "wardline_rate_limited_total",
            "Requests refused by the rate limit.",
            get(&self.rate_limited),
        );
        counter(
            "wardline_connections_refused_total",
            "Connections refused at the cap.",
            get(&self.connections_refused),
        );
        let _ = writeln!(
            out,
            "# HELP wardline_connections Open client connections.\n# TYPE wardline_connections gauge\nwardline_connections {}",
            self.connections.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP wardline_connected_devices Devices with at least one open connection.\n# TYPE wardline_connected_devices gauge\nwardline_connected_devices {connected_devices}"
        );
        histogram(
            &mut out,
            "wardline_commit_batch_size",
            "Messages per group commit.",
            &BATCH_BUCKETS,
            &self.batch_hist,
            get(&self.batch_sum) as f64,
            get(&self.commit_batches),
            1.0,
        );
        histogram(
            &mut out,
            "wardline_commit_seconds",
            "Time to append and fsync one batch.",
            &LATENCY_BUCKETS_US,
            &self.latency_hist,
            get(&self.latency_sum_us) as f64 / 1e6,
            get(&self.commit_batches),
            1e-6,
        );
        out
    }
}

#[allow(clippy::too_many_arguments)] // one call per histogram, all plain data
fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    bounds: &[u64],
    hist: &[AtomicU64],
    sum: f64,
    count: u64,
    scale: f64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cumulative = 0;
    for (i, b) in bounds.iter().enumerate() {
        cumulative += hist[i].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"{}\"}} {cumulative}",
            *b as f64 * scale
        );
    }
    cumulative += hist[bounds.len()].load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {cumulative}\n{name}_sum {sum}\n{name}_count {count}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.sends.fetch_add(3, Ordering::Relaxed);
        m.record_commit(3, 400);
        m.record_commit(100, 3_000);
        let text = m.render(2);
        assert!(text.contains("wardline_sends_total 3"));
        assert!(text.contains("wardline_connected_devices 2"));
        assert!(text.contains("wardline_commit_batch_size_bucket{le=\"4\"} 1"));
        assert!(text.contains("wardline_commit_batch_size_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("wardline_commit_seconds_count 2"));
    }
}
