//! Urgent messages are re-notified while unread and escalated to the sender.
//! The clock is moved, not waited for.

mod support;

use serde_json::json;
use support::{TestResult, new_msg_id, seal, ward};
use wardline_server::urgent;

#[tokio::test]
async fn unread_urgent_messages_are_renotified_then_escalated() -> TestResult {
    let mut w = ward().await;
    let env = seal(
        &w.alice,
        &w.conv,
        &w.devices,
        "Bleep: bed 4 deteriorating",
        new_msg_id(90),
    );
    w.alice.client.ok("send", json!({"envelope": env})).await;
    let first = w.bob.client.next_of("message").await;

    // Not yet due.
    assert_eq!(urgent::tick(&w.server.state)?, 1);
    w.server.clock.advance_ms(2 * 60 * 1000);
    assert_eq!(urgent::tick(&w.server.state)?, 1);
    let again = w.bob.client.next_of("message").await;
    assert_eq!(again["seq"], first["seq"], "the same message, pushed again");

    w.server.clock.advance_ms(18 * 60 * 1000);
    assert_eq!(urgent::tick(&w.server.state)?, 0);
    let esc = w.alice.client.next_of("unread_urgent").await;
    assert_eq!(esc["unread"], json!([w.bob.user_id]));
    assert_eq!(esc["seq"], first["seq"]);
    Ok(())
}

#[tokio::test]
async fn a_read_urgent_message_is_no_longer_watched() -> TestResult {
    let mut w = ward().await;
    let env = seal(&w.alice, &w.conv, &w.devices, "call back", new_msg_id(91));
    let sent = w.alice.client.ok("send", json!({"envelope": env})).await;
    w.bob.client.next_of("message").await;
    w.bob
        .client
        .ok("read", json!({"conv_id": w.conv, "seq": sent["seq"]}))
        .await;
    w.server.clock.advance_ms(30 * 60 * 1000);
    assert_eq!(urgent::tick(&w.server.state)?, 0);
    // Nothing left to escalate later either.
    assert!(w.server.state.store.urgent_watches()?.is_empty());
    Ok(())
}
