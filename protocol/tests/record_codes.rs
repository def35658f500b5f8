//! Every code the FHIR mapping emits is in its FHIR R4 value set: the FHIR
//! validators run in CI check structure, not coded values.
mod record_support;

use record_support::*;

use serde_json::{Value, json};
use wardline_protocol::record::{self, BundleType, NhsNumber};
use wardline_protocol::{DeviceId, Region, Username};

// ------------------------------------------------------------------ codes

// FHIR R4 (4.0.1) value sets, copied from the specification:
/// http://hl7.org/fhir/R4/valueset-event-status.html (Communication.status, required)
const EVENT_STATUS: &[&str] = &[
    "preparation",
    "in-progress",
    "not-done",
    "on-hold",
    "stopped",
    "completed",
    "entered-in-error",
    "unknown",
];
/// http://hl7.org/fhir/R4/valueset-request-priority.html (Communication.priority, required)
const REQUEST_PRIORITY: &[&str] = &["routine", "urgent", "asap", "stat"];
/// http://hl7.org/fhir/R4/valueset-bundle-type.html (Bundle.type, required)
const BUNDLE_TYPE: &[&str] = &[
    "document",
    "message",
    "transaction",
    "transaction-response",
    "batch",
    "batch-response",
    "history",
    "searchset",
    "collection",
];
/// http://hl7.org/fhir/R4/valueset-http-verb.html (Bundle.entry.request.method, required)
const HTTP_VERB: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"];
/// http://hl7.org/fhir/R4/codesystem-provenance-participant-type.html (Provenance.agent.type, extensible)
const PARTICIPANT_TYPE: &[(&str, &str)] = &[
    ("enterer", "Enterer"),
    ("performer", "Performer"),
    ("author", "Author"),
    ("verifier", "Verifier"),
    ("legal", "Legal Authenticator"),
    ("attester", "Attester"),
    ("informant", "Informant"),
    ("custodian", "Custodian"),
    ("assembler", "Assembler"),
    ("composer", "Composer"),
];
/// http://hl7.org/fhir/R4/valueset-signature-type.html (Signature.type, preferred): system
/// urn:iso-astm:E1762-95:2013, codes 1.2.840.10065.1.12.1.1 to .18; .1 is "Author's Signature".
fn signature_type_ok(code: &str, display: &str) -> bool {
    let n = code
        .strip_prefix("1.2.840.10065.1.12.1.")
        .and_then(|n| n.parse::<u8>().ok());
    matches!(n, Some(1..=18)) && (n != Some(1) || display == "Author's Signature")
}
/// http://hl7.org/fhir/R4/valueset-resource-types.html (Reference.type, extensible): the ones used.
const RESOURCE_TYPES: &[&str] = &["Patient", "Practitioner", "Device", "Communication"];
/// Identifier systems: http://hl7.org/fhir/R4/identifier-registry.html (urn:ietf:rfc:3986),
/// NHS England's https://fhir.nhs.uk/Id/nhs-number, and the configured/Wardline ones.
fn identifier_ok(system: &str, value: &str) -> bool {
    match system {
        "urn:ietf:rfc:3986" => value
            .strip_prefix("urn:uuid:")
            .and_then(|u| {
                uuid::Uuid::try_parse(u)
                    .ok()
                    .filter(|p| p.hyphenated().to_string() == u)
            })
            .is_some(),
        "https://fhir.nhs.uk/Id/nhs-number" => NhsNumber::parse(value).is_ok(),
        "https://fhir.example-trust.nhs.uk/Id/username" => Username::parse(value).is_ok(),
        s if s == record::DEVICE_ID_SYSTEM => DeviceId::parse(value).is_ok(),
        _ => false,
    }
}

fn check_codes(v: &Value, path: &str, errors: &mut Vec<String>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| check_codes(i, path, errors)),
        Value::Object(map) => {
            let get = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or_default();
            let mut bad = |what: &str| errors.push(format!("{path}: {what}"));
            match map.get("resourceType").and_then(Value::as_str) {
                Some("Bundle") if !BUNDLE_TYPE.contains(&get("type")) => bad("Bundle.type"),
                Some("Communication") => {
                    if !EVENT_STATUS.contains(&get("status")) {
                        bad("Communication.status")
                    }
                    if !REQUEST_PRIORITY.contains(&get("priority")) {
                        bad("Communication.priority")
                    }
                }
                _ => {}
            }
            if path.ends_with(".request") && !HTTP_VERB.contains(&get("method")) {
                bad("request.method");
            }
            if map.contains_key("code") {
                let (system, code, display) = (get("system"), get("code"), get("display"));
                let ok = match system {
                    record::PARTICIPANT_TYPE_SYSTEM => PARTICIPANT_TYPE.contains(&(code, display)),
                    record::SIGNATURE_TYPE_SYSTEM => signature_type_ok(code, display),
                    record::RESIDENCY_TAG_SYSTEM => Region::parse(code).is_ok(),
                    record::MESSAGE_KIND_SYSTEM => ["message", "clinical_note"].contains(&code),
                    _ => false,
                };
                if !ok {
                    bad("coding")
                }
            }
            if path.ends_with(".identifier") && !identifier_ok(get("system"), get("value")) {
                bad("identifier");
            }
            if map.contains_key("identifier")
                && map.contains_key("type")
                && !map.contains_key("resourceType")
                && !RESOURCE_TYPES.contains(&get("type"))
            {
                bad("Reference.type");
            }
            for key in ["sigFormat", "targetFormat"] {
                if map.contains_key(key) && get(key) != "application/octet-stream" {
                    bad(key)
                }
            }
            for (k, child) in map {
                check_codes(child, &format!("{path}.{k}"), errors);
            }
        }
        _ => {}
    }
}

#[test]
fn every_emitted_code_is_in_its_fhir_r4_value_set() -> TestResult {
    let mut w = Ward::new();
    let msgs = exchange(&mut w);
    for bt in [BundleType::Collection, BundleType::Transaction] {
        let b = json_of(&record::build_bundle(&msgs, &override_options(&w, bt))?);
        let mut errors = Vec::new();
        check_codes(&b, "Bundle", &mut errors);
        assert!(errors.is_empty(), "{errors:#?}");
        // The checker does look: a wrong code is caught.
        let mut broken = b.clone();
        broken["entry"][0]["resource"]["priority"] = json!("high");
        broken["entry"][1]["resource"]["agent"][0]["type"]["coding"][0]["code"] = json!("sender");
        let mut errors = Vec::new();
        check_codes(&broken, "Bundle", &mut errors);
        assert_eq!(errors.len(), 2, "{errors:#?}");
    }
    Ok(())
}
