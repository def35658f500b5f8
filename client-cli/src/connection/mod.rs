//! The WebSocket connection to a Wardline server.
//!
//! One request is in flight at a time: [`Connection::request`] sends it with
//! the next id and reads frames until the reply with that id arrives.
//! `message` pushes read meanwhile are queued for the caller
//! ([`Connection::take_pushes`]); other pushes this client does not handle
//! yet are dropped, as the protocol allows.
//!
//! Where to connect is an [`Endpoint`]: a checked URL and, for `wss://`, the
//! [`Trust`] that decides which certificate is the server's. Plain `ws://`
//! is allowed only to this computer.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde::de::DeserializeOwned;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use wardline_protocol::wire::{self, ErrorFrame, MessagePush, ServerFrame};
use wardline_protocol::{ConversationId, DeviceId, ErrorCode, Request};
use zeroize::Zeroizing;

use crate::tls::{self, HandshakeError, Trust};

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

/// What to tell the user for each server error code: what happened and what
/// to do next.
pub fn advice(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadFrame => {
            "The server could not read what this client sent. Update wardline, and report this to IT if it persists."
        }
        ErrorCode::BadRequest => {
            "The server refused the request as malformed. Check the command's arguments (see --help)."
        }
        ErrorCode::Unauthenticated => "Your session has ended; run `wardline login`.",
        ErrorCode::AuthFailed => "Wrong username, password or code. Check and try again.",
        ErrorCode::LockedOut => {
            "Too many failed attempts: the account is locked for now. Wait a while, or ask an administrator to unlock it."
        }
        ErrorCode::TotpReplayed => {
            "That code was already used; wait for the next code from your authenticator app."
        }
        ErrorCode::Forbidden => {
            "Your role does not allow this. Ask an administrator if you need it."
        }
        ErrorCode::NotFound => {
            "The server has no such user, device, conversation or code. Check the name or id and try again."
        }
        ErrorCode::NotMember => {
            "You are not a member of that conversation. Ask one of its members to add you."
        }
        ErrorCode::Conflict => {
            "That clashes with something that already exists (for example a username that is taken, or a code that was already used)."
        }
        ErrorCode::TooLarge => "That is too large to send; shorten the message.",
        ErrorCode::RateLimited => "Too many requests; wait a minute and try again.",
        ErrorCode::ResidencyDenied => {
            "The data-residency policy does not allow storing this on that server. Contact IT."
        }
        ErrorCode::InvalidEnvelope => {
            "The recipients' devices changed while the message was being sent; send it again."
        }
        ErrorCode::WipePending => {
            "An administrator has ordered this device to be wiped. Stop using it for Wardline and contact IT."
        }
        ErrorCode::Internal => {
            "The server had an internal fault. Try again shortly, and contact IT if it persists."
        }
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
}

/// A byte stream to the server: plain TCP, or TLS over TCP.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

// Boxed rather than tungstenite's `MaybeTlsStream`: that enum only has a TLS
// variant with tokio-tungstenite's TLS features, and this client does its
// own TLS (see `tls`) so that trust is exactly what the operator configured.
type Socket = WebSocketStream<Pin<Box<dyn Transport>>>;

/// A server to connect to: a checked `ws://` or `wss://` URL and, for
/// `wss://`, how to trust the server's certificate.
#[derive(Debug, Clone)]
pub struct Endpoint {
    url: String,
    host: String,
    port: u16,
    trust: Option<Trust>,
}

