//! The authorisation matrix: every request type the server accepts, sent by
//! every kind of caller, with the code each cell must get. A request type
//! without a row fails the test.

mod support;

use std::collections::BTreeMap;

use serde_json::{Value, json};
use support::{TestResult, TestServer, TestUser, new_msg_id, seal, ward_with};
use wardline_protocol::Request;

/// The kinds of caller, in column order.
const CALLERS: [&str; 9] = [
    "unauthenticated",
    "non_member",
    "member",
    "admin",
    "records_officer",
    "wipe_pending",
    "disabled",
    "logged_out",
    "expired",
];

const UNAUTH: &str = "unauthenticated";

/// Expected outcome for the four signed-in callers (non_member, member,
/// admin, records_officer); the other columns follow from the request's
/// phase (see `expected`).
fn signed_in(row: &str) -> Option<[&'static str; 4]> {
    Some(match row {
        // Pre-authentication requests on a signed-in connection.
        "enrol_start" => ["auth_failed"; 4],
        "enrol_finish" | "login" | "resume" => ["conflict"; 4],
        "register" => ["forbidden"; 4],
        // Everyone signed in.
        "logout"
        | "lookup"
        | "users"
        | "export_record"
        | "devices"
        | "conversations"
        | "conversation_create"
        | "device_list" => ["ok"; 4],
        // Members only (admins may also edit membership).
        "send" | "ack" | "read" | "history" | "receipts" | "conversation_retention" => {
            ["not_member", "ok", "not_member", "not_member"]
        }
        "conversation_add" | "conversation_remove" => ["not_member", "ok", "ok", "not_member"],
        // Admins only.
        "admin_user_create"
        | "admin_wipe"
        | "admin_wipe_status"
        | "admin_audit"
        | "admin_device_revoke"
        | "admin_user_set_state"
        | "admin_user_reset"
        | "admin_user_list"
        | "admin_user_approve"
        | "admin_incident_mode"
        | "admin_residency"
        | "admin_legal_hold" => ["forbidden", "forbidden", "ok", "forbidden"],
        // Re-authentication fails first (wrong password on purpose).
        "wipe_own_device" | "password_change" => ["auth_failed"; 4],
        // No wipe was ordered for these devices.
        "wipe_done" => ["conflict"; 4],
        _ => return None,
    })
}

fn expected(row: &str, caller: usize) -> &'static str {
    let pre_auth = matches!(
        row,
        "enrol_start" | "enrol_finish" | "login" | "resume" | "register"
    );
    match CALLERS[caller] {
        "wipe_pending" => {
            if row == "wipe_done" {
                "auth_failed"
            } else {
                "wipe_pending"
            }
        }
        "unauthenticated" | "disabled" | "logged_out" | "expired" => match row {
            "enrol_start" | "enrol_finish" | "login" => "auth_failed",
            "resume" => UNAUTH,
            "register" => "forbidden",
            _ if pre_auth => unreachable!(),
            _ => UNAUTH,
        },
        _ => signed_in(row).expect("row exists")[caller - 1],
    }
}

/// The payload of each request type: well formed, naming the shared
/// conversation and throwaway targets, so that only authorisation decides.
fn payload(row: &str, ctx: &Ctx, caller: &TestUser, n: u8) -> Value {
    let conv = &ctx.conv;
    match row {
        "enrol_start" => json!({"code": "NOT-A-REAL-CODE", "password": "whatever password"}),
        "enrol_finish" => {
            json!({"code": "NOT-A-REAL-CODE", "totp": "123456", "device": support::device_json("x", &caller.keys)})
        }
        "login" => {
            json!({"username": "nobody", "password": "wrong password", "totp": "000000", "device": {"device_id": "d-1"}})
        }
        "resume" => json!({"token": "bm90IGEgdG9rZW4="}),
        "register" => json!({"username": format!("walkin{n}"), "display_name": "Walk In"}),
        "logout" | "conversations" | "device_list" | "admin_audit" | "admin_user_list"
        | "admin_residency" => json!({}),
        "lookup" => json!({"usernames": ["alice"]}),
        "users" => json!({"user_ids": [ctx.victim_user]}),
        "export_record" => {
            json!({"msg_ids": [new_msg_id(n).to_text()], "destination": "bundle.json"})
        }
        "devices" => json!({"user_ids": [ctx.victim_user]}),
        "conversation_create" => json!({"members": [], "title": "notes to self"}),
        "send" => json!({"envelope": seal(caller, conv, &ctx.devices, "hello", new_msg_id(n))}),
        "ack" | "read" => json!({"conv_id": conv, "seq": 0}),
        "history" | "receipts" => json!({"conv_id": conv}),
        "conversation_retention" => json!({"conv_id": conv, "days": 30}),
        "conversation_add" | "conversation_remove" => json!({"conv_id": conv, "members": []}),
        "admin_user_create" => {
            json!({"username": format!("new{n}"), "display_name": "New", "role": "clinician"})
        }
        "admin_wipe" => json!({"device_id": ctx.victim_device, "reason": "matrix"}),
        "admin_wipe_status" => json!({"wipe_id": ctx.wipe_id}),
        "admin_device_revoke" => json!({"device_id": ctx.victim_device, "reason": "matrix"}),
        "admin_user_set_state" => {
            json!({"user_id": ctx.victim_user, "disabled": false, "reason": "matrix"})
        }
        "admin_user_reset" => json!({"user_id": ctx.victim_user, "reason": "matrix"}),
        "admin_user_approve" => json!({"user_id": ctx.pending_user}),
        "admin_incident_mode" => json!({"enabled": false, "reason": "matrix"}),
        "admin_legal_hold" => json!({"conv_id": conv, "hold": false, "reason": "matrix"}),
        "wipe_own_device" => {
            json!({"device_id": ctx.victim_device, "reason": "matrix", "password": "wrong password", "totp": "000000"})
        }
        "wipe_done" => {
            json!({"wipe_id": ctx.wipe_id, "sig": wardline_protocol::b64::encode([0u8; 64])})
        }
        "password_change" => {
            json!({"password": "wrong password", "totp": "000000", "new_password": "a new long password"})
        }
        other => panic!("no payload for {other}"),
    }
}

