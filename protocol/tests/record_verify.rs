//! Verifying exported bundles: every exported entry verifies, and a change to
//! one text, header field or signature byte fails that entry only.
mod record_support;

use record_support::*;

use serde_json::{Value, json};
use wardline_protocol::b64;
use wardline_protocol::record::{self, BundleType, VerifyError, VerifyFailure};

// ------------------------------------------------------------------ verification

fn ext_field<'a>(bundle: &'a mut Value, entry: usize, name: &str) -> &'a mut Value {
    bundle["entry"][entry]["resource"]["extension"][0]["extension"]
        .as_array_mut()
        .and_then(|a| a.iter_mut().find(|e| e["url"] == name))
        .expect("extension field")
}

/// Verdict failures per Communication, after `tamper`.
fn verdicts_after(tamper: impl FnOnce(&mut Value)) -> Vec<Vec<VerifyFailure>> {
    let mut w = Ward::new();
    let msgs = exchange(&mut w);
    let mut b = json_of(
        &record::build_bundle(&msgs, &override_options(&w, BundleType::Collection))
            .expect("builds"),
    );
    tamper(&mut b);
    record::verify_bundle(&b.to_string())
        .expect("still a bundle")
        .into_iter()
        .map(|v| v.failures)
        .collect()
}

#[test]
fn verify_accepts_every_exported_message() -> TestResult {
    let mut w = Ward::new();
    let msgs = exchange(&mut w);
    for bt in [BundleType::Collection, BundleType::Transaction] {
        let text =
            serde_json::to_string_pretty(&record::build_bundle(&msgs, &override_options(&w, bt))?)?;
        let verdicts = record::verify_bundle(&text)?;
        assert_eq!(verdicts.len(), 3);
        for (v, m) in verdicts.iter().zip(&msgs) {
            assert!(v.is_ok(), "{v:?}");
            assert_eq!(v.msg_id, Some(m.envelope.msg_id));
            assert_eq!(v.sender_device.as_ref(), Some(&m.envelope.sender_device));
            assert_eq!(v.sender_sig_pk, Some(m.sender_sig_pk));
        }
    }
    Ok(())
}

#[test]
fn one_changed_character_of_one_text_fails_that_entry_only() {
    let v = verdicts_after(|b| {
        let t = &mut b["entry"][2]["resource"]["payload"][0]["contentString"];
        let changed = t.as_str().expect("text").replacen("38", "48", 1);
        *t = json!(changed);
    });
    assert_eq!(v, [vec![], vec![VerifyFailure::TextMismatch], vec![]]);
}

#[test]
fn one_changed_header_field_fails_that_entry_only() {
    // In the signed data: the signature and the AEAD both break.
    let v = verdicts_after(|b| {
        *ext_field(b, 1, "priority") = json!({"url": "priority", "valueString": "urgent"})
    });
    assert_eq!(
        v,
        [
            vec![
                VerifyFailure::BadSignature,
                VerifyFailure::Decrypt,
                VerifyFailure::PriorityMismatch
            ],
            vec![],
            vec![]
        ]
    );
    let v = verdicts_after(|b| {
        *ext_field(b, 3, "sent_at") =
            json!({"url": "sent_at", "valueString": "2026-11-23T07:44:28.124Z"})
    });
    assert_eq!(
        v,
        [
            vec![],
            vec![
                VerifyFailure::BadSignature,
                VerifyFailure::Decrypt,
                VerifyFailure::SentMismatch
            ],
            vec![]
        ]
    );
    // In the Communication: it no longer says what was signed.
    let v = verdicts_after(|b| b["entry"][2]["resource"]["priority"] = json!("routine"));
    assert_eq!(v, [vec![], vec![VerifyFailure::PriorityMismatch], vec![]]);
    let v =
        verdicts_after(|b| b["entry"][0]["resource"]["sent"] = json!("2026-11-23T07:31:55.123Z"));
    assert_eq!(v, [vec![VerifyFailure::SentMismatch], vec![], vec![]]);
    // The same instant spelled differently is still the same time.
    let v = verdicts_after(|b| {
        b["entry"][0]["resource"]["sent"] = json!("2026-11-23T07:31:54.123+00:00")
    });
    assert_eq!(v, [vec![], vec![], vec![]]);
    let v = verdicts_after(|b| {
        b["entry"][4]["resource"]["sender"]["identifier"]["value"] = json!("tom.evans")
    });
    assert_eq!(v, [vec![], vec![], vec![VerifyFailure::SenderMismatch]]);
    let v = verdicts_after(|b| {
        b["entry"][0]["resource"]["subject"]["identifier"]["value"] = json!(OTHER_NHS)
    });
    assert_eq!(v, [vec![VerifyFailure::PatientMismatch], vec![], vec![]]);
    let v = verdicts_after(|b| b["entry"][0]["resource"]["meta"]["tag"][0]["code"] = json!("US"));
    assert_eq!(v, [vec![VerifyFailure::ResidencyMismatch], vec![], vec![]]);
    let v = verdicts_after(|b| b["entry"][2]["resource"]["inResponseTo"] = json!([]));
    assert_eq!(v, [vec![], vec![VerifyFailure::ReplyMismatch], vec![]]);
    let v = verdicts_after(|b| {
        b["entry"][0]["resource"]["category"][0]["coding"][0]["code"] = json!("message")
    });
    assert_eq!(v, [vec![VerifyFailure::KindMismatch], vec![], vec![]]);
    // Claiming the sender named the patient, when the exporter linked it.
    let v = verdicts_after(|b| {
        *ext_field(b, 5, "patient_source") =
            json!({"url": "patient_source", "valueCode": "message"})
    });
    assert_eq!(v, [vec![], vec![], vec![VerifyFailure::PatientMismatch]]);
}

