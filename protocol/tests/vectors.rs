//! Known-answer vectors from an independent implementation
//! (`shared/vectors/envelope-v1.json`). The file is read-only input.

use std::path::PathBuf;

use serde_json::Value;
use wardline_protocol::{Body, DeviceId, DeviceSecrets, Envelope, SigPublicKey, envelope, wipe};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn vectors() -> Result<Value, Box<dyn std::error::Error>> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/envelope-v1.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

fn hex32(v: &Value) -> [u8; 32] {
    let bytes = hex::decode(v.as_str().expect("hex string")).expect("valid hex");
    bytes.try_into().expect("32 bytes")
}

fn secrets(party: &Value) -> DeviceSecrets {
    DeviceSecrets::from_bytes(&hex32(&party["kem_sk"]), &hex32(&party["sig_sk"]))
}

fn sender_sig_pk(v: &Value) -> SigPublicKey {
    SigPublicKey::from_bytes(hex32(&v["sender"]["sig_pk"]))
}

#[test]
fn vector_keys_match_their_public_halves() -> TestResult {
    let v = vectors()?;
    let parties = std::iter::once(&v["sender"]).chain(v["recipients"].as_array().expect("list"));
    for p in parties {
        let pk = secrets(p).public();
        assert_eq!(pk.kem_pk.as_bytes(), &hex32(&p["kem_pk"]));
        assert_eq!(pk.sig_pk.as_bytes(), &hex32(&p["sig_pk"]));
    }
    Ok(())
}

#[test]
fn header_bytes_and_signature_input_match_the_vector() -> TestResult {
    let v = vectors()?;
    let env: Envelope = serde_json::from_value(v["valid"].clone())?;
    assert_eq!(
        hex::encode(env.header().to_bytes()),
        v["header_bytes_hex"].as_str().expect("hex")
    );
    assert_eq!(
        hex::encode(env.signature_input()),
        v["signature_input_hex"].as_str().expect("hex")
    );
    Ok(())
}

#[test]
fn valid_envelope_opens_to_the_body_for_every_recipient() -> TestResult {
    let v = vectors()?;
    let env: Envelope = serde_json::from_value(v["valid"].clone())?;
    let expected: Body = serde_json::from_value(v["body"].clone())?;
    let sender = sender_sig_pk(&v);
    for r in v["recipients"].as_array().expect("list") {
        let me = DeviceId::parse(r["device_id"].as_str().expect("id"))?;
        let body = envelope::open(&env, &me, &secrets(r), &sender)?;
        assert_eq!(body, expected);
        let key = envelope::open_content_key(&env, &me, &secrets(r), &sender)?;
        assert_eq!(key.as_slice(), hex32(&v["content_key_hex"]).as_slice());
    }
    Ok(())
}

#[test]
fn every_invalid_envelope_is_rejected_with_a_typed_error() -> TestResult {
    let v = vectors()?;
    let r1 = &v["recipients"][1];
    assert_eq!(r1["device_id"], "d-r1");
    let me = DeviceId::parse("d-r1")?;
    let sender = sender_sig_pk(&v);
    let cases = v["invalid"].as_array().expect("list");
    assert!(
        cases.len() >= 14,
        "the vector file lists every kind of damage"
    );
    for case in cases {
        let name = case["name"].as_str().expect("name");
        // A damaged field may already fail to decode (a typed serde error);
        // if it decodes, opening must fail with a typed EnvelopeError.
        match serde_json::from_value::<Envelope>(case["envelope"].clone()) {
            Err(e) => assert!(e.is_data(), "{name}: {e}"),
            Ok(env) => {
                let err = envelope::open(&env, &me, &secrets(r1), &sender)
                    .expect_err(&format!("{name} must not open"));
                let _typed: envelope::EnvelopeError = err;
            }
        }
    }
    Ok(())
}

#[test]
fn wipe_done_signature_verifies() -> TestResult {
    let v = vectors()?;
    let w = &v["wipe_done"];
    let device = DeviceId::parse(w["device_id"].as_str().expect("id"))?;
    let r = v["recipients"]
        .as_array()
        .expect("list")
        .iter()
        .find(|r| r["device_id"] == w["device_id"])
        .expect("wipe device is a recipient");
    let sig: [u8; 64] = wardline_protocol::b64::decode(w["sig"].as_str().expect("b64"))?
        .try_into()
        .map_err(|_| "64 bytes")?;
    let pk = secrets(r).public().sig_pk;
    wipe::verify_wipe_done(&pk, w["wipe_id"].as_str().expect("id"), &device, &sig)?;
    // The same signature must not confirm another wipe or another device.
    assert!(wipe::verify_wipe_done(&pk, "w-0002", &device, &sig).is_err());
    assert!(wipe::verify_wipe_done(&pk, "w-0001", &DeviceId::parse("d-r0")?, &sig).is_err());
    // Our signer produces a signature the same verifier accepts.
    let ours = wipe::sign_wipe_done(&secrets(r), "w-0001", &device);
    assert_eq!(ours, sig, "Ed25519 is deterministic");
    Ok(())
}
