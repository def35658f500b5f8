//! Receipts, read positions, history, membership changes and device-list pushes.

mod support;

use serde_json::json;
use support::{TestResult, TestUser, device_json, new_msg_id, open_text, seal, ward};
use wardline_protocol::DeviceSecrets;

#[tokio::test]
async fn delivery_and_read_receipts_reach_the_sender() -> TestResult {
    let mut w = ward().await;
    for i in 0..3u8 {
        let env = seal(
            &w.alice,
            &w.conv,
            &w.devices,
            &format!("m{i}"),
            new_msg_id(40 + i),
        );
        w.alice.client.ok("send", json!({"envelope": env})).await;
    }
    for _ in 0..3 {
        w.bob.client.next_of("message").await;
    }
    w.bob
        .client
        .ok("ack", json!({"conv_id": w.conv, "seq": 3}))
        .await;
    let r = w.alice.client.next_of("receipt").await;
    assert_eq!(
        (r["kind"].as_str(), r["seq"].as_u64()),
        (Some("delivered"), Some(3)),
        "{r}"
    );
    assert_eq!(r["user_id"], json!(w.bob.user_id));

    w.bob
        .client
        .ok("read", json!({"conv_id": w.conv, "seq": 2}))
        .await;
    let r = w.alice.client.next_of("receipt").await;
    assert_eq!(
        (r["kind"].as_str(), r["seq"].as_u64()),
        (Some("read"), Some(2)),
        "{r}"
    );

    // A sender who was offline asks for the positions on reconnect.
    let r = w
        .alice
        .client
        .ok("receipts", json!({"conv_id": w.conv}))
        .await;
    let bob = r["receipts"]
        .as_array()
        .expect("list")
        .iter()
        .find(|m| m["user_id"] == json!(w.bob.user_id))
        .expect("bob listed")
        .clone();
    assert_eq!(
        (bob["delivered_seq"].as_u64(), bob["read_seq"].as_u64()),
        (Some(3), Some(2))
    );
    // Read positions never go back.
    w.bob
        .client
        .ok("read", json!({"conv_id": w.conv, "seq": 1}))
        .await;
    let r = w
        .alice
        .client
        .ok("receipts", json!({"conv_id": w.conv}))
        .await;
    assert!(
        r["receipts"]
            .as_array()
            .expect("list")
            .iter()
            .any(|m| m["read_seq"] == 2)
    );
    Ok(())
}

#[tokio::test]
async fn history_pages_back_in_ascending_order() -> TestResult {
    let mut w = ward().await;
    for i in 0..7u8 {
        let env = seal(
            &w.alice,
            &w.conv,
            &w.devices,
            &format!("h{i}"),
            new_msg_id(50 + i),
        );
        w.alice.client.ok("send", json!({"envelope": env})).await;
    }
    let r = w
        .bob
        .client
        .ok("history", json!({"conv_id": w.conv, "limit": 3}))
        .await;
    let seqs: Vec<u64> = r["messages"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, vec![5, 6, 7]);
    let r = w
        .bob
        .client
        .ok(
            "history",
            json!({"conv_id": w.conv, "before_seq": 5, "limit": 3}),
        )
        .await;
    let msgs = r["messages"].as_array().expect("list");
    let seqs: Vec<u64> = msgs
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, vec![2, 3, 4]);
    assert_eq!(open_text(&w.bob, &w.alice, &msgs[0]), "h1");
    let r = w
        .bob
        .client
        .ok("history", json!({"conv_id": w.conv, "before_seq": 1}))
        .await;
    assert_eq!(r["messages"], json!([]));
    w.admin
        .client
        .fails("history", json!({"conv_id": w.conv}), "not_member")
        .await;
    Ok(())
}

