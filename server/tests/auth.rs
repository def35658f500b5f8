//! Enrolment, login, TOTP replay, lockout, sessions.

mod support;

use serde_json::json;
use support::{TestResult, TestServer, TestUser, device_json};
use wardline_protocol::DeviceSecrets;

#[tokio::test]
async fn bootstrap_admin_enrols_and_creates_users() -> TestResult {
    let server = TestServer::start().await;
    let mut admin = TestUser::admin(&server).await;
    let r = admin
        .client
        .ok(
            "admin_user_create",
            json!({"username": "jsmith", "display_name": "Dr J Smith", "role": "clinician"}),
        )
        .await;
    assert!(r["enrol_code"].as_str().is_some_and(|c| c.len() >= 20));
    admin
        .client
        .fails(
            "admin_user_create",
            json!({"username": "jsmith", "display_name": "Again", "role": "clinician"}),
            "conflict",
        )
        .await;
    Ok(())
}

#[tokio::test]
async fn enrolment_code_works_once() -> TestResult {
    let server = TestServer::start().await;
    let code = server.admin_code.clone();
    let _admin = TestUser::admin(&server).await;
    let mut c = server.connect().await;
    c.fails(
        "enrol_start",
        json!({"code": code, "password": "another password"}),
        "auth_failed",
    )
    .await;
    Ok(())
}

#[tokio::test]
async fn clinicians_may_not_create_users() -> TestResult {
    let server = TestServer::start().await;
    let mut admin = TestUser::admin(&server).await;
    let mut nurse = TestUser::clinician(&server, &mut admin, "nurse").await;
    nurse
        .client
        .fails(
            "admin_user_create",
            json!({"username": "x", "display_name": "X", "role": "admin"}),
            "forbidden",
        )
        .await;
    Ok(())
}

#[tokio::test]
async fn login_checks_password_and_totp_and_refuses_replayed_codes() -> TestResult {
    let server = TestServer::start().await;
    let admin = TestUser::admin(&server).await;
    server.next_totp_step();
    let code = server.totp_now(&admin.totp_secret);

    let mut c = server.connect().await;
    let wrong = c
        .fails("login", json!({"username": "admin", "password": "wrong password!", "totp": code, "device": {"device_id": admin.device_id}}), "auth_failed")
        .await;
    let unknown = c
        .fails("login", json!({"username": "nobody", "password": "wrong password!", "totp": code, "device": {"device_id": admin.device_id}}), "auth_failed")
        .await;
    // The same answer whether or not the user exists.
    assert_eq!(wrong["message"], unknown["message"]);

    let r = c
        .ok("login", json!({"username": "admin", "password": admin.password, "totp": code, "device": {"device_id": admin.device_id}}))
        .await;
    assert_eq!(r["device_id"].as_str(), Some(admin.device_id.as_str()));

    let mut c2 = server.connect().await;
    c2.fails("login", json!({"username": "admin", "password": admin.password, "totp": code, "device": {"device_id": admin.device_id}}), "totp_replayed")
        .await;
    Ok(())
}

#[tokio::test]
async fn five_failures_lock_the_account() -> TestResult {
    let server = TestServer::start().await;
    let admin = TestUser::admin(&server).await;
    let mut c = server.connect().await;
    for _ in 0..5 {
        c.fails("login", json!({"username": "admin", "password": "not the password", "totp": "000000", "device": {"device_id": admin.device_id}}), "auth_failed")
            .await;
    }
    server.next_totp_step();
    let good = json!({"username": "admin", "password": admin.password, "totp": server.totp_now(&admin.totp_secret), "device": {"device_id": admin.device_id}});
    c.fails("login", good.clone(), "locked_out").await;
    server.clock.advance_ms(16 * 60 * 1000);
    let good = json!({"username": "admin", "password": admin.password, "totp": server.totp_now(&admin.totp_secret), "device": {"device_id": admin.device_id}});
    c.ok("login", good).await;
    Ok(())
}

#[tokio::test]
async fn unknown_usernames_lock_out_like_real_ones() -> TestResult {
    let server = TestServer::start().await;
    let _admin = TestUser::admin(&server).await;
    let mut c = server.connect().await;
    let bad = json!({"username": "ghost", "password": "not the password", "totp": "000000", "device": {"device_id": "d-1"}});
    for _ in 0..5 {
        c.fails("login", bad.clone(), "auth_failed").await;
    }
    c.fails("login", bad, "locked_out").await;
    Ok(())
}

