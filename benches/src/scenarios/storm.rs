//! `storm`: D devices go offline, M messages queue for each, then all
//! resume at once and drain their backlog.
//!
//! The devices are clinicians in care-team conversations of `members`
//! devices each, plus one of `senders` sending users; each conversation
//! gets M messages, so every device has M queued. Provisioning (D
//! enrolments), sealing and queueing are reported apart from the storm.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;
use wardline_protocol::wire::{self, ServerFrame};
use wardline_protocol::{DeviceId, DeviceSecrets, SigPublicKey, envelope};

use super::{Env, finish, params, server_param, val};
use crate::cli::Common;
use crate::client::Sources;
use crate::driver::{self, AckStyle, Conn, Outgoing, Pace};
use crate::frames::{self, Incoming, MsgKey};
use crate::metrics::Recorder;
use crate::procstat::Watched;
use crate::progress::Progress;
use crate::provision::{self, Conversation, ProvisionStats};
use crate::relay::{self, RelaySend};
use crate::report::{Figures, Report, Target};
use crate::seal::{self, Item, RelayShape, Sealer};
use crate::traffic::{self, Opts};

/// Options of the scenario.
#[derive(Debug, Clone, Copy)]
pub struct StormArgs {
    /// Devices.
    pub devices: usize,
    /// Messages queued per device.
    pub messages: usize,
    /// Devices per conversation.
    pub members: usize,
    /// Sending connections.
    pub senders: usize,
    /// Window per sender while queueing.
    pub window: u64,
    /// Connections opened at once.
    pub concurrency: usize,
    /// Give up after.
    pub drain_timeout: Duration,
}

impl StormArgs {
    fn groups(&self) -> usize {
        self.devices.div_ceil(self.members)
    }
    fn members_of(&self, g: usize) -> std::ops::Range<usize> {
        g * self.members..((g + 1) * self.members).min(self.devices)
    }
    fn sender_of(&self, g: usize) -> usize {
        g % self.senders
    }
}

/// A storm device: how it resumes, and (sometimes) how to check what it gets.
struct Device {
    login: String,
    ack: AckStyle,
    verify: Option<(DeviceId, DeviceSecrets, SigPublicKey)>,
}

