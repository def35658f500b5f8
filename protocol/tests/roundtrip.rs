//! Property tests: sealing round-trips, and any single-byte change is rejected.

use proptest::prelude::*;
use wardline_protocol::{
    Body, BodyKind, ConversationId, DeviceId, DeviceSecrets, Envelope, Header, MessageId, Patient,
    Priority, Recipient, Region, Timestamp, UserId, envelope, wire,
};

fn header(priority: Priority) -> Header {
    Header {
        msg_id: MessageId::generate_v7(1_795_419_114_123, [3; 10]),
        conv_id: ConversationId::parse("c-ward10").expect("valid"),
        sender_user: UserId::parse("u-alice").expect("valid"),
        sender_device: DeviceId::parse("d-alice-1").expect("valid"),
        sent_at: Timestamp::parse("2026-11-23T07:31:54.123Z").expect("valid"),
        priority,
        residency: Region::GB,
    }
}

fn devices(n: usize) -> Vec<(DeviceId, DeviceSecrets)> {
    (0..n)
        .map(|i| {
            let mut kem = [0u8; 32];
            let mut sig = [0u8; 32];
            kem[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            sig[..8].copy_from_slice(&(i as u64 + 1000).to_le_bytes());
            (
                DeviceId::parse(format!("d-{i}")).expect("valid"),
                DeviceSecrets::from_bytes(&kem, &sig),
            )
        })
        .collect()
}

fn body_strategy() -> impl Strategy<Value = Body> {
    (".{0,400}", any::<bool>(), proptest::option::of("[0-9]{10}")).prop_map(|(text, note, nhs)| {
        Body {
            text,
            kind: if note {
                BodyKind::ClinicalNote
            } else {
                BodyKind::Message
            },
            patient: nhs.map(|nhs_number| Patient { nhs_number }),
            reply_to: None,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn seal_then_open_round_trips(body in body_strategy(), n in 1usize..=50, urgent in any::<bool>()) {
        let sender = DeviceSecrets::generate();
        let recips = devices(n);
        let list: Vec<Recipient> = recips
            .iter()
            .map(|(id, s)| Recipient { device_id: id.clone(), kem_pk: s.public().kem_pk })
            .collect();
        let prio = if urgent { Priority::Urgent } else { Priority::Routine };
        let env = envelope::seal(header(prio), &body, &sender, &list).expect("seal");
        // Through the wire form and back, as a recipient would see it.
        let env: Envelope = serde_json::from_str(&serde_json::to_string(&env).expect("json")).expect("decode");
        prop_assert_eq!(env.keys.len(), n);
        for (id, s) in [&recips[0], &recips[n - 1]] {
            let opened = envelope::open(&env, id, s, &sender.public().sig_pk).expect("open");
            prop_assert_eq!(&opened, &body);
        }
    }

    #[test]
    fn any_single_byte_change_is_rejected(pos in any::<prop::sample::Index>(), delta in 1u8..=255) {
        let sender = DeviceSecrets::generate();
        let recips = devices(2);
        let list: Vec<Recipient> = recips
            .iter()
            .map(|(id, s)| Recipient { device_id: id.clone(), kem_pk: s.public().kem_pk })
            .collect();
        let body = Body { text: "K+ 6.8, repeat ECG".into(), kind: BodyKind::ClinicalNote, patient: None, reply_to: None };
        let env = envelope::seal(header(Priority::Urgent), &body, &sender, &list).expect("seal");
        let json = serde_json::to_vec(&env).expect("json");
        let mut damaged = json.clone();
        let i = pos.index(damaged.len());
        damaged[i] = damaged[i].wrapping_add(delta);
        // The change may break the JSON, a field's syntax, or the crypto;
        // what must never happen is a different envelope opening at all.
        let decoded = std::str::from_utf8(&damaged)
            .ok()
            .and_then(|text| serde_json::from_str::<Envelope>(text).ok());
        if let Some(env2) = decoded.filter(|e| *e != env) {
            // Key entries are not signed (PROTOCOL.md): a change to one
            // device's entry must stop that device, and leave every other
            // device opening the unchanged message. A change anywhere else
            // must stop every device.
            let only_keys = Envelope { keys: env.keys.clone(), ..env2.clone() } == env;
            for (j, (id, s)) in recips.iter().enumerate() {
                let entry_changed = env2.keys.get(j) != env.keys.get(j);
                let opened = envelope::open(&env2, id, s, &sender.public().sig_pk);
                if only_keys && !entry_changed {
                    prop_assert_eq!(opened.expect("untouched entry opens"), body.clone());
                } else {
                    prop_assert!(opened.is_err(), "byte {} changed and device {} still opened", i, j);
                }
            }
        }
    }

    #[test]
    fn request_frames_round_trip(id in any::<u64>(), seq in any::<u64>()) {
        let req = wire::Request::Ack(wire::Ack { conv_id: ConversationId::parse("c-1").expect("valid"), seq });
        let text = wire::encode_request(id, &req);
        let back = wire::decode_request(&text).expect("decode");
        prop_assert_eq!(back.id, id);
        match back.request {
            wire::Request::Ack(a) => prop_assert_eq!(a.seq, seq),
            other => prop_assert!(false, "decoded as {}", other.type_name()),
        }
    }
}

/// DESIGN.md, "Group size": a care team of 250 members with three devices
/// each must fit one v1 envelope in a 256 KiB frame.
#[test]
fn a_250_member_team_with_three_devices_each_fits_in_one_frame() {
    let sender = DeviceSecrets::generate();
    let one = DeviceSecrets::generate().public().kem_pk;
    let recipients: Vec<Recipient> = (0..750)
        .map(|i| Recipient {
            device_id: DeviceId::generate_v7(1_795_419_114_123, [i as u8; 10]),
            kem_pk: one,
        })
        .collect();
    let body = Body {
        text: "x".repeat(2000),
        kind: BodyKind::ClinicalNote,
        patient: None,
        reply_to: None,
    };
    let env = envelope::seal(header(Priority::Urgent), &body, &sender, &recipients).expect("seal");
    let frame = wire::encode_request(1, &wire::Request::Send(wire::Send { envelope: env }));
    assert!(
        frame.len() < wire::MAX_FRAME_BYTES,
        "{} bytes is over the limit",
        frame.len()
    );
}