#[tokio::test]
async fn a_logged_out_connection_may_authenticate_again() -> TestResult {
    let server = TestServer::start().await;
    let mut admin = TestUser::admin(&server).await;
    admin.client.ok("logout", json!({})).await;
    server.next_totp_step();
    admin
        .client
        .ok("login", json!({"username": "admin", "password": admin.password, "totp": server.totp_now(&admin.totp_secret), "device": {"device_id": admin.device_id}}))
        .await;
    admin.client.ok("conversations", json!({})).await;
    Ok(())
}

#[tokio::test]
async fn invalid_signing_keys_are_refused() -> TestResult {
    let server = TestServer::start().await;
    let code = server.admin_code.clone();
    let mut c = server.connect().await;
    let start = c
        .ok(
            "enrol_start",
            json!({"code": code, "password": "long enough pw"}),
        )
        .await;
    let secret = start["totp_secret"].as_str().expect("secret").to_string();
    // y = 2 is not on the curve: no Ed25519 point decodes from these bytes.
    let mut bad = [0u8; 32];
    bad[0] = 2;
    let pk = wardline_protocol::b64::encode(bad);
    c.fails(
        "enrol_finish",
        json!({"code": code, "totp": server.totp_now(&secret), "device": {"name": "x", "kem_pk": pk, "sig_pk": pk}}),
        "bad_request",
    )
    .await;
    Ok(())
}

#[tokio::test]
async fn login_registers_a_second_device() -> TestResult {
    let server = TestServer::start().await;
    let mut admin = TestUser::admin(&server).await;
    server.next_totp_step();
    let keys = DeviceSecrets::generate();
    let mut c = server.connect().await;
    let r = c
        .ok("login", json!({"username": "admin", "password": admin.password, "totp": server.totp_now(&admin.totp_secret), "device": device_json("laptop", &keys)}))
        .await;
    assert_ne!(r["device_id"], json!(admin.device_id));
    let devs = admin
        .client
        .ok("devices", json!({"user_ids": [admin.user_id]}))
        .await;
    assert_eq!(devs["devices"].as_array().map(Vec::len), Some(2));
    Ok(())
}

#[tokio::test]
async fn tokens_resume_until_logout_or_expiry() -> TestResult {
    let server = TestServer::start().await;
    let mut admin = TestUser::admin(&server).await;

    let mut c = server.connect().await;
    c.ok("resume", json!({"token": admin.token})).await;
    c.ok("logout", json!({})).await;
    c.fails("conversations", json!({}), "unauthenticated").await;
    let mut c = server.connect().await;
    c.fails("resume", json!({"token": admin.token}), "unauthenticated")
        .await;

    // The enrolment connection used the same session: it is closed too.
    assert!(
        admin.client.closed().await,
        "other connections of the session end at logout"
    );
    server.next_totp_step();
    let mut c = server.connect().await;
    let login = c
        .ok("login", json!({"username": "admin", "password": admin.password, "totp": server.totp_now(&admin.totp_secret), "device": {"device_id": admin.device_id}}))
        .await;
    let token = login["token"].as_str().expect("token").to_string();
    let mut c = server.connect().await;
    c.ok("resume", json!({"token": token})).await;
    server.clock.advance_ms(7 * 24 * 3600 * 1000 + 1);
    c.fails("conversations", json!({}), "unauthenticated").await;
    let mut c = server.connect().await;
    c.fails("resume", json!({"token": token}), "unauthenticated")
        .await;
    Ok(())
}

#[tokio::test]
async fn an_idle_session_ends_after_twelve_hours() -> TestResult {
    let server = TestServer::start().await;
    let admin = TestUser::admin(&server).await;
    drop(admin.client);
    server.all_disconnected().await;
    server.clock.advance_ms(11 * 3600 * 1000);
    let mut c = server.connect().await;
    c.ok("resume", json!({"token": admin.token})).await; // used again: the idle clock restarts
    drop(c);
    server.all_disconnected().await;
    server.clock.advance_ms(11 * 3600 * 1000);
    let mut c = server.connect().await;
    c.ok("resume", json!({"token": admin.token})).await;
    drop(c);
    server.all_disconnected().await;
    server.clock.advance_ms(13 * 3600 * 1000);
    let mut c = server.connect().await;
    c.fails("resume", json!({"token": admin.token}), "unauthenticated")
        .await;
    Ok(())
}

