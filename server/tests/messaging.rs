//! Conversations, sending, delivery, catch-up and acknowledgement.

mod support;

use serde_json::json;
use support::{TestResult, TestServer, new_msg_id, open_text, seal, seal_with, ward};
use wardline_protocol::{DeviceId, Envelope, Region, envelope};

#[tokio::test]
async fn a_sent_message_reaches_the_online_recipient_and_opens() -> TestResult {
    let mut w = ward().await;
    let env = seal(
        &w.alice,
        &w.conv,
        &w.devices,
        "K+ 6.8, repeat ECG",
        new_msg_id(1),
    );
    let (r, mut early) = w
        .alice
        .client
        .request("send", json!({"envelope": env}))
        .await;
    assert_eq!(r["seq"], 1, "{r}");
    let push = w.bob.client.next().await;
    assert_eq!(push["type"], "message");
    assert_eq!(push["seq"], 1);
    // Only the recipient's own key entry travels to it.
    assert_eq!(push["envelope"]["keys"].as_array().map(Vec::len), Some(1));
    assert_eq!(open_text(&w.bob, &w.alice, &push), "K+ 6.8, repeat ECG");
    // The sender's device gets it too (multi-device consistency); it may
    // arrive just before or just after the `ok`.
    let own = match early.pop() {
        Some(p) => p,
        None => w.alice.client.next().await,
    };
    assert_eq!(own["seq"], 1);
    Ok(())
}

#[tokio::test]
async fn resending_a_msg_id_returns_the_same_seq_and_stores_once() -> TestResult {
    let mut w = ward().await;
    let env = seal(&w.alice, &w.conv, &w.devices, "once", new_msg_id(2));
    let a = w
        .alice
        .client
        .ok("send", json!({"envelope": env.clone()}))
        .await;
    let b = w.alice.client.ok("send", json!({"envelope": env})).await;
    assert_eq!(a["seq"], b["seq"]);
    let env = seal(&w.alice, &w.conv, &w.devices, "twice", new_msg_id(3));
    let c = w.alice.client.ok("send", json!({"envelope": env})).await;
    assert_eq!(c["seq"], 2);
    let list = w.alice.client.ok("conversations", json!({})).await;
    assert_eq!(list["conversations"][0]["last_seq"], 2);
    Ok(())
}

#[tokio::test]
async fn the_server_refuses_what_it_can_see_is_wrong() -> TestResult {
    let mut w = ward().await;
    // Pretending to be someone else.
    let forged = seal(&w.bob, &w.conv, &w.devices, "x", new_msg_id(4));
    w.alice
        .client
        .fails("send", json!({"envelope": forged}), "invalid_envelope")
        .await;
    // Not a member.
    let eve_devices = w
        .admin
        .client
        .ok(
            "devices",
            json!({"user_ids": [w.alice.user_id, w.bob.user_id]}),
        )
        .await;
    let env = seal(&w.admin, &w.conv, &eve_devices, "x", new_msg_id(5));
    w.admin
        .client
        .fails("send", json!({"envelope": env}), "not_member")
        .await;
    // Unknown conversation.
    let env = seal(&w.alice, "c-nope", &w.devices, "x", new_msg_id(6));
    w.alice
        .client
        .fails("send", json!({"envelope": env}), "not_found")
        .await;
    // Wrong residency.
    let env = seal_with(
        &w.alice,
        &w.conv,
        &w.devices,
        "x",
        new_msg_id(7),
        Region::parse("DE")?,
    );
    w.alice
        .client
        .fails("send", json!({"envelope": env}), "residency_denied")
        .await;
    // Key entries that miss a member's device, and name a stranger's.
    let only_alice = w
        .alice
        .client
        .ok(
            "devices",
            json!({"user_ids": [w.alice.user_id, w.admin.user_id]}),
        )
        .await;
    let env = seal(&w.alice, &w.conv, &only_alice, "x", new_msg_id(8));
    let r = w
        .alice
        .client
        .fails("send", json!({"envelope": env}), "invalid_envelope")
        .await;
    assert_eq!(r["missing_devices"], json!([w.bob.device_id]));
    assert_eq!(r["extra_devices"], json!([w.admin.device_id]));
    // Nothing was stored by any of these.
    let list = w.alice.client.ok("conversations", json!({})).await;
    assert_eq!(list["conversations"][0]["last_seq"], 0);
    Ok(())
}

#[tokio::test]
async fn an_offline_device_catches_up_in_order_on_resume_and_ack_moves_its_cursor() -> TestResult {
    let mut w = ward().await;
    // Bob goes offline: his authenticated connection is replaced by a bare one.
    w.bob.client = w.server.connect().await;
    for i in 0..5u8 {
        let env = seal(
            &w.alice,
            &w.conv,
            &w.devices,
            &format!("note {i}"),
            new_msg_id(10 + i),
        );
        w.alice.client.ok("send", json!({"envelope": env})).await;
    }
    let mut c = w.server.connect().await;
    let (r, _) = c.request("resume", json!({"token": w.bob.token})).await;
    assert_eq!(r["type"], "ok");
    let mut seqs = Vec::new();
    for _ in 0..5 {
        let p = c.next().await;
        assert_eq!(p["type"], "message");
        assert_eq!(
            open_text(&w.bob, &w.alice, &p),
            format!("note {}", seqs.len())
        );
        seqs.push(p["seq"].as_u64().expect("seq"));
    }
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    c.ok("ack", json!({"conv_id": w.conv, "seq": 3})).await;
    c.fails("ack", json!({"conv_id": w.conv, "seq": 99}), "bad_request")
        .await;
    drop(c);

    let mut c = w.server.connect().await;
    let (_, pushes) = c.request("resume", json!({"token": w.bob.token})).await;
    assert!(pushes.is_empty());
    let (_, pushes) = c.request("conversations", json!({})).await;
    let seqs: Vec<_> = pushes
        .iter()
        .map(|p| p["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, vec![4, 5], "only what was not acknowledged");
    Ok(())
}

#[tokio::test]
async fn lookup_finds_users_by_username() -> TestResult {
    let mut w = ward().await;
    let r = w
        .alice
        .client
        .ok(
            "lookup",
            json!({"usernames": ["bob", "nobody", "NOT VALID"]}),
        )
        .await;
    let users = r["users"].as_array().expect("users");
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["user_id"], json!(w.bob.user_id));
    assert_eq!(users[0]["role"], "clinician");
    Ok(())
}

#[tokio::test]
async fn messages_survive_a_restart() -> TestResult {
    let mut w = ward().await;
    let env = seal(&w.alice, &w.conv, &w.devices, "durable", new_msg_id(30));
    w.alice.client.ok("send", json!({"envelope": env})).await;
    drop(w.alice.client);
    drop(w.bob.client);
    drop(w.admin.client);
    let dir = w.server.stop().await;
    let server = TestServer::start_in(dir).await;
    let mut c = server.connect().await;
    let (_, _) = c.request("resume", json!({"token": w.bob.token})).await;
    let p = c.next().await;
    assert_eq!(p["seq"], 1);
    let env: Envelope = serde_json::from_value(p["envelope"].clone())?;
    let me = DeviceId::parse(w.bob.device_id.as_str())?;
    assert_eq!(
        envelope::open(&env, &me, &w.bob.keys, &w.alice.keys.public().sig_pk)?.text,
        "durable"
    );
    Ok(())
}
