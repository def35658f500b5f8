//! Export to the health record (R8): the FHIR mapping and NHS numbers. With
//! `WARDLINE_FHIR_SAMPLES_DIR` set, also writes sample bundles for the
//! independent FHIR validators (`tools/fhir-validate/run.sh`).
mod record_support;

use record_support::*;

use serde_json::{Value, json};
use wardline_protocol::record::{
    self, BundleType, ExportOptions, ExportedMessage, NhsNumber, NhsNumberError, RecordError,
};
use wardline_protocol::{BodyKind, MessageId, Priority, b64};

// ------------------------------------------------------------------ NHS numbers

#[test]
fn nhs_numbers_are_ten_digits_with_a_modulus_11_check_digit() {
    for ok in [NHS, OTHER_NHS, "4010232137", "9990000018"] {
        assert_eq!(
            NhsNumber::parse(ok).map(|n| n.as_str().to_owned()),
            Ok(ok.to_owned())
        );
    }
    // 943476591x: only 9 is right. 1000000010 would need check digit 10: never issued.
    for bad in ["9434765918", "9434765910", "1000000010", "0000000018"] {
        assert_eq!(
            NhsNumber::parse(bad),
            Err(NhsNumberError::BadCheckDigit),
            "{bad}"
        );
    }
    for bad in [
        "",
        "943476591",
        "94347659190",
        "943 476 5919",
        "94347659l9",
        "９４３４７６５９１９",
    ] {
        assert_eq!(
            NhsNumber::parse(bad),
            Err(NhsNumberError::NotTenDigits),
            "{bad}"
        );
    }
}

#[test]
fn nhs_number_errors_do_not_repeat_the_number() {
    let e = RecordError::InvalidNhsNumber {
        msg_id: MessageId::generate_v7(1, [0; 10]),
        reason: NhsNumberError::BadCheckDigit,
    };
    assert!(!e.to_string().contains("9434765918"));
}

// ------------------------------------------------------------------ mapping