impl Endpoint {
    /// Checks `url` and adds the `/v1` path when none is given.
    ///
    /// `wss://` is allowed to any host but needs `trust`. Plain `ws://` is
    /// allowed only to this computer, because passwords and tokens must
    /// never cross a network unencrypted; `trust` is refused with it, since
    /// a user who gave a pin expects TLS.
    pub fn new(url: &str, trust: Option<Trust>) -> Result<Self, ConnectionError> {
        let bad = |why: &str| {
            ConnectionError::BadUrl(format!("cannot use server address '{url}': {why}"))
        };
        let example = "it must look like wss://wardline.example.nhs.uk/v1 (or ws://127.0.0.1:7443/v1 for a server on this computer)";
        let secure = if url.starts_with("wss://") {
            true
        } else if url.starts_with("ws://") {
            false
        } else {
            return Err(bad(example));
        };
        let uri: Uri = url.parse().map_err(|_| bad(example))?;
        let authority = uri.authority().ok_or_else(|| bad(example))?;
        if authority.as_str().contains('@') {
            return Err(bad("user names and passwords do not belong in the address"));
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned();
        if host.is_empty() {
            return Err(bad(example));
        }
        let port = authority
            .port_u16()
            .unwrap_or(if secure { 443 } else { 80 });
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        match (secure, &trust) {
            (true, None) => return Err(ConnectionError::NoTrust(url.to_owned())),
            (false, Some(_)) => {
                return Err(bad(
                    "--ca and --pin (WARDLINE_CA, WARDLINE_PIN) apply only to wss:// addresses, and this one is plain ws:// without TLS; use wss://",
                ));
            }
            (false, None) if !loopback => {
                return Err(bad(
                    "plain ws:// (no TLS) is allowed only to a server on this computer (127.0.0.1, ::1 or localhost); use wss:// with --pin or --ca",
                ));
            }
            _ => {}
        }
        let url = match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("" | "/") => {
                let scheme = if secure { "wss" } else { "ws" };
                format!("{scheme}://{authority}/v1")
            }
            Some(_) => url.to_owned(),
        };
        Ok(Self {
            url,
            host,
            port,
            trust,
        })
    }

    /// The URL, with its path.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How the server's certificate is trusted (`None` for `ws://`).
    pub fn trust(&self) -> Option<&Trust> {
        self.trust.as_ref()
    }

    /// TCP, then TLS when the URL is `wss://`.
    async fn transport(&self) -> Result<Pin<Box<dyn Transport>>, ConnectionError> {
        let unreachable = |reason: String| ConnectionError::Connect {
            url: self.url.clone(),
            reason,
        };
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let Some(trust) = &self.trust else {
            return Ok(Box::pin(tcp));
        };
        match tls::handshake(tcp, &self.host, trust).await {
            Ok(stream) => Ok(Box::pin(stream)),
            Err(HandshakeError::PinMismatch { actual }) => Err(ConnectionError::PinMismatch {
                url: self.url.clone(),
                actual,
            }),
            Err(HandshakeError::Untrusted(reason)) => Err(ConnectionError::Untrusted {
                url: self.url.clone(),
                reason,
                advice: if trust.is_pin() {
                    // The fingerprint matched, so the certificate is right but
                    // the handshake proof is not: an impostor replaying it.
                    "the server showed the pinned certificate but could not prove it holds its private key, so someone may be impersonating the server: report it to IT"
                } else {
                    "check that --ca names the CA that signed the server's certificate, that the address matches a name in the certificate, and that the computer's clock is right"
                },
            }),
            Err(HandshakeError::Other(reason)) => {
                Err(unreachable(format!("TLS handshake failed: {reason}")))
            }
        }
    }
}

