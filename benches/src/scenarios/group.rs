//! `group`: care-team conversations; every send fans out to every
//! member's devices.

use serde_json::json;

use super::chat::pace_json;
use super::talk::{self, Shape};
use super::{Env, finish, params, server_param, val};
use crate::cli::{Common, TrafficArgs};
use crate::report::{Report, Target};

/// Runs `group` and prints its report.
pub async fn run(
    common: &Common,
    traffic: &TrafficArgs,
    members: usize,
    groups: usize,
    senders: Option<usize>,
) -> anyhow::Result<()> {
    let shape = Shape {
        groups,
        members,
        senders: senders.unwrap_or(members),
    };
    shape.check()?;
    let pace = talk::pace(traffic, shape);
    let env = Env::wardline(
        common,
        &super::throughput_limits(common, shape.devices_count()),
    )?;
    let world = talk::build_world(common, shape, env).await?;
    let (wardline, sealing) =
        talk::wardline_phase(&world, common, traffic, shape, pace, "group wardline").await?;
    let baseline = if common.baseline_relay {
        let env = Env::relay()?;
        Some(talk::relay_phase(&env, common, traffic, shape, pace, "group relay").await?)
    } else {
        None
    };
    let mut targets = Vec::new();
    if let Some(b) = &baseline
        && b.deliveries_per_s > 0.0
    {
        let r = wardline.deliveries_per_s / b.deliveries_per_s;
        targets.push(Target {
            goal: format!("fan-out deliveries/s >= 15% of the relay's ({members} members)"),
            measured: format!("{:.1}%", r * 100.0),
            met: r >= 0.15,
        });
    }
    let report = Report {
        scenario: "group".into(),
        params: params([
            ("members", json!(members)),
            ("groups", json!(groups)),
            ("senders_per_group", json!(shape.senders)),
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
