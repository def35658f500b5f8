//! The WebSocket connection to a Wardline server.
//!
//! One request is in flight at a time: [`Connection::request`] sends it with
//! the next id and reads frames until the reply with that id arrives.
//! Pushes read meanwhile are queued for the caller
//! ([`Connection::take_pushes`], [`Connection::next_push`]); pushes this
//! client does not know are dropped, as the protocol allows.
//!
//! A `wipe` push is different: from the moment it arrives the connection
//! refuses every request but `wipe_done` with
//! [`ConnectionError::WipeOrdered`], so whatever a command was doing stops
//! and the wipe is carried out (see `commands::wipe`).
//!
//! Where to connect is an [`Endpoint`] (module [`endpoint`]): a checked URL
//! and, for `wss://`, the [`Trust`](crate::tls::Trust) that decides which
//! certificate is the server's. Plain `ws://` is allowed only to this
//! computer.

mod advice;
pub mod endpoint;

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde::de::DeserializeOwned;
use thiserror::Error;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use wardline_protocol::wire::{
    self, ConversationChangedPush, DevicesChangedPush, ErrorFrame, MessagePush, ReceiptPush,
    ServerFrame, UnreadUrgentPush, WipePush,
};
use wardline_protocol::{ConversationId, DeviceId, ErrorCode, Request};
use zeroize::Zeroizing;

pub use advice::advice;
pub use endpoint::Endpoint;
use endpoint::Transport;

use crate::tls;

/// How long a request may wait for its reply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
// Replies can hold many envelopes; bound them anyway so a faulty server
// cannot exhaust memory.
const MAX_INBOUND_BYTES: usize = 16 * 1024 * 1024;

/// Why a request did not get an `ok`.
#[derive(Debug, Error)]
pub enum ConnectionError {
    /// The server URL is not one this client will use.
    #[error("{0}")]
    BadUrl(String),
    /// A `wss://` URL with nothing to trust the server's certificate by.
    #[error(
        "cannot use server address '{0}' without a way to check the server's certificate (this client trusts no CA by default). Pass --pin with the server certificate's SHA-256 fingerprint (the server prints it when it starts, as `tls certificate sha256 fingerprint AB:CD:...`; ask IT for it), or --ca FILE with the PEM certificate of the CA that signed it (or set WARDLINE_PIN or WARDLINE_CA)"
    )]
    NoTrust(String),
    /// The server's certificate is not the pinned one.
    #[error(
        "the server at {url} presented a certificate whose SHA-256 fingerprint did not match the pinned one (--pin), so nothing was sent. The server's certificate fingerprint is {actual}. If the server's certificate was replaced on purpose, confirm that fingerprint with IT and log in again with the new --pin; otherwise someone may be intercepting the connection: report it to IT"
    )]
    PinMismatch {
        /// Where.
        url: String,
        /// The fingerprint of the certificate the server presented (not a
        /// secret: printing it helps IT tell a rotation from an attack).
        actual: tls::Fingerprint,
    },
    /// The server's certificate failed verification: it does not chain to
    /// the trusted CA, has expired, does not name the host, or the server
    /// could not prove it holds the certificate's private key.
    #[error(
        "the server at {url} failed the TLS certificate check ({reason}), so nothing was sent; {advice}"
    )]
    Untrusted {
        /// Where.
        url: String,
        /// What rustls found wrong.
        reason: String,
        /// What to do, which depends on how the server is trusted.
        advice: &'static str,
    },
    /// The server could not be reached or refused the WebSocket.
    #[error(
        "could not reach the Wardline server at {url} ({reason}); check the address and that the server is running"
    )]
    Connect {
        /// Where.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// No reply in time.
    #[error("the server did not answer within {} seconds; check your network and try again", .0.as_secs())]
    Timeout(Duration),
    /// The connection ended.
    #[error("the connection to the server was lost{}; try again", .0.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Closed(Option<String>),
    /// The server sent something this client cannot read.
    #[error(
        "the server sent something this client does not understand ({0}); make sure wardline and the server are up to date"
    )]
    Protocol(String),
    /// The server answered `error`.
    #[error("{0}")]
    Server(ServerError),
    /// The organisation ordered this device wiped; nothing else may be done.
    #[error("this device has been ordered wiped by your organisation")]
    WipeOrdered(WipePush),
}

