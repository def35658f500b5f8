//! What a run measures: counters, HDR histograms of latency, errors by
//! code, and a per-second timeline for the progress line and the plot.
//!
//! Counters are relaxed atomics; histograms sit behind one mutex each,
//! held for a single `record` (tens of nanoseconds), which two harness
//! threads cannot contend on enough to matter next to a WebSocket frame.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::frames::MsgKey;

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// One second of the run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Point {
    /// Seconds since the traffic started (end of this interval).
    pub t_s: f64,
    /// Sends acknowledged in the interval.
    pub acked: u64,
    /// Deliveries in the interval.
    pub delivered: u64,
    /// End-to-end latency of the deliveries in the interval.
    pub latency: Latency,
}

/// When each message was sent: one slot per (sender, n), in nanoseconds
/// since the recorder's epoch, plus one so that 0 means "not sent".
#[derive(Debug, Default)]
pub struct SendClock {
    slots: Vec<Box<[AtomicU64]>>,
}

impl SendClock {
    /// Room for `counts[s]` messages from sender `s`.
    pub fn new(counts: &[usize]) -> Self {
        Self {
            slots: counts
                .iter()
                .map(|&n| (0..n).map(|_| AtomicU64::new(0)).collect())
                .collect(),
        }
    }

    /// Notes that `key` was sent at `ns`.
    pub fn sent(&self, key: MsgKey, ns: u64) {
        if let Some(slot) = self.slot(key) {
            slot.store(ns + 1, Ordering::Relaxed);
        }
    }

    /// When `key` was sent, if it was.
    pub fn when(&self, key: MsgKey) -> Option<u64> {
        let v = self.slot(key)?.load(Ordering::Relaxed);
        (v > 0).then(|| v - 1)
    }

    fn slot(&self, key: MsgKey) -> Option<&AtomicU64> {
        self.slots.get(key.sender as usize)?.get(key.n as usize)
    }
}

/// Which sent messages have reached every device they were sent to: the
/// receiving connections count each message's pushes, and the sender is
/// woken when one completes. This closes the window loop end to end, so a
/// window bounds the messages not yet delivered everywhere, not only those
/// not yet acknowledged (which would let a slow receiver build an unbounded
/// backlog that the server, or the relay, then drops).
#[derive(Debug, Default)]
pub struct Completion {
    pushes: Vec<Box<[std::sync::atomic::AtomicU16]>>,
    fanout: Vec<u16>,
    done: Vec<AtomicU64>,
    wake: Vec<tokio::sync::Notify>,
}

impl Completion {
    /// Room for `counts[s]` messages of sender `s`, each due at `fanout[s]` devices.
    pub fn new(counts: &[usize], fanout: &[u64]) -> Self {
        Self {
            pushes: counts
                .iter()
                .map(|&n| {
                    (0..n)
                        .map(|_| std::sync::atomic::AtomicU16::new(0))
                        .collect()
                })
                .collect(),
            fanout: fanout
                .iter()
                .map(|&f| u16::try_from(f).unwrap_or(u16::MAX))
                .collect(),
            done: counts.iter().map(|_| AtomicU64::new(0)).collect(),
            wake: counts.iter().map(|_| tokio::sync::Notify::new()).collect(),
        }
    }

    /// One device received `key`.
    pub fn delivered(&self, key: MsgKey) {
        let s = key.sender as usize;
        let (Some(slots), Some(&fanout)) = (self.pushes.get(s), self.fanout.get(s)) else {
            return;
        };
        let Some(slot) = slots.get(key.n as usize) else {
            return;
        };
        if slot.fetch_add(1, Ordering::Relaxed) + 1 == fanout {
            self.done[s].fetch_add(1, Ordering::Relaxed);
            self.wake[s].notify_one();
        }
    }

    /// Messages of `sender` delivered everywhere.
    pub fn done(&self, sender: u32) -> u64 {
        self.done
            .get(sender as usize)
            .map_or(0, |d| d.load(Ordering::Relaxed))
    }

    /// Resolves when a message of `sender` completes.
    pub async fn completed(&self, sender: u32) {
        match self.wake.get(sender as usize) {
            Some(n) => n.notified().await,
            None => std::future::pending().await,
        }
    }
}

