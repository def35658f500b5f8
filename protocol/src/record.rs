//! Export to the health record (rule R8): opened messages as an HL7 FHIR R4
//! `Bundle` of `Communication` resources, each with a `Provenance` that lets
//! anyone check that this exact text was signed by the sender's device.
//!
//! The layout is specified in `docs/HEALTH-RECORD.md`; in short, the
//! Provenance discloses the signed header fields, the nonce, the ciphertext
//! and that one message's content key (content keys are per message, so this
//! reveals nothing else), plus the sender device's public signing key. A
//! verifier rebuilds the header bytes, checks the Ed25519 signature, decrypts,
//! and compares the plaintext with the Communication ([`verify_bundle`]).
//!
//! The FHIR types are small serde structs of our own rather than the `fhir`
//! crate: we emit two resource types and a few dozen elements, while its R4
//! feature compiles the whole generated R4 model (146 resources, every code
//! system as an enum) into every build of the server and the client (see
//! HEALTH-RECORD.md). Our types keep strings exactly as written and read
//! back any bundle (unknown elements are ignored), so [`verify_bundle`] can
//! report a bad value in one entry instead of refusing the whole file.
//!
//! Pure: no I/O and no clock; the export time is passed in.

use std::collections::HashSet;
use std::fmt;

use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::b64;
use crate::envelope::{self, Body, BodyKind, Envelope, EnvelopeError};
use crate::ids::{DeviceId, MessageId, Username};
use crate::keys::{DeviceSecrets, SigPublicKey};
use crate::timestamp::Timestamp;

mod fhir;
mod verify;

pub use fhir::{
    Agent, Bundle, BundleEntry, BundleRequest, CodeableConcept, Coding, Communication, Extension,
    Identifier, Meta, Payload, Provenance, Reference, Resource, Signature,
};
use fhir::{by_identifier, coding, identifier, s, urn};
pub use verify::{EntryVerdict, VerifyError, VerifyFailure, verify, verify_bundle};

macro_rules! wardline_url {
    ($path:literal) => {
        concat!("https://wardline.nhs.example/fhir", $path)
    };
}

/// Base of every URL Wardline defines for its FHIR output.
pub const WARDLINE_FHIR_BASE: &str = wardline_url!("");
/// The complex extension on each Provenance carrying the signed envelope data.
pub const ENVELOPE_EXTENSION_URL: &str = wardline_url!("/StructureDefinition/signed-envelope");
/// Code system of the `meta.tag` carrying the residency region (ISO 3166-1 alpha-2 codes).
pub const RESIDENCY_TAG_SYSTEM: &str = wardline_url!("/CodeSystem/residency");
/// Code system of `Communication.category`: `message` or `clinical_note`.
pub const MESSAGE_KIND_SYSTEM: &str = wardline_url!("/CodeSystem/message-kind");
/// Identifier system of Wardline device ids (the signing device).
pub const DEVICE_ID_SYSTEM: &str = wardline_url!("/Id/device");
/// Default identifier system of organisational usernames; a trust sets its own.
pub const DEFAULT_PRACTITIONER_SYSTEM: &str = wardline_url!("/Id/username");
/// NHS England's identifier system for NHS numbers.
pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
/// Identifier system for identifiers that are URIs (here `urn:uuid:` + msg_id).
pub const URI_SYSTEM: &str = "urn:ietf:rfc:3986";
/// HL7 code system of Provenance agent types.
pub const PARTICIPANT_TYPE_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/provenance-participant-type";
/// ASTM E1762 code system of signature types.
pub const SIGNATURE_TYPE_SYSTEM: &str = "urn:iso-astm:E1762-95:2013";
/// "Author's Signature" in [`SIGNATURE_TYPE_SYSTEM`].
pub const AUTHOR_SIGNATURE_CODE: &str = "1.2.840.10065.1.12.1.1";
/// `sigFormat` and `targetFormat` of the signature: raw Ed25519 over raw bytes
/// (no registered media type exists for either).
pub const SIGNATURE_MEDIA_TYPE: &str = "application/octet-stream";