#[test]
fn each_message_becomes_a_communication_and_a_provenance() -> TestResult {
    let mut w = Ward::new();
    let msgs = exchange(&mut w);
    let b = json_of(&record::build_bundle(
        &msgs,
        &override_options(&w, BundleType::Collection),
    )?);
    assert_eq!(b["resourceType"], "Bundle");
    assert_eq!(b["type"], "collection");
    assert_eq!(b["timestamp"], "2026-11-23T09:05:00.000Z");
    let entries = b["entry"].as_array().ok_or("entries")?;
    assert_eq!(entries.len(), 6);
    assert!(entries.iter().all(|e| e.get("request").is_none()));

    let plan = &msgs[0];
    let c = &entries[0]["resource"];
    let id = format!("urn:uuid:{}", plan.envelope.msg_id);
    assert_eq!(entries[0]["fullUrl"], id.as_str());
    assert_eq!(
        c["identifier"],
        json!([{"system": "urn:ietf:rfc:3986", "value": id}])
    );
    assert_eq!(c["status"], "completed");
    assert_eq!(c["priority"], "routine");
    assert_eq!(
        c["subject"],
        json!({"type": "Patient", "identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": NHS}})
    );
    assert_eq!(c["sent"], "2026-11-23T07:31:54.123Z");
    assert_eq!(
        c["sender"],
        json!({"type": "Practitioner",
               "identifier": {"system": "https://fhir.example-trust.nhs.uk/Id/username", "value": "sarah.jones"},
               "display": "Dr Sarah Jones"})
    );
    assert_eq!(c["payload"], json!([{"contentString": plan.body.text}]));
    assert_eq!(c["meta"]["tag"][0]["system"], record::RESIDENCY_TAG_SYSTEM);
    assert_eq!(c["meta"]["tag"][0]["code"], "GB");
    assert_eq!(c["category"][0]["coding"][0]["code"], "clinical_note");
    assert!(c.get("inResponseTo").is_none());

    let p = &entries[1]["resource"];
    assert_eq!(p["resourceType"], "Provenance");
    assert_eq!(p["target"], json!([{"reference": id}]));
    assert_eq!(p["recorded"], "2026-11-23T09:05:00.000Z");
    assert_eq!(p["occurredDateTime"], "2026-11-23T07:31:54.123Z");
    assert_eq!(p["agent"][0]["type"]["coding"][0]["code"], "author");
    assert_eq!(p["agent"][0]["who"], c["sender"]);
    assert_eq!(p["agent"][1]["type"]["coding"][0]["code"], "enterer");
    assert_eq!(p["agent"][1]["who"]["identifier"]["value"], "tom.evans");
    let sig = &p["signature"][0];
    assert_eq!(sig["data"], b64::encode(plan.envelope.sig).as_str());
    assert_eq!(
        sig["who"]["identifier"]["value"],
        plan.envelope.sender_device.as_str()
    );
    assert_eq!(sig["when"], "2026-11-23T07:31:54.123Z");
    let ext = &p["extension"][0];
    assert_eq!(ext["url"], record::ENVELOPE_EXTENSION_URL);
    let field = |name: &str| {
        ext["extension"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["url"] == name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        field("msg_id")["valueString"],
        plan.envelope.msg_id.to_text().as_str()
    );
    assert_eq!(field("sent_at")["valueString"], "2026-11-23T07:31:54.123Z");
    assert_eq!(field("priority")["valueString"], "routine");
    assert_eq!(field("residency")["valueString"], "GB");
    assert_eq!(
        field("nonce")["valueBase64Binary"],
        b64::encode(plan.envelope.nonce).as_str()
    );
    assert_eq!(
        field("ciphertext")["valueBase64Binary"],
        b64::encode(&plan.envelope.ciphertext).as_str()
    );
    assert_eq!(
        field("content_key")["valueBase64Binary"],
        b64::encode(*plan.content_key).as_str()
    );
    assert_eq!(
        field("sender_sig_pk")["valueBase64Binary"],
        b64::encode(plan.sender_sig_pk.as_bytes()).as_str()
    );
    assert_eq!(field("patient_source")["valueCode"], "message");
    // Nobody's key entries leave the device: only this message's content key.
    assert!(
        !b.to_string()
            .contains(&b64::encode(plan.envelope.keys[0].wrapped))
    );
    Ok(())
}

#[test]
fn replies_refer_to_the_original_inside_or_outside_the_bundle() -> TestResult {
    let mut w = Ward::new();
    let msgs = exchange(&mut w);
    let plan_id = format!("urn:uuid:{}", msgs[0].envelope.msg_id);
    let reply_id = format!("urn:uuid:{}", msgs[1].envelope.msg_id);

    let both = json_of(&record::build_bundle(
        &msgs[..2],
        &w.options(BundleType::Collection),
    )?);
    let reply = resources(&both, "Communication")[1];
    assert_eq!(
        reply["inResponseTo"],
        json!([{"reference": plan_id, "type": "Communication",
                "identifier": {"system": "urn:ietf:rfc:3986", "value": plan_id}}])
    );

    // The original is not exported: a logical reference by identifier only.
    let alone = json_of(&record::build_bundle(
        &msgs[1..2],
        &w.options(BundleType::Collection),
    )?);
    let reply = resources(&alone, "Communication")[0];
    assert_eq!(
        reply["inResponseTo"],
        json!([{"type": "Communication", "identifier": {"system": "urn:ietf:rfc:3986", "value": plan_id}}])
    );
    assert_ne!(plan_id, reply_id);
    assert!(
        record::verify_bundle(&alone.to_string())?
            .iter()
            .all(|v| v.is_ok())
    );
    Ok(())
}

#[test]
fn urgent_messages_have_urgent_priority() -> TestResult {
    let mut w = Ward::new();
    let msgs = exchange(&mut w);
    let b = json_of(&record::build_bundle(
        &msgs[..2],
        &w.options(BundleType::Collection),
    )?);
    let c = resources(&b, "Communication");
    assert_eq!(c[0]["priority"], "routine");
    assert_eq!(c[1]["priority"], "urgent");
    Ok(())
}

