//! The scenarios, and what they share: reaching the server under test (or
//! the relay), the admin credentials, and turning options into a report.

pub mod chat;
pub mod group;
pub mod idle;
pub mod storm;
pub mod talk;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::Value;

use crate::cli::Common;
use crate::client::Sources;
use crate::procstat::Watched;
use crate::provision::{Admin, AdminCreds};
use crate::report::Report;
use crate::server_proc::{ChildServer, ServerLimits};

/// The system under test for one half of a run.
#[derive(Debug)]
pub struct Env {
    /// The child process, when the harness started it.
    pub child: Option<ChildServer>,
    /// Where clients connect.
    pub url: String,
    /// The process to measure, when local.
    pub watched: Option<Watched>,
    /// How to become an admin (Wardline only).
    pub creds: Option<AdminCreds>,
}

impl Env {
    /// Wardline: spawned with `limits`, or the running server of `--server`.
    pub fn wardline(common: &Common, limits: &ServerLimits) -> anyhow::Result<Self> {
        if common.spawn {
            let child = ChildServer::spawn_wardline(limits)?;
            let creds = AdminCreds::Code(child.bootstrap_code()?);
            return Ok(Self {
                url: child.url.clone(),
                watched: Some(child.watched()),
                child: Some(child),
                creds: Some(creds),
            });
        }
        let Some(url) = &common.server else {
            bail!("say which server: --spawn to start one, or --server ws://IP:PORT/v1");
        };
        let creds = if let Some(c) = &common.admin_code {
            AdminCreds::Code(c.clone())
        } else if let Some(t) = &common.admin_token {
            AdminCreds::Token(t.clone())
        } else if let (Some(u), Some(p), Some(s)) = (
            &common.admin_user,
            &common.admin_password,
            &common.admin_totp_secret,
        ) {
            AdminCreds::Login {
                username: u.clone(),
                password: p.clone(),
                totp_secret: s.clone(),
            }
        } else {
            bail!(
                "--server needs admin credentials: --admin-code, --admin-token, or \
                 --admin-user with --admin-password and --admin-totp-secret"
            );
        };
        Ok(Self {
            child: None,
            url: url.clone(),
            watched: common.server_pid.map(Watched::pid),
            creds: Some(creds),
        })
    }

    /// The relay, as a child process with the server's thread count.
    pub fn relay() -> anyhow::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let child = ChildServer::spawn_relay(threads)?;
        Ok(Self {
            url: child.url.clone(),
            watched: Some(child.watched()),
            child: Some(child),
            creds: None,
        })
    }

    /// The server's `/metrics` listener, when the harness started it.
    pub fn admin_url(&self) -> Option<String> {
        self.child.as_ref().and_then(|c| c.admin_url.clone())
    }

    /// An authenticated admin connection.
    pub async fn admin(&self, sources: Sources) -> anyhow::Result<Admin> {
        let creds = self
            .creds
            .as_ref()
            .context("the relay has no administrator")?;
        Admin::connect(&self.url, creds, sources).await
    }
}

/// The scenario's source-address policy.
pub fn sources(common: &Common) -> Sources {
    Sources {
        spread: !common.no_spread,
    }
}

/// Limits that let a load generator through: each harness connection
/// carries the traffic of many people, so the per-connection rate limit
/// (100/s by default) would measure the limiter, not the server.
pub fn throughput_limits(common: &Common, connections: usize) -> ServerLimits {
    ServerLimits {
        rate_per_sec: 1_000_000,
        rate_burst: 1_000_000,
        max_connections: connections + 256,
        outbound_queue: common.outbound_queue,
    }
}

/// Threads for sealing.
pub fn seal_threads(common: &Common) -> usize {
    common
        .seal_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// Seconds as a `Duration`, refusing nonsense.
pub fn secs(name: &str, v: f64) -> anyhow::Result<Duration> {
    if !v.is_finite() || v < 0.0 {
        bail!("--{name} must be a number of seconds of 0 or more");
    }
    Ok(Duration::from_secs_f64(v))
}

/// A parameter map from pairs.
pub fn params<const N: usize>(pairs: [(&str, Value); N]) -> BTreeMap<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Whether the harness started the server, as a report parameter.
pub fn server_param(common: &Common) -> (&'static str, Value) {
    let how = if common.spawn { "spawned" } else { "external" };
    ("server", Value::from(how))
}

/// A JSON value of anything serialisable.
pub fn val(v: impl Serialize) -> Value {
    serde_json::to_value(v).expect("report values serialise")
}

/// Prints the report (JSON or table) and writes the plot if asked.
pub fn finish(common: &Common, mut report: Report) -> anyhow::Result<()> {
    report.compute_ratios();
    if let Some(path) = &common.plot {
        let mut panels = vec![(
            format!(
                "{} — wardline: end-to-end latency per second",
                report.scenario
            ),
            &report.wardline.timeline[..],
        )];
        if let Some(b) = &report.baseline {
            panels.push((
                format!("{} — relay baseline", report.scenario),
                &b.timeline[..],
            ));
        }
        crate::plot::write_svg(path, &panels)?;
    }
    if common.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}