// ---------------------------------------------------------------- NHS numbers

/// Why a string is not an NHS number. Carries no digits: errors end up in
/// logs, and an NHS number is person-identifiable (R9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NhsNumberError {
    /// Not exactly ten ASCII digits.
    #[error("an NHS number is exactly 10 digits")]
    NotTenDigits,
    /// Ten digits, but the modulus 11 check digit is wrong.
    #[error("the NHS number's check digit is wrong")]
    BadCheckDigit,
}

/// A validated NHS number: ten digits, the last a modulus 11 check digit.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NhsNumber(String);

impl NhsNumber {
    /// Validates the canonical form carried in bodies and FHIR identifiers:
    /// ten digits, no spaces (clients normalise what people type first).
    pub fn parse(text: &str) -> Result<Self, NhsNumberError> {
        let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
        if text.len() != 10 || digits.len() != 10 {
            return Err(NhsNumberError::NotTenDigits);
        }
        // Weights 10 down to 2 over the first nine digits.
        let sum: u32 = digits[..9]
            .iter()
            .zip((2..=10).rev())
            .map(|(d, w)| d * w)
            .sum();
        let check = match 11 - sum % 11 {
            11 => 0,
            // A remainder giving 10 is never issued, so it cannot be valid.
            10 => return Err(NhsNumberError::BadCheckDigit),
            c => c,
        };
        if check != digits[9] {
            return Err(NhsNumberError::BadCheckDigit);
        }
        Ok(Self(text.to_owned()))
    }

    /// The ten digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NhsNumber({})", self.0)
    }
}

impl fmt::Display for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------- building

/// A person in the export: organisational username and, if known, a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// The organisational username (the practitioner identifier value).
    pub username: Username,
    /// The display name, for people reading the record.
    pub display: Option<String>,
}

/// One message this device has opened, with what its export needs.
pub struct ExportedMessage {
    /// The envelope as received (its `keys` are not exported).
    pub envelope: Envelope,
    /// The opened body.
    pub body: Body,
    /// This message's content key, disclosed in the Provenance.
    pub content_key: Zeroizing<[u8; 32]>,
    /// The sending user.
    pub sender: Participant,
    /// The other members the message was sent to.
    pub recipients: Vec<Participant>,
    /// The sender device's Ed25519 key, from the directory at receipt.
    pub sender_sig_pk: SigPublicKey,
}

impl ExportedMessage {
    /// Opens `envelope` as device `me` and keeps what the export needs. The
    /// caller must have checked that `sender_sig_pk` belongs to a device of
    /// the envelope's `sender_user`, and that `sender` is that user.
    pub fn open(
        envelope: Envelope,
        me: &DeviceId,
        my_secrets: &DeviceSecrets,
        sender_sig_pk: SigPublicKey,
        sender: Participant,
        recipients: Vec<Participant>,
    ) -> Result<Self, EnvelopeError> {
        let content_key = envelope::open_content_key(&envelope, me, my_secrets, &sender_sig_pk)?;
        let body = envelope::decrypt_with_content_key(&envelope, &content_key)?;
        Ok(Self {
            envelope,
            body,
            content_key,
            sender,
            recipients,
            sender_sig_pk,
        })
    }
}

impl fmt::Debug for ExportedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The content key is left out: it is a secret until exported.
        f.debug_struct("ExportedMessage")
            .field("msg_id", &self.envelope.msg_id)
            .field("sender", &self.sender)
            .field("recipients", &self.recipients)
            .finish_non_exhaustive()
    }
}

/// FHIR bundle type of the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleType {
    /// A file to keep or hand over (`collection`).
    Collection,
    /// To POST to a FHIR server's base URL (`transaction`).
    Transaction,
}

impl BundleType {
    /// The bundle-type code.
    pub fn as_str(self) -> &'static str {
        match self {
            BundleType::Collection => "collection",
            BundleType::Transaction => "transaction",
        }
    }
}