#[derive(Debug)]
struct Hists {
    e2e: Histogram<u64>,
    ack: Histogram<u64>,
    interval: Histogram<u64>,
    connect: Histogram<u64>,
    drain: Histogram<u64>,
    timeline: Vec<Point>,
    last_acked: u64,
    last_delivered: u64,
}

/// Everything one run records.
#[derive(Debug)]
pub struct Recorder {
    epoch: Instant,
    window_start: AtomicU64,
    window_end: AtomicU64,
    /// Sends written in the window.
    pub sent: AtomicU64,
    /// Sends acknowledged in the window.
    pub acked: AtomicU64,
    /// Message pushes received in the window (own device included).
    pub delivered: AtomicU64,
    /// Of those, pushes of a device's own message.
    pub self_delivered: AtomicU64,
    /// Sends written, whole run.
    pub total_sent: AtomicU64,
    /// Sends answered (ok or error), whole run.
    pub total_answered: AtomicU64,
    /// Pushes received, whole run.
    pub total_delivered: AtomicU64,
    /// Pushes the acknowledged sends should cause, whole run.
    pub expected_deliveries: AtomicU64,
    /// Receipt pushes received.
    pub receipts: AtomicU64,
    /// Envelopes opened to check the crypto end to end.
    pub opened: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    hists: Mutex<Hists>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A recorder whose clock starts now; the window is open until set.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            window_start: AtomicU64::new(0),
            window_end: AtomicU64::new(u64::MAX),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            self_delivered: AtomicU64::new(0),
            total_sent: AtomicU64::new(0),
            total_answered: AtomicU64::new(0),
            total_delivered: AtomicU64::new(0),
            expected_deliveries: AtomicU64::new(0),
            receipts: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            hists: Mutex::new(Hists {
                e2e: histogram(),
                ack: histogram(),
                interval: histogram(),
                connect: histogram(),
                drain: histogram(),
                timeline: Vec::new(),
                last_acked: 0,
                last_delivered: 0,
            }),
        }
    }

    /// Nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Nanoseconds since the epoch of an instant.
    pub fn ns_of(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// Sets the measured window, in nanoseconds since the epoch.
    pub fn set_window(&self, start_ns: u64, end_ns: u64) {
        self.window_start.store(start_ns, Ordering::Relaxed);
        self.window_end.store(end_ns, Ordering::Relaxed);
    }

    /// Moves the window's end earlier (a sender ran out of envelopes).
    pub fn end_window_at(&self, ns: u64) {
        self.window_end.fetch_min(ns, Ordering::Relaxed);
    }

    /// The window, in seconds.
    pub fn window_secs(&self) -> f64 {
        let s = self.window_start.load(Ordering::Relaxed);
        let e = self.window_end.load(Ordering::Relaxed);
        e.saturating_sub(s) as f64 / 1e9
    }

    /// True if `ns` falls in the window.
    pub fn in_window(&self, ns: u64) -> bool {
        ns >= self.window_start.load(Ordering::Relaxed)
            && ns < self.window_end.load(Ordering::Relaxed)
    }

    /// Counts an error by code.
    pub fn error(&self, code: &str) {
        self.error_n(code, 1);
    }

    /// Counts `n` errors of one code.
    pub fn error_n(&self, code: &str, n: u64) {
        let mut e = self.errors.lock().expect("error map lock");
        *e.entry(code.to_string()).or_insert(0) += n;
    }

    /// Errors by code.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().expect("error map lock").clone()
    }

    /// A send was written at `ns`.
    pub fn on_sent(&self, ns: u64) {
        self.total_sent.fetch_add(1, Ordering::Relaxed);
        if self.in_window(ns) {
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A send written at `sent_ns` was acknowledged now, causing `fanout` pushes.
    pub fn on_acked(&self, sent_ns: u64, fanout: u64) {
        let now = self.now_ns();
        self.total_answered.fetch_add(1, Ordering::Relaxed);
        self.expected_deliveries
            .fetch_add(fanout, Ordering::Relaxed);
        if self.in_window(now) {
            self.acked.fetch_add(1, Ordering::Relaxed);
        }
        if self.in_window(sent_ns) {
            let us = now.saturating_sub(sent_ns) / 1000;
            self.hists
                .lock()
                .expect("histogram lock")
                .ack
                .saturating_record(us.max(1));
        }
    }

    /// A send was refused (its error is counted separately).
    pub fn on_refused(&self) {
        self.total_answered.fetch_add(1, Ordering::Relaxed);
    }

    /// A push arrived; `sent_ns` is when it was sent, `own` if the receiving
    /// device sent it.
    pub fn on_delivered(&self, sent_ns: Option<u64>, own: bool) {
        let now = self.now_ns();
        self.total_delivered.fetch_add(1, Ordering::Relaxed);
        if self.in_window(now) {
            self.delivered.fetch_add(1, Ordering::Relaxed);
            if own {
                self.self_delivered.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(s) = sent_ns
            && !own
            && self.in_window(s)
        {
            let us = (now.saturating_sub(s) / 1000).max(1);
            let mut h = self.hists.lock().expect("histogram lock");
            h.e2e.saturating_record(us);
            h.interval.saturating_record(us);
        }
    }

    /// A connection was opened and authenticated in `us` microseconds.
    pub fn on_connected(&self, us: u64) {
        self.hists
            .lock()
            .expect("histogram lock")
            .connect
            .saturating_record(us.max(1));
    }

    /// A device finished catching up `us` microseconds after the storm began.
    pub fn on_drained(&self, us: u64) {
        self.hists
            .lock()
            .expect("histogram lock")
            .drain
            .saturating_record(us.max(1));
    }

    /// Closes the current one-second interval of the timeline.
    pub fn tick(&self, t_s: f64) -> Point {
        let acked = self.total_answered.load(Ordering::Relaxed);
        let delivered = self.total_delivered.load(Ordering::Relaxed);
        let mut h = self.hists.lock().expect("histogram lock");
        let p = Point {
            t_s,
            acked: acked - h.last_acked,
            delivered: delivered - h.last_delivered,
            latency: Latency::of(&h.interval),
        };
        h.last_acked = acked;
        h.last_delivered = delivered;
        h.interval.reset();
        h.timeline.push(p);
        p
    }

    /// End-to-end latency (send → another device receives it).
    pub fn e2e(&self) -> Latency {
        Latency::of(&self.hists.lock().expect("histogram lock").e2e)
    }

    /// Send → `ok` (durable) latency.
    pub fn ack_latency(&self) -> Latency {
        Latency::of(&self.hists.lock().expect("histogram lock").ack)
    }

    /// Connect-and-authenticate latency.
    pub fn connect_latency(&self) -> Latency {
        Latency::of(&self.hists.lock().expect("histogram lock").connect)
    }

    /// Per-device catch-up time.
    pub fn drain_latency(&self) -> Latency {
        Latency::of(&self.hists.lock().expect("histogram lock").drain)
    }

    /// The per-second timeline so far.
    pub fn timeline(&self) -> Vec<Point> {
        self.hists.lock().expect("histogram lock").timeline.clone()
    }

    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_window_counts_towards_rates() {
        let r = Recorder::new();
        r.set_window(1_000, 2_000);
        r.on_sent(500);
        r.on_sent(1_500);
        assert_eq!(Recorder::get(&r.total_sent), 2);
        assert_eq!(Recorder::get(&r.sent), 1);
    }

    #[test]
    fn latency_percentiles_come_out_in_ms() {
        let r = Recorder::new();
        r.set_window(0, u64::MAX);
        // Sent at the epoch, so each latency is the time since the recorder began.
        for _ in 0..99 {
            r.on_delivered(Some(0), false);
        }
        let l = r.e2e();
        assert_eq!(l.count, 99);
        assert!(
            l.p50_ms > 0.0 && l.p50_ms <= l.p99_ms && l.p99_ms <= l.max_ms,
            "{l:?}"
        );
        let p = r.tick(1.0);
        assert_eq!(p.delivered, 99);
        assert_eq!(r.tick(2.0).latency.count, 0, "intervals reset");
    }

    #[test]
    fn send_clock_remembers_when() {
        let c = SendClock::new(&[2, 1]);
        let k = MsgKey { sender: 1, n: 0 };
        assert_eq!(c.when(k), None);
        c.sent(k, 0);
        assert_eq!(c.when(k), Some(0));
        assert_eq!(c.when(MsgKey { sender: 5, n: 0 }), None);
    }
}
