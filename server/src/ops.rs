//! The operators' listener: `GET /healthz` and `GET /metrics` over plain
//! HTTP/1.1. Bind it to loopback or a management network only.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::state::State;

/// Serves health and metrics until shutdown.
pub async fn serve(listener: TcpListener, state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((tcp, _)) = accepted {
                    let state = state.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(Duration::from_secs(5), answer(tcp, &state)).await;
                    });
                }
            }
            _ = shutdown.changed() => break,
        }
    }
}

async fn answer(mut tcp: TcpStream, state: &State) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    let path = loop {
        let n = tcp.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                break (req.method == Some("GET")).then(|| req.path.unwrap_or("").to_string());
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => break None,
        }
    };
    let (status, body) = match path.as_deref() {
        Some("/healthz") => match (state.store.has_users(), state.store.write_refusal()) {
            (Ok(_), None) => ("200 OK", "ok\n".to_string()),
            (Ok(_), Some(why)) => ("503 Service Unavailable", format!("{why}\n")),
            (Err(_), _) => ("503 Service Unavailable", "store unavailable\n".to_string()),
        },
        Some("/metrics") => (
            "200 OK",
            state.metrics.render(state.hub.connected_devices()),
        ),
        Some(_) => ("404 Not Found", "not found\n".to_string()),
        None => ("400 Bad Request", "bad request\n".to_string()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(body.as_bytes()).await?;
    tcp.shutdown().await
}