impl ConnectionError {
    /// The server's error code, when the server answered `error`.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ConnectionError::Server(e) => Some(e.code),
            _ => None,
        }
    }
}

/// An `error` frame answering a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// Stable code.
    pub code: ErrorCode,
    /// The server's words, for people.
    pub message: String,
    /// With `invalid_envelope`: devices the key entries missed.
    pub missing_devices: Vec<DeviceId>,
    /// With `invalid_envelope`: key entries for devices that are not recipients.
    pub extra_devices: Vec<DeviceId>,
}

impl From<ErrorFrame> for ServerError {
    fn from(e: ErrorFrame) -> Self {
        Self {
            code: e.code,
            message: e.message,
            missing_devices: e.missing_devices.unwrap_or_default(),
            extra_devices: e.extra_devices.unwrap_or_default(),
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(advice(self.code))?;
        if !self.message.is_empty() {
            write!(f, " (server: {})", self.message)?;
        }
        Ok(())
    }
}

/// A push this client acts on.
#[derive(Debug, Clone)]
pub enum Push {
    /// A stored message for this device.
    Message(Box<MessagePush>),
    /// A `message` push that could not be decoded, with what could be read
    /// of it, so it is reported rather than silently lost.
    Unreadable {
        /// Its conversation, if readable.
        conv_id: Option<ConversationId>,
        /// Its sequence number, if readable.
        seq: Option<u64>,
        /// Why it could not be decoded.
        reason: String,
    },
    /// A member received or read the user's messages.
    Receipt(ReceiptPush),
    /// A user's devices changed; refetch before sealing to them.
    DevicesChanged(DevicesChangedPush),
    /// A conversation's title or members changed.
    ConversationChanged(ConversationChangedPush),
    /// An urgent message of the user's is still unread by some members.
    UnreadUrgent(UnreadUrgentPush),
}

// Boxed rather than tungstenite's `MaybeTlsStream`: that enum only has a TLS
// variant with tokio-tungstenite's TLS features, and this client does its
// own TLS (see `tls`) so that trust is exactly what the operator configured.
type Socket = WebSocketStream<Pin<Box<dyn Transport>>>;

/// An open connection to a server.
pub struct Connection {
    ws: Socket,
    url: String,
    next_id: u64,
    pushes: VecDeque<Push>,
    closed: bool,
    wipe: Option<WipePush>,
    last_heard: Instant,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("url", &self.url)
            .field("next_id", &self.next_id)
            .field("queued_pushes", &self.pushes.len())
            .field("wipe_ordered", &self.wipe.is_some())
            .finish_non_exhaustive()
    }
}

/// How long to wait for the `wipe` push after `resume` answered
/// `wipe_pending` (the server sends it right after the error).
const WIPE_PUSH_WAIT: Duration = Duration::from_secs(10);

