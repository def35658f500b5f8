//! The single writer: group commit for messages.
//!
//! Sends from every connection queue here. The writer takes whatever has
//! queued up (up to a batch limit), appends it in one atomic batch, makes it
//! durable with one flush and fdatasync, and only then answers each sender.
//! Under load many sends share one fsync; idle, a send waits for just its own.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use wardline_protocol::ConversationId;
use wardline_protocol::wire::SplitEnvelope;

use super::model::{Appended, NewMessage};
use super::{Store, StoreError};
use crate::clock::Clock;

/// Most messages committed together.
const MAX_BATCH: usize = 512;
/// Sends that may wait for the writer before senders are held back.
const QUEUE: usize = 8192;

/// A message that is now durable, handed to delivery.
#[derive(Debug)]
pub struct Committed {
    /// Conversation.
    pub conv_id: ConversationId,
    /// Its sequence number.
    pub seq: u64,
    /// The envelope, split for per-device delivery.
    pub envelope: SplitEnvelope,
}

/// Called on the writer thread with each durable batch, in `seq` order.
pub type OnCommit = Box<dyn Fn(Vec<Committed>) + Send>;

/// Called on the writer thread after each commit with (batch size, µs taken).
pub type OnStats = Box<dyn Fn(usize, u64) + Send>;

enum Job {
    Append {
        msg: NewMessage,
        reply: oneshot::Sender<Result<Appended, StoreError>>,
    },
    /// Answered once every write made before it is durable.
    Barrier(oneshot::Sender<Result<(), StoreError>>),
}

/// Handle for submitting messages to the writer. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
    stopped: tokio::sync::watch::Receiver<bool>,
}

impl Writer {
    /// Starts the writer thread over `store`. It stops when every `Writer`
    /// handle has been dropped.
    pub fn start(
        store: Arc<dyn Store>,
        clock: Clock,
        on_commit: OnCommit,
        on_stats: OnStats,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (done, stopped) = tokio::sync::watch::channel(false);
        std::thread::Builder::new()
            .name("wardline-writer".into())
            .spawn(move || {
                run(store, clock, rx, on_commit, on_stats);
                // `run` has dropped its store handle: tell whoever waits to reopen it.
                let _ = done.send(true);
            })
            .expect("spawning the writer thread");
        Self { tx, stopped }
    }

    /// A future that resolves once the writer thread has ended (after every
    /// `Writer` handle was dropped) and released the store.
    pub fn stopped(&self) -> impl Future<Output = ()> + use<> {
        let mut rx = self.stopped.clone();
        async move {
            let _ = rx.wait_for(|done| *done).await;
        }
    }

    /// Appends a message; resolves once it is durable (or was a duplicate).
    pub async fn append(&self, msg: NewMessage) -> Result<Appended, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Append { msg, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Resolves once every store write made before the call is durable,
    /// sharing the next group commit's fsync (used to make `ack` and
    /// `read` positions durable before answering).
    pub async fn barrier(&self) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Barrier(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn run(
    store: Arc<dyn Store>,
    clock: Clock,
    mut rx: mpsc::Receiver<Job>,
    on_commit: OnCommit,
    on_stats: OnStats,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        jobs.push(first);
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut msgs = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        let mut barriers = Vec::new();
        for job in jobs.drain(..) {
            match job {
                Job::Append { msg, reply } => {
                    msgs.push(msg);
                    replies.push(reply);
                }
                Job::Barrier(reply) => barriers.push(reply),
            }
        }
        let started = std::time::Instant::now();
        // Barriers alone append nothing: they only need the sync.
        let appended = if msgs.is_empty() {
            Ok(Vec::new())
        } else {
            store.append_messages(&msgs, clock.now_ms())
        };
        let result = appended.and_then(|r| store.sync().map(|()| r));
        for b in barriers {
            let _ = b.send(match &result {
                Ok(_) => Ok(()),
                Err(StoreError::Refused(why)) => Err(StoreError::Refused(why)),
                Err(_) => Err(StoreError::Io("sync failed".into())),
            });
        }
        match result {
            Ok(outcomes) => {
                if !outcomes.is_empty() {
                    on_stats(outcomes.len(), started.elapsed().as_micros() as u64);
                }
                let mut committed = Vec::with_capacity(outcomes.len());
                for ((reply, outcome), msg) in replies.into_iter().zip(outcomes).zip(msgs) {
                    let _ = reply.send(Ok(outcome));
                    if let Appended::Stored(seq) = outcome {
                        committed.push(Committed {
                            conv_id: msg.conv_id,
                            seq,
                            envelope: msg.envelope,
                        });
                    }
                }
                tracing::debug!(batch = committed.len(), "commit");
                if !committed.is_empty() {
                    on_commit(committed);
                }
            }
            Err(e) => {
                if let StoreError::Refused(why) = e {
                    tracing::debug!(why, batch = replies.len(), "message commit refused");
                } else {
                    tracing::error!(error = %e, batch = replies.len(), "message commit failed");
                }
                for reply in replies {
                    let _ = reply.send(Err(match &e {
                        StoreError::Refused(why) => StoreError::Refused(why),
                        _ => StoreError::Io("commit failed".into()),
                    }));
                }
            }
        }
    }
}
