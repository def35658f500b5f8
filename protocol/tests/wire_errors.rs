//! Bad frames get the documented error codes, with the request id when it is known.

use wardline_protocol::wire::{self, DecodeError, ErrorCode};

fn code_of(text: &str) -> (Option<u64>, ErrorCode) {
    let e: DecodeError = wire::decode_request(text).expect_err("must be refused");
    (e.re, e.code)
}

#[test]
fn not_json_is_bad_frame() {
    assert_eq!(code_of("hello"), (None, ErrorCode::BadFrame));
    assert_eq!(code_of("[1,2]"), (None, ErrorCode::BadFrame));
    assert_eq!(code_of("{\"type\":\"login\""), (None, ErrorCode::BadFrame));
}

#[test]
fn arrays_are_not_read_as_requests() {
    assert_eq!(code_of(r#"["ack",5]"#), (None, ErrorCode::BadFrame));
    assert_eq!(code_of(r#"  ["logout"]"#), (None, ErrorCode::BadFrame));
}

#[test]
fn a_non_string_type_still_names_the_request() {
    assert_eq!(
        code_of(r#"{"type":7,"id":8}"#),
        (Some(8), ErrorCode::BadRequest)
    );
}

#[test]
fn a_stray_re_field_in_a_request_is_ignored() {
    let f = wire::decode_request(r#"{"type":"logout","id":3,"re":"x"}"#).expect("accepted");
    assert_eq!(f.id, 3);
}

#[test]
fn unknown_type_is_bad_request_with_re() {
    assert_eq!(
        code_of(r#"{"type":"frobnicate","id":4}"#),
        (Some(4), ErrorCode::BadRequest)
    );
}

#[test]
fn missing_id_or_type_is_bad_request() {
    assert_eq!(
        code_of(r#"{"type":"logout"}"#),
        (None, ErrorCode::BadRequest)
    );
    assert_eq!(
        code_of(r#"{"type":"logout","id":-1}"#),
        (None, ErrorCode::BadRequest)
    );
    assert_eq!(code_of(r#"{"id":9}"#), (Some(9), ErrorCode::BadRequest));
}

#[test]
fn missing_field_is_bad_request_with_re() {
    assert_eq!(
        code_of(r#"{"type":"resume","id":2}"#),
        (Some(2), ErrorCode::BadRequest)
    );
}

#[test]
fn oversized_frame_is_too_large() {
    let big = format!(
        r#"{{"type":"logout","id":1,"pad":"{}"}}"#,
        "x".repeat(wire::MAX_FRAME_BYTES)
    );
    assert_eq!(code_of(&big), (None, ErrorCode::TooLarge));
}

#[test]
fn unknown_fields_are_ignored() {
    let f = wire::decode_request(r#"{"type":"logout","id":3,"future":{"x":1}}"#).expect("accepted");
    assert_eq!(f.id, 3);
    assert_eq!(f.request.type_name(), "logout");
}

#[test]
fn error_messages_never_echo_secret_values() {
    let e = wire::decode_request(r#"{"type":"enrol_start","id":1,"code":"ABC","password":12345}"#)
        .expect_err("password must be a string");
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(!e.message.contains("12345"), "{}", e.message);
    let e = wire::decode_request(r#"{"type":"admin_user_create","id":1,"username":"Hunter2Secret","display_name":"x","role":"admin"}"#)
        .expect_err("bad username");
    assert!(!e.message.contains("Hunter2Secret"), "{}", e.message);
}

#[test]
fn every_request_type_decodes_its_documented_example() {
    // Minimal valid example for each type; keeps TYPES and the decoder in step.
    let pk = wardline_protocol::b64::encode([9u8; 32]);
    for t in wire::Request::TYPES {
        let fields = match *t {
            "enrol_start" => r#""code":"c","password":"p""#.to_string(),
            "enrol_finish" => format!(
                r#""code":"c","totp":"123456","device":{{"name":"n","kem_pk":"{pk}","sig_pk":"{pk}"}}"#
            ),
            "login" => r#""username":"a","password":"p","totp":"1","device":{"device_id":"d-1"}"#
                .to_string(),
            "resume" => r#""token":"t""#.to_string(),
            "logout" | "conversations" => String::new(),
            "password_change" => {
                r#""password":"p","totp":"1","new_password":"a new password""#.to_string()
            }
            "admin_user_create" => {
                r#""username":"jsmith","display_name":"J","role":"clinician""#.to_string()
            }
            "lookup" => r#""usernames":["a"]"#.to_string(),
            "users" => r#""user_ids":["u-1"]"#.to_string(),
            "export_record" => {
                r#""msg_ids":["0193f7c2-6a1e-7c3d-9b2a-3f4e5d6c7b8a"],"destination":"bundle.json""#
                    .to_string()
            }
            "devices" => r#""user_ids":["u-1"]"#.to_string(),
            "conversation_create" => r#""members":["u-1"],"title":"t""#.to_string(),
            "send" => continue, // covered by the envelope tests
            "ack" | "read" => r#""conv_id":"c-1","seq":3"#.to_string(),
            "history" => r#""conv_id":"c-1","before_seq":10,"limit":5"#.to_string(),
            "receipts" => r#""conv_id":"c-1""#.to_string(),
            "conversation_add" | "conversation_remove" => {
                r#""conv_id":"c-1","members":["u-2"]"#.to_string()
            }
            "admin_wipe" => r#""device_id":"d-1","reason":"lost""#.to_string(),
            "wipe_own_device" => {
                r#""device_id":"d-1","reason":"lost","password":"p","totp":"1""#.to_string()
            }
            "admin_wipe_status" => r#""wipe_id":"w-1""#.to_string(),
            "wipe_done" => format!(
                r#""wipe_id":"w-1","sig":"{}""#,
                wardline_protocol::b64::encode([0u8; 64])
            ),
            "device_list" | "admin_audit" | "admin_user_list" | "admin_residency" => String::new(),
            "admin_device_revoke" => r#""device_id":"d-1","reason":"x""#.to_string(),
            "admin_user_set_state" => r#""user_id":"u-1","disabled":true,"reason":"x""#.to_string(),
            "admin_user_reset" => r#""user_id":"u-1","reason":"x""#.to_string(),
            "admin_user_approve" => r#""user_id":"u-1""#.to_string(),
            "admin_incident_mode" => r#""enabled":true,"reason":"major incident""#.to_string(),
            "register" => r#""username":"locum1","display_name":"Dr Locum""#.to_string(),
            "admin_legal_hold" => r#""conv_id":"c-1","hold":true,"reason":"SAR 42""#.to_string(),
            "conversation_retention" => r#""conv_id":"c-1","days":7"#.to_string(),
            other => panic!("no example for request type {other}: add one"),
        };
        let sep = if fields.is_empty() { "" } else { "," };
        let text = format!(r#"{{"type":"{t}","id":1{sep}{fields}}}"#);
        let f = wire::decode_request(&text).unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(f.request.type_name(), *t);
    }
}