struct Ctx {
    conv: String,
    devices: Value,
    victim_user: String,
    victim_device: String,
    pending_user: String,
    wipe_id: String,
}

#[tokio::test]
async fn every_request_type_is_authorised_for_every_kind_of_caller() -> TestResult {
    for t in Request::TYPES {
        assert!(
            signed_in(t).is_some(),
            "request type {t} has no row in the authorisation matrix"
        );
    }
    let mut w = ward_with(|c| c.rate_burst = 10_000).await;
    let server: &TestServer = &w.server;
    let nurse = TestUser::clinician(server, &mut w.admin, "outsider").await;
    let r = w
        .admin
        .client
        .ok(
            "admin_user_create",
            json!({"username": "records", "display_name": "Records", "role": "records_officer"}),
        )
        .await;
    let records = TestUser::enrol(
        server,
        r["enrol_code"].as_str().expect("code"),
        "records password",
    )
    .await;
    let victim = TestUser::clinician(server, &mut w.admin, "victim").await;
    let doomed = TestUser::clinician(server, &mut w.admin, "doomed").await;
    let disabled = TestUser::clinician(server, &mut w.admin, "leaver").await;
    let logged_out = TestUser::clinician(server, &mut w.admin, "gone").await;
    let expired = TestUser::clinician(server, &mut w.admin, "stale").await;
    let r = w
        .admin
        .client
        .ok(
            "admin_wipe",
            json!({"device_id": doomed.device_id, "reason": "matrix"}),
        )
        .await;
    let wipe_id = r["wipe_id"].as_str().expect("id").to_string();
    w.admin
        .client
        .ok(
            "admin_user_set_state",
            json!({"user_id": disabled.user_id, "disabled": true, "reason": "matrix"}),
        )
        .await;
    let mut c = server.connect().await;
    c.ok("resume", json!({"token": logged_out.token})).await;
    c.ok("logout", json!({})).await;
    let hash = wardline_server::auth::secret_hash(&expired.token);
    let mut s = server.state.store.session(&hash)?.expect("session");
    s.expires_at = server.clock.now_ms() - 1;
    server.state.store.put_session(&hash, &s)?;
    w.admin
        .client
        .ok(
            "admin_incident_mode",
            json!({"enabled": true, "reason": "matrix setup"}),
        )
        .await;
    let mut anon = server.connect().await;
    let r = anon
        .ok(
            "register",
            json!({"username": "pending1", "display_name": "Pending"}),
        )
        .await;
    let pending_user = r["user_id"].as_str().expect("id").to_string();
    w.admin
        .client
        .ok(
            "admin_incident_mode",
            json!({"enabled": false, "reason": "matrix setup"}),
        )
        .await;

    let ctx = Ctx {
        conv: w.conv.clone(),
        devices: w.devices.clone(),
        victim_user: victim.user_id.clone(),
        victim_device: victim.device_id.clone(),
        pending_user,
        wipe_id,
    };
    let users: [&TestUser; 9] = [
        &nurse,
        &nurse,
        &w.alice,
        &w.admin,
        &records,
        &doomed,
        &disabled,
        &logged_out,
        &expired,
    ];
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    let mut n = 0u8;
    // Logging out kills the token every other cell resumes: test it last.
    let mut rows: Vec<&str> = Request::TYPES
        .iter()
        .copied()
        .filter(|t| *t != "logout")
        .collect();
    rows.push("logout");
    for row in rows {
        for (col, caller) in CALLERS.iter().enumerate() {
            n = n.wrapping_add(1);
            let user = users[col];
            let mut c = server.connect().await;
            if *caller != "unauthenticated" {
                let (r, _) = c.request("resume", json!({"token": user.token})).await;
                let want = match *caller {
                    "wipe_pending" => "wipe_pending",
                    "disabled" | "logged_out" | "expired" => UNAUTH,
                    _ => "ok",
                };
                let got = if r["type"] == "ok" {
                    "ok"
                } else {
                    r["code"].as_str().unwrap_or("?")
                };
                assert_eq!(got, want, "resume as {caller}: {r}");
            }
            let fields = payload(row, &ctx, user, n);
            let (r, _) = c.request(row, fields).await;
            let row = &row;
            let got = if r["type"] == "ok" {
                "ok".to_string()
            } else {
                r["code"].as_str().unwrap_or("?").to_string()
            };
            let want = expected(row, col);
            if got != want {
                failures.insert(
                    format!("{row} as {caller}"),
                    format!("expected {want}, got {got}: {r}"),
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "authorisation matrix mismatches:\n{failures:#?}"
    );
    Ok(())
}