#[test]
fn one_changed_signature_byte_fails_that_entry_only() {
    let v = verdicts_after(|b| {
        let data = &mut b["entry"][3]["resource"]["signature"][0]["data"];
        let mut sig = b64::decode(data.as_str().expect("b64")).expect("b64");
        sig[10] ^= 0x01;
        *data = json!(b64::encode(sig));
    });
    assert_eq!(v, [vec![], vec![VerifyFailure::BadSignature], vec![]]);
}

#[test]
fn wrong_keys_ciphertext_and_missing_parts_are_reported() {
    let flip = |b: &mut Value, entry: usize, name: &str| {
        let f = ext_field(b, entry, name);
        let mut bytes = b64::decode(f["valueBase64Binary"].as_str().expect("b64")).expect("b64");
        bytes[0] ^= 0x80;
        f["valueBase64Binary"] = json!(b64::encode(bytes));
    };
    assert_eq!(
        verdicts_after(|b| flip(b, 1, "content_key")),
        [vec![VerifyFailure::Decrypt], vec![], vec![]]
    );
    assert_eq!(
        verdicts_after(|b| flip(b, 1, "ciphertext")),
        [
            vec![VerifyFailure::BadSignature, VerifyFailure::Decrypt],
            vec![],
            vec![]
        ]
    );
    // Another key that happens to verify nothing.
    let v = verdicts_after(|b| flip(b, 1, "sender_sig_pk"));
    assert_eq!(v[0], [VerifyFailure::BadSignature]);
    let v = verdicts_after(|b| {
        *ext_field(b, 1, "msg_id") = json!({"url": "msg_id", "valueString": "not-a-uuid"})
    });
    assert_eq!(v[0], [VerifyFailure::Malformed("msg_id")]);

    // A Communication whose Provenance was removed, and a Provenance left alone.
    let v = verdicts_after(|b| {
        let entries = b["entry"].as_array_mut().expect("entries");
        entries.remove(1);
        entries.remove(1);
    });
    assert_eq!(
        v,
        [
            vec![VerifyFailure::MissingProvenance],
            vec![],
            vec![VerifyFailure::OrphanProvenance]
        ]
    );
}

#[test]
fn files_that_are_not_bundles_are_refused_as_a_whole() {
    assert!(matches!(
        record::verify_bundle("{not json"),
        Err(VerifyError::NotJson { line: 1, .. })
    ));
    assert_eq!(
        record::verify_bundle(r#"{"resourceType": "Patient"}"#),
        Err(VerifyError::NotABundle)
    );
    assert_eq!(
        record::verify_bundle(r#"{"resourceType": "Bundle", "type": 7}"#),
        Err(VerifyError::NotABundle)
    );
    assert_eq!(
        record::verify_bundle(r#"{"resourceType": "Bundle", "type": "collection"}"#),
        Err(VerifyError::NoCommunications)
    );
}
