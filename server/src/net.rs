//! The listener: accepts TCP connections and upgrades them to WebSockets at `/v1`.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::session;
use crate::state::State;

/// Frames up to this size are read and answered with `too_large` when over
/// the 256 KiB protocol limit; beyond it the connection is closed.
const MAX_READ_BYTES: usize = 1024 * 1024;

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_READ_BYTES))
        .max_frame_size(Some(MAX_READ_BYTES))
}

/// Accepts connections until `shutdown` turns true, then waits for every
/// connection task to finish.
pub async fn serve(listener: TcpListener, state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, _peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: log and keep serving the others.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let state = state.clone();
                let shutdown = shutdown.clone();
                tasks.spawn(async move {
                    let upgrade = tokio::time::timeout(
                        session::AUTH_TIMEOUT,
                        tokio_tungstenite::accept_hdr_async_with_config(tcp, check_path, Some(ws_config())),
                    )
                    .await;
                    match upgrade {
                        Ok(Ok(ws)) => session::serve(state, ws, shutdown).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "WebSocket handshake failed"),
                        Err(_) => tracing::debug!("WebSocket handshake timed out"),
                    }
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    while tasks.join_next().await.is_some() {}
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
