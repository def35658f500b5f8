//! Bad frames get the documented error codes and the connection keeps serving.

mod support;

use serde_json::json;
use support::{TestResult, TestServer};

#[tokio::test]
async fn malformed_frames_get_codes_and_the_connection_keeps_serving() -> TestResult {
    let server = TestServer::start().await;
    let mut c = server.connect().await;

    c.send_text("this is not json").await;
    let r = c.next().await;
    assert_eq!(
        (r["code"].as_str(), r["re"].is_null()),
        (Some("bad_frame"), true),
        "{r}"
    );

    c.send_text(r#"{"type":"frobnicate","id":5}"#).await;
    let r = c.next().await;
    assert_eq!(
        (r["code"].as_str(), &r["re"]),
        (Some("bad_request"), &json!(5)),
        "{r}"
    );

    c.send_text(r#"{"type":"resume","id":6}"#).await;
    let r = c.next().await;
    assert_eq!(
        (r["code"].as_str(), &r["re"]),
        (Some("bad_request"), &json!(6)),
        "{r}"
    );

    c.send_binary(vec![1, 2, 3]).await;
    let r = c.next().await;
    assert_eq!(r["code"], "bad_frame", "{r}");

    let big = format!(
        r#"{{"type":"logout","id":7,"pad":"{}"}}"#,
        "x".repeat(300 * 1024)
    );
    c.send_text(big).await;
    let r = c.next().await;
    assert_eq!(r["code"], "too_large", "{r}");

    // Still serving: a good request gets its proper answer.
    c.fails("conversations", json!({}), "unauthenticated").await;
    Ok(())
}

#[tokio::test]
async fn every_request_needs_a_session_except_authentication() -> TestResult {
    let server = TestServer::start().await;
    let mut c = server.connect().await;
    for (kind, fields) in [
        ("logout", json!({})),
        (
            "admin_user_create",
            json!({"username": "x", "display_name": "X", "role": "admin"}),
        ),
        ("lookup", json!({"usernames": ["admin"]})),
        ("devices", json!({"user_ids": ["u-1"]})),
        ("conversation_create", json!({"members": [], "title": "t"})),
        ("conversations", json!({})),
        ("ack", json!({"conv_id": "c-1", "seq": 1})),
    ] {
        c.fails(kind, fields, "unauthenticated").await;
    }
    Ok(())
}

#[tokio::test]
async fn wrong_path_is_refused() {
    let server = TestServer::start().await;
    let url = server.url.replace("/v1", "/v2");
    assert!(tokio_tungstenite::connect_async(&url).await.is_err());
}
