//! The baseline: a minimal WebSocket relay with no authentication, no
//! storage, no crypto, that moves frames of the same sizes as Wardline's.
//!
//! It is built like the server (tokio-tungstenite, one task per connection
//! selecting over its socket and a bounded outbound queue, the same small
//! buffers) so that the ratio of the two isolates what Wardline adds:
//! authentication, validation, encryption at rest, the durable log and its
//! fsync, and per-device rendering.
//!
//! Frames, all text:
//! * `H <device>`: this connection is device `<device>`; answered with `ok`
//!   (`re` 0), then anything queued while it was offline is sent.
//! * `S <re> <push_len> <ok_len> <d1,d2,..>\n<payload>`: forward the first
//!   `push_len` bytes of the payload to each device (queued in memory for an
//!   offline one), answer `ok` padded to `ok_len` bytes. The payload is
//!   padded so the frame is as large as Wardline's `send`.
//! * `A <re>\n<padding>`: answered with `ok` (stands in for `ack`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use dashmap::DashMap;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};

use crate::frames::MsgKey;
use crate::seal::RelayShape;

/// Frames a connection may fall behind by before it is dropped (Wardline's default).
const OUTBOUND_QUEUE: usize = 1024;

/// The same buffer sizes as the server's listener.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(2 << 20)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// A device as the relay knows it.
#[derive(Debug)]
enum Slot {
    /// Connected.
    Online {
        conn: u64,
        tx: mpsc::Sender<Utf8Bytes>,
        kick: Arc<Notify>,
    },
    /// Never connected yet: frames wait in memory (the storm's backlog).
    Offline(VecDeque<Utf8Bytes>),
    /// Was connected and left, or was dropped for falling behind: frames
    /// are dropped (the relay stores nothing for devices it has seen).
    Gone,
}

#[derive(Debug, Default)]
struct Registry {
    devices: DashMap<u32, Slot>,
    next_conn: std::sync::atomic::AtomicU64,
}

impl Registry {
    fn forward(&self, device: u32, frame: &Utf8Bytes) {
        let mut slot = self
            .devices
            .entry(device)
            .or_insert_with(|| Slot::Offline(VecDeque::new()));
        match &mut *slot {
            Slot::Online { tx, kick, .. } => {
                if tx.try_send(frame.clone()).is_err() {
                    // Fell too far behind: drop it, as Wardline does.
                    kick.notify_one();
                    *slot = Slot::Gone;
                }
            }
            Slot::Offline(q) => q.push_back(frame.clone()),
            Slot::Gone => {}
        }
    }

    fn register(
        &self,
        device: u32,
    ) -> (
        u64,
        mpsc::Receiver<Utf8Bytes>,
        Arc<Notify>,
        VecDeque<Utf8Bytes>,
    ) {
        let conn = self
            .next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let kick = Arc::new(Notify::new());
        let old = self.devices.insert(
            device,
            Slot::Online {
                conn,
                tx,
                kick: kick.clone(),
            },
        );
        let backlog = match old {
            Some(Slot::Offline(q)) => q,
            _ => VecDeque::new(),
        };
        (conn, rx, kick, backlog)
    }

    fn unregister(&self, device: u32, conn: u64) {
        if let Some(mut slot) = self.devices.get_mut(&device)
            && matches!(&*slot, Slot::Online { conn: c, .. } if *c == conn)
        {
            *slot = Slot::Gone;
        }
    }
}

/// Runs the relay on `listen` with `threads` worker threads until killed.
/// Prints `listening on ws://ADDR/relay` once it accepts connections.
pub fn run(listen: SocketAddr, threads: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("wardline-relay")
        .enable_all()
        .build()
        .context("cannot start the relay's runtime")?;
    rt.block_on(async {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        println!("listening on ws://{}/relay", listener.local_addr()?);
        let registry = Arc::new(Registry::default());
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(c) => c,
                Err(_) => {
                    // EMFILE: back off as the server does, keep serving.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(serve(tcp, registry.clone()));
        }
    })
}

fn ok_frame(re: u64, len: usize) -> Utf8Bytes {
    let mut s = format!("{{\"type\":\"ok\",\"re\":{re}");
    // `,"pad":""}` is 10 bytes; pad only when the reply would be smaller.
    let pad = len.saturating_sub(s.len() + 10);
    if pad > 0 {
        s.push_str(",\"pad\":\"");
        s.extend(std::iter::repeat_n('x', pad));
        s.push('"');
    }
    s.push('}');
    s.into()
}