/// Every device resumes at once (at most `concurrency` connecting) and
/// reads until it has `expect` messages.
async fn storm(
    url: &str,
    devices: Vec<Device>,
    expect: usize,
    args: &StormArgs,
    common: &Common,
    server: Option<Watched>,
    label: &str,
) -> Figures {
    let rec = Arc::new(Recorder::new());
    rec.set_window(0, u64::MAX);
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let (finish_tx, finished) = watch::channel(false);
    let drained = Arc::new(AtomicUsize::new(0));
    let connected = Arc::new(AtomicUsize::new(0));
    let sources = Sources {
        spread: !common.no_spread,
    };
    let server_start = server.as_ref().map(|s| s.sample());
    let harness = Watched::this_process();
    let harness_start = harness.sample();
    let machine_start = crate::procstat::machine_busy_s();
    let t0 = Instant::now();
    let n = devices.len();
    let tasks: Vec<_> = devices
        .into_iter()
        .map(|d| {
            let (gate, rec, drained, connected) =
                (gate.clone(), rec.clone(), drained.clone(), connected.clone());
            let url = url.to_string();
            let mut finished = finished.clone();
            tokio::spawn(async move {
                let permit = gate.acquire_owned().await.ok()?;
                let mut ws = driver::login(&url, sources, &d.login, &rec).await?;
                drop(permit);
                connected.fetch_add(1, Ordering::Relaxed);
                let mut got = 0usize;
                loop {
                    tokio::select! {
                        m = ws.next() => {
                            let Some(Ok(Message::Text(t))) = m else {
                                if !matches!(m, Some(Ok(_))) { rec.error("connection_closed"); return None; }
                                continue;
                            };
                            if let Some(Incoming::Message { conv_id, seq, .. }) = frames::parse(t.as_str()) {
                                rec.on_delivered(None, false);
                                if got == 0 && let Some((id, keys, sig)) = &d.verify {
                                    verify(t.as_str(), id, keys, sig, &rec);
                                }
                                got += 1;
                                if got == expect {
                                    let newest = (conv_id, seq);
                                    rec.on_drained(t0.elapsed().as_micros() as u64);
                                    drained.fetch_add(1, Ordering::Relaxed);
                                    // Acknowledge once, as a client does after catching up.
                                    let ack = match (d.ack, &newest) {
                                        (AckStyle::Wardline, (c, s)) => Some(format!(r#"{{"type":"ack","id":1,"conv_id":"{c}","seq":{s}}}"#)),
                                        (AckStyle::Relay(len), _) => Some(relay::ack_frame(1, len)),
                                        _ => None,
                                    };
                                    if let Some(a) = ack {
                                        let _ = ws.send(Message::text(a)).await;
                                    }
                                }
                            }
                        }
                        _ = finished.changed() => break,
                    }
                }
                let _ = ws.close(None).await;
                Some(got)
            })
        })
        .collect();
    let mut progress = Progress::new(common.quiet);
    let mut peak = server_start.map_or(0, |s| s.rss_bytes);
    let mut all_connected_at = None;
    while t0.elapsed() < args.drain_timeout {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(s) = &server {
            peak = peak.max(s.sample().rss_bytes);
        }
        let c = connected.load(Ordering::Relaxed);
        let d = drained.load(Ordering::Relaxed);
        if c + rec.errors().values().sum::<u64>() as usize >= n && all_connected_at.is_none() {
            all_connected_at = Some(t0.elapsed());
        }
        progress.update(&format!(
            "[{label}] {:.1} s: {c}/{n} resumed, {d}/{n} drained, {} messages",
            t0.elapsed().as_secs_f64(),
            Recorder::get(&rec.total_delivered)
        ));
        if d >= n || tasks.iter().all(|t| t.is_finished()) {
            break;
        }
    }
    let drain_secs = t0.elapsed().as_secs_f64();
    let server_end = server.as_ref().map(|s| s.sample());
    let harness_end = harness.sample();
    let machine_end = crate::procstat::machine_busy_s();
    let _ = finish_tx.send(true);
    let mut incomplete = 0;
    for t in tasks {
        match t.await {
            Ok(Some(got)) if got >= expect => {}
            _ => incomplete += 1,
        }
    }
    progress.finish();
    if incomplete > 0 {
        rec.error_n("drain_incomplete", incomplete as u64);
    }
    let delivered = Recorder::get(&rec.total_delivered);
    let conn = rec.connect_latency();
    let drain = rec.drain_latency();
    let errors = rec.errors();
    let connect_secs = all_connected_at.map_or(drain_secs, |d| d.as_secs_f64());
    let cpu = match (server_start, server_end) {
        (Some(a), Some(b)) => (b.cpu_s - a.cpu_s).max(0.0),
        _ => 0.0,
    };
    Figures {
        target: label.split(' ').next_back().unwrap_or(label).to_string(),
        duration_s: drain_secs,
        connections: connected.load(Ordering::Relaxed),
        connections_failed: n - connected.load(Ordering::Relaxed),
        connect_per_s: connected.load(Ordering::Relaxed) as f64 / connect_secs.max(1e-9),
        connect_p50_ms: conn.p50_ms,
        connect_p99_ms: conn.p99_ms,
        deliveries: delivered,
        deliveries_per_s: delivered as f64 / drain_secs.max(1e-9),
        server_cpu_s: cpu,
        server_cpu_s_per_1k_msgs: cpu / (delivered.max(1) as f64 / 1000.0),
        server_rss_bytes: server_end.map_or(0, |s| s.rss_bytes),
        server_peak_rss_bytes: peak,
        server_hwm_bytes: server_end.map_or(0, |s| s.hwm_bytes),
        harness_cpu_s: (harness_end.cpu_s - harness_start.cpu_s).max(0.0),
        other_cpu_s: (machine_end
            - machine_start
            - cpu
            - (harness_end.cpu_s - harness_start.cpu_s))
            .max(0.0),
        envelopes_opened: Recorder::get(&rec.opened),
        errors_total: errors.values().sum(),
        errors,
        ..Figures::default()
    }
    .with("drain_secs", drain_secs)
    .with("devices_drained", drained.load(Ordering::Relaxed))
    .with("device_drain_p50_ms", drain.p50_ms)
    .with("device_drain_p99_ms", drain.p99_ms)
    .with("device_drain_max_ms", drain.max_ms)
}

fn verify(text: &str, id: &DeviceId, keys: &DeviceSecrets, sig: &SigPublicKey, rec: &Recorder) {
    let ok = matches!(wire::decode_server_frame(text), Ok(ServerFrame::Message(m))
        if envelope::open(&m.envelope, id, keys, sig).is_ok());
    if ok {
        rec.opened.fetch_add(1, Ordering::Relaxed);
    } else {
        rec.error("open_failed");
    }
}

fn queue_opts(common: &Common, env: &Env, window: u64, label: &str) -> Opts {
    Opts {
        url: env.url.clone(),
        sources: super::sources(common),
        pace: Pace::Window(window.max(1)),
        ack_every: Duration::from_secs(1),
        warmup: Duration::ZERO,
        duration: Duration::from_secs(24 * 3600),
        drain_timeout: Duration::from_secs(60),
        server: env.watched.clone(),
        label: label.to_string(),
        quiet: common.quiet,
        until_sent: true,
        metrics_url: env.admin_url(),
    }
}

/// How the queueing phase went, for the report.
fn queue_summary(o: &traffic::Outcome) -> serde_json::Value {
    let f = Figures::from_traffic("queue", o);
    json!({
        "sends": f.sends_acked,
        "secs": f.duration_s,
        "sends_per_s": f.sends_acked_per_s,
        "ack_p99_ms": f.ack_p99_ms,
        "server_cpu_s_per_1k_msgs": f.server_cpu_s_per_1k_msgs,
        "errors": f.errors,
    })
}

async fn wardline_side(
    common: &Common,
    args: &StormArgs,
) -> anyhow::Result<(Figures, serde_json::Value)> {
    let env = Env::wardline(
        common,
        &super::throughput_limits(common, args.devices + args.senders),
    )?;
    let sources = super::sources(common);
    let mut admin = env.admin(sources).await?;
    let tag = provision::run_tag();
    let (senders, p1) = provision::enrol_users(
        &env.url,
        &mut admin,
        &format!("{tag}-s"),
        args.senders,
        common.enrol_concurrency,
        sources,
    )
    .await?;
    if !common.quiet {
        eprintln!(
            "[storm wardline] enrolling {} devices ({} at a time)",
            args.devices, common.enrol_concurrency
        );
    }
    let (devices, p2) = provision::enrol_users(
        &env.url,
        &mut admin,
        &format!("{tag}-d"),
        args.devices,
        common.enrol_concurrency,
        sources,
    )
    .await?;
    admin.rpc.close().await;
    let provisioning = ProvisionStats {
        users: p1.users + p2.users,
        secs: p1.secs + p2.secs,
        per_s: (p1.users + p2.users) as f64 / (p1.secs + p2.secs).max(1e-9),
    };
    let (sender_rpcs, sender_ids): (Vec<_>, Vec<_>) =
        senders.into_iter().map(|e| (e.rpc, e.identity)).unzip();
    let (device_rpcs, device_ids): (Vec<_>, Vec<_>) =
        devices.into_iter().map(|e| (e.rpc, e.identity)).unzip();
    // Every storm device goes offline.
    for r in device_rpcs {
        r.close().await;
    }
    // The senders' enrolment connections may have sat silent through the
    // devices' enrolments for longer than the server's idle timeout: each
    // sender creates its conversations on a fresh connection, in parallel.
    for r in sender_rpcs {
        r.close().await;
    }
    let mut jobs = Vec::new();
    for (q, sender) in sender_ids.iter().enumerate() {
        let groups: Vec<(usize, Vec<_>)> = (0..args.groups())
            .filter(|g| args.sender_of(*g) == q)
            .map(|g| {
                (
                    g,
                    args.members_of(g)
                        .map(|d| device_ids[d].user_id.clone())
                        .collect(),
                )
            })
            .collect();
        let me = sender.user_id.clone();
        let tag = tag.clone();
        let (url, token) = (env.url.clone(), sender.token.clone());
        jobs.push(tokio::spawn(async move {
            let mut rpc = provision::resume(&url, &token, sources).await?;
            let mut out = Vec::new();
            for (g, others) in groups {
                let mut members = others.clone();
                members.push(me.clone());
                out.push((
                    g,
                    provision::create_conversation(
                        &mut rpc,
                        &others,
                        &members,
                        &format!("storm {tag} {g}"),
                    )
                    .await?,
                ));
            }
            rpc.close().await;
            anyhow::Ok(out)
        }));
    }
    let mut convs: Vec<Option<Conversation>> = vec![None; args.groups()];
    for j in jobs {
        for (g, c) in j.await.context("conversation task")?? {
            convs[g] = Some(c);
        }
    }
    let convs: Vec<Conversation> = convs
        .into_iter()
        .collect::<Option<_>>()
        .context("a conversation is missing")?;

    // Seal M messages per conversation, grouped by sender.
    let sealers: Vec<Sealer<'_>> = sender_ids
        .iter()
        .map(|u| Sealer {
            user_id: &u.user_id,
            device_id: &u.device_id,
            secrets: &u.secrets,
        })
        .collect();
    let mut items = Vec::new();
    let mut counts = vec![0usize; args.senders];
    for (q, count) in counts.iter_mut().enumerate() {
        for g in (0..args.groups()).filter(|g| args.sender_of(*g) == q) {
            for _ in 0..args.messages {
                items.push(Item {
                    sealer: q,
                    conv: g,
                    key: MsgKey {
                        sender: q as u32,
                        n: *count as u32,
                    },
                });
                *count += 1;
            }
        }
    }
    if !common.quiet {
        eprintln!(
            "[storm wardline] sealing {} envelopes ahead of time",
            items.len()
        );
    }
    let (frames, sealing) = seal::seal_all(
        &sealers,
        &convs,
        &items,
        common.body_bytes,
        super::seal_threads(common),
    )?;
    let mut frames = frames.into_iter();
    let conns: Vec<Conn> = sender_ids
        .iter()
        .enumerate()
        .map(|(q, u)| Conn {
            index: q as u32,
            login: provision::resume_frame(&u.token),
            outgoing: Outgoing::Sealed(frames.by_ref().take(counts[q]).collect()),
            cap: counts[q] as u32,
            // Only the sender's own device is online while the backlog builds.
            fanout: 1,
            ack: AckStyle::Never,
            verify: None,
            closed_loop: true,
        })
        .collect();
    let queued = traffic::run(
        conns,
        &counts,
        &queue_opts(common, &env, args.window, "storm wardline queueing"),
    )
    .await;
    let queue = queue_summary(&queued);
    if queued.rec.errors().values().sum::<u64>() > 0 {
        bail!("queueing the backlog failed: {queue}");
    }
    let sig: Vec<SigPublicKey> = sender_ids
        .iter()
        .map(|u| u.secrets.public().sig_pk)
        .collect();
    let storm_devices: Vec<Device> = device_ids
        .iter()
        .enumerate()
        .map(|(i, u)| Device {
            login: provision::resume_frame(&u.token),
            ack: AckStyle::Wardline,
            verify: (i % 100 == 0).then(|| {
                (
                    u.device_id.clone(),
                    DeviceSecrets::from_bytes(
                        u.secrets.kem_secret_bytes(),
                        &u.secrets.sig_secret_bytes(),
                    ),
                    sig[args.sender_of(i / args.members)],
                )
            }),
        })
        .collect();
    let figures = storm(
        &env.url,
        storm_devices,
        args.messages,
        args,
        common,
        env.watched.clone(),
        "storm wardline",
    )
    .await;
    let setup =
        json!({"provisioning": val(provisioning), "sealing": val(sealing), "queueing": queue});
    Ok((figures, setup))
}

async fn relay_side(
    common: &Common,
    args: &StormArgs,
) -> anyhow::Result<(Figures, serde_json::Value)> {
    let env = Env::relay()?;
    let shape = Arc::new(RelayShape::measure(args.members + 1, common.body_bytes)?);
    let base = args.devices as u32;
    let mut counts = vec![0usize; args.senders];
    let mut conns = Vec::new();
    for (q, count) in counts.iter_mut().enumerate() {
        let templates: Vec<RelaySend> = (0..args.groups())
            .filter(|g| args.sender_of(*g) == q)
            .map(|g| {
                let mut devices: Vec<String> = args.members_of(g).map(|d| d.to_string()).collect();
                devices.push((base + q as u32).to_string());
                RelaySend {
                    shape: shape.clone(),
                    devices: devices.join(","),
                }
            })
            .collect();
        *count = templates.len() * args.messages;
        conns.push(Conn {
            index: q as u32,
            login: relay::hello_frame(base + q as u32),
            outgoing: Outgoing::Relay {
                templates,
                per_template: args.messages as u32,
            },
            cap: *count as u32,
            fanout: 1,
            ack: AckStyle::Never,
            verify: None,
            closed_loop: true,
        });
    }
    let queued = traffic::run(
        conns,
        &counts,
        &queue_opts(common, &env, args.window, "storm relay queueing"),
    )
    .await;
    let queue = queue_summary(&queued);
    let ack_len = 110;
    let devices = (0..args.devices)
        .map(|i| Device {
            login: relay::hello_frame(i as u32),
            ack: AckStyle::Relay(ack_len),
            verify: None,
        })
        .collect();
    let figures = storm(
        &env.url,
        devices,
        args.messages,
        args,
        common,
        env.watched.clone(),
        "storm relay",
    )
    .await;
    Ok((figures, json!({ "queueing": queue })))
}

/// Runs `storm` and prints its report.
pub async fn run(common: &Common, args: StormArgs) -> anyhow::Result<()> {
    if args.devices == 0 || args.messages == 0 || args.senders == 0 {
        bail!("--devices, --messages and --senders must be at least 1");
    }
    if args.members == 0 || args.members > 249 {
        bail!("--members must be 1 to 249 (a sender joins each conversation; 250 at most)");
    }
    let (wardline, setup) = wardline_side(common, &args).await?;
    let (baseline, relay_setup) = if common.baseline_relay {
        let (f, s) = relay_side(common, &args).await?;
        (Some(f), Some(s))
    } else {
        (None, None)
    };
    let drain = wardline
        .extra
        .get("drain_secs")
        .and_then(|v| v.as_f64())
        .unwrap_or(f64::MAX);
    let all = wardline
        .extra
        .get("devices_drained")
        .and_then(|v| v.as_u64())
        == Some(args.devices as u64);
    let targets = vec![Target {
        goal: "10,000 devices x 100 queued messages drained within 30 s".into(),
        measured: format!("{} x {} in {drain:.2} s", args.devices, args.messages),
        met: all && drain <= 30.0 && args.devices >= 10_000 && args.messages >= 100,
    }];
    let mut setup_map = params([
        ("provisioning", setup["provisioning"].clone()),
        ("sealing", setup["sealing"].clone()),
        ("queueing", setup["queueing"].clone()),
    ]);
    if let Some(r) = relay_setup {
        setup_map.insert("relay_queueing".into(), r["queueing"].clone());
    }
    let report = Report {
        scenario: "storm".into(),
        params: params([
            ("devices", json!(args.devices)),
            ("messages_per_device", json!(args.messages)),
            ("members_per_conversation", json!(args.members)),
            ("senders", json!(args.senders)),
            ("connect_concurrency", json!(args.concurrency)),
            ("body_bytes", json!(common.body_bytes)),
            server_param(common),
        ]),
        setup: setup_map,
        wardline,
        baseline,
        ratios: Default::default(),
        targets,
    };
    finish(common, report)
}