#[tokio::test]
async fn a_removed_member_gets_nothing_sent_after_removal() -> TestResult {
    let mut w = ward().await;
    let mut carol = TestUser::clinician(&w.server, &mut w.admin, "carol").await;
    w.alice
        .client
        .ok(
            "conversation_add",
            json!({"conv_id": w.conv, "members": [carol.user_id]}),
        )
        .await;
    let change = w.bob.client.next_of("conversation_changed").await;
    assert_eq!(change["members"].as_array().map(Vec::len), Some(3));
    carol.client.next_of("conversation_changed").await;

    w.alice
        .client
        .ok(
            "conversation_remove",
            json!({"conv_id": w.conv, "members": [carol.user_id]}),
        )
        .await;
    carol.client.next_of("conversation_changed").await;
    // Sealing to Carol's device now is refused: she is no longer a member.
    let all = w
        .alice
        .client
        .ok(
            "devices",
            json!({"user_ids": [w.alice.user_id, w.bob.user_id, carol.user_id]}),
        )
        .await;
    let env = seal(&w.alice, &w.conv, &all, "after removal", new_msg_id(60));
    let r = w
        .alice
        .client
        .fails("send", json!({"envelope": env}), "invalid_envelope")
        .await;
    assert_eq!(r["extra_devices"], json!([carol.device_id]));
    let env = seal(
        &w.alice,
        &w.conv,
        &w.devices,
        "after removal",
        new_msg_id(61),
    );
    w.alice.client.ok("send", json!({"envelope": env})).await;
    let m = w.bob.client.next_of("message").await;
    assert_eq!(open_text(&w.bob, &w.alice, &m), "after removal");
    carol
        .client
        .fails("history", json!({"conv_id": w.conv}), "not_member")
        .await;
    let (r, pushes) = carol.client.request("conversations", json!({})).await;
    assert_eq!(r["conversations"], json!([]));
    assert!(pushes.iter().all(|p| p["type"] != "message"), "{pushes:?}");
    // Clinicians outside the conversation cannot change it.
    carol
        .client
        .fails(
            "conversation_add",
            json!({"conv_id": w.conv, "members": [carol.user_id]}),
            "not_member",
        )
        .await;
    Ok(())
}

#[tokio::test]
async fn a_new_device_is_announced_to_everyone_who_shares_a_conversation() -> TestResult {
    let mut w = ward().await;
    w.server.next_totp_step();
    let keys = DeviceSecrets::generate();
    let mut c = w.server.connect().await;
    c.ok(
        "login",
        json!({"username": "bob", "password": w.bob.password, "totp": w.server.totp_now(&w.bob.totp_secret), "device": device_json("bob's phone", &keys)}),
    )
    .await;
    let p = w.alice.client.next_of("devices_changed").await;
    assert_eq!(p["user_id"], json!(w.bob.user_id));
    // Bob's first device hears it too.
    w.bob.client.next_of("devices_changed").await;
    // An envelope sealed to the old list is now refused, naming the new device.
    let env = seal(&w.alice, &w.conv, &w.devices, "x", new_msg_id(70));
    let r = w
        .alice
        .client
        .fails("send", json!({"envelope": env}), "invalid_envelope")
        .await;
    assert_eq!(r["missing_devices"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[tokio::test]
async fn a_retry_after_devices_changed_still_gets_its_seq() -> TestResult {
    let mut w = ward().await;
    let env = seal(&w.alice, &w.conv, &w.devices, "sent before", new_msg_id(80));
    let first = w
        .alice
        .client
        .ok("send", json!({"envelope": env.clone()}))
        .await;
    w.server.next_totp_step();
    let mut c = w.server.connect().await;
    c.ok(
        "login",
        json!({"username": "bob", "password": w.bob.password, "totp": w.server.totp_now(&w.bob.totp_secret), "device": device_json("bob's phone", &DeviceSecrets::generate())}),
    )
    .await;
    // The client never saw the first `ok` (say the connection dropped) and
    // retries: it gets the stored seq, though the device list has changed.
    let again = w.alice.client.ok("send", json!({"envelope": env})).await;
    assert_eq!(again["seq"], first["seq"]);
    Ok(())
}
