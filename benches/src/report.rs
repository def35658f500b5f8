//! The report: one JSON object (`--json`) or an aligned table, with the
//! relay's figures under `baseline` and Wardline's as ratios of them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use serde::Serialize;
use serde_json::Value;

use crate::metrics::Point;
use crate::traffic;

/// One target's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    /// `wardline` or `relay`.
    pub target: String,
    /// Length of the measured window, seconds.
    pub duration_s: f64,
    /// Connections authenticated.
    pub connections: usize,
    /// Connections that failed to authenticate.
    pub connections_failed: usize,
    /// Connect-and-authenticate rate over the whole connecting phase.
    pub connect_per_s: f64,
    /// Connect-and-authenticate latency, p50.
    pub connect_p50_ms: f64,
    /// Connect-and-authenticate latency, p99.
    pub connect_p99_ms: f64,
    /// Sends acknowledged in the window.
    pub sends_acked: u64,
    /// Sends acknowledged per second.
    pub sends_acked_per_s: f64,
    /// Pushes received in the window (the sender's own device included).
    pub deliveries: u64,
    /// Pushes received per second.
    pub deliveries_per_s: f64,
    /// Of the deliveries, pushes to the sending device itself.
    pub self_deliveries: u64,
    /// End-to-end latency samples (send → another device has it).
    pub latency_samples: u64,
    /// End-to-end latency, median (`null` when no message sent in the
    /// window reached another device in time).
    pub p50_ms: Option<f64>,
    /// 90th percentile.
    pub p90_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// 99.9th percentile.
    pub p999_ms: Option<f64>,
    /// Largest.
    pub max_ms: Option<f64>,
    /// Send → `ok` latency, median.
    pub ack_p50_ms: f64,
    /// Send → `ok` latency, p99.
    pub ack_p99_ms: f64,
    /// Server (or relay) CPU seconds in the window.
    pub server_cpu_s: f64,
    /// Server CPU seconds per 1,000 acknowledged sends.
    pub server_cpu_s_per_1k_msgs: f64,
    /// Server RSS at the end of the window.
    pub server_rss_bytes: u64,
    /// Largest server RSS sampled in the window.
    pub server_peak_rss_bytes: u64,
    /// The server's all-time peak RSS (provisioning included).
    pub server_hwm_bytes: u64,
    /// The harness's own CPU seconds in the window.
    pub harness_cpu_s: f64,
    /// CPU seconds used by everything else on the machine in the window
    /// (other people's builds on a shared machine show up here).
    pub other_cpu_s: f64,
    /// Receipt pushes received.
    pub receipts: u64,
    /// Envelopes opened with the real crypto on arrival.
    pub envelopes_opened: u64,
    /// Errors by code (server codes, and the harness's own).
    pub errors: BTreeMap<String, u64>,
    /// All errors.
    pub errors_total: u64,
    /// A sender ran out of pre-sealed envelopes before the window ended.
    pub pool_exhausted: bool,
    /// Scenario-specific figures.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
    /// Per-second timeline (for the plot; also in the JSON).
    pub timeline: Vec<Point>,
}

impl Figures {
    /// Figures from a traffic phase.
    pub fn from_traffic(target: &str, o: &traffic::Outcome) -> Self {
        let rec = &o.rec;
        let secs = o.window_secs.max(1e-9);
        let acked = rec.acked.load(Ordering::Relaxed);
        let delivered = rec.delivered.load(Ordering::Relaxed);
        let e2e = rec.e2e();
        let ack = rec.ack_latency();
        let conn = rec.connect_latency();
        let errors = rec.errors();
        let server = o.server.unwrap_or_default();
        let some = |v: f64| (e2e.count > 0).then_some(v);
        let mut extra = BTreeMap::new();
        if let Some(c) = o.commits {
            extra.insert(
                "server_commits".to_string(),
                serde_json::to_value(c).expect("figures serialise"),
            );
        }
        Self {
            target: target.to_string(),
            duration_s: o.window_secs,
            connections: o.connected,
            connections_failed: o.failed,
            connect_per_s: o.connected as f64 / o.connect_secs.max(1e-9),
            connect_p50_ms: conn.p50_ms,
            connect_p99_ms: conn.p99_ms,
            sends_acked: acked,
            sends_acked_per_s: acked as f64 / secs,
            deliveries: delivered,
            deliveries_per_s: delivered as f64 / secs,
            self_deliveries: rec.self_delivered.load(Ordering::Relaxed),
            latency_samples: e2e.count,
            p50_ms: some(e2e.p50_ms),
            p90_ms: some(e2e.p90_ms),
            p99_ms: some(e2e.p99_ms),
            p999_ms: some(e2e.p999_ms),
            max_ms: some(e2e.max_ms),
            ack_p50_ms: ack.p50_ms,
            ack_p99_ms: ack.p99_ms,
            server_cpu_s: server.cpu_s,
            server_cpu_s_per_1k_msgs: if acked > 0 {
                server.cpu_s / (acked as f64 / 1000.0)
            } else {
                0.0
            },
            server_rss_bytes: server.rss_bytes,
            server_peak_rss_bytes: server.peak_rss_bytes,
            server_hwm_bytes: server.hwm_bytes,
            harness_cpu_s: o.harness.cpu_s,
            other_cpu_s: o.other_cpu_s,
            receipts: rec.receipts.load(Ordering::Relaxed),
            envelopes_opened: rec.opened.load(Ordering::Relaxed),
            errors_total: errors.values().sum(),
            errors,
            pool_exhausted: o.exhausted,
            extra,
            timeline: rec.timeline(),
        }
    }