#[test]
fn non_ascii_text_is_exported_exactly_and_verifies() -> TestResult {
    let mut w = Ward::new();
    let text = "Llawdriniaeth yfory 👩‍⚕️ — «nil by mouth» ar ôl hanner nos; ŵ ŷ ï; 心电图 OK";
    let m = w.message(
        SARAH,
        T0,
        Priority::Routine,
        body(text, BodyKind::ClinicalNote, Some(NHS), None),
    );
    let out = serde_json::to_string_pretty(&record::build_bundle(
        &[m],
        &w.options(BundleType::Collection),
    )?)?;
    // Written as UTF-8, not escaped, so the file reads naturally.
    assert!(out.contains(text));
    let back: Value = serde_json::from_str(&out)?;
    assert_eq!(
        resources(&back, "Communication")[0]["payload"][0]["contentString"],
        text
    );
    let verdicts = record::verify_bundle(&out)?;
    assert!(verdicts.iter().all(|v| v.is_ok()), "{verdicts:?}");
    Ok(())
}

#[test]
fn every_recipient_is_listed() -> TestResult {
    let mut w = Ward::new();
    for i in 4..=7u8 {
        let p = person(&mut w.rng, i, &format!("hca.{i}"), &format!("HCA {i}"));
        w.people.push(p);
    }
    let m = w.message(
        SARAH,
        T0,
        Priority::Routine,
        body("Handover at 8", BodyKind::ClinicalNote, Some(NHS), None),
    );
    let b = json_of(&record::build_bundle(
        &[m],
        &w.options(BundleType::Collection),
    )?);
    let c = resources(&b, "Communication")[0];
    let names: Vec<&str> = c["recipient"]
        .as_array()
        .ok_or("recipients")?
        .iter()
        .filter_map(|r| r["identifier"]["value"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "tom.evans",
            "priya.shah",
            "hca.4",
            "hca.5",
            "hca.6",
            "hca.7"
        ]
    );
    assert!(
        c["recipient"]
            .as_array()
            .ok_or("recipients")?
            .iter()
            .all(|r| r["type"] == "Practitioner")
    );
    Ok(())
}

#[test]
fn blank_display_names_are_left_out() -> TestResult {
    let mut w = Ward::new();
    w.people[SARAH].who.display = Some("  ".to_owned());
    w.people[PRIYA].who.display = None;
    let m = w.message(
        SARAH,
        T0,
        Priority::Routine,
        body("Plan", BodyKind::ClinicalNote, Some(NHS), None),
    );
    let b = json_of(&record::build_bundle(
        &[m],
        &w.options(BundleType::Collection),
    )?);
    let c = resources(&b, "Communication")[0];
    assert!(c["sender"].get("display").is_none());
    assert!(c["recipient"][1].get("display").is_none());
    assert_eq!(c["recipient"][0]["display"], "Dr Tom Evans");
    Ok(())
}

#[test]
fn a_message_without_a_patient_needs_the_override() -> TestResult {
    let mut w = Ward::new();
    let msgs = exchange(&mut w);
    let ack_id = msgs[2].envelope.msg_id;
    assert_eq!(
        record::build_bundle(&msgs, &w.options(BundleType::Collection)),
        Err(RecordError::MissingPatient(ack_id))
    );
    // With the (confirmed) override the link is made, and marked as the exporter's.
    let b = json_of(&record::build_bundle(
        &msgs,
        &override_options(&w, BundleType::Collection),
    )?);
    let ack = resources(&b, "Communication")[2];
    assert_eq!(ack["subject"]["identifier"]["value"], NHS);
    let prov = resources(&b, "Provenance")[2];
    let source = prov["extension"][0]["extension"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["url"] == "patient_source"))
        .ok_or("patient_source")?;
    assert_eq!(source["valueCode"], "exporter");
    assert!(
        record::verify_bundle(&b.to_string())?
            .iter()
            .all(|v| v.is_ok())
    );
    Ok(())
}