/// Parses `S <re> <push_len> <ok_len> <devices>` and forwards; returns the reply.
fn relay_send(registry: &Registry, text: &Utf8Bytes) -> Option<Utf8Bytes> {
    let s = text.as_str();
    let nl = s.find('\n')?;
    let mut head = s[2..nl].split(' ');
    let re: u64 = head.next()?.parse().ok()?;
    let push_len: usize = head.next()?.parse().ok()?;
    let ok_len: usize = head.next()?.parse().ok()?;
    let devices = head.next()?;
    let bytes: &Bytes = text.as_ref();
    let payload =
        Utf8Bytes::try_from(bytes.slice(nl + 1..(nl + 1 + push_len).min(s.len()))).ok()?;
    for d in devices.split(',') {
        if let Ok(d) = d.parse::<u32>() {
            registry.forward(d, &payload);
        }
    }
    Some(ok_frame(re, ok_len))
}

async fn serve(tcp: TcpStream, registry: Arc<Registry>) {
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(ws_config())).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    // The first frame names the device.
    let device = loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => {
                match t
                    .as_str()
                    .strip_prefix("H ")
                    .and_then(|d| d.trim().parse::<u32>().ok())
                {
                    Some(d) => break d,
                    None => return,
                }
            }
            Some(Ok(_)) => continue,
            _ => return,
        }
    };
    let (conn, mut rx, kick, backlog) = registry.register(device);
    let mut out: Vec<Utf8Bytes> = vec![ok_frame(0, 0)];
    out.extend(backlog);
    loop {
        let write = async {
            for f in out.drain(..) {
                sink.feed(Message::Text(f)).await?;
            }
            sink.flush().await
        };
        if write.await.is_err() {
            break;
        }
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(t))) => {
                    let s = t.as_str();
                    if s.starts_with("S ") {
                        if let Some(reply) = relay_send(&registry, &t) {
                            out.push(reply);
                        }
                    } else if let Some(rest) = s.strip_prefix("A ") {
                        let re = rest.split(['\n', ' ']).next().and_then(|r| r.parse().ok()).unwrap_or(0);
                        out.push(ok_frame(re, 0));
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            f = rx.recv() => match f {
                Some(f) => out.push(f),
                None => break,
            },
            _ = kick.notified() => break,
        }
    }
    registry.unregister(device, conn);
    let _ = sink.close().await;
}

/// The `H` frame.
pub fn hello_frame(device: u32) -> String {
    format!("H {device}")
}

/// A sender's template for `S` frames: its recipients and the frame shape.
#[derive(Debug, Clone)]
pub struct RelaySend {
    /// The shape of the frames this sender's messages would have.
    pub shape: Arc<RelayShape>,
    /// Recipient device indices, comma-separated.
    pub devices: String,
}

impl RelaySend {
    /// The `S` frame for message `key`, as long as Wardline's `send`.
    pub fn frame(&self, key: MsgKey) -> String {
        let shape = &self.shape;
        let head = format!(
            "S {} {} {} {}\n",
            key.packed(),
            shape.push.len(),
            shape.ok_len,
            self.devices
        );
        let mut v = Vec::with_capacity(shape.send_len.max(head.len() + shape.push.len()));
        v.extend_from_slice(head.as_bytes());
        let at = v.len() + shape.msg_id_at;
        v.extend_from_slice(shape.push.as_bytes());
        key.patch_msg_id(&mut v[at..at + 36]);
        if v.len() < shape.send_len {
            v.resize(shape.send_len, b' ');
        }
        String::from_utf8(v).expect("ASCII header, UTF-8 push, ASCII patch and padding")
    }
}

/// The `A` frame standing in for an `ack` of `len` bytes.
pub fn ack_frame(re: u64, len: usize) -> String {
    let mut s = format!("A {re}\n");
    if s.len() < len {
        s.extend(std::iter::repeat_n(' ', len - s.len()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_frames_are_padded_to_the_requested_size() {
        assert_eq!(ok_frame(7, 0).as_str(), r#"{"type":"ok","re":7}"#);
        let f = ok_frame(7, 130);
        assert_eq!(f.len(), 130);
        assert!(serde_json::from_str::<serde_json::Value>(f.as_str()).is_ok());
    }

    #[test]
    fn send_frames_forward_exactly_the_push() {
        let shape = Arc::new(RelayShape::measure(2, 64).expect("measures"));
        let t = RelaySend {
            shape: shape.clone(),
            devices: "4,5".into(),
        };
        let key = MsgKey { sender: 1, n: 3 };
        let frame = t.frame(key);
        assert!(frame.len() >= shape.send_len);
        let registry = Registry::default();
        let reply = relay_send(&registry, &Utf8Bytes::from(frame)).expect("valid S frame");
        assert_eq!(reply.len(), shape.ok_len.max(reply.len()));
        let Some(slot) = registry.devices.get(&4) else {
            panic!("device 4 got a queue")
        };
        let Slot::Offline(q) = &*slot else {
            panic!("device 4 is offline")
        };
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].len(), shape.push.len());
        match crate::frames::parse(q[0].as_str()) {
            Some(crate::frames::Incoming::Message { key: Some(k), .. }) => assert_eq!(k, key),
            other => panic!("{other:?}"),
        }
    }
}