#[tokio::test]
async fn a_connection_that_never_authenticates_is_closed() {
    // Time is real here: the 10 s limit is the behaviour under test.
    let server = TestServer::start().await;
    let mut c = server.connect().await;
    assert!(c.closed().await || c.closed().await, "closed within 20 s");
}

#[tokio::test]
async fn a_user_changes_their_password_after_proving_who_they_are() -> TestResult {
    let server = TestServer::start().await;
    let mut admin = TestUser::admin(&server).await;
    let mut alice = TestUser::clinician(&server, &mut admin, "alice").await;
    let new = "a brand new passphrase";

    // The new password must be long enough and new; checked before anything else.
    alice
        .client
        .fails(
            "password_change",
            json!({"password": alice.password, "totp": "000000", "new_password": "short"}),
            "bad_request",
        )
        .await;
    alice
        .client
        .fails(
            "password_change",
            json!({"password": alice.password, "totp": "000000", "new_password": alice.password}),
            "bad_request",
        )
        .await;
    // A wrong current password is a failed login.
    server.next_totp_step();
    let code = server.totp_now(&alice.totp_secret);
    alice
        .client
        .fails(
            "password_change",
            json!({"password": "not the password", "totp": code, "new_password": new}),
            "auth_failed",
        )
        .await;

    alice
        .client
        .ok(
            "password_change",
            json!({"password": alice.password, "totp": code, "new_password": new}),
        )
        .await;
    // The code is spent.
    alice
        .client
        .fails(
            "password_change",
            json!({"password": new, "totp": code, "new_password": "yet another password"}),
            "totp_replayed",
        )
        .await;
    // The session goes on.
    alice.client.ok("conversations", json!({})).await;

    server.next_totp_step();
    let code = server.totp_now(&alice.totp_secret);
    let mut c = server.connect().await;
    c.fails("login", json!({"username": "alice", "password": alice.password, "totp": code, "device": {"device_id": alice.device_id}}), "auth_failed")
        .await;
    c.ok("login", json!({"username": "alice", "password": new, "totp": code, "device": {"device_id": alice.device_id}}))
        .await;

    let audit = admin
        .client
        .ok("admin_audit", json!({"kind": "password_changed"}))
        .await;
    let entries = audit["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["actor"].as_str(), Some(alice.user_id.as_str()));
    assert!(
        !audit.to_string().contains(new),
        "the audit log holds no password"
    );
    Ok(())
}

#[tokio::test]
async fn failed_password_changes_lock_the_account_like_failed_logins() -> TestResult {
    let server = TestServer::start().await;
    let mut admin = TestUser::admin(&server).await;
    let mut alice = TestUser::clinician(&server, &mut admin, "alice").await;
    for _ in 0..5 {
        alice
            .client
            .fails(
                "password_change",
                json!({"password": "not the password", "totp": "000000", "new_password": "a brand new passphrase"}),
                "auth_failed",
            )
            .await;
    }
    server.next_totp_step();
    let code = server.totp_now(&alice.totp_secret);
    alice
        .client
        .fails(
            "password_change",
            json!({"password": alice.password, "totp": code, "new_password": "a brand new passphrase"}),
            "locked_out",
        )
        .await;
    Ok(())
}

#[tokio::test]
async fn an_admin_disable_during_a_password_change_is_not_undone() -> TestResult {
    let server = TestServer::start().await;
    let mut admin = TestUser::admin(&server).await;
    let mut alice = TestUser::clinician(&server, &mut admin, "alice").await;
    let new = "a brand new passphrase";
    server.next_totp_step();
    let code = server.totp_now(&alice.totp_secret);
    // The change is under way (two Argon2 runs) when the admin disables the
    // account: whichever lands last, the account must end up disabled.
    alice
        .client
        .send_text(
            json!({"type": "password_change", "id": 900, "password": alice.password, "totp": code, "new_password": new})
                .to_string(),
        )
        .await;
    admin
        .client
        .ok(
            "admin_user_set_state",
            json!({"user_id": alice.user_id, "disabled": true, "reason": "left the trust"}),
        )
        .await;
    let list = admin.client.ok("admin_user_list", json!({})).await;
    let state = list["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["username"] == "alice")
        .map(|u| u["state"].clone());
    assert_eq!(state, Some(json!("disabled")), "{list}");
    server.next_totp_step();
    let mut c = server.connect().await;
    c.fails("login", json!({"username": "alice", "password": new, "totp": server.totp_now(&alice.totp_secret), "device": {"device_id": alice.device_id}}), "auth_failed")
        .await;
    Ok(())
}