/// An open connection to a server.
pub struct Connection {
    ws: Socket,
    url: String,
    next_id: u64,
    pushes: VecDeque<Push>,
    closed: bool,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("url", &self.url)
            .field("next_id", &self.next_id)
            .field("queued_pushes", &self.pushes.len())
            .finish_non_exhaustive()
    }
}

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

    /// Sends `request` and returns the text of its `ok` reply.
    pub async fn request(&mut self, request: Request) -> Result<String, ConnectionError> {
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
            let _ = self.ws.close(None).await;
        }
    }

    async fn await_reply(&mut self, id: u64) -> Result<String, ConnectionError> {
        loop {
            let text = self.next_text().await?;
            match wire::decode_server_frame(&text) {
                Ok(ServerFrame::Ok { re }) if re == id => return Ok(text),
                Ok(ServerFrame::Error(e)) if e.re == Some(id) || e.re.is_none() => {
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

    /// A frame that is not the awaited reply: queue message pushes; drop
    /// replies to requests that timed out and pushes not handled yet.
    fn handle_unsolicited(&mut self, text: &str) {
        match wire::decode_server_frame(text) {
            Ok(ServerFrame::Message(m)) => self.pushes.push_back(Push::Message(m)),
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
            match self.ws.next().await {
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

    fn pin() -> Trust {
        Trust::pin(tls::Fingerprint::of(b"a certificate"))
    }

    fn url(url: &str, trust: Option<Trust>) -> String {
        match Endpoint::new(url, trust) {
            Ok(e) => e.url().to_owned(),
            Err(e) => panic!("{url}: {e}"),
        }
    }

    #[test]
    fn accepts_loopback_ws_urls_and_adds_the_v1_path() {
        assert_eq!(url("ws://127.0.0.1:7443", None), "ws://127.0.0.1:7443/v1");
        assert_eq!(url("ws://localhost:7443/", None), "ws://localhost:7443/v1");
        assert_eq!(url("ws://[::1]:80/v1", None), "ws://[::1]:80/v1");
        assert_eq!(url("ws://127.0.0.2/v1", None), "ws://127.0.0.2/v1");
    }

    #[test]
    fn accepts_wss_to_any_host_with_a_pin() -> Result<(), ConnectionError> {
        let e = Endpoint::new("wss://wardline.nhs.example", Some(pin()))?;
        assert_eq!(e.url(), "wss://wardline.nhs.example/v1");
        assert_eq!((e.host.as_str(), e.port), ("wardline.nhs.example", 443));
        let e = Endpoint::new("wss://[2001:db8::7]:7443/v1", Some(pin()))?;
        assert_eq!((e.host.as_str(), e.port), ("2001:db8::7", 7443));
        assert_eq!(
            url("wss://10.0.0.5:7443/v1", Some(pin())),
            "wss://10.0.0.5:7443/v1"
        );
        Ok(())
    }

    #[test]
    fn refuses_plain_text_to_other_hosts_and_says_to_use_wss() {
        for bad in [
            "ws://10.0.0.5:7443/v1",
            "ws://wardline.nhs.example/v1",
            "ws://127.0.0.1.evil.example/v1",
        ] {
            let err = Endpoint::new(bad, None).expect_err(bad).to_string();
            assert!(err.contains("wss://"), "{bad}: {err}");
        }
        for bad in [
            "http://127.0.0.1:7443/v1",
            "127.0.0.1:7443",
            "wss://",
            "ws:///v1",
            "wss://127.0.0.1@evil.example/v1",
        ] {
            assert!(Endpoint::new(bad, Some(pin())).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_wss_without_a_way_to_trust_the_certificate() {
        let err = Endpoint::new("wss://wardline.nhs.example/v1", None).expect_err("no trust");
        assert!(matches!(err, ConnectionError::NoTrust(_)));
        let text = err.to_string();
        for needle in ["--pin", "--ca", "fingerprint", "the server prints it"] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
    }

    #[test]
    fn refuses_a_pin_with_plain_ws() {
        let err = Endpoint::new("ws://127.0.0.1:7443/v1", Some(pin())).expect_err("pin on ws");
        assert!(err.to_string().contains("use wss://"), "{err}");
    }

    #[test]
    fn every_error_code_has_advice_that_ends_in_a_full_stop() {
        let codes: Vec<ErrorCode> = [
            "bad_frame",
            "bad_request",
            "unauthenticated",
            "auth_failed",
            "locked_out",
            "totp_replayed",
            "forbidden",
            "not_found",
            "not_member",
            "conflict",
            "too_large",
            "rate_limited",
            "residency_denied",
            "invalid_envelope",
            "wipe_pending",
            "internal",
        ]
        .iter()
        .map(|c| serde_json::from_value(serde_json::Value::from(*c)).expect("known code"))
        .collect();
        for code in codes {
            assert!(advice(code).ends_with('.'), "{code:?}");
        }
        assert_eq!(
            advice(ErrorCode::AuthFailed),
            "Wrong username, password or code. Check and try again."
        );
    }

    #[test]
    fn unknown_error_codes_still_answer_the_request() {
        let text = r#"{"type":"error","re":4,"code":"quota_exceeded","message":"too many"}"#;
        assert!(unknown_error_for(text, 4).is_some());
        assert!(unknown_error_for(text, 5).is_none());
    }
}
