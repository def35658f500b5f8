//! `idle`: hold C authenticated connections for T seconds and report what
//! each costs the server in memory.
//!
//! One clinician is enrolled and its token resumed on every connection
//! (a token may be resumed on any number of connections of its device),
//! which is the cheapest way to hold many authenticated sessions. The
//! connections are opened in stages, the server's RSS read after each, so
//! the report gives both the average cost over the empty server and the
//! marginal cost between stages (which is immune to memory the allocator
//! kept from provisioning).

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use super::{Env, finish, params, secs, server_param, val};
use crate::cli::Common;
use crate::hold::{self, Closed, Job, Login, Opened, Worker};
use crate::procstat::{Sample, Watched};
use crate::progress::Progress;
use crate::provision;
use crate::report::{Figures, Report, Target};
use crate::server_proc::ServerLimits;

/// Connections one process holds at most (the hard open-file limit here is
/// 20,000 per process, and the harness needs some for itself).
const PER_PROCESS: usize = 9_000;

/// What one side of the run measured.
struct Held {
    figures: Figures,
}

/// Options of the scenario.
#[derive(Debug, Clone, Copy)]
pub struct IdleArgs {
    /// Connections.
    pub connections: usize,
    /// Hold time.
    pub hold: Duration,
    /// Helper processes.
    pub workers: usize,
    /// Opened at once.
    pub concurrency: usize,
}

enum Stage {
    Here(hold::Holding),
    There(Box<Worker>),
}

async fn settle_and_sample(who: &Option<Watched>) -> Sample {
    // Let the server finish the handshakes' allocations before reading.
    tokio::time::sleep(Duration::from_millis(500)).await;
    who.as_ref().map(|w| w.sample()).unwrap_or_default()
}

async fn hold_all(
    env: &Env,
    login: Login,
    args: IdleArgs,
    common: &Common,
    label: &str,
) -> anyhow::Result<Held> {
    let mut progress = Progress::new(common.quiet);
    let empty = settle_and_sample(&env.watched).await;
    // At least two stages, so a marginal cost can be measured.
    let stages = args.workers.max(2);
    let per_stage = args.connections.div_ceil(stages);
    let mut held = Vec::new();
    let mut samples = vec![(0usize, empty)];
    let mut opened_all = Opened::default();
    let mut total = 0usize;
    let mut offset_base = 0u64;
    let mut p50s = Vec::new();
    for s in 0..stages {
        let count = per_stage.min(args.connections - total);
        if count == 0 {
            break;
        }
        let login = match &login {
            Login::Same(f) => Login::Same(f.clone()),
            Login::RelayFrom(b) => Login::RelayFrom(b + total as u32),
        };
        let job = Job {
            url: env.url.clone(),
            login,
            count,
            concurrency: args.concurrency,
            spread: !common.no_spread,
            offset: offset_base,
        };
        offset_base += count as u64 + 1000;
        progress.update(&format!(
            "[{label}] stage {}/{stages}: opening {count} connections",
            s + 1
        ));
        let (stage, opened) = if args.workers > 1 {
            let (w, o) = Worker::start(&job).await?;
            (Stage::There(Box::new(w)), o)
        } else {
            let (h, o) = hold::open(&job).await;
            (Stage::Here(h), o)
        };
        total += count;
        opened_all.connected += opened.connected;
        opened_all.failed += opened.failed;
        opened_all.secs += opened.secs;
        opened_all.p99_ms = opened_all.p99_ms.max(opened.p99_ms);
        p50s.push(opened.p50_ms);
        for (k, v) in opened.errors {
            *opened_all.errors.entry(k).or_insert(0) += v;
        }
        held.push(stage);
        let sample = settle_and_sample(&env.watched).await;
        samples.push((opened_all.connected, sample));
        progress.note(&format!(
            "[{label}] {} connections authenticated ({} failed), server RSS {:.1} MiB",
            opened_all.connected,
            opened_all.failed,
            sample.rss_bytes as f64 / 1048576.0
        ));
    }
    // Hold, watching the server.
    let start = env.watched.as_ref().map(|w| w.sample()).unwrap_or_default();
    let mut peak = start.rss_bytes;
    let machine_start = crate::procstat::machine_busy_s();
    let t0 = Instant::now();
    while t0.elapsed() < args.hold {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(w) = &env.watched {
            peak = peak.max(w.sample().rss_bytes);
        }
        progress.update(&format!(
            "[{label}] holding {} connections {:.0}/{:.0} s, server RSS peak {:.1} MiB",
            opened_all.connected,
            t0.elapsed().as_secs_f64(),
            args.hold.as_secs_f64(),
            peak as f64 / 1048576.0
        ));
    }
    let end = env.watched.as_ref().map(|w| w.sample()).unwrap_or_default();
    let machine = crate::procstat::machine_busy_s() - machine_start;
    let mut closed = Closed::default();
    for stage in held {
        let c = match stage {
            Stage::Here(h) => h.close().await,
            Stage::There(w) => w.close().await?,
        };
        closed.still_open += c.still_open;
        closed.dropped += c.dropped;
    }
    progress.finish();

    let n = opened_all.connected.max(1) as f64;
    let (last_n, last) = samples[samples.len() - 1];
    let (first_n, first) = samples[1.min(samples.len() - 1)];
    let marginal = if last_n > first_n {
        (last.rss_bytes as f64 - first.rss_bytes as f64) / (last_n - first_n) as f64
    } else {
        0.0
    };
    let mut errors = opened_all.errors.clone();
    if closed.dropped > 0 {
        errors.insert("dropped_while_held".into(), closed.dropped as u64);
    }
    let figures = Figures {
        target: label.split(' ').next_back().unwrap_or(label).to_string(),
        duration_s: args.hold.as_secs_f64(),
        connections: opened_all.connected,
        connections_failed: opened_all.failed,
        connect_per_s: opened_all.connected as f64 / opened_all.secs.max(1e-9),
        connect_p50_ms: p50s.iter().sum::<f64>() / p50s.len().max(1) as f64,
        connect_p99_ms: opened_all.p99_ms,
        server_cpu_s: (end.cpu_s - start.cpu_s).max(0.0),
        other_cpu_s: (machine - (end.cpu_s - start.cpu_s)).max(0.0),
        server_rss_bytes: end.rss_bytes,
        server_peak_rss_bytes: peak.max(end.rss_bytes),
        server_hwm_bytes: end.hwm_bytes,
        errors_total: errors.values().sum(),
        errors,
        ..Figures::default()
    }
    .with("connections_held_to_the_end", closed.still_open)
    .with("server_rss_empty_bytes", empty.rss_bytes)
    .with(
        "rss_per_connection_bytes",
        (last.rss_bytes as f64 - empty.rss_bytes as f64) / n,
    )
    .with("marginal_rss_per_connection_bytes", marginal)
    .with(
        "rss_by_stage",
        samples
            .iter()
            .map(|(c, s)| json!({"connections": c, "rss_bytes": s.rss_bytes}))
            .collect::<Vec<_>>(),
    );
    Ok(Held { figures })
}