#[test]
fn the_override_cannot_relabel_a_message_about_another_patient() {
    let mut w = Ward::new();
    let m = w.message(
        SARAH,
        T0,
        Priority::Routine,
        body("Bloods due", BodyKind::ClinicalNote, Some(OTHER_NHS), None),
    );
    let id = m.envelope.msg_id;
    assert_eq!(
        record::build_bundle(&[m], &override_options(&w, BundleType::Collection)),
        Err(RecordError::PatientMismatch(id))
    );
}

#[test]
fn invalid_nhs_numbers_are_refused_with_a_typed_error() {
    let mut w = Ward::new();
    for (nhs, reason) in [
        ("9434765918", NhsNumberError::BadCheckDigit),
        ("943476591", NhsNumberError::NotTenDigits),
        ("943-476-5919", NhsNumberError::NotTenDigits),
    ] {
        let m = w.message(
            SARAH,
            T0,
            Priority::Routine,
            body("Plan", BodyKind::ClinicalNote, Some(nhs), None),
        );
        let msg_id = m.envelope.msg_id;
        // The override does not rescue a message whose own number is wrong.
        for opts in [
            w.options(BundleType::Collection),
            override_options(&w, BundleType::Transaction),
        ] {
            assert_eq!(
                record::build_bundle(std::slice::from_ref(&m), &opts),
                Err(RecordError::InvalidNhsNumber { msg_id, reason }),
                "{nhs}"
            );
        }
    }
}

#[test]
fn only_verifiable_consistent_messages_are_exported() {
    let mut w = Ward::new();
    let opts = w.options(BundleType::Collection);
    let good = || -> ExportedMessage {
        let mut w = Ward::new();
        w.message(
            SARAH,
            T0,
            Priority::Routine,
            body("Plan", BodyKind::ClinicalNote, Some(NHS), None),
        )
    };
    let id = good().envelope.msg_id;

    let mut m = good();
    m.sender_sig_pk = w.people[PRIYA].secrets.public().sig_pk;
    let err = record::build_bundle(&[m], &opts);
    assert_eq!(
        err,
        Err(RecordError::Unverifiable {
            msg_id: id,
            reason: wardline_protocol::EnvelopeError::BadSignature
        })
    );

    let mut m = good();
    m.content_key[0] ^= 1;
    assert!(matches!(
        record::build_bundle(&[m], &opts),
        Err(RecordError::Unverifiable { .. })
    ));

    let mut m = good();
    m.body.text.push('!');
    assert_eq!(
        record::build_bundle(&[m], &opts),
        Err(RecordError::BodyMismatch(id))
    );

    assert_eq!(
        record::build_bundle(&[good(), good()], &opts),
        Err(RecordError::Duplicate(id))
    );
    assert_eq!(
        record::build_bundle(&[], &opts),
        Err(RecordError::NoMessages)
    );

    let blank = w.message(
        SARAH,
        T0,
        Priority::Routine,
        body("  \n", BodyKind::Message, Some(NHS), None),
    );
    let blank_id = blank.envelope.msg_id;
    assert_eq!(
        record::build_bundle(&[blank], &opts),
        Err(RecordError::EmptyText(blank_id))
    );

    for system in ["", "username", "https://has space/x", "1http://x"] {
        let o = ExportOptions {
            practitioner_system: system.to_owned(),
            ..opts.clone()
        };
        assert_eq!(
            record::build_bundle(&[good()], &o),
            Err(RecordError::BadPractitionerSystem),
            "{system:?}"
        );
    }
}