/// How to build the bundle.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Collection or transaction.
    pub bundle_type: BundleType,
    /// Identifier system of organisational usernames, an absolute URI
    /// (e.g. [`DEFAULT_PRACTITIONER_SYSTEM`] or the trust's own).
    pub practitioner_system: String,
    /// Patient to link messages that carry no patient to. Set only after the
    /// user has confirmed: it asserts a link the sender did not sign.
    pub patient_override: Option<NhsNumber>,
    /// The user making the export, recorded as the Provenance `enterer`.
    pub exported_by: Participant,
    /// When the export is made (`Bundle.timestamp`, `Provenance.recorded`).
    pub generated_at: Timestamp,
}

/// Why a bundle could not be built. Names the message, never its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Nothing to export.
    #[error("no messages to export")]
    NoMessages,
    /// The practitioner identifier system is not an absolute URI.
    #[error(
        "the practitioner identifier system must be an absolute URI, like https://fhir.example.nhs.uk/Id/username"
    )]
    BadPractitionerSystem,
    /// The same message was given twice.
    #[error("message {0} is listed twice")]
    Duplicate(MessageId),
    /// The message names no patient and no patient override was given.
    #[error("message {0} names no patient; give the patient's NHS number to link it")]
    MissingPatient(MessageId),
    /// The message's (or the override's) NHS number is invalid.
    #[error("message {msg_id}: {reason}")]
    InvalidNhsNumber {
        /// The message.
        msg_id: MessageId,
        /// What is wrong with the number.
        reason: NhsNumberError,
    },
    /// The message names a different patient from the override.
    #[error("message {0} concerns a different patient from the one given")]
    PatientMismatch(MessageId),
    /// The message has no text; FHIR strings may not be empty.
    #[error("message {0} has no text")]
    EmptyText(MessageId),
    /// The envelope does not verify or decrypt with the given key and sender key.
    #[error("message {msg_id} cannot be verified: {reason}")]
    Unverifiable {
        /// The message.
        msg_id: MessageId,
        /// Which check failed.
        reason: EnvelopeError,
    },
    /// The given body is not what the envelope decrypts to.
    #[error("message {0}: the given body is not the envelope's")]
    BodyMismatch(MessageId),
}

/// Who linked the Communication to its patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatientSource {
    /// The signed body names the patient.
    Message,
    /// The exporting user asserted the link (patient override).
    Exporter,
}

impl PatientSource {
    fn as_str(self) -> &'static str {
        match self {
            PatientSource::Message => "message",
            PatientSource::Exporter => "exporter",
        }
    }
}

pub(crate) fn kind_code(kind: BodyKind) -> (&'static str, &'static str) {
    match kind {
        BodyKind::Message => ("message", "Message"),
        BodyKind::ClinicalNote => ("clinical_note", "Clinical note"),
    }
}

/// A name-based UUID (version 8, RFC 9562 §5.8) from SHA-256 of a label and
/// parts, so re-exporting the same messages yields the same bundle.
fn derived_urn(label: &str, parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    h.update(b"wardline/v1/fhir/");
    h.update(label.as_bytes());
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.finalize()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    format!("urn:uuid:{}", uuid::Uuid::from_bytes(b).hyphenated())
}

fn provenance_url(msg_id: &MessageId) -> String {
    derived_urn("provenance", &[msg_id.as_bytes()])
}

fn practitioner(system: &str, p: &Participant) -> Reference {
    // FHIR forbids empty strings, so a blank name is left out.
    let display = p
        .display
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty());
    by_identifier(
        "Practitioner",
        identifier(system, p.username.as_str()),
        display.map(str::to_owned),
    )
}

fn agent(code: &str, display: &str, who: Reference) -> Agent {
    Agent {
        agent_type: Some(CodeableConcept {
            coding: vec![coding(PARTICIPANT_TYPE_SYSTEM, code, display)],
        }),
        who,
    }
}

fn sub_ext(name: &str) -> Extension {
    Extension {
        url: name.to_owned(),
        ..Extension::default()
    }
}

