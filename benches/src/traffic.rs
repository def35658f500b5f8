//! Runs a set of [`driver`](crate::driver) connections through one
//! measured window: connect and authenticate all, start them together,
//! warm up, measure for the duration, stop sending, wait for every answer
//! and push to arrive, close.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::client::Sources;
use crate::driver::{self, Conn, Pace, Shared};
use crate::metrics::{Completion, Recorder, SendClock};
use crate::procstat::{Sample, Watched};
use crate::progress::Progress;
use crate::server_metrics::{self, CommitStats, Scrape};

/// How a traffic phase runs.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Where to connect.
    pub url: String,
    /// Source addresses.
    pub sources: Sources,
    /// Pacing.
    pub pace: Pace,
    /// Ack interval.
    pub ack_every: Duration,
    /// Traffic before the window opens.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Most time to wait for answers and pushes after sending stops.
    pub drain_timeout: Duration,
    /// The server process, when local.
    pub server: Option<Watched>,
    /// Label for the progress line.
    pub label: String,
    /// No progress line.
    pub quiet: bool,
    /// Run until every sender has sent everything, instead of for `duration`.
    pub until_sent: bool,
    /// The server's `/metrics` listener, when known.
    pub metrics_url: Option<String>,
}

/// CPU and memory of a process over the window.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Usage {
    /// CPU seconds used in the window.
    pub cpu_s: f64,
    /// RSS at the end of the window, bytes.
    pub rss_bytes: u64,
    /// Largest RSS sampled during the window, bytes.
    pub peak_rss_bytes: u64,
    /// The process's all-time peak (VmHWM), bytes.
    pub hwm_bytes: u64,
}

/// What a traffic phase measured.
#[derive(Debug)]
pub struct Outcome {
    /// The measurements.
    pub rec: Arc<Recorder>,
    /// Connections authenticated.
    pub connected: usize,
    /// Connections that failed to authenticate.
    pub failed: usize,
    /// Time to connect and authenticate them all, seconds.
    pub connect_secs: f64,
    /// A sender ran out of envelopes before the end.
    pub exhausted: bool,
    /// The server, when local.
    pub server: Option<Usage>,
    /// This process over the window.
    pub harness: Usage,
    /// Length of the window, seconds.
    pub window_secs: f64,
    /// The server's group commits in the window, from its `/metrics`.
    pub commits: Option<CommitStats>,
    /// CPU seconds other processes on the machine used in the window.
    pub other_cpu_s: f64,
}

async fn scrape(url: &Option<String>) -> Option<Scrape> {
    let url = url.clone()?;
    tokio::task::spawn_blocking(move || server_metrics::scrape(&url))
        .await
        .ok()
        .flatten()
}

struct Sampler {
    who: Watched,
    start: Sample,
    peak: u64,
}

impl Sampler {
    fn new(who: Watched) -> Self {
        let start = who.sample();
        Self {
            peak: start.rss_bytes,
            start,
            who,
        }
    }
    fn poll(&mut self) {
        self.peak = self.peak.max(self.who.sample().rss_bytes);
    }
    fn usage(&self) -> Usage {
        let end = self.who.sample();
        Usage {
            cpu_s: (end.cpu_s - self.start.cpu_s).max(0.0),
            rss_bytes: end.rss_bytes,
            peak_rss_bytes: self.peak.max(end.rss_bytes),
            hwm_bytes: end.hwm_bytes,
        }
    }
}

