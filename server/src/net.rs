//! The listener: accepts TCP connections, terminates TLS when configured,
//! upgrades to WebSocket at `/v1`, and caps the number of connections.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::session;
use crate::state::State;
use crate::tls::Acceptor;

/// Frames up to this size are read and answered with `too_large` when over
/// the 256 KiB protocol limit; beyond it the connection is closed.
const MAX_READ_BYTES: usize = 1024 * 1024;

fn ws_config() -> WebSocketConfig {
    // Small buffers: most frames are a few hundred bytes, and an idle
    // connection should cost kilobytes, not tungstenite's 128 KiB default.
    WebSocketConfig::default()
        .read_buffer_size(2 * 1024)
        // Frames of one turn are fed, then flushed together: a small buffer
        // lets one send(2) carry them instead of one per frame.
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(MAX_READ_BYTES * 2)
        .max_message_size(Some(MAX_READ_BYTES))
        .max_frame_size(Some(MAX_READ_BYTES))
}

/// Accepts connections until `shutdown` turns true, then waits for every
/// connection task to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Acceptor>,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(state.config.max_connections));
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let tcp = match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        // EMFILE and friends: say so, back off, keep serving the others.
                        tracing::warn!(error = %e, "accept failed (at the open-file limit?)");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    state.metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(cap = state.config.max_connections, "connection refused: at the connection cap");
                    drop(tcp);
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let state = state.clone();
                let shutdown = shutdown.clone();
                let tls = tls.clone();
                tasks.spawn(async move {
                    state.metrics.connections.fetch_add(1, Ordering::Relaxed);
                    // The handshakes run boxed: their state (several KiB,
                    // rustls' above all) is freed once they are done,
                    // instead of sizing every connection's task for life.
                    match tls {
                        None => {
                            if let Some(ws) = Box::pin(upgrade(tcp)).await {
                                session::serve(state.clone(), ws, shutdown).await;
                            }
                        }
                        Some(t) => {
                            if let Some(ws) = Box::pin(upgrade_tls(t, tcp)).await {
                                session::serve(state.clone(), ws, shutdown).await;
                            }
                        }
                    }
                    state.metrics.connections.fetch_sub(1, Ordering::Relaxed);
                    drop(permit);
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    while tasks.join_next().await.is_some() {}
}

async fn upgrade_tls(t: Acceptor, tcp: TcpStream) -> Option<WebSocketStream<TlsStream<TcpStream>>> {
    match tokio::time::timeout(session::AUTH_TIMEOUT, t.acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => upgrade(stream).await,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

async fn upgrade<S>(stream: S) -> Option<WebSocketStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let upgrade = tokio::time::timeout(
        session::AUTH_TIMEOUT,
        tokio_tungstenite::accept_hdr_async_with_config(stream, check_path, Some(ws_config())),
    )
    .await;
    match upgrade {
        Ok(Ok(ws)) => Some(ws),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "WebSocket handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("WebSocket handshake timed out");
            None
        }
    }
}

#[allow(clippy::result_large_err)] // the signature is tungstenite's callback type
fn check_path(req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
    if req.uri().path() == "/v1" {
        Ok(resp)
    } else {
        let mut r = ErrorResponse::new(Some("Wardline speaks WebSocket at /v1\n".into()));
        *r.status_mut() = StatusCode::NOT_FOUND;
        Err(r)
    }
}