fn ext_string(name: &str, v: &str) -> Extension {
    Extension {
        value_string: s(v),
        ..sub_ext(name)
    }
}

fn ext_bytes(name: &str, v: &[u8]) -> Extension {
    Extension {
        value_base64_binary: Some(b64::encode(v)),
        ..sub_ext(name)
    }
}

fn envelope_extension(m: &ExportedMessage, source: PatientSource) -> Extension {
    let e = &m.envelope;
    Extension {
        url: ENVELOPE_EXTENSION_URL.to_owned(),
        extension: vec![
            Extension {
                value_integer: Some(1),
                ..sub_ext("version")
            },
            ext_string("msg_id", &e.msg_id.to_text()),
            ext_string("conv_id", e.conv_id.as_str()),
            ext_string("sender_user", e.sender_user.as_str()),
            ext_string("sender_device", e.sender_device.as_str()),
            ext_string("sent_at", e.sent_at.as_str()),
            ext_string("priority", e.priority.as_str()),
            ext_string("residency", e.residency.as_str()),
            ext_bytes("nonce", &e.nonce),
            ext_bytes("ciphertext", &e.ciphertext),
            ext_bytes("content_key", m.content_key.as_slice()),
            ext_bytes("sender_sig_pk", m.sender_sig_pk.as_bytes()),
            Extension {
                value_code: s(source.as_str()),
                ..sub_ext("patient_source")
            },
        ],
        ..Extension::default()
    }
}