#[test]
fn transaction_bundles_post_with_conditional_creates() -> TestResult {
    let mut w = Ward::new();
    let msgs = exchange(&mut w);
    let b = json_of(&record::build_bundle(
        &msgs,
        &override_options(&w, BundleType::Transaction),
    )?);
    assert_eq!(b["type"], "transaction");
    let entries = b["entry"].as_array().ok_or("entries")?;
    for pair in entries.chunks(2) {
        let id = pair[0]["fullUrl"].as_str().ok_or("fullUrl")?;
        assert_eq!(
            pair[0]["request"],
            json!({"method": "POST", "url": "Communication", "ifNoneExist": format!("identifier=urn:ietf:rfc:3986|{id}")})
        );
        assert_eq!(
            pair[1]["request"],
            json!({"method": "POST", "url": "Provenance",
                   "ifNoneExist": format!("target:Communication.identifier=urn:ietf:rfc:3986|{id}")})
        );
        assert!(
            pair[1]["fullUrl"]
                .as_str()
                .ok_or("fullUrl")?
                .starts_with("urn:uuid:")
        );
    }
    assert!(
        record::verify_bundle(&b.to_string())?
            .iter()
            .all(|v| v.is_ok())
    );
    Ok(())
}

#[test]
fn the_same_export_gives_the_same_bundle() -> TestResult {
    let a = {
        let mut w = Ward::new();
        let m = exchange(&mut w);
        record::build_bundle(&m, &override_options(&w, BundleType::Collection))?
    };
    let b = {
        let mut w = Ward::new();
        let m = exchange(&mut w);
        record::build_bundle(&m, &override_options(&w, BundleType::Collection))?
    };
    assert_eq!(serde_json::to_string(&a)?, serde_json::to_string(&b)?);
    let urls: std::collections::HashSet<_> =
        a.entry.iter().filter_map(|e| e.full_url.clone()).collect();
    assert_eq!(urls.len(), a.entry.len(), "fullUrls are unique");
    Ok(())
}

// ------------------------------------------------------------------ samples

/// The example in docs/HEALTH-RECORD.md: a plan and its urgent Welsh reply.
fn example_bundle() -> Result<String, Box<dyn std::error::Error>> {
    let mut w = Ward::new();
    let msgs = exchange(&mut w);
    let bundle = record::build_bundle(&msgs[..2], &w.options(BundleType::Collection))?;
    Ok(serde_json::to_string_pretty(&bundle)? + "\n")
}

#[test]
fn the_documented_example_is_current() -> TestResult {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/HEALTH-RECORD.md");
    let doc = std::fs::read_to_string(&path)?;
    let block = doc
        .split_once("<!-- example-bundle:begin -->\n```json\n")
        .and_then(|(_, rest)| rest.split_once("```\n<!-- example-bundle:end -->"))
        .map(|(json, _)| json)
        .ok_or("docs/HEALTH-RECORD.md has no example-bundle block")?;
    assert!(
        block == example_bundle()?,
        "the example in {} is stale: regenerate it with \
         WARDLINE_FHIR_SAMPLES_DIR=DIR cargo test -p wardline-protocol --test record \
         and paste DIR/example.json",
        path.display()
    );
    Ok(())
}

/// Writes the sample bundles the FHIR validators check, when asked to.
#[test]
fn write_samples_for_the_fhir_validators() -> TestResult {
    let Some(dir) = std::env::var_os("WARDLINE_FHIR_SAMPLES_DIR") else {
        return Ok(());
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir)?;
    let mut w = Ward::new();
    let msgs = exchange(&mut w);
    let pretty = |b: record::Bundle| serde_json::to_string_pretty(&b).map(|t| t + "\n");
    let samples = [
        (
            "collection.json",
            pretty(record::build_bundle(
                &msgs,
                &override_options(&w, BundleType::Collection),
            )?)?,
        ),
        (
            "transaction.json",
            pretty(record::build_bundle(
                &msgs,
                &override_options(&w, BundleType::Transaction),
            )?)?,
        ),
        ("example.json", example_bundle()?),
        (
            "reply-alone.json",
            pretty(record::build_bundle(
                &msgs[1..2],
                &w.options(BundleType::Transaction),
            )?)?,
        ),
    ];
    for (name, text) in samples {
        assert!(record::verify_bundle(&text)?.iter().all(|v| v.is_ok()));
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}
