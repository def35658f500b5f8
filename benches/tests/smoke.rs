//! The load harness keeps working: every scenario, with small numbers, runs
//! against the real `wardline-server` and the baseline relay in a few
//! seconds and produces sane JSON.
//!
//! The server binary must be in the same target directory as
//! `wardline-load`; `cargo test --workspace` builds it (the server crate
//! has integration tests).

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest one scenario may take (debug build, two shared cores).
const TIMEOUT: Duration = Duration::from_secs(90);

fn load(args: &[&str]) -> Value {
    let exe = env!("CARGO_BIN_EXE_wardline-load");
    let server = std::path::Path::new(exe)
        .parent()
        .expect("target directory")
        .join("wardline-server");
    assert!(
        server.exists(),
        "{} is missing: run `cargo test --workspace` (or `cargo build -p wardline-server`) first",
        server.display()
    );
    let mut child = Command::new(exe)
        .args(args)
        .args(["--spawn", "--baseline-relay", "--json", "--quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wardline-load");
    let mut out_pipe = child.stdout.take().expect("stdout");
    let mut err_pipe = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for wardline-load") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wardline-load {args:?} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (
        out.join().expect("stdout reader"),
        err.join().expect("stderr reader"),
    );
    assert!(status.success(), "wardline-load {args:?} failed:\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}\n{err}"))
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {v:#}"))
}

/// Both sides delivered, nothing failed, and the ratios are there.
fn assert_sane(report: &Value) {
    for side in [report, &report["baseline"]] {
        assert!(num(side, "deliveries") > 0.0, "{side:#}");
        assert_eq!(num(side, "errors_total"), 0.0, "{:#}", side["errors"]);
        assert_eq!(side["connections_failed"], 0, "{side:#}");
    }
    assert!(num(&report["ratios"], "deliveries_per_s") > 0.0);
}

#[test]
fn chat_measures_throughput_latency_and_server_usage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plot = dir.path().join("chat.svg");
    let r = load(&[
        "chat",
        "--pairs",
        "2",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--expect-rate",
        "3000",
        "--ack-ms",
        "100",
        "--verify-every",
        "1",
        "--half-rate-check",
        "--plot",
        plot.to_str().expect("utf-8 path"),
    ]);
    assert_sane(&r);
    assert_eq!(r["scenario"], "chat");
    assert!(num(&r, "sends_acked_per_s") > 0.0);
    assert!(num(&r, "p99_ms") >= num(&r, "p50_ms") && num(&r, "p50_ms") > 0.0);
    assert!(num(&r, "server_cpu_s") > 0.0 && num(&r, "server_rss_bytes") > 0.0);
    assert!(num(&r, "envelopes_opened") > 0.0, "received envelopes open");
    assert!(num(&r, "half_rate_p99_ms") > 0.0);
    assert!(num(&r["setup"]["sealing"], "seal_us_per_msg") > 0.0);
    assert!(!r["targets"].as_array().expect("targets").is_empty());
    let svg = std::fs::read_to_string(&plot).expect("plot written");
    assert!(svg.starts_with("<svg"));
}

#[test]
fn group_fans_out_to_every_member() {
    let r = load(&[
        "group",
        "--members",
        "4",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--expect-rate",
        "2000",
    ]);
    assert_sane(&r);
    // Every acknowledged send reaches all four members' devices.
    let (acked, delivered) = (num(&r, "sends_acked"), num(&r, "deliveries"));
    assert!(
        delivered >= acked * 3.0,
        "{acked} sends, {delivered} deliveries"
    );
}

#[test]
fn idle_holds_authenticated_connections() {
    let r = load(&["idle", "--connections", "40", "--hold", "0.5"]);
    for side in [&r, &r["baseline"]] {
        assert_eq!(side["connections"], 40, "{side:#}");
        assert_eq!(side["connections_held_to_the_end"], 40, "{side:#}");
        assert_eq!(num(side, "errors_total"), 0.0, "{side:#}");
        assert!(num(side, "rss_per_connection_bytes").is_finite());
    }
    assert!(num(&r, "server_rss_bytes") > 0.0);
}

#[test]
fn storm_drains_every_queued_message() {
    let r = load(&[
        "storm",
        "--devices",
        "12",
        "--messages",
        "5",
        "--members",
        "4",
        "--senders",
        "2",
    ]);
    assert_sane(&r);
    for side in [&r, &r["baseline"]] {
        assert_eq!(side["devices_drained"], 12, "{side:#}");
        assert_eq!(side["deliveries"], 60, "{side:#}");
    }
    assert_eq!(r["setup"]["queueing"]["sends"], 15);
}
