//! Which devices are connected, and delivery of committed messages to them.
//!
//! The hub is the seam where cluster mode will carry pushes between nodes:
//! nothing outside it assumes a device's connection lives in this process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use tokio::sync::{Notify, mpsc};
use wardline_protocol::wire::render_message_push;
use wardline_protocol::{ConversationId, DeviceId};

use crate::metrics::Metrics;
use crate::store::Committed;

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
    /// The `wipe` push: the connection must switch to accepting only
    /// `wipe_done`. Boxed because it is rare: every connection's queue
    /// allocates its first block of slots up front, sized by the largest
    /// variant.
    Wipe(Box<(crate::wipe::Wiping, String)>),
}

#[derive(Debug)]
struct Conn {
    id: u64,
    session: [u8; 32],
    tx: mpsc::Sender<Outbound>,
    kick: Arc<Notify>,
    /// Bytes queued and not yet taken by the connection.
    queued: Arc<AtomicUsize>,
}

impl Outbound {
    /// The frame's size, for the per-connection byte limit.
    pub fn len(&self) -> usize {
        match self {
            Outbound::Message { frame, .. } | Outbound::Frame(frame) => frame.len(),
            Outbound::Wipe(w) => w.1.len(),
        }
    }

    /// True for an empty frame (never sent in practice).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Connected devices. Sharded map: no global lock on delivery.
#[derive(Debug, Default)]
pub struct Hub {
    conns: DashMap<DeviceId, Vec<Conn>>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
    /// Most bytes one connection may have queued (0: no byte limit).
    max_queued_bytes: usize,
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
    /// Bytes queued: the connection subtracts what it takes.
    pub queued: Arc<AtomicUsize>,
}

impl Hub {
    /// An empty hub that counts into `metrics`.
    pub fn new(metrics: Arc<Metrics>, max_queued_bytes: usize) -> Self {
        Self {
            metrics,
            max_queued_bytes,
            ..Self::default()
        }
    }

    /// Registers a connection of `device` under session `token_hash`, with
    /// room for `queue` frames: a connection that falls further behind is
    /// disconnected (it resumes from its cursor), so a slow reader cannot
    /// grow server memory.
    pub fn register(&self, device: &DeviceId, token_hash: [u8; 32], queue: usize) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(queue);
        let kick = Arc::new(Notify::new());
        let queued = Arc::new(AtomicUsize::new(0));
        self.conns.entry(device.clone()).or_default().push(Conn {
            id,
            session: token_hash,
            tx,
            kick: kick.clone(),
            queued: queued.clone(),
        });
        Registration {
            id,
            rx,
            kick,
            queued,
        }
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
        self.offer(device, || Outbound::Frame(frame.to_string()))
    }

    /// Queues an outbound frame to each connection of `device`. A connection
    /// whose queue is full is dropped from the hub at once and told to close,
    /// rather than buffered without bound; the device catches up on resume.
    fn offer(&self, device: &DeviceId, make: impl Fn() -> Outbound) -> bool {
        let Some(mut conns) = self.conns.get_mut(device) else {
            return false;
        };
        conns.retain(|c| {
            let out = make();
            let len = out.len();
            let over = self.max_queued_bytes > 0
                && c.queued.load(Ordering::Relaxed) + len > self.max_queued_bytes;
            if !over && c.tx.try_send(out).is_ok() {
                c.queued.fetch_add(len, Ordering::Relaxed);
                self.metrics.deliveries.fetch_add(1, Ordering::Relaxed);
                true
            } else {
                self.metrics.queue_drops.fetch_add(1, Ordering::Relaxed);
                c.kick.notify_one();
                false
            }
        });
        let empty = conns.is_empty();
        drop(conns);
        if empty {
            self.conns.remove_if(device, |_, list| list.is_empty());
        }
        true
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

    /// Sends the `wipe` push to every connection of `device` and forgets
    /// them: from now on the device receives nothing else.
    pub fn order_wipe(&self, device: &DeviceId, wipe_id: &str, frame: &str) {
        if let Some((_, conns)) = self.conns.remove(device) {
            for c in conns {
                let w = crate::wipe::Wiping {
                    device_id: device.clone(),
                    wipe_id: wipe_id.to_string(),
                };
                if c.tx
                    .try_send(Outbound::Wipe(Box::new((w, frame.to_string()))))
                    .is_err()
                {
                    // It cannot even take this: close it; it gets the order on resume.
                    c.kick.notify_one();
                }
            }
        }
    }

    /// Closes every connection of `device` (revoked, disabled, reset).
    pub fn kick_device(&self, device: &DeviceId) {
        if let Some((_, conns)) = self.conns.remove(device) {
            for c in conns {
                c.kick.notify_one();
            }
        }
    }

    /// True if `device` has at least one connection here.
    pub fn is_connected(&self, device: &DeviceId) -> bool {
        self.conns.get(device).is_some_and(|l| !l.is_empty())
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
                // Rendered per connection, only for devices connected here:
                // one render and no copy for the usual single connection.
                self.offer(device, || Outbound::Message {
                    conv_id: m.conv_id.clone(),
                    seq: m.seq,
                    frame: render_message_push(&m.conv_id, m.seq, &m.envelope, Some(entry)),
                });
            }
        }
    }
}
