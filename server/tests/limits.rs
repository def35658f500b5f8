//! Resource limits: rate limiting, slow readers, the connection cap, the
//! metrics endpoint, and what happens with a wrong data key.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{TestResult, TestServer, TestUser, new_msg_id, seal, ward};
// (new_msg_id is used by the metrics test)
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use wardline_server::{Clock, Config, Server, StartError, store::StoreError};

#[tokio::test]
async fn a_flood_of_requests_is_rate_limited_and_others_are_unaffected() -> TestResult {
    let server = TestServer::start_with(|c| {
        c.rate_per_sec = 5;
        c.rate_burst = 10;
    })
    .await;
    let mut admin = TestUser::admin(&server).await;
    let mut other = server.connect().await;
    // Fire 50 requests without waiting: the burst passes, the rest are refused.
    for _ in 0..50 {
        admin
            .client
            .send_text(r#"{"type":"conversations","id":1000}"#)
            .await;
    }
    let mut limited = 0;
    for _ in 0..50 {
        let f = admin.client.next().await;
        if f["code"] == "rate_limited" {
            assert_eq!(f["re"], 1000);
            limited += 1;
        }
    }
    assert!(limited >= 35, "only {limited} of 50 were limited");
    // Another connection is served normally meanwhile.
    other
        .fails("conversations", json!({}), "unauthenticated")
        .await;
    Ok(())
}

#[tokio::test]
async fn a_client_that_never_reads_is_disconnected() -> TestResult {
    let mut w = support::ward_with(|c| c.outbound_queue = 16).await;
    // Bob stops reading; Alice sends until his outbound queue overflows.
    let bob_connection = w.bob.client;
    let mut sent = 0u32;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let bob_device = wardline_protocol::DeviceId::parse(w.bob.device_id.as_str())?;
    while w.server.state.hub.is_connected(&bob_device) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slow reader was never dropped after {sent} sends ({} drops)",
            w.server
                .state
                .metrics
                .queue_drops
                .load(std::sync::atomic::Ordering::Relaxed)
        );
        // Big messages fill the socket buffers quickly.
        let text = "x".repeat(60_000);
        let id =
            wardline_protocol::MessageId::generate_v7(1_800_000_000_000 + u64::from(sent), [9; 10]);
        let env = seal(&w.alice, &w.conv, &w.devices, &text, id);
        let (r, _) = w
            .alice
            .client
            .request("send", json!({"envelope": env}))
            .await;
        assert!(r["type"] == "ok", "{r}");
        sent += 1;
        if sent > 5000 {
            panic!("bob was never disconnected");
        }
    }
    assert!(
        w.server
            .state
            .metrics
            .queue_drops
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    drop(bob_connection);
    Ok(())
}

#[tokio::test]
async fn connections_beyond_the_cap_are_refused() -> TestResult {
    let server = TestServer::start_with(|c| c.max_connections = 2).await;
    let _a = server.connect().await;
    let _b = server.connect().await;
    let url = server.url.clone();
    let third = tokio_tungstenite::connect_async(&url).await;
    assert!(third.is_err(), "a third connection must be refused");
    assert_eq!(
        server
            .state
            .metrics
            .connections_refused
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    Ok(())
}

#[tokio::test]
async fn health_and_metrics_are_served_on_the_admin_listener() -> TestResult {
    let mut w = ward().await;
    let env = seal(&w.alice, &w.conv, &w.devices, "count me", new_msg_id(1));
    w.alice.client.ok("send", json!({"envelope": env})).await;
    let addr = w.server.ops_addr.expect("ops listener");
    let get = |path: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    };
    let health = get("/healthz").await;
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"),
        "{health}"
    );
    let metrics = get("/metrics").await;
    assert!(metrics.contains("wardline_sends_total 1"), "{metrics}");
    assert!(
        metrics.contains("wardline_commit_seconds_count"),
        "{metrics}"
    );
    assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
    Ok(())
}

#[tokio::test]
async fn a_wrong_or_missing_data_key_stops_the_server_at_start() -> TestResult {
    let server = TestServer::start().await;
    let dir = server.stop().await;
    let config = Config::new("127.0.0.1:0".parse()?, dir.path().to_path_buf());

    let wrong = wardline_protocol::b64::encode([7u8; 32]);
    match Server::open(config.clone(), Some(&wrong), Clock::system()) {
        Err(StartError::Store(StoreError::WrongKey)) => {}
        other => panic!("expected WrongKey, got {other:?}"),
    }
    std::fs::remove_file(dir.path().join("data.key"))?;
    let err = Server::open(config, None, Clock::system()).expect_err("missing key refused");
    let msg = err.to_string();
    assert!(
        msg.contains("data.key") && msg.contains("WARDLINE_DATA_KEY"),
        "{msg}"
    );
    Ok(())
}

#[tokio::test]
async fn rotating_the_data_key_keeps_every_record_readable() -> TestResult {
    let mut w = ward().await;
    let env = seal(
        &w.alice,
        &w.conv,
        &w.devices,
        "before rotation",
        new_msg_id(7),
    );
    w.alice.client.ok("send", json!({"envelope": env})).await;
    let (bob_token, alice_token) = (w.bob.token.clone(), w.alice.token.clone());
    drop(w.alice.client);
    drop(w.bob.client);
    drop(w.admin.client);
    let dir = w.server.stop().await;
    let old_key = std::fs::read(dir.path().join("data.key"))?;

    wardline_server::store::rotate_data_key(dir.path(), None)?;
    assert_ne!(std::fs::read(dir.path().join("data.key"))?, old_key);

    // The old key no longer opens the store.
    let config = Config::new("127.0.0.1:0".parse()?, dir.path().to_path_buf());
    let old_b64 = wardline_protocol::b64::encode(&old_key);
    assert!(matches!(
        Server::open(config, Some(&old_b64), Clock::system()),
        Err(StartError::Store(StoreError::WrongKey))
    ));

    // With the new one, sessions, messages and username lookups all work.
    let server = TestServer::start_in(dir).await;
    let mut bob = server.connect().await;
    bob.ok("resume", json!({"token": bob_token})).await;
    let r = bob.ok("history", json!({"conv_id": w.conv})).await;
    assert_eq!(r["messages"].as_array().map(Vec::len), Some(1));
    let mut alice = server.connect().await;
    alice.ok("resume", json!({"token": alice_token})).await;
    let r = alice.ok("lookup", json!({"usernames": ["bob"]})).await;
    assert_eq!(r["users"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[tokio::test]
async fn an_interrupted_rotation_stops_the_server_from_starting() -> TestResult {
    let server = TestServer::start().await;
    let dir = server.stop().await;
    std::fs::create_dir(dir.path().join("store.rekey"))?;
    let config = Config::new("127.0.0.1:0".parse()?, dir.path().to_path_buf());
    let err = Server::open(config, None, Clock::system()).expect_err("refused");
    assert!(err.to_string().contains("interrupted"), "{err}");
    Ok(())
}
