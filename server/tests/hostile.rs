//! Hostile clients: what they send gets a clear answer or a closed
//! connection, and nobody else is affected.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{TestResult, TestServer, TestUser, ward};
use tokio::io::AsyncReadExt as _;

#[tokio::test]
async fn a_connection_that_never_finishes_the_handshake_is_closed() -> TestResult {
    // Real time: the 10 s limit is the behaviour under test.
    let server = TestServer::start().await;
    let addr = server
        .url
        .trim_start_matches("ws://")
        .trim_end_matches("/v1")
        .to_string();
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut buf)).await??;
    assert_eq!(n, 0, "the server closed the silent connection");
    Ok(())
}

#[tokio::test]
async fn deeply_nested_json_is_refused_without_harm() -> TestResult {
    let server = TestServer::start().await;
    let mut c = server.connect().await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    c.send_text(deep).await;
    assert_eq!(c.next().await["code"], "bad_frame");
    let nested = format!(
        r#"{{"type":"lookup","id":1,"usernames":{}"a"{}}}"#,
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    c.send_text(nested).await;
    let r = c.next().await;
    assert!(
        r["code"] == "bad_request" || r["code"] == "bad_frame",
        "{r}"
    );
    // Still serving.
    c.fails("conversations", json!({}), "unauthenticated").await;
    Ok(())
}

#[tokio::test]
async fn a_send_with_thousands_of_key_entries_is_refused_quickly() -> TestResult {
    let mut w = ward().await;
    let mut env = support::seal(&w.alice, &w.conv, &w.devices, "x", support::new_msg_id(1));
    let entry = env["keys"][0].clone();
    let mut keys = Vec::new();
    for i in 0..1200 {
        let mut e = entry.clone();
        e["device_id"] = json!(format!("d-fake-{i}"));
        keys.push(e);
    }
    env["keys"] = json!(keys);
    let r = w
        .alice
        .client
        .fails("send", json!({"envelope": env}), "invalid_envelope")
        .await;
    assert_eq!(r["extra_devices"].as_array().map(Vec::len), Some(1200));
    // Nothing stored; the conversation goes on.
    let list = w.alice.client.ok("conversations", json!({})).await;
    assert_eq!(list["conversations"][0]["last_seq"], 0);
    Ok(())
}

#[tokio::test]
async fn brute_forcing_many_usernames_from_one_connection_is_slowed_and_locked() -> TestResult {
    let server = TestServer::start_with(|c| {
        c.rate_per_sec = 2;
        c.rate_burst = 20;
    })
    .await;
    let admin = TestUser::admin(&server).await;
    let mut c = server.connect().await;
    let mut codes = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..60 {
        let name = if i % 2 == 0 {
            "admin".to_string()
        } else {
            format!("guess{i}")
        };
        let (r, _) = c
            .request("login", json!({"username": name, "password": "password guess", "totp": "000000", "device": {"device_id": admin.device_id}}))
            .await;
        *codes
            .entry(r["code"].as_str().unwrap_or("ok").to_string())
            .or_default() += 1;
    }
    assert!(
        codes.get("rate_limited").copied().unwrap_or(0) >= 30,
        "{codes:?}"
    );
    assert!(
        codes.get("locked_out").copied().unwrap_or(0) >= 1,
        "the real account locked: {codes:?}"
    );
    assert!(!codes.contains_key("ok"), "{codes:?}");
    Ok(())
}