    /// Adds a scenario-specific figure.
    pub fn with(mut self, key: &str, v: impl Serialize) -> Self {
        self.extra.insert(
            key.to_string(),
            serde_json::to_value(v).expect("figures serialise"),
        );
        self
    }

    fn number(&self, key: &str) -> Option<f64> {
        let v = serde_json::to_value(self).ok()?;
        v.get(key)?.as_f64()
    }
}

/// A target the issue sets, checked against this run.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is aimed for.
    pub goal: String,
    /// What this run measured.
    pub measured: String,
    /// Whether it was met (only meaningful at the target's parameters).
    pub met: bool,
}

/// A whole run's report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `chat`, `idle`, `group` or `storm`.
    pub scenario: String,
    /// The options that shaped the run.
    pub params: BTreeMap<String, Value>,
    /// Phases outside the measured window (provisioning, sealing, queueing).
    pub setup: BTreeMap<String, Value>,
    /// Wardline's figures.
    #[serde(flatten)]
    pub wardline: Figures,
    /// The relay's figures, with `--baseline-relay`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Figures>,
    /// Wardline's figures as fractions of the relay's.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ratios: BTreeMap<String, f64>,
    /// The targets, where this scenario has one.
    pub targets: Vec<Target>,
}

/// Figures compared as ratios, when both sides have them.
const RATIO_KEYS: &[&str] = &[
    "sends_acked_per_s",
    "deliveries_per_s",
    "p50_ms",
    "p99_ms",
    "connect_per_s",
    "server_cpu_s_per_1k_msgs",
    "server_rss_bytes",
    "rss_per_connection_bytes",
    "drain_secs",
];

impl Report {
    /// Fills in the ratios from the two sets of figures.
    pub fn compute_ratios(&mut self) {
        let Some(b) = &self.baseline else { return };
        for k in RATIO_KEYS {
            if let (Some(w), Some(r)) = (self.wardline.number(k), b.number(k))
                && r > 0.0
            {
                self.ratios.insert((*k).to_string(), w / r);
            }
        }
    }

    /// The JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialise")
    }

    /// The aligned table.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={}", plain(v)))
            .collect();
        let _ = writeln!(out, "{}  {}", self.scenario, params.join(" "));
        for (k, v) in &self.setup {
            let _ = writeln!(out, "  {k}: {}", inline(v));
        }
        let w = flat(&serde_json::to_value(&self.wardline).unwrap_or(Value::Null));
        let b = self
            .baseline
            .as_ref()
            .and_then(|b| serde_json::to_value(b).ok())
            .map(|v| flat(&v));
        let _ = writeln!(
            out,
            "\n  {:<34} {:>14} {:>14} {:>9}",
            "",
            "wardline",
            if b.is_some() { "relay" } else { "" },
            if b.is_some() { "ratio" } else { "" }
        );
        let mut keys: Vec<String> = rows(&self.scenario).iter().map(|k| k.to_string()).collect();
        for (k, _) in &w {
            let top = k.split('.').next().unwrap_or(k);
            if self.wardline.extra.contains_key(top) && !keys.contains(k) {
                keys.push(k.clone());
            }
        }
        for k in keys {
            let Some((_, wv)) = w.iter().find(|(key, _)| *key == k) else {
                continue;
            };
            let bv = b
                .as_ref()
                .and_then(|b| b.iter().find(|(key, _)| *key == k).map(|(_, v)| plain(v)))
                .unwrap_or_default();
            let ratio = self
                .ratios
                .get(&k)
                .map(|r| format!("{r:.3}"))
                .unwrap_or_default();
            let _ = writeln!(out, "  {k:<34} {:>14} {bv:>14} {ratio:>9}", plain(wv));
        }
        let errs = |f: &Figures| {
            if f.errors.is_empty() {
                "none".to_string()
            } else {
                f.errors
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        let _ = writeln!(out, "\n  errors (wardline): {}", errs(&self.wardline));
        if let Some(b) = &self.baseline {
            let _ = writeln!(out, "  errors (relay):    {}", errs(b));
        }
        for t in &self.targets {
            let _ = writeln!(
                out,
                "  target: {:<60} {:<26} {}",
                t.goal,
                t.measured,
                if t.met { "met" } else { "MISSED" }
            );
        }
        out
    }
}

