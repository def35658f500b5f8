//! Child processes the harness measures: the real `wardline-server` on a
//! temporary data directory (`--spawn`), and the baseline relay.
//!
//! Both print `listening on ws://ADDR/...` on stdout once they accept
//! connections; the harness waits for that line rather than polling.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::procstat::Watched;

/// How long a child may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Limits the server is started with for a scenario.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// `--rate-per-sec`.
    pub rate_per_sec: u32,
    /// `--rate-burst`.
    pub rate_burst: u32,
    /// `--max-connections`.
    pub max_connections: usize,
    /// `[limits] outbound_queue`, through a config file when set.
    pub outbound_queue: Option<usize>,
}

/// A child process that serves WebSocket clients.
#[derive(Debug)]
pub struct ChildServer {
    child: Child,
    /// The `ws://` URL it printed.
    pub url: String,
    /// Its data directory (the server only); removed on drop.
    pub data_dir: Option<tempfile::TempDir>,
    /// `http://ADDR` of its `/metrics` listener (the server only).
    pub admin_url: Option<String>,
    _stdout: std::thread::JoinHandle<()>,
}

/// The directory holding this executable: `wardline-server` is built there.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable's path")?;
    let dir = exe
        .parent()
        .context("this executable has no parent directory")?;
    // Integration tests run from target/<profile>/deps; binaries live one up.
    if dir.ends_with("deps") {
        return Ok(dir.parent().unwrap_or(dir).to_path_buf());
    }
    Ok(dir.to_path_buf())
}

/// Path of the `wardline-server` binary next to this one.
pub fn server_binary() -> anyhow::Result<PathBuf> {
    let dir = bin_dir()?;
    let p = dir.join("wardline-server");
    if !p.exists() {
        bail!(
            "{} is missing: build the server into the same target directory first \
             (`cargo build --release -p wardline-server` for measurements, or \
             `cargo test --workspace`, which builds it)",
            p.display()
        );
    }
    Ok(p)
}

impl ChildServer {
    /// Starts `wardline-server` on a fresh temporary data directory with the
    /// scenario's limits, on ephemeral loopback ports.
    pub fn spawn_wardline(limits: &ServerLimits) -> anyhow::Result<Self> {
        let bin = server_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("wardline-load-")
            .tempdir()
            .context("cannot create a temporary data directory")?;
        let mut cmd = Command::new(&bin);
        cmd.args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--rate-per-sec", &limits.rate_per_sec.to_string()])
            .args(["--rate-burst", &limits.rate_burst.to_string()])
            .args(["--max-connections", &limits.max_connections.to_string()]);
        if let Some(q) = limits.outbound_queue {
            let cfg = dir.path().join("server.toml");
            std::fs::write(&cfg, format!("[limits]\noutbound_queue = {q}\n"))
                .context("cannot write the server's config file")?;
            cmd.arg("--config").arg(cfg);
        }
        // Keep the server's log quiet: a log line per connection would
        // measure the terminal, not the server.
        cmd.env("WARDLINE_LOG", "warn")
            .env_remove("WARDLINE_DATA_KEY")
            .env_remove("WARDLINE_CONFIG");
        let mut s = Self::start(cmd, "ws://")?;
        s.data_dir = Some(dir);
        Ok(s)
    }

    /// Starts this executable's `relay` subcommand.
    pub fn spawn_relay(threads: usize) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this executable's path")?;
        let mut cmd = Command::new(exe);
        cmd.args(["relay", "--listen", "127.0.0.1:0", "--threads"])
            .arg(threads.to_string());
        Self::start(cmd, "ws://")
    }

    fn start(mut cmd: Command, scheme: &str) -> anyhow::Result<Self> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        let stdout = child.stdout.take().context("child stdout is piped")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            // Keep draining after the address so the child never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut admin_url = None;
        let url = loop {
            match rx.recv_timeout(START_TIMEOUT) {
                Ok(line) => {
                    // The server prints its admin listener before the client one.
                    if let Some(rest) = line.strip_prefix("admin listening on ") {
                        admin_url = Some(rest.trim().to_string());
                    }
                    if let Some(rest) = line.strip_prefix("listening on ")
                        && rest.starts_with(scheme)
                    {
                        break rest.trim().to_string();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    bail!(
                        "{cmd:?} did not print its address within {START_TIMEOUT:?} (exit status {status:?})"
                    );
                }
            }
        };
        Ok(Self {
            child,
            url,
            data_dir: None,
            admin_url,
            _stdout: reader,
        })
    }

    /// The process to measure.
    pub fn watched(&self) -> Watched {
        Watched::pid(self.child.id())
    }

    /// The data directory the server was given.
    pub fn data_path(&self) -> Option<PathBuf> {
        self.data_dir.as_ref().map(|d| d.path().join("data"))
    }

    /// The bootstrap admin's one-time code, written by a fresh server.
    pub fn bootstrap_code(&self) -> anyhow::Result<String> {
        let dir = self
            .data_path()
            .context("only a spawned server has a bootstrap code file")?;
        read_bootstrap_code(&dir)
    }
}

/// Reads `bootstrap-admin.code` from a data directory.
pub fn read_bootstrap_code(data_dir: &Path) -> anyhow::Result<String> {
    let p = data_dir.join("bootstrap-admin.code");
    let code =
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    Ok(code.trim().to_string())
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
