//! Which devices are connected, and delivery of committed messages to them.
//!
//! The hub is the seam where cluster mode will carry pushes between nodes:
//! nothing outside it assumes a device's connection lives in this process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use tokio::sync::{Notify, mpsc};
use wardline_protocol::wire::render_message_push;
use wardline_protocol::{ConversationId, DeviceId};

use crate::metrics::Metrics;
use crate::store::Committed;

/// Frames a connection may fall behind by before it is disconnected (it
/// resumes from its cursor), so a slow reader cannot grow server memory.
pub const OUTBOUND_QUEUE: usize = 1024;

/// A frame on its way to one connection.
#[derive(Debug)]
pub enum Outbound {
    /// A `message` push, tagged so the connection can drop duplicates.
    Message {
        /// Conversation.
        conv_id: ConversationId,
        /// Sequence number.
        seq: u64,
        /// The rendered frame.
        frame: String,
    },
    /// Any other push, delivered as is.
    Frame(String),
}

#[derive(Debug)]
struct Conn {
    id: u64,
    session: [u8; 32],
    tx: mpsc::Sender<Outbound>,
    kick: Arc<Notify>,
}

/// Connected devices. Sharded map: no global lock on delivery.
#[derive(Debug, Default)]
pub struct Hub {
    conns: DashMap<DeviceId, Vec<Conn>>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
}

/// What a connection keeps after registering.
#[derive(Debug)]
pub struct Registration {
    /// Id of this connection within the hub.
    pub id: u64,
    /// Frames for this connection.
    pub rx: mpsc::Receiver<Outbound>,
    /// Notified when the connection fell too far behind and must close.
    pub kick: Arc<Notify>,
}

impl Hub {
    /// An empty hub that counts into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            ..Self::default()
        }
    }

    /// Registers a connection of `device` under session `token_hash`.
    pub fn register(&self, device: &DeviceId, token_hash: [u8; 32]) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let kick = Arc::new(Notify::new());
        self.conns.entry(device.clone()).or_default().push(Conn {
            id,
            session: token_hash,
            tx,
            kick: kick.clone(),
        });
        Registration { id, rx, kick }
    }

    /// Removes a connection.
    pub fn unregister(&self, device: &DeviceId, id: u64) {
        if let Some(mut list) = self.conns.get_mut(device) {
            list.retain(|c| c.id != id);
        }
        self.conns.remove_if(device, |_, list| list.is_empty());
    }

    /// Queues `frame` to every connection of `device`; true if it has any.
    pub fn push_to_device(&self, device: &DeviceId, frame: &str) -> bool {
        let Some(conns) = self.conns.get(device) else {
            return false;
        };
        for c in conns.iter() {
            if c.tx.try_send(Outbound::Frame(frame.to_string())).is_err() {
                self.metrics.queue_drops.fetch_add(1, Ordering::Relaxed);
                c.kick.notify_one();
            }
        }
        true
    }

    /// Re-delivers one stored message to `device`'s connections, bypassing
    /// the duplicate filter (urgent re-notification).
    pub fn renotify(&self, device: &DeviceId, frame: &str) -> bool {
        self.push_to_device(device, frame)
    }

    /// Closes every connection of `device` that uses session `token_hash`
    /// (after logout, the token's other connections must not go on).
    pub fn end_session(&self, device: &DeviceId, token_hash: &[u8; 32]) {
        if let Some(list) = self.conns.get(device) {
            for c in list.iter().filter(|c| &c.session == token_hash) {
                c.kick.notify_one();
            }
        }
    }

    /// Number of connected devices.
    pub fn connected_devices(&self) -> usize {
        self.conns.len()
    }

    /// Pushes durable messages to every connected recipient device. Each
    /// device gets the shared envelope with only its own key entry.
    pub fn deliver(&self, batch: Vec<Committed>) {
        for m in batch {
            for (device, entry) in &m.envelope.entries {
                let Some(conns) = self.conns.get(device) else {
                    continue;
                };
                let frame = render_message_push(&m.conv_id, m.seq, &m.envelope, Some(entry));
                for c in conns.iter() {
                    let out = Outbound::Message {
                        conv_id: m.conv_id.clone(),
                        seq: m.seq,
                        frame: frame.clone(),
                    };
                    if c.tx.try_send(out).is_ok() {
                        self.metrics.deliveries.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.metrics.queue_drops.fetch_add(1, Ordering::Relaxed);
                        // Full (or closing): drop this connection rather than
                        // buffer without bound; the device catches up on resume.
                        c.kick.notify_one();
                    }
                }
            }
        }
    }
}
