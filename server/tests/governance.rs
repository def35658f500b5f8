//! Account management, incident-mode registration, residency report and
//! retention with legal holds, through the real server.

mod support;

use serde_json::json;
use support::{TestResult, TestServer, TestUser, new_msg_id, seal, ward};
use wardline_server::retention;

#[tokio::test]
async fn disabling_a_user_ends_their_sessions_at_once_and_enabling_restores_login() -> TestResult {
    let mut w = ward().await;
    w.admin
        .client
        .ok(
            "admin_user_set_state",
            json!({"user_id": w.bob.user_id, "disabled": true, "reason": "left the trust"}),
        )
        .await;
    assert!(w.bob.client.closed().await, "bob's connection is closed");
    let mut c = w.server.connect().await;
    c.fails("resume", json!({"token": w.bob.token}), "unauthenticated")
        .await;
    // Disabled users vanish from the directory.
    let r = w
        .alice
        .client
        .ok("lookup", json!({"usernames": ["bob"]}))
        .await;
    assert_eq!(r["users"], json!([]));
    w.admin
        .client
        .ok(
            "admin_user_set_state",
            json!({"user_id": w.bob.user_id, "disabled": false, "reason": "returned"}),
        )
        .await;
    let mut c = w.server.connect().await;
    c.ok("resume", json!({"token": w.bob.token})).await;
    let list = w.admin.client.ok("admin_user_list", json!({})).await;
    let states: Vec<(&str, &str)> = list["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| {
            (
                u["username"].as_str().expect("name"),
                u["state"].as_str().expect("state"),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![("admin", "active"), ("alice", "active"), ("bob", "active")]
    );
    assert!(list["next_after"].is_null(), "one page holds them all");

    // Page by page, in username order, nothing twice or left out.
    for name in ["carol", "dave", "erin"] {
        w.admin
            .client
            .ok(
                "admin_user_create",
                json!({"username": name, "display_name": name, "role": "clinician"}),
            )
            .await;
    }
    let mut seen = Vec::new();
    let mut after = serde_json::Value::Null;
    loop {
        let page = w
            .admin
            .client
            .ok("admin_user_list", json!({"after": after, "limit": 2}))
            .await;
        let names: Vec<String> = page["users"]
            .as_array()
            .expect("users")
            .iter()
            .map(|u| u["username"].as_str().expect("name").to_string())
            .collect();
        assert!(names.len() <= 2, "{page}");
        seen.extend(names);
        after = page["next_after"].clone();
        if after.is_null() {
            break;
        }
    }
    assert_eq!(seen, ["admin", "alice", "bob", "carol", "dave", "erin"]);
    Ok(())
}

#[tokio::test]
async fn a_disabled_account_cannot_enrol_and_its_devices_are_not_sealed_to() -> TestResult {
    let mut w = ward().await;
    let r = w
        .admin
        .client
        .ok(
            "admin_user_create",
            json!({"username": "late", "display_name": "Late", "role": "clinician"}),
        )
        .await;
    let code = r["enrol_code"].as_str().expect("code").to_string();
    let late = r["user_id"].as_str().expect("id").to_string();
    w.admin
        .client
        .ok(
            "admin_user_set_state",
            json!({"user_id": late, "disabled": true, "reason": "never started"}),
        )
        .await;
    let mut c = w.server.connect().await;
    c.fails(
        "enrol_start",
        json!({"code": code, "password": "a long password"}),
        "auth_failed",
    )
    .await;
    // A reset does not bring a disabled account back either.
    let r = w
        .admin
        .client
        .ok("admin_user_reset", json!({"user_id": late, "reason": "x"}))
        .await;
    c.fails(
        "enrol_start",
        json!({"code": r["enrol_code"], "password": "a long password"}),
        "auth_failed",
    )
    .await;

    w.admin
        .client
        .ok(
            "admin_user_set_state",
            json!({"user_id": w.bob.user_id, "disabled": true, "reason": "suspended"}),
        )
        .await;
    let devs = w
        .alice
        .client
        .ok(
            "devices",
            json!({"user_ids": [w.alice.user_id, w.bob.user_id]}),
        )
        .await;
    assert_eq!(
        devs["devices"].as_array().map(Vec::len),
        Some(1),
        "only alice's own device"
    );
    let env = seal(&w.alice, &w.conv, &devs, "bob is away", new_msg_id(9));
    w.alice.client.ok("send", json!({"envelope": env})).await;
    Ok(())
}

#[tokio::test]
async fn device_list_shows_when_each_device_was_last_seen() -> TestResult {
    let mut w = ward().await;
    let list = w.bob.client.ok("device_list", json!({})).await;
    assert!(list["devices"][0]["last_seen"].is_string(), "{list}");
    Ok(())
}

#[tokio::test]
async fn a_history_page_stays_within_a_frame() -> TestResult {
    let mut w = ward().await;
    for i in 0..24u8 {
        let env = seal(
            &w.alice,
            &w.conv,
            &w.devices,
            &"x".repeat(60_000),
            new_msg_id(i),
        );
        w.alice.client.ok("send", json!({"envelope": env})).await;
    }
    let r = w
        .bob
        .client
        .ok("history", json!({"conv_id": w.conv, "limit": 100}))
        .await;
    let seqs: Vec<u64> = r["messages"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert!(
        seqs.len() < 24 && !seqs.is_empty(),
        "{} messages",
        seqs.len()
    );
    assert_eq!(seqs.last(), Some(&24), "the newest are kept");
    let r = w
        .bob
        .client
        .ok("history", json!({"conv_id": w.conv, "limit": 0}))
        .await;
    assert_eq!(r["messages"], json!([]));
    Ok(())
}

#[tokio::test]
async fn a_revoked_device_can_no_longer_sign_in_or_receive() -> TestResult {
    let mut w = ward().await;
    w.admin
        .client
        .ok(
            "admin_device_revoke",
            json!({"device_id": w.bob.device_id, "reason": "handed back"}),
        )
        .await;
    assert!(w.bob.client.closed().await);
    let mut c = w.server.connect().await;
    c.fails("resume", json!({"token": w.bob.token}), "unauthenticated")
        .await;
    let devs = w
        .alice
        .client
        .ok("devices", json!({"user_ids": [w.bob.user_id]}))
        .await;
    assert_eq!(devs["devices"], json!([]));
    w.alice
        .client
        .fails(
            "admin_device_revoke",
            json!({"device_id": w.alice.device_id, "reason": "x"}),
            "forbidden",
        )
        .await;
    Ok(())
}

#[tokio::test]
async fn a_credential_reset_kills_the_old_password_and_issues_a_new_code() -> TestResult {
    let mut w = ward().await;
    let r = w
        .admin
        .client
        .ok(
            "admin_user_reset",
            json!({"user_id": w.bob.user_id, "reason": "lost phone with authenticator"}),
        )
        .await;
    let code = r["enrol_code"].as_str().expect("code").to_string();
    assert!(w.bob.client.closed().await);
    w.server.next_totp_step();
    let mut c = w.server.connect().await;
    c.fails(
        "login",
        json!({"username": "bob", "password": w.bob.password, "totp": w.server.totp_now(&w.bob.totp_secret), "device": {"device_id": w.bob.device_id}}),
        "auth_failed",
    )
    .await;
    // Bob enrols again with the new code and a new password.
    let fresh = TestUser::enrol(&w.server, &code, "a brand new password").await;
    assert_eq!(fresh.user_id, w.bob.user_id);
    Ok(())
}

#[tokio::test]
async fn self_registration_is_closed_unless_incident_mode_and_stays_pending_until_approved()
-> TestResult {
    let server = TestServer::start().await;
    let mut admin = TestUser::admin(&server).await;
    let mut c = server.connect().await;
    c.fails(
        "register",
        json!({"username": "locum1", "display_name": "Dr Locum"}),
        "forbidden",
    )
    .await;

    admin
        .client
        .ok(
            "admin_incident_mode",
            json!({"enabled": true, "reason": "major incident: M6 pile-up"}),
        )
        .await;
    let r = c
        .ok(
            "register",
            json!({"username": "locum1", "display_name": "Dr Locum"}),
        )
        .await;
    let code = r["enrol_code"].as_str().expect("code").to_string();
    let mut locum = TestUser::enrol(&server, &code, "locum password 1").await;
    // Pending: can do nothing.
    locum
        .client
        .fails("conversations", json!({}), "forbidden")
        .await;
    locum
        .client
        .fails("lookup", json!({"usernames": ["admin"]}), "forbidden")
        .await;

    admin
        .client
        .ok("admin_user_approve", json!({"user_id": locum.user_id}))
        .await;
    assert!(
        locum.client.closed().await,
        "approval makes the pending session sign in again"
    );
    let mut c2 = server.connect().await;
    c2.ok("resume", json!({"token": locum.token})).await;
    c2.ok("conversations", json!({})).await;

    admin
        .client
        .ok(
            "admin_incident_mode",
            json!({"enabled": false, "reason": "incident closed"}),
        )
        .await;
    c.fails(
        "register",
        json!({"username": "locum2", "display_name": "Dr Two"}),
        "forbidden",
    )
    .await;
    let audit = admin
        .client
        .ok("admin_audit", json!({"kind": "self_registration"}))
        .await;
    let outcomes: Vec<&str> = audit["entries"]
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["outcome"].as_str().expect("o"))
        .collect();
    assert_eq!(outcomes, vec!["refused", "pending", "refused"]);
    Ok(())
}

#[tokio::test]
async fn the_residency_report_counts_what_is_held_where() -> TestResult {
    let mut w = ward().await;
    for i in 0..3u8 {
        let env = seal(&w.alice, &w.conv, &w.devices, "x", new_msg_id(i));
        w.alice.client.ok("send", json!({"envelope": env})).await;
    }
    let r = w.admin.client.ok("admin_residency", json!({})).await;
    assert_eq!(r["deployment_region"], "GB");
    let gb = &r["regions"][0];
    assert_eq!(
        (
            gb["region"].as_str(),
            gb["users"].as_u64(),
            gb["conversations"].as_u64(),
            gb["messages"].as_u64()
        ),
        (Some("GB"), Some(3), Some(1), Some(3))
    );
    assert!(gb["message_bytes"].as_u64().expect("bytes") > 0);
    assert!(
        r["policy_source"]
            .as_str()
            .expect("source")
            .contains("European Commission")
    );
    w.alice
        .client
        .fails("admin_residency", json!({}), "forbidden")
        .await;
    Ok(())
}

#[tokio::test]
async fn expired_messages_are_deleted_unless_held() -> TestResult {
    // Sessions outlive the month this test skips over.
    let mut w = support::ward_with(|c| {
        c.session_ttl_ms = 400 * 24 * 3600 * 1000;
        c.session_idle_ms = 400 * 24 * 3600 * 1000;
    })
    .await;
    let env = seal(&w.alice, &w.conv, &w.devices, "old news", new_msg_id(1));
    w.alice.client.ok("send", json!({"envelope": env})).await;
    // A second conversation, placed on legal hold.
    let held = w
        .alice
        .client
        .ok(
            "conversation_create",
            json!({"members": [w.bob.user_id], "title": "SAR 42"}),
        )
        .await;
    let held_id = held["conv_id"].as_str().expect("id").to_string();
    let env = seal(&w.alice, &held_id, &w.devices, "keep me", new_msg_id(2));
    w.alice.client.ok("send", json!({"envelope": env})).await;
    w.admin
        .client
        .ok(
            "admin_legal_hold",
            json!({"conv_id": held_id, "hold": true, "reason": "subject access request 42"}),
        )
        .await;

    assert_eq!(
        retention::tick(&w.server.state)?,
        0,
        "nothing has expired yet"
    );
    w.server.clock.advance_ms(31 * 24 * 3600 * 1000);
    assert_eq!(retention::tick(&w.server.state)?, 1);
    let r = w.bob.client.ok("history", json!({"conv_id": w.conv})).await;
    assert_eq!(r["messages"], json!([]));
    let r = w
        .bob
        .client
        .ok("history", json!({"conv_id": held_id}))
        .await;
    assert_eq!(r["messages"].as_array().map(Vec::len), Some(1));
    // Sequence numbers are never reused after deletion.
    let env = seal(&w.alice, &w.conv, &w.devices, "new", new_msg_id(3));
    let sent = w.alice.client.ok("send", json!({"envelope": env})).await;
    assert_eq!(sent["seq"], 2);
    // Members may shorten, never lengthen, a conversation's retention.
    w.alice
        .client
        .ok(
            "conversation_retention",
            json!({"conv_id": w.conv, "days": 7}),
        )
        .await;
    w.alice
        .client
        .fails(
            "conversation_retention",
            json!({"conv_id": w.conv, "days": 90}),
            "bad_request",
        )
        .await;
    w.server.clock.advance_ms(8 * 24 * 3600 * 1000);
    assert_eq!(retention::tick(&w.server.state)?, 1);
    let audit = w
        .admin
        .client
        .ok("admin_audit", json!({"kind": "retention_deleted"}))
        .await;
    assert_eq!(audit["entries"].as_array().map(Vec::len), Some(2));
    Ok(())
}