/// Scalars of a JSON object, nested objects as `outer.inner`; arrays left out.
fn flat(v: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    if let Value::Object(m) = v {
        for (k, v) in m {
            match v {
                Value::Object(inner) => {
                    for (ik, iv) in inner {
                        if !iv.is_object() && !iv.is_array() {
                            out.push((format!("{k}.{ik}"), iv.clone()));
                        }
                    }
                }
                Value::Array(_) => {}
                other => out.push((k.clone(), other.clone())),
            }
        }
    }
    out
}

/// A setup phase on one line: `key=value` pairs.
fn inline(v: &Value) -> String {
    match v {
        Value::Object(_) => flat(v)
            .iter()
            .map(|(k, v)| format!("{k}={}", plain(v)))
            .collect::<Vec<_>>()
            .join(" "),
        other => plain(other),
    }
}

/// The rows a scenario's table shows (its extras follow).
fn rows(scenario: &str) -> &'static [&'static str] {
    match scenario {
        "idle" => IDLE_ROWS,
        "storm" => STORM_ROWS,
        _ => ROWS,
    }
}

const IDLE_ROWS: &[&str] = &[
    "duration_s",
    "connections",
    "connect_per_s",
    "connect_p50_ms",
    "connect_p99_ms",
    "server_cpu_s",
    "server_rss_bytes",
    "server_peak_rss_bytes",
    "other_cpu_s",
    "errors_total",
];

const STORM_ROWS: &[&str] = &[
    "connections",
    "connect_per_s",
    "connect_p50_ms",
    "connect_p99_ms",
    "deliveries",
    "deliveries_per_s",
    "server_cpu_s",
    "server_cpu_s_per_1k_msgs",
    "server_rss_bytes",
    "server_peak_rss_bytes",
    "harness_cpu_s",
    "other_cpu_s",
    "envelopes_opened",
    "errors_total",
];

/// Table rows, in order (scenario extras follow).
const ROWS: &[&str] = &[
    "duration_s",
    "connections",
    "connect_per_s",
    "connect_p99_ms",
    "sends_acked_per_s",
    "deliveries_per_s",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "ack_p50_ms",
    "ack_p99_ms",
    "server_cpu_s",
    "server_cpu_s_per_1k_msgs",
    "server_rss_bytes",
    "server_peak_rss_bytes",
    "harness_cpu_s",
    "other_cpu_s",
    "receipts",
    "envelopes_opened",
    "errors_total",
    "pool_exhausted",
];

fn plain(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(u) => group_thousands(u),
            None => n
                .as_f64()
                .map(|f| {
                    if f.abs() >= 1000.0 {
                        group_thousands(f.round() as u64)
                    } else if f.abs() >= 10.0 {
                        format!("{f:.1}")
                    } else {
                        format!("{f:.3}")
                    }
                })
                .unwrap_or_default(),
        },
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "n/a".to_string(),
        other => other.to_string(),
    }
}

fn group_thousands(u: u64) -> String {
    let s = u.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(target: &str, rate: f64) -> Figures {
        Figures {
            target: target.into(),
            deliveries_per_s: rate,
            p99_ms: Some(2.0),
            ..Figures::default()
        }
    }

    #[test]
    fn ratios_are_wardline_over_relay() {
        let mut r = Report {
            scenario: "chat".into(),
            params: BTreeMap::new(),
            setup: BTreeMap::new(),
            wardline: figures("wardline", 250.0),
            baseline: Some(figures("relay", 1000.0)),
            ratios: BTreeMap::new(),
            targets: Vec::new(),
        };
        r.compute_ratios();
        assert_eq!(r.ratios.get("deliveries_per_s"), Some(&0.25));
        let json: Value = serde_json::from_str(&r.to_json()).expect("valid JSON");
        assert_eq!(json["deliveries_per_s"], 250.0);
        assert_eq!(json["baseline"]["deliveries_per_s"], 1000.0);
        assert!(r.to_table().contains("deliveries_per_s"));
    }

    #[test]
    fn numbers_print_with_thousands_separators() {
        assert_eq!(group_thousands(1_234_567), "1,234,567");
        assert_eq!(plain(&serde_json::json!(12.345)), "12.3");
        assert_eq!(plain(&serde_json::json!(0.5)), "0.500");
    }
}
