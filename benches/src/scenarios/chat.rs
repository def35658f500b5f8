//! `chat`: pairs of clinicians exchanging messages.

use serde_json::json;

use super::talk::{self, Shape};
use super::{Env, finish, params, server_param, val};
use crate::cli::{Common, TrafficArgs};
use crate::driver::Pace;
use crate::report::{Report, Target};

/// Runs `chat` and prints its report.
pub async fn run(
    common: &Common,
    traffic: &TrafficArgs,
    pairs: usize,
    half_rate_check: bool,
) -> anyhow::Result<()> {
    let shape = Shape {
        groups: pairs,
        members: 2,
        senders: 2,
    };
    shape.check()?;
    let pace = talk::pace(traffic, shape);
    let env = Env::wardline(
        common,
        &super::throughput_limits(common, shape.devices_count()),
    )?;
    let world = talk::build_world(common, shape, env).await?;
    let (mut wardline, sealing) =
        talk::wardline_phase(&world, common, traffic, shape, pace, "chat wardline").await?;
    if half_rate_check && wardline.sends_acked_per_s > 0.0 {
        let half = wardline.sends_acked_per_s / 2.0;
        let (at_half, _) = talk::wardline_phase(
            &world,
            common,
            traffic,
            shape,
            Pace::Rate(half / shape.senders_count() as f64),
            "chat wardline half rate",
        )
        .await?;
        wardline = wardline
            .with("half_rate_msgs_per_s", half)
            .with("half_rate_sends_acked_per_s", at_half.sends_acked_per_s)
            .with("half_rate_p50_ms", at_half.p50_ms)
            .with("half_rate_p99_ms", at_half.p99_ms)
            .with("half_rate_p999_ms", at_half.p999_ms)
            .with("half_rate_errors_total", at_half.errors_total);
    }
    let baseline = if common.baseline_relay {
        let env = Env::relay()?;
        Some(talk::relay_phase(&env, common, traffic, shape, pace, "chat relay").await?)
    } else {
        None
    };
    let mut targets = Vec::new();
    if let Some(b) = &baseline
        && b.deliveries_per_s > 0.0
    {
        let r = wardline.deliveries_per_s / b.deliveries_per_s;
        targets.push(Target {
            goal: "deliveries/s >= 15% of the relay's (fsynced acks)".into(),
            measured: format!("{:.1}%", r * 100.0),
            met: r >= 0.15,
        });
    }
    if let Some(p99) = wardline
        .extra
        .get("half_rate_p99_ms")
        .and_then(|v| v.as_f64())
    {
        targets.push(Target {
            goal: "p99 end-to-end latency at half that rate <= 25 ms".into(),
            measured: format!("{p99:.2} ms"),
            met: p99 <= 25.0,
        });
    }
    let report = Report {
        scenario: "chat".into(),
        params: params([
            ("pairs", json!(pairs)),
            ("pace", pace_json(traffic)),
            ("body_bytes", json!(common.body_bytes)),
            ("duration_s", json!(common.duration)),
            ("warmup_s", json!(common.warmup)),
            ("ack_ms", json!(traffic.ack_ms)),
            server_param(common),
        ]),
        setup: params([
            ("provisioning", val(world.provision)),
            ("sealing", val(sealing)),
        ]),
        wardline,
        baseline,
        ratios: Default::default(),
        targets,
    };
    finish(common, report)
}

/// How the run was paced, for the report.
pub fn pace_json(traffic: &TrafficArgs) -> serde_json::Value {
    match traffic.rate {
        Some(r) => json!(format!("rate {r}/s")),
        None => json!(format!("window {}", traffic.window)),
    }
}