/// Runs `idle` and prints its report.
pub async fn run(common: &Common, mut args: IdleArgs) -> anyhow::Result<()> {
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if args.workers == 0 {
        args.workers = if args.connections > PER_PROCESS {
            args.connections.div_ceil(PER_PROCESS)
        } else {
            1
        };
    }
    let limits = ServerLimits {
        // Idle connections send one frame each: the default limits apply.
        rate_per_sec: 100,
        rate_burst: 400,
        max_connections: args.connections + 256,
        outbound_queue: common.outbound_queue,
    };
    let env = Env::wardline(common, &limits)?;
    let sources = super::sources(common);
    let mut admin = env.admin(sources).await?;
    let (mut enrolled, provision) =
        provision::enrol_users(&env.url, &mut admin, &provision::run_tag(), 1, 1, sources).await?;
    admin.rpc.close().await;
    let user = enrolled
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no user enrolled"))?;
    user.rpc.close().await;
    let login = Login::Same(provision::resume_frame(&user.identity.token));
    let wardline = hold_all(&env, login, args, common, "idle wardline")
        .await?
        .figures;
    drop(env);
    let baseline = if common.baseline_relay {
        let env = Env::relay()?;
        Some(
            hold_all(&env, Login::RelayFrom(0), args, common, "idle relay")
                .await?
                .figures,
        )
    } else {
        None
    };
    let per_conn = wardline
        .extra
        .get("rss_per_connection_bytes")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    let held = wardline
        .extra
        .get("connections_held_to_the_end")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let targets = vec![
        Target {
            goal: "hold >= 19,500 authenticated connections".into(),
            measured: format!("{held} held to the end"),
            met: held >= 19_500,
        },
        Target {
            goal: "<= 12 KiB server RSS per connection beyond the empty server".into(),
            measured: format!("{:.2} KiB", per_conn / 1024.0),
            met: per_conn <= 12.0 * 1024.0 && held > 0,
        },
    ];
    let report = Report {
        scenario: "idle".into(),
        params: params([
            ("connections", json!(args.connections)),
            ("hold_s", json!(args.hold.as_secs_f64())),
            ("workers", json!(args.workers)),
            ("connect_concurrency", json!(args.concurrency)),
            ("spread_sources", json!(!common.no_spread)),
            server_param(common),
        ]),
        setup: params([("provisioning", val(provision))]),
        wardline,
        baseline,
        ratios: Default::default(),
        targets,
    };
    finish(common, report)
}

/// Parses the hold option (`--hold`, or `--duration`).
pub fn hold_secs(common: &Common, hold: Option<f64>) -> anyhow::Result<Duration> {
    secs("hold", hold.unwrap_or(common.duration))
}
