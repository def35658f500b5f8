//! WebSocket connections from the harness, and a request/reply helper for
//! the setup phases (provisioning, conversations), where pushes are ignored.
//!
//! Connections bind to a source address spread over 127.0.0.0/8: every
//! loopback address is local on Linux, and each has its own ephemeral-port
//! range, so tens of thousands of connections to one server port never run
//! out of ports.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use wardline_protocol::wire::{self, Request};

/// A harness connection.
pub type Ws = WebSocketStream<TcpStream>;

/// How long one setup request may take.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where connections come from.
#[derive(Debug, Clone, Copy)]
pub struct Sources {
    /// Spread source addresses over 127.0.0.0/8.
    pub spread: bool,
}

/// First source address used when spreading: 127.2.0.1 upwards, so the
/// spread never collides with 127.0.0.1 or 127.0.1.1 (often in /etc/hosts).
const SPREAD_BASE: u32 = u32::from_be_bytes([127, 2, 0, 1]);
/// Distinct source addresses cycled through (127.2.0.1 ... 127.5.208.144).
const SPREAD_SPAN: u32 = 250_000;

static NEXT_SOURCE: AtomicU64 = AtomicU64::new(0);

impl Sources {
    /// The source address for the next connection, if spreading.
    fn next(&self, offset: u64) -> Option<Ipv4Addr> {
        if !self.spread {
            return None;
        }
        let n = NEXT_SOURCE.fetch_add(1, Ordering::Relaxed) + offset;
        Some(Ipv4Addr::from(
            SPREAD_BASE + (n % u64::from(SPREAD_SPAN)) as u32,
        ))
    }
}

/// Small buffers: an idle harness connection should cost kilobytes, as on
/// the server, so that 20,000 of them fit in one process.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(4 << 20))
        .max_frame_size(Some(4 << 20))
}

/// Splits `ws://host:port/path` into the socket address and the URL.
pub fn parse_ws_url(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("ws://")
        .with_context(|| format!("{url}: only ws:// URLs are supported (loopback benchmarking)"))?;
    let host = rest.split('/').next().unwrap_or(rest);
    host.parse::<SocketAddr>()
        .with_context(|| format!("{url}: the host must be an IP address and port"))
}

/// Opens a WebSocket to `url`, from a spread source address when asked.
/// `offset` shifts the spread (worker processes use disjoint ranges).
pub async fn connect(url: &str, sources: Sources, offset: u64) -> anyhow::Result<Ws> {
    let addr = parse_ws_url(url)?;
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .context("cannot create a socket (at the open-file limit?)")?;
    if let (SocketAddr::V4(a), Some(src)) = (addr, sources.next(offset))
        && a.ip().is_loopback()
    {
        socket
            .bind(SocketAddr::V4(SocketAddrV4::new(src, 0)))
            .with_context(|| format!("cannot bind source address {src}"))?;
    }
    let tcp = socket
        .connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    tcp.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(ws_config()))
        .await
        .with_context(|| format!("WebSocket handshake with {url} failed"))?;
    Ok(ws)
}

/// A server refused a setup request.
#[derive(Debug, thiserror::Error)]
#[error("{request} refused: {code}: {message}")]
pub struct Refused {
    /// The request type.
    pub request: String,
    /// The error code.
    pub code: String,
    /// The server's words.
    pub message: String,
}

/// A setup connection: one request at a time, pushes skipped.
#[derive(Debug)]
pub struct Rpc {
    ws: Ws,
    next_id: u64,
}

impl Rpc {
    /// Connects to `url`.
    pub async fn connect(url: &str, sources: Sources) -> anyhow::Result<Self> {
        Ok(Self {
            ws: connect(url, sources, 0).await?,
            next_id: 1,
        })
    }

    /// Sends `request` and decodes the `ok` as `T`.
    pub async fn call<T: DeserializeOwned>(&mut self, request: &Request) -> anyhow::Result<T> {
        let id = self.next_id;
        self.next_id += 1;
        let text = wire::encode_request(id, request);
        self.call_raw(id, request.type_name(), text).await
    }

    /// Sends a pre-encoded request with id `id` and decodes the `ok` as `T`.
    pub async fn call_raw<T: DeserializeOwned>(
        &mut self,
        id: u64,
        name: &str,
        text: String,
    ) -> anyhow::Result<T> {
        self.ws
            .send(Message::text(text))
            .await
            .with_context(|| format!("sending {name}"))?;
        let reply = tokio::time::timeout(REPLY_TIMEOUT, async {
            while let Some(msg) = self.ws.next().await {
                let Message::Text(t) =
                    msg.with_context(|| format!("reading the reply to {name}"))?
                else {
                    continue;
                };
                match wire::decode_server_frame(t.as_str()) {
                    Ok(wire::ServerFrame::Ok { re }) if re == id => {
                        return wire::decode_ok::<T>(t.as_str())
                            .map_err(|e| anyhow::anyhow!("{name}: unexpected reply: {e}"));
                    }
                    Ok(wire::ServerFrame::Error(e)) if e.re == Some(id) || e.re.is_none() => {
                        return Err(Refused {
                            request: name.to_string(),
                            code: e.code.as_str().to_string(),
                            message: e.message,
                        }
                        .into());
                    }
                    _ => continue, // pushes and other replies
                }
            }
            bail!("the connection closed before the reply to {name}")
        })
        .await
        .with_context(|| format!("no reply to {name} within {REPLY_TIMEOUT:?}"))??;
        Ok(reply)
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// Gives up the connection for other use.
    pub fn into_ws(self) -> Ws {
        self.ws
    }
}

/// JSON text of a value that always serialises.
pub fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("harness values always serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loopback_urls_only_with_ip_hosts() {
        assert_eq!(
            parse_ws_url("ws://127.0.0.1:7443/v1").expect("valid"),
            "127.0.0.1:7443".parse().expect("addr")
        );
        assert!(parse_ws_url("wss://127.0.0.1:7443/v1").is_err());
        assert!(parse_ws_url("ws://localhost:7443/v1").is_err());
    }

    #[test]
    fn spreads_sources_over_loopback() {
        let s = Sources { spread: true };
        let a = s.next(0).expect("spread");
        let b = s.next(0).expect("spread");
        assert_ne!(a, b);
        assert!(a.is_loopback() && b.is_loopback());
        assert!(Sources { spread: false }.next(0).is_none());
    }
}
