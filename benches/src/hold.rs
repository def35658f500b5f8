//! Holding many authenticated, idle connections: in this process, or in a
//! helper process (`wardline-load idle-worker`) when one process's share
//! of the open-file limit is not enough.
//!
//! A held connection keeps reading, so the server's pings are answered
//! (tungstenite queues the pong and flushes it on the next read).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::client::Sources;
use crate::driver;
use crate::metrics::Recorder;
use crate::relay;

/// How each connection authenticates.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Login {
    /// The same frame on every connection (`resume` with one token).
    Same(String),
    /// The relay's `H` with device numbers counting up from this one.
    RelayFrom(u32),
}

impl Login {
    fn frame(&self, i: usize) -> String {
        match self {
            Login::Same(f) => f.clone(),
            Login::RelayFrom(base) => relay::hello_frame(base + i as u32),
        }
    }
}

/// One batch of connections to open.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// Where.
    pub url: String,
    /// How they authenticate.
    pub login: Login,
    /// How many.
    pub count: usize,
    /// Opened at once.
    pub concurrency: usize,
    /// Spread source addresses.
    pub spread: bool,
    /// Shift of the source-address spread (disjoint per process).
    pub offset: u64,
}

/// What opening a batch achieved.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Opened {
    /// Authenticated.
    pub connected: usize,
    /// Failed to connect or authenticate.
    pub failed: usize,
    /// Wall time to open them all.
    pub secs: f64,
    /// Connect-and-authenticate latency, median, ms.
    pub p50_ms: f64,
    /// Connect-and-authenticate latency, p99, ms.
    pub p99_ms: f64,
    /// Errors by code.
    pub errors: std::collections::BTreeMap<String, u64>,
}

/// What closing found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Closed {
    /// Still open when asked to close.
    pub still_open: usize,
    /// Closed by the other side while held.
    pub dropped: usize,
}

/// Connections being held in this process.
#[derive(Debug)]
pub struct Holding {
    finish: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Option<bool>>>,
}

/// Opens `job.count` connections and holds them until [`Holding::close`].
pub async fn open(job: &Job) -> (Holding, Opened) {
    let rec = Arc::new(Recorder::new());
    let gate = Arc::new(Semaphore::new(job.concurrency.max(1)));
    let (finish, finished) = watch::channel(false);
    let (ready_tx, mut ready) = tokio::sync::mpsc::unbounded_channel();
    let started = Instant::now();
    let sources = Sources { spread: job.spread };
    let tasks: Vec<_> = (0..job.count)
        .map(|i| {
            let (gate, rec, ready_tx) = (gate.clone(), rec.clone(), ready_tx.clone());
            let (url, frame) = (job.url.clone(), job.login.frame(i));
            let mut finished = finished.clone();
            tokio::spawn(async move {
                let permit = gate.acquire_owned().await.ok()?;
                let ws = driver::login(&url, sources, &frame, &rec).await;
                drop(permit);
                let _ = ready_tx.send(ws.is_some());
                let mut ws = ws?;
                loop {
                    tokio::select! {
                        m = ws.next() => if !matches!(m, Some(Ok(_))) { return Some(false) },
                        _ = finished.changed() => {
                            let _ = ws.close(None).await;
                            return Some(true);
                        }
                    }
                }
            })
        })
        .collect();
    drop(ready_tx);
    let mut opened = Opened::default();
    while let Some(ok) = ready.recv().await {
        if ok {
            opened.connected += 1;
        } else {
            opened.failed += 1;
        }
        if opened.connected + opened.failed == job.count {
            break;
        }
    }
    opened.secs = started.elapsed().as_secs_f64();
    let l = rec.connect_latency();
    opened.p50_ms = l.p50_ms;
    opened.p99_ms = l.p99_ms;
    opened.errors = rec.errors();
    (Holding { finish, tasks }, opened)
}

impl Holding {
    /// Closes every connection; counts those the other side closed first.
    pub async fn close(self) -> Closed {
        let _ = self.finish.send(true);
        let mut c = Closed::default();
        for t in self.tasks {
            match t.await {
                Ok(Some(true)) => c.still_open += 1,
                Ok(Some(false)) => c.dropped += 1,
                _ => {}
            }
        }
        c
    }
}

/// The `idle-worker` process: reads a [`Job`] line, prints [`Opened`],
/// holds until a line (or end of input) arrives, prints [`Closed`].
pub async fn worker_main() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let line = lines
        .next_line()
        .await?
        .context("idle-worker expects a job on standard input")?;
    let job: Job = serde_json::from_str(&line).context("idle-worker job")?;
    let (holding, opened) = open(&job).await;
    println!("{}", serde_json::to_string(&opened)?);
    let _ = lines.next_line().await;
    let closed = holding.close().await;
    println!("{}", serde_json::to_string(&closed)?);
    Ok(())
}

/// A helper process holding one batch.
#[derive(Debug)]
pub struct Worker {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Worker {
    /// Starts a worker and hands it `job`; returns once its connections are open.
    pub async fn start(job: &Job) -> anyhow::Result<(Self, Opened)> {
        let exe = std::env::current_exe().context("cannot find this executable")?;
        let mut child = tokio::process::Command::new(exe)
            .arg("idle-worker")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start an idle-worker process")?;
        let mut stdin = child.stdin.take().context("worker stdin")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        // The job holds a session token: it goes through a pipe, never argv.
        let mut line = serde_json::to_string(job)?;
        line.push('\n');
        tokio::io::AsyncWriteExt::write_all(&mut stdin, line.as_bytes()).await?;
        let mut stdout = BufReader::new(stdout).lines();
        let opened: Opened = serde_json::from_str(
            &stdout
                .next_line()
                .await?
                .context("the idle-worker exited before reporting")?,
        )?;
        Ok((
            Self {
                child,
                stdin: Some(stdin),
                stdout,
            },
            opened,
        ))
    }

    /// Tells the worker to close its connections; returns what it found.
    pub async fn close(mut self) -> anyhow::Result<Closed> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = tokio::io::AsyncWriteExt::write_all(&mut stdin, b"close\n").await;
            let _ = tokio::io::AsyncWriteExt::flush(&mut stdin).await;
        }
        let closed = match self.stdout.next_line().await? {
            Some(l) => serde_json::from_str(&l)?,
            None => Closed::default(),
        };
        let _ = self.child.wait().await;
        Ok(closed)
    }
}
