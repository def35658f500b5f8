//! Command-line options of `wardline-load`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Load generator for Wardline: provisions users through the real admin
/// and enrolment flow, drives one scenario, and reports throughput,
/// latency percentiles, server CPU and memory, and errors by code.
///
/// Examples:
///   wardline-load chat --spawn --baseline-relay --duration 20 --json
///   wardline-load chat --spawn --pairs 32 --rate 2000 --duration 20
///   wardline-load idle --spawn --connections 19500 --hold 20
///   wardline-load group --spawn --members 100 --baseline-relay --plot group.svg
///   wardline-load storm --spawn --devices 10000 --messages 100
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
pub struct Cli {
    /// The scenario.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// Scenarios (and the harness's helper processes).
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Pairs of clinicians exchanging messages.
    Chat {
        /// Common options.
        #[command(flatten)]
        common: Common,
        /// Traffic options.
        #[command(flatten)]
        traffic: TrafficArgs,
        /// Pairs of clinicians (each sends and receives).
        #[arg(long, default_value_t = 16)]
        pairs: usize,
        /// After the window run, measure latency at half the acknowledged
        /// rate it reached (the latency target).
        #[arg(long)]
        half_rate_check: bool,
    },
    /// Care-team conversations: every send fans out to every member's devices.
    Group {
        /// Common options.
        #[command(flatten)]
        common: Common,
        /// Traffic options.
        #[command(flatten)]
        traffic: TrafficArgs,
        /// Members of each conversation.
        #[arg(long, default_value_t = 100)]
        members: usize,
        /// Number of conversations.
        #[arg(long, default_value_t = 1)]
        groups: usize,
        /// Members of each conversation who send [default: all].
        #[arg(long)]
        senders: Option<usize>,
    },
    /// Many authenticated connections held open; server memory per connection.
    Idle {
        /// Common options.
        #[command(flatten)]
        common: Common,
        /// Connections to hold.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Seconds to hold them [default: --duration].
        #[arg(long)]
        hold: Option<f64>,
        /// Harness processes holding them [default: one per 9,000].
        #[arg(long)]
        workers: Option<usize>,
        /// Connections being opened at once (below the server's accept
        /// backlog of 128, so the connect rate is not a SYN-retry artefact).
        #[arg(long, default_value_t = 100)]
        connect_concurrency: usize,
    },
    /// Devices go offline, messages queue, then all resume at once and drain.
    Storm {
        /// Common options.
        #[command(flatten)]
        common: Common,
        /// Devices that go offline and resume.
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        /// Messages queued for each device.
        #[arg(long, default_value_t = 100)]
        messages: usize,
        /// Devices per care-team conversation (one sender joins each).
        #[arg(long, default_value_t = 10)]
        members: usize,
        /// Sending connections while queueing.
        #[arg(long, default_value_t = 8)]
        senders: usize,
        /// Sends in flight per sending connection while queueing.
        #[arg(long, default_value_t = 32)]
        window: u64,
        /// Connections being opened at once in the storm.
        #[arg(long, default_value_t = 512)]
        connect_concurrency: usize,
        /// Give up on the drain after this many seconds.
        #[arg(long, default_value_t = 300.0)]
        drain_timeout: f64,
    },
    /// The baseline relay on its own (the harness starts it with --baseline-relay).
    #[command(hide = true)]
    Relay {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Worker threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// A helper process holding idle connections (reads its job on stdin).
    #[command(hide = true)]
    IdleWorker,
}

/// Options every scenario takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Start `wardline-server` (from this executable's directory) on a
    /// temporary data directory, with limits set for the scenario.
    #[arg(long, conflicts_with = "server")]
    pub spawn: bool,
    /// A running server, `ws://IP:PORT/v1` (needs admin credentials).
    #[arg(long)]
    pub server: Option<String>,
    /// An admin enrolment code (the bootstrap code of a fresh server).
    #[arg(long, env = "WARDLINE_LOAD_ADMIN_CODE")]
    pub admin_code: Option<String>,
    /// An admin session token to resume.
    #[arg(long, env = "WARDLINE_LOAD_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Admin username, with --admin-password and --admin-totp-secret.
    #[arg(long)]
    pub admin_user: Option<String>,
    /// Admin password.
    #[arg(long, env = "WARDLINE_LOAD_ADMIN_PASSWORD")]
    pub admin_password: Option<String>,
    /// Admin TOTP secret (base32).
    #[arg(long, env = "WARDLINE_LOAD_ADMIN_TOTP_SECRET")]
    pub admin_totp_secret: Option<String>,
    /// PID of the running server, to read its CPU and memory from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Run the same scenario against the built-in relay too, and report ratios.
    #[arg(long)]
    pub baseline_relay: bool,
    /// Seconds of measured traffic.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of traffic before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write latency percentiles over time to this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress line.
    #[arg(long, short)]
    pub quiet: bool,
    /// Connect from 127.0.0.1 only instead of spreading over 127.0.0.0/8.
    #[arg(long)]
    pub no_spread: bool,
    /// Enrolments in flight while provisioning (each costs the server an Argon2 hash).
    #[arg(long, default_value_t = 4)]
    pub enrol_concurrency: usize,
    /// Threads sealing envelopes ahead of time [default: all cores].
    #[arg(long)]
    pub seal_threads: Option<usize>,
    /// Length of each message's text, bytes.
    #[arg(long, default_value_t = 256)]
    pub body_bytes: usize,
    /// Open one in this many received envelopes with the real crypto.
    #[arg(long, default_value_t = 1000)]
    pub verify_every: u64,
    /// The server's outbound queue per connection (`[limits] outbound_queue`).
    #[arg(long)]
    pub outbound_queue: Option<usize>,
}

/// Pacing and acknowledgement options.
#[derive(Debug, Clone, Args)]
pub struct TrafficArgs {
    /// Sends in flight per sending connection.
    #[arg(long, default_value_t = 8)]
    pub window: u64,
    /// Send at this many messages per second in all, instead of a window.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Rate to size the pre-sealed envelope pool for in window mode
    /// (messages per second in all); the window closes early if it runs out
    /// [default: chat 25,000; group 200,000 / members].
    #[arg(long)]
    pub expect_rate: Option<f64>,
    /// Acknowledge received messages this often, ms (0: never).
    #[arg(long, default_value_t = 1000)]
    pub ack_ms: u64,
}