/// Runs `conns` through one window.
pub async fn run(conns: Vec<Conn>, counts: &[usize], opts: &Opts) -> Outcome {
    let rec = Arc::new(Recorder::new());
    let clock = Arc::new(SendClock::new(counts));
    let mut fanout = vec![0u64; counts.len()];
    for c in &conns {
        if let Some(f) = fanout.get_mut(c.index as usize) {
            *f = c.fanout;
        }
    }
    let completion = Arc::new(Completion::new(counts, &fanout));
    let senders = conns
        .iter()
        .filter(|c| c.cap > 0 && !matches!(c.outgoing, driver::Outgoing::Nothing))
        .count();
    let (start_tx, start) = watch::channel(false);
    let (stop_tx, stop) = watch::channel(false);
    let (finish_tx, finish) = watch::channel(false);
    let (ready_tx, mut ready) = tokio::sync::mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        url: opts.url.clone(),
        sources: opts.sources,
        rec: rec.clone(),
        clock,
        completion,
        pace: opts.pace,
        ack_every: opts.ack_every,
        start,
        stop,
        finish,
        ready: ready_tx,
        active: std::sync::atomic::AtomicUsize::new(senders),
        started: std::sync::atomic::AtomicUsize::new(0),
        stopped: std::sync::atomic::AtomicUsize::new(0),
        exhaustion_ends_window: !opts.until_sent,
    });
    let mut progress = Progress::new(opts.quiet);
    let n = conns.len();

    let connecting = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|c| tokio::spawn(driver::drive(c, shared.clone())))
        .collect();
    let (mut connected, mut failed) = (0, 0);
    while connected + failed < n {
        match tokio::time::timeout(Duration::from_secs(120), ready.recv()).await {
            Ok(Some(true)) => connected += 1,
            Ok(Some(false)) => failed += 1,
            _ => break,
        }
        progress.update(&format!(
            "[{}] connecting {connected}/{n} ({failed} failed)",
            opts.label
        ));
    }
    let connect_secs = connecting.elapsed().as_secs_f64();
    progress.note(&format!(
        "[{}] {connected} connections authenticated in {connect_secs:.2} s ({:.0}/s){}",
        opts.label,
        connected as f64 / connect_secs.max(1e-9),
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        }
    ));

    let t0 = rec.now_ns();
    let warm = opts.warmup.as_nanos() as u64;
    let planned_end = t0 + warm + opts.duration.as_nanos() as u64;
    rec.set_window(t0 + warm, planned_end);
    let _ = start_tx.send(true);
    let mut server = opts.server.clone().map(Sampler::new);
    let mut harness = Sampler::new(Watched::this_process());
    let mut in_window = warm == 0;
    let mut scraped = if in_window {
        scrape(&opts.metrics_url).await
    } else {
        None
    };
    let mut opened_at = Instant::now();
    let mut machine = crate::procstat::machine_busy_s();
    let mut next_tick = 1.0;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = rec.now_ns();
        if !in_window && now >= t0 + warm {
            // The window opens: CPU counts from here.
            in_window = true;
            server = opts.server.clone().map(Sampler::new);
            harness = Sampler::new(Watched::this_process());
            scraped = scrape(&opts.metrics_url).await;
            opened_at = Instant::now();
            machine = crate::procstat::machine_busy_s();
        }
        if let Some(s) = &mut server {
            s.poll();
        }
        let t = (now - t0) as f64 / 1e9;
        if t >= next_tick {
            next_tick += 1.0;
            let p = rec.tick(t);
            let rss = server
                .as_ref()
                .map(|s| format!("  server rss {:.0} MiB", s.peak as f64 / 1048576.0))
                .unwrap_or_default();
            progress.update(&format!(
                "[{}] {t:>5.1}/{:.0} s  acked {:>7}/s  delivered {:>8}/s  p99 {:>7.2} ms  errors {}{rss}",
                opts.label,
                (warm + opts.duration.as_nanos() as u64) as f64 / 1e9,
                p.acked,
                p.delivered,
                p.latency.p99_ms,
                rec.errors().values().sum::<u64>(),
            ));
        }
        // The window ends as planned, or earlier when a sender ran dry.
        let end = planned_end.min(t0 + warm + (rec.window_secs() * 1e9) as u64);
        let dry = senders > 0 && shared.active.load(Ordering::Relaxed) == 0;
        if now >= end || dry || tasks.iter().all(|t| t.is_finished()) {
            rec.end_window_at(now);
            break;
        }
    }
    let server = server.map(|s| s.usage());
    let harness = harness.usage();
    let other_cpu_s = (crate::procstat::machine_busy_s()
        - machine
        - harness.cpu_s
        - server.map_or(0.0, |s| s.cpu_s))
    .max(0.0);
    let window_wall = opened_at.elapsed().as_secs_f64();
    let commits = match (scraped, scrape(&opts.metrics_url).await) {
        (Some(a), Some(b)) => Some(b.since(&a, window_wall)),
        _ => None,
    };
    let _ = stop_tx.send(true);

    // Drain: every send answered, every push its ack promised delivered.
    // The count of sends is final once every connection has seen `stop`.
    let drain_until = Instant::now() + opts.drain_timeout;
    while Instant::now() < drain_until
        && shared.stopped.load(Ordering::SeqCst) < shared.started.load(Ordering::SeqCst)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    while Instant::now() < drain_until {
        let sent = rec.total_sent.load(Ordering::Relaxed);
        let answered = rec.total_answered.load(Ordering::Relaxed);
        let delivered = rec.total_delivered.load(Ordering::Relaxed);
        let expected = rec.expected_deliveries.load(Ordering::Relaxed);
        if answered >= sent && delivered >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = rec.total_sent.load(Ordering::Relaxed);
    let answered = rec.total_answered.load(Ordering::Relaxed);
    if answered < sent {
        rec.error_n("unanswered", sent - answered);
    }
    let delivered = rec.total_delivered.load(Ordering::Relaxed);
    let expected = rec.expected_deliveries.load(Ordering::Relaxed);
    if delivered < expected {
        rec.error_n("undelivered", expected - delivered);
    }
    let _ = finish_tx.send(true);
    let mut exhausted = false;
    for t in tasks {
        if let Ok(o) = t.await {
            exhausted |= o.exhausted;
        }
    }
    progress.finish();
    Outcome {
        window_secs: rec
            .window_secs()
            .min((planned_end - t0 - warm) as f64 / 1e9),
        rec,
        connected,
        failed,
        connect_secs,
        exhausted,
        server,
        harness,
        commits,
        other_cpu_s,
    }
}