fn is_absolute_uri(u: &str) -> bool {
    // scheme ":" rest, with an RFC 3986 scheme and no whitespace.
    match u.split_once(':') {
        Some((scheme, rest)) => {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                && !rest.is_empty()
                && !u.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// Builds the bundle: per message, in the order given, a Communication and
/// its Provenance. Every message is checked first (signature, decryption
/// with the given key, body, NHS number) so that nothing unverifiable or
/// unattributable reaches a health record.
pub fn build_bundle(
    messages: &[ExportedMessage],
    options: &ExportOptions,
) -> Result<Bundle, RecordError> {
    if messages.is_empty() {
        return Err(RecordError::NoMessages);
    }
    if !is_absolute_uri(&options.practitioner_system) {
        return Err(RecordError::BadPractitionerSystem);
    }
    let mut in_bundle = HashSet::new();
    for m in messages {
        if !in_bundle.insert(m.envelope.msg_id) {
            return Err(RecordError::Duplicate(m.envelope.msg_id));
        }
    }
    let mut entry = Vec::with_capacity(messages.len() * 2);
    for m in messages {
        let (communication, provenance) = map_message(m, options, &in_bundle)?;
        let msg_urn = urn(&m.envelope.msg_id);
        let request = |url: &str, if_none_exist: String| {
            (options.bundle_type == BundleType::Transaction).then(|| BundleRequest {
                method: "POST".to_owned(),
                url: url.to_owned(),
                if_none_exist: Some(if_none_exist),
            })
        };
        // Conditional creates make re-posting the same export harmless.
        entry.push(BundleEntry {
            full_url: Some(msg_urn.clone()),
            resource: Some(Resource::Communication(Box::new(communication))),
            request: request(
                "Communication",
                format!("identifier={URI_SYSTEM}|{msg_urn}"),
            ),
        });
        entry.push(BundleEntry {
            full_url: Some(provenance_url(&m.envelope.msg_id)),
            resource: Some(Resource::Provenance(Box::new(provenance))),
            request: request(
                "Provenance",
                format!("target:Communication.identifier={URI_SYSTEM}|{msg_urn}"),
            ),
        });
    }
    let ids: Vec<&[u8]> = messages
        .iter()
        .map(|m| &m.envelope.msg_id.as_bytes()[..])
        .collect();
    let mut parts = vec![options.generated_at.as_str().as_bytes()];
    parts.extend(ids);
    Ok(Bundle {
        resource_type: "Bundle".to_owned(),
        identifier: Some(identifier(URI_SYSTEM, &derived_urn("bundle", &parts))),
        bundle_type: options.bundle_type.as_str().to_owned(),
        timestamp: s(options.generated_at.as_str()),
        entry,
    })
}

fn map_message(
    m: &ExportedMessage,
    o: &ExportOptions,
    in_bundle: &HashSet<MessageId>,
) -> Result<(Communication, Provenance), RecordError> {
    let e = &m.envelope;
    let msg_id = e.msg_id;
    let unverifiable = |reason| RecordError::Unverifiable { msg_id, reason };
    e.verify_signature(&m.sender_sig_pk).map_err(unverifiable)?;
    if envelope::decrypt_with_content_key(e, &m.content_key).map_err(unverifiable)? != m.body {
        return Err(RecordError::BodyMismatch(msg_id));
    }
    if m.body.text.trim().is_empty() {
        return Err(RecordError::EmptyText(msg_id));
    }
    let (patient, source) = match (&m.body.patient, &o.patient_override) {
        (Some(p), over) => {
            let n = NhsNumber::parse(&p.nhs_number)
                .map_err(|reason| RecordError::InvalidNhsNumber { msg_id, reason })?;
            if over.as_ref().is_some_and(|o| *o != n) {
                return Err(RecordError::PatientMismatch(msg_id));
            }
            (n, PatientSource::Message)
        }
        (None, Some(over)) => (over.clone(), PatientSource::Exporter),
        (None, None) => return Err(RecordError::MissingPatient(msg_id)),
    };
    let reply = m.body.reply_to.map(|r| Reference {
        // A reference inside the bundle when the original is exported too;
        // the identifier always, so a FHIR server can resolve it later.
        reference: in_bundle.contains(&r).then(|| urn(&r)),
        ..by_identifier("Communication", identifier(URI_SYSTEM, &urn(&r)), None)
    });
    let (kind, kind_display) = kind_code(m.body.kind);
    let sys = &o.practitioner_system;
    let communication = Communication {
        meta: Some(Meta {
            tag: vec![coding(
                RESIDENCY_TAG_SYSTEM,
                e.residency.as_str(),
                &format!("Data residency {}", e.residency),
            )],
        }),
        identifier: vec![identifier(URI_SYSTEM, &urn(&msg_id))],
        in_response_to: reply.into_iter().collect(),
        status: "completed".to_owned(),
        category: vec![CodeableConcept {
            coding: vec![coding(MESSAGE_KIND_SYSTEM, kind, kind_display)],
        }],
        priority: s(e.priority.as_str()),
        subject: Some(by_identifier(
            "Patient",
            identifier(NHS_NUMBER_SYSTEM, patient.as_str()),
            None,
        )),
        sent: s(e.sent_at.as_str()),
        recipient: m.recipients.iter().map(|r| practitioner(sys, r)).collect(),
        sender: Some(practitioner(sys, &m.sender)),
        payload: vec![Payload {
            content_string: Some(m.body.text.clone()),
        }],
    };
    let provenance = Provenance {
        extension: vec![envelope_extension(m, source)],
        target: vec![Reference {
            reference: Some(urn(&msg_id)),
            ..Reference::default()
        }],
        occurred_date_time: s(e.sent_at.as_str()),
        recorded: o.generated_at.as_str().to_owned(),
        agent: vec![
            agent("author", "Author", practitioner(sys, &m.sender)),
            agent("enterer", "Enterer", practitioner(sys, &o.exported_by)),
        ],
        signature: vec![Signature {
            sig_type: vec![coding(
                SIGNATURE_TYPE_SYSTEM,
                AUTHOR_SIGNATURE_CODE,
                "Author's Signature",
            )],
            when: e.sent_at.as_str().to_owned(),
            who: by_identifier(
                "Device",
                identifier(DEVICE_ID_SYSTEM, e.sender_device.as_str()),
                None,
            ),
            target_format: s(SIGNATURE_MEDIA_TYPE),
            sig_format: s(SIGNATURE_MEDIA_TYPE),
            data: Some(b64::encode(e.sig)),
        }],
    };
    Ok((communication, provenance))
}
