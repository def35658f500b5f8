//! Remote wipe and the audit log, end to end through the real server.

mod support;

use serde_json::json;
use support::{TestResult, TestUser, device_json, new_msg_id, seal, ward};
use wardline_protocol::{DeviceId, DeviceSecrets, audit, b64, wipe};

fn wipe_sig(user: &TestUser, wipe_id: &str) -> String {
    let device = DeviceId::parse(user.device_id.as_str()).expect("id");
    b64::encode(wipe::sign_wipe_done(&user.keys, wipe_id, &device))
}

#[tokio::test]
async fn a_connected_device_is_wiped_and_confirms_with_its_signature() -> TestResult {
    let mut w = ward().await;
    let r = w
        .admin
        .client
        .ok(
            "admin_wipe",
            json!({"device_id": w.bob.device_id, "reason": "reported stolen"}),
        )
        .await;
    let wipe_id = r["wipe_id"].as_str().expect("id").to_string();
    let push = w.bob.client.next_of("wipe").await;
    assert_eq!(push["wipe_id"], json!(wipe_id));
    assert_eq!(push["reason"], "reported stolen");

    // Nothing but wipe_done is accepted now.
    w.bob
        .client
        .fails("conversations", json!({}), "wipe_pending")
        .await;
    // A forged confirmation is refused and the wipe stays pending.
    let forged = b64::encode(DeviceSecrets::generate().sign(b"anything"));
    w.bob
        .client
        .fails(
            "wipe_done",
            json!({"wipe_id": wipe_id, "sig": forged}),
            "auth_failed",
        )
        .await;
    let st = w
        .admin
        .client
        .ok("admin_wipe_status", json!({"wipe_id": wipe_id}))
        .await;
    assert_eq!(st["state"], "pending");

    w.bob
        .client
        .ok(
            "wipe_done",
            json!({"wipe_id": wipe_id, "sig": wipe_sig(&w.bob, &wipe_id)}),
        )
        .await;
    assert!(
        w.bob.client.closed().await,
        "the server closes the connection after wipe_done"
    );
    let st = w
        .admin
        .client
        .ok("admin_wipe_status", json!({"wipe_id": wipe_id}))
        .await;
    assert_eq!(st["state"], "confirmed");

    // The old token never authenticates again.
    let mut c = w.server.connect().await;
    c.fails("resume", json!({"token": w.bob.token}), "unauthenticated")
        .await;
    Ok(())
}

#[tokio::test]
async fn an_offline_device_is_told_to_wipe_when_it_next_connects() -> TestResult {
    let mut w = ward().await;
    w.bob.client = w.server.connect().await; // offline
    // Alice sends while Bob is away: his key entry must not survive the wipe.
    let env = seal(
        &w.alice,
        &w.conv,
        &w.devices,
        "sent before the wipe",
        new_msg_id(1),
    );
    w.alice.client.ok("send", json!({"envelope": env})).await;

    let r = w
        .admin
        .client
        .ok(
            "admin_wipe",
            json!({"device_id": w.bob.device_id, "reason": "lost"}),
        )
        .await;
    let wipe_id = r["wipe_id"].as_str().expect("id").to_string();

    // Others stop encrypting to it: it is gone from the directory, and they are told.
    w.alice.client.next_of("devices_changed").await;
    let devs = w
        .alice
        .client
        .ok("devices", json!({"user_ids": [w.bob.user_id]}))
        .await;
    assert_eq!(devs["devices"], json!([]));
    // Its undelivered key entries are gone from the store.
    let conv = wardline_protocol::ConversationId::parse(w.conv.as_str())?;
    let bob_device = DeviceId::parse(w.bob.device_id.as_str())?;
    for m in w.server.state.store.messages_after(&conv, 0, 100)? {
        assert!(
            m.envelope.entry_for(&bob_device).is_none(),
            "seq {} still holds a key for the wiped device",
            m.seq
        );
    }

    // The lost device turns up two days later, long after its session went idle.
    w.server.clock.advance_ms(2 * 24 * 3600 * 1000);
    let mut c = w.server.connect().await;
    let (r, _) = c.request("resume", json!({"token": w.bob.token})).await;
    assert_eq!(r["code"], "wipe_pending", "{r}");
    let push = c.next_of("wipe").await;
    assert_eq!(push["wipe_id"], json!(wipe_id));
    c.ok(
        "wipe_done",
        json!({"wipe_id": wipe_id, "sig": wipe_sig(&w.bob, &wipe_id)}),
    )
    .await;
    let order = w.server.state.store.wipe(&wipe_id)?.expect("order");
    assert!(order.confirmed_at.is_some(), "confirmed");
    Ok(())
}

