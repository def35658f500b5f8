//! Shared fixtures of the `record*` tests: a deterministic generator and a
//! ward team exchanging messages that Tom's device opens and exports.

// Each test crate uses a different part of the fixtures.
#![allow(dead_code)]

use std::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use wardline_protocol::record::{
    self, BundleType, ExportOptions, ExportedMessage, NhsNumber, Participant,
};
use wardline_protocol::{
    Body, BodyKind, ConversationId, DeviceId, DeviceSecrets, Header, MessageId, Patient, Priority,
    Recipient, Region, Timestamp, UserId, Username, envelope,
};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub const NHS: &str = "9434765919";
pub const OTHER_NHS: &str = "9434765870";

/// A deterministic generator (SHA-256 in counter mode), so sample bundles and
/// the documented example are reproducible.
pub struct TestRng {
    seed: [u8; 32],
    counter: u64,
    buf: Vec<u8>,
}

impl TestRng {
    pub fn new(label: &str) -> Self {
        Self {
            seed: Sha256::digest(label.as_bytes()).into(),
            counter: 0,
            buf: Vec::new(),
        }
    }
}

impl TryRng for TestRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for d in dst {
            if self.buf.is_empty() {
                let mut h = Sha256::new();
                h.update(self.seed);
                h.update(self.counter.to_be_bytes());
                self.counter += 1;
                self.buf = h.finalize().to_vec();
            }
            *d = self.buf.remove(0);
        }
        Ok(())
    }
}
impl TryCryptoRng for TestRng {}

pub struct Person {
    pub user: UserId,
    pub device: DeviceId,
    pub secrets: DeviceSecrets,
    pub who: Participant,
}

pub fn person(rng: &mut TestRng, n: u8, username: &str, display: &str) -> Person {
    Person {
        user: UserId::parse(format!("0193f7c2-0000-7000-8000-00000000000{n}")).expect("id"),
        device: DeviceId::parse(format!("0193f7c2-1111-7000-8000-00000000000{n}")).expect("id"),
        secrets: DeviceSecrets::generate_with_rng(rng),
        who: Participant {
            username: Username::parse(username).expect("username"),
            display: Some(display.to_owned()),
        },
    }
}

/// A care-team conversation: Sarah (registrar), Tom (the exporting device's
/// owner, F2 doctor) and Priya (ward sister).
pub struct Ward {
    pub rng: TestRng,
    pub people: Vec<Person>,
    pub conv: ConversationId,
}

pub const SARAH: usize = 0;
pub const TOM: usize = 1;
pub const PRIYA: usize = 2;

impl Ward {
    pub fn new() -> Self {
        let mut rng = TestRng::new("wardline record tests");
        let people = vec![
            person(&mut rng, 1, "sarah.jones", "Dr Sarah Jones"),
            person(&mut rng, 2, "tom.evans", "Dr Tom Evans"),
            person(&mut rng, 3, "priya.shah", "Sister Priya Shah"),
        ];
        Self {
            rng,
            people,
            conv: ConversationId::parse("0193f7c2-2222-7000-8000-000000000010").expect("id"),
        }
    }

    /// `from` sends `body` to everyone else; Tom's device opens it.
    pub fn message(
        &mut self,
        from: usize,
        millis: i64,
        priority: Priority,
        body: Body,
    ) -> ExportedMessage {
        let mut random = [0u8; 10];
        self.rng.try_fill_bytes(&mut random).expect("infallible");
        let sent_at = Timestamp::from_unix_millis(millis).expect("time");
        let sender = &self.people[from];
        let header = Header {
            msg_id: MessageId::generate_v7(millis as u64, random),
            conv_id: self.conv.clone(),
            sender_user: sender.user.clone(),
            sender_device: sender.device.clone(),
            sent_at,
            priority,
            residency: Region::GB,
        };
        let to: Vec<Recipient> = self
            .people
            .iter()
            .map(|p| Recipient {
                device_id: p.device.clone(),
                kem_pk: p.secrets.public().kem_pk,
            })
            .collect();
        let env = envelope::seal_with_rng(header, &body, &sender.secrets, &to, &mut self.rng)
            .expect("seal");
        let tom = &self.people[TOM];
        let recipients = (0..self.people.len())
            .filter(|&i| i != from)
            .map(|i| self.people[i].who.clone())
            .collect();
        ExportedMessage::open(
            env,
            &tom.device,
            &tom.secrets,
            sender.secrets.public().sig_pk,
            sender.who.clone(),
            recipients,
        )
        .expect("Tom's device opens it")
    }

    pub fn options(&self, bundle_type: BundleType) -> ExportOptions {
        ExportOptions {
            bundle_type,
            practitioner_system: "https://fhir.example-trust.nhs.uk/Id/username".to_owned(),
            patient_override: None,
            exported_by: self.people[TOM].who.clone(),
            generated_at: Timestamp::parse("2026-11-23T09:05:00.000Z").expect("time"),
        }
    }
}

pub fn body(text: &str, kind: BodyKind, nhs: Option<&str>, reply_to: Option<MessageId>) -> Body {
    Body {
        text: text.to_owned(),
        kind,
        patient: nhs.map(|n| Patient {
            nhs_number: n.to_owned(),
        }),
        reply_to,
    }
}

pub const T0: i64 = 1_795_419_114_123; // 2026-11-23T07:31:54.123Z

/// The representative exchange: a plan, an urgent reply in Welsh with emoji,
/// and an acknowledgement that names no patient.
pub fn exchange(w: &mut Ward) -> Vec<ExportedMessage> {
    let plan = w.message(
        SARAH,
        T0,
        Priority::Routine,
        body(
            "Bed 4: start bisoprolol 2.5 mg once daily; repeat ECG in the morning.",
            BodyKind::ClinicalNote,
            Some(NHS),
            None,
        ),
    );
    let reply = w.message(
        PRIYA,
        T0 + 754_000,
        Priority::Urgent,
        body(
            "Gwely 4: pwls 38, pwysedd gwaed 85/50 ar ôl y dos cyntaf. Wedi atal bisoprolol. 🚨 Dewch ar unwaith.",
            BodyKind::ClinicalNote,
            Some(NHS),
            Some(plan.envelope.msg_id),
        ),
    );
    let ack = w.message(
        SARAH,
        T0 + 812_500,
        Priority::Urgent,
        body(
            "On my way. Atropine 500 micrograms IV if HR < 40.",
            BodyKind::Message,
            None,
            Some(reply.envelope.msg_id),
        ),
    );
    vec![plan, reply, ack]
}

pub fn json_of(b: &record::Bundle) -> Value {
    serde_json::to_value(b).expect("serialises")
}

pub fn resources<'a>(bundle: &'a Value, kind: &str) -> Vec<&'a Value> {
    bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == kind)
        .collect()
}

pub fn override_options(w: &Ward, bundle_type: BundleType) -> ExportOptions {
    ExportOptions {
        patient_override: Some(NhsNumber::parse(NHS).expect("valid")),
        ..w.options(bundle_type)
    }
}