impl Connection {
    /// Connects to `endpoint`: TCP, TLS for `wss://`, then the WebSocket
    /// upgrade, all within one time limit.
    pub async fn connect(endpoint: &Endpoint) -> Result<Self, ConnectionError> {
        let url = endpoint.url().to_owned();
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_INBOUND_BYTES))
            .max_frame_size(Some(MAX_INBOUND_BYTES));
        let connecting = async {
            let stream = endpoint.transport().await?;
            tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(config))
                .await
                .map_err(|e| {
                    // The TCP connection worked but the upgrade did not: over
                    // ws:// that is most often a server that speaks TLS.
                    let hint = if endpoint.trust().is_none() {
                        "; if the server uses TLS, connect with wss:// and --pin or --ca"
                    } else {
                        ""
                    };
                    ConnectionError::Connect {
                        url: url.clone(),
                        reason: format!("{e}{hint}"),
                    }
                })
        };
        let (ws, _response) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| ConnectionError::Connect {
                url: url.clone(),
                reason: "timed out".into(),
            })??;
        Ok(Self {
            ws,
            url,
            next_id: 1,
            pushes: VecDeque::new(),
            closed: false,
            wipe: None,
            last_heard: Instant::now(),
        })
    }

    /// The URL connected to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The wipe order the server pushed on this connection, if any.
    pub fn wipe_order(&self) -> Option<&WipePush> {
        self.wipe.as_ref()
    }

    /// When the server was last heard from (any frame, pongs included).
    pub fn last_heard(&self) -> Instant {
        self.last_heard
    }

    /// Sends `request` and returns the text of its `ok` reply. After a wipe
    /// order only `wipe_done` is sent; anything else fails with
    /// [`ConnectionError::WipeOrdered`].
    pub async fn request(&mut self, request: Request) -> Result<String, ConnectionError> {
        if let Some(w) = &self.wipe
            && !matches!(request, Request::WipeDone(_))
        {
            return Err(ConnectionError::WipeOrdered(w.clone()));
        }
        if self.closed {
            return Err(ConnectionError::Closed(None));
        }
        let id = self.next_id;
        self.next_id += 1;
        // The frame may hold a password or token.
        let text = Zeroizing::new(wire::encode_request(id, &request));
        drop(request);
        let exchange = async {
            self.ws
                .send(Message::text(text.as_str()))
                .await
                .map_err(|e| {
                    self.closed = true;
                    ConnectionError::Closed(Some(e.to_string()))
                })?;
            self.await_reply(id).await
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| ConnectionError::Timeout(REQUEST_TIMEOUT))?
    }

    /// [`Connection::request`], decoding the reply's fields as `T`.
    pub async fn call<T: DeserializeOwned>(
        &mut self,
        request: Request,
    ) -> Result<T, ConnectionError> {
        let text = self.request(request).await?;
        wire::decode_ok(&text).map_err(|e| ConnectionError::Protocol(e.message))
    }

    /// Takes every push queued so far, oldest first.
    pub fn take_pushes(&mut self) -> VecDeque<Push> {
        std::mem::take(&mut self.pushes)
    }

    /// The next push: a queued one, else the next to arrive. Fails when the
    /// connection ends, and with [`ConnectionError::WipeOrdered`] once the
    /// server has ordered a wipe. Cancel-safe: a frame is either returned
    /// or queued, never lost.
    pub async fn next_push(&mut self) -> Result<Push, ConnectionError> {
        loop {
            if let Some(w) = &self.wipe {
                return Err(ConnectionError::WipeOrdered(w.clone()));
            }
            if let Some(p) = self.pushes.pop_front() {
                return Ok(p);
            }
            if self.closed {
                return Err(ConnectionError::Closed(None));
            }
            let text = self.next_text().await?;
            self.handle_unsolicited(&text);
        }
    }

    /// Sends a WebSocket ping, so a dead connection is noticed (no pong,
    /// then [`Connection::last_heard`] stops moving).
    pub async fn ping(&mut self) -> Result<(), ConnectionError> {
        if self.closed {
            return Err(ConnectionError::Closed(None));
        }
        self.ws
            .send(Message::Ping(Vec::new().into()))
            .await
            .map_err(|e| {
                self.closed = true;
                ConnectionError::Closed(Some(e.to_string()))
            })
    }

    /// Waits (briefly) for the `wipe` push that follows a `wipe_pending`
    /// error, and returns it.
    pub async fn await_wipe(&mut self) -> Option<WipePush> {
        let waiting = async {
            while self.wipe.is_none() {
                let text = self.next_text().await.ok()?;
                self.handle_unsolicited(&text);
            }
            self.wipe.clone()
        };
        tokio::time::timeout(WIPE_PUSH_WAIT, waiting)
            .await
            .ok()
            .flatten()
    }

    /// Awaits `fut` (typically the user typing something) while still
    /// reading the socket, so pings are answered and the server does not
    /// drop an idle connection. Pushes read meanwhile are queued.
    pub async fn keep_alive_during<F: Future>(&mut self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        loop {
            if self.closed {
                return fut.await;
            }
            tokio::select! {
                out = &mut fut => return out,
                frame = self.next_text() => {
                    if let Ok(text) = frame {
                        self.handle_unsolicited(&text);
                    }
                }
            }
        }
    }

    /// Closes the connection politely; errors are irrelevant at this point.
    pub async fn close(mut self) {
        if !self.closed {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
        }
    }

    async fn await_reply(&mut self, id: u64) -> Result<String, ConnectionError> {
        loop {
            let text = self.next_text().await?;
            match wire::decode_server_frame(&text) {
                Ok(ServerFrame::Ok { re }) if re == id => return Ok(text),
                Ok(ServerFrame::Error(e)) if e.re == Some(id) || e.re.is_none() => {
                    if e.code == ErrorCode::WipePending
                        && let Some(w) = &self.wipe
                    {
                        return Err(ConnectionError::WipeOrdered(w.clone()));
                    }
                    return Err(ConnectionError::Server(e.into()));
                }
                Ok(_) => self.handle_unsolicited(&text),
                Err(e) => {
                    if let Some(err) = unknown_error_for(&text, id) {
                        return Err(err);
                    }
                    self.queue_if_message(&text, e.message);
                }
            }
        }
    }

    /// A frame that is not the awaited reply: queue pushes, note a wipe
    /// order, and drop replies to requests that timed out.
    fn handle_unsolicited(&mut self, text: &str) {
        match wire::decode_server_frame(text) {
            Ok(ServerFrame::Message(m)) => self.pushes.push_back(Push::Message(m)),
            Ok(ServerFrame::Receipt(r)) => self.pushes.push_back(Push::Receipt(r)),
            Ok(ServerFrame::DevicesChanged(d)) => self.pushes.push_back(Push::DevicesChanged(d)),
            Ok(ServerFrame::ConversationChanged(c)) => {
                self.pushes.push_back(Push::ConversationChanged(c));
            }
            Ok(ServerFrame::UnreadUrgent(u)) => self.pushes.push_back(Push::UnreadUrgent(u)),
            Ok(ServerFrame::Wipe(w)) => self.wipe = Some(w),
            Ok(_) => {}
            Err(e) => self.queue_if_message(text, e.message),
        }
    }

    fn queue_if_message(&mut self, text: &str, reason: String) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            return;
        };
        if v.get("type").and_then(|t| t.as_str()) != Some("message") {
            return;
        }
        self.pushes.push_back(Push::Unreadable {
            conv_id: v
                .get("conv_id")
                .and_then(|c| c.as_str())
                .and_then(|c| ConversationId::parse(c).ok()),
            seq: v.get("seq").and_then(|s| s.as_u64()),
            reason,
        });
    }

    async fn next_text(&mut self) -> Result<String, ConnectionError> {
        loop {
            let next = self.ws.next().await;
            self.last_heard = Instant::now();
            match next {
                Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
                Some(Ok(Message::Close(frame))) => {
                    self.closed = true;
                    let reason = frame
                        .map(|f| f.reason.as_str().to_owned())
                        .filter(|r| !r.is_empty());
                    return Err(ConnectionError::Closed(reason));
                }
                // Pings are answered by tungstenite itself; binary frames are
                // not part of the protocol.
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    self.closed = true;
                    return Err(ConnectionError::Closed(Some(e.to_string())));
                }
                None => {
                    self.closed = true;
                    return Err(ConnectionError::Closed(None));
                }
            }
        }
    }
}

/// An `error` frame for request `id` whose code this client does not know
/// (a newer server): still the answer, so report it instead of waiting.
fn unknown_error_for(text: &str, id: u64) -> Option<ConnectionError> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    if v.get("type")?.as_str()? != "error" {
        return None;
    }
    let re = v.get("re")?;
    if !(re.is_null() || re.as_u64() == Some(id)) {
        return None;
    }
    let code = v.get("code").and_then(|c| c.as_str()).unwrap_or("?");
    let message = v.get("message").and_then(|m| m.as_str()).unwrap_or("");
    Some(ConnectionError::Protocol(format!(
        "error code `{code}`: {message}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_error_codes_still_answer_the_request() {
        let text = r#"{"type":"error","re":4,"code":"quota_exceeded","message":"too many"}"#;
        assert!(unknown_error_for(text, 4).is_some());
        assert!(unknown_error_for(text, 5).is_none());
    }
}