#[tokio::test]
async fn only_admins_order_wipes_but_users_may_wipe_their_own_lost_device() -> TestResult {
    let mut w = ward().await;
    w.alice
        .client
        .fails(
            "admin_wipe",
            json!({"device_id": w.bob.device_id, "reason": "x"}),
            "forbidden",
        )
        .await;
    // Bob logs in on a second device and wipes the first one from there.
    w.server.next_totp_step();
    let phone = DeviceSecrets::generate();
    let mut c = w.server.connect().await;
    c.ok(
        "login",
        json!({"username": "bob", "password": w.bob.password, "totp": w.server.totp_now(&w.bob.totp_secret), "device": device_json("phone", &phone)}),
    )
    .await;
    // Wrong password: refused. A stranger's device: not found.
    w.server.next_totp_step();
    c.fails(
        "wipe_own_device",
        json!({"device_id": w.bob.device_id, "reason": "left on the bus", "password": "wrong password", "totp": w.server.totp_now(&w.bob.totp_secret)}),
        "auth_failed",
    )
    .await;
    w.server.next_totp_step();
    c.fails(
        "wipe_own_device",
        json!({"device_id": w.alice.device_id, "reason": "x", "password": w.bob.password, "totp": w.server.totp_now(&w.bob.totp_secret)}),
        "not_found",
    )
    .await;
    w.server.next_totp_step();
    c.ok(
        "wipe_own_device",
        json!({"device_id": w.bob.device_id, "reason": "left on the bus", "password": w.bob.password, "totp": w.server.totp_now(&w.bob.totp_secret)}),
    )
    .await;
    w.bob.client.next_of("wipe").await;
    let list = c.ok("device_list", json!({})).await;
    let states: Vec<&str> = list["devices"]
        .as_array()
        .expect("list")
        .iter()
        .map(|d| d["state"].as_str().expect("state"))
        .collect();
    assert_eq!(states, vec!["wipe_pending", "active"]);
    Ok(())
}

#[tokio::test]
async fn the_audit_log_records_security_events_and_detects_tampering() -> TestResult {
    let mut w = ward().await;
    w.alice
        .client
        .fails("admin_audit", json!({}), "forbidden")
        .await;
    w.admin
        .client
        .ok(
            "admin_wipe",
            json!({"device_id": w.bob.device_id, "reason": "redeployed"}),
        )
        .await;

    let r = w
        .admin
        .client
        .ok("admin_audit", json!({"limit": 1000}))
        .await;
    let entries: Vec<audit::AuditEntry> = serde_json::from_value(r["entries"].clone())?;
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    for k in [
        "server_started",
        "user_created",
        "enrolled",
        "forbidden",
        "wipe_ordered",
    ] {
        assert!(kinds.contains(&k), "no {k} entry in {kinds:?}");
    }
    audit::verify_chain(&entries, &audit::genesis())?;
    // Nothing secret in the log.
    let text = serde_json::to_string(&entries)?;
    assert!(!text.contains(&w.alice.password) && !text.contains(&w.alice.totp_secret));

    // Filtering by kind.
    let r = w
        .admin
        .client
        .ok("admin_audit", json!({"kind": "wipe_ordered"}))
        .await;
    assert_eq!(r["entries"].as_array().map(Vec::len), Some(1));

    // Someone with access to the store rewrites one entry: the chain shows where.
    let mut altered = entries[3].clone();
    altered.outcome = "failed".into();
    w.server.state.store.put_audit(&altered)?;
    let r = w
        .admin
        .client
        .ok("admin_audit", json!({"limit": 1000}))
        .await;
    let entries: Vec<audit::AuditEntry> = serde_json::from_value(r["entries"].clone())?;
    let broken = audit::verify_chain(&entries, &audit::genesis()).expect_err("tampering found");
    assert_eq!(broken.seq, altered.seq);
    Ok(())
}

#[tokio::test]
async fn pruning_old_audit_entries_keeps_the_chain_verifiable() -> TestResult {
    let mut w = support::ward_with(|c| {
        c.session_ttl_ms = 10 * 366 * 24 * 3600 * 1000;
        c.session_idle_ms = 10 * 366 * 24 * 3600 * 1000;
    })
    .await;
    let before = w
        .admin
        .client
        .ok("admin_audit", json!({"limit": 1000}))
        .await;
    let old_count = before["entries"].as_array().map_or(0, Vec::len) as u64;
    assert!(before["checkpoint"].is_null());

    // Nine years on, something new happens, and retention runs.
    w.server.clock.advance_ms(9 * 366 * 24 * 3600 * 1000);
    w.alice
        .client
        .fails("admin_user_list", json!({}), "forbidden")
        .await;
    wardline_server::retention::tick(&w.server.state)?;

    let r = w
        .admin
        .client
        .ok("admin_audit", json!({"limit": 1000}))
        .await;
    let entries: Vec<audit::AuditEntry> = serde_json::from_value(r["entries"].clone())?;
    let cp: audit::Checkpoint = serde_json::from_value(r["checkpoint"].clone())?;
    let key: wardline_protocol::SigPublicKey = serde_json::from_value(r["audit_key"].clone())?;
    assert_eq!(
        cp.first_seq,
        old_count + 1,
        "every old entry pruned, none of the new"
    );
    assert_eq!(entries.first().map(|e| e.seq), Some(cp.first_seq));
    assert!(
        audit::verify_checkpoint(&cp, &key),
        "the checkpoint is signed by the audit key"
    );
    audit::verify_chain(&entries, &cp.chain_start)?;
    assert!(entries.iter().any(|e| e.kind == "audit_pruned"));
    // A forged checkpoint does not verify.
    let mut forged = cp.clone();
    forged.first_seq += 1;
    assert!(!audit::verify_checkpoint(&forged, &key));
    Ok(())
}

#[tokio::test]
async fn exports_to_the_health_record_are_audited_without_content() -> TestResult {
    let mut w = ward().await;
    let id = new_msg_id(42).to_text();
    w.alice
        .client
        .ok(
            "export_record",
            json!({"msg_ids": [id], "destination": "ward10-bundle.json"}),
        )
        .await;
    let r = w
        .admin
        .client
        .ok("admin_audit", json!({"kind": "record_export"}))
        .await;
    let e = &r["entries"][0];
    assert_eq!(e["target"], "ward10-bundle.json");
    assert_eq!(e["actor"], json!(w.alice.user_id));
    assert_eq!(e["device"], json!(w.alice.device_id));
    assert!(e["reason"].as_str().is_some_and(|r| r.contains(&id)));
    Ok(())
}
