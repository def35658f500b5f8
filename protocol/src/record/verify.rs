//! Checking an exported bundle: for each Communication, the Provenance that
//! targets it must disclose an envelope whose signature verifies and whose
//! ciphertext decrypts to exactly what the Communication says.

use std::collections::HashSet;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

use super::fhir::{Communication, Payload, Provenance, find_coding, identifier, urn};
use super::{
    AUTHOR_SIGNATURE_CODE, Bundle, BundleEntry, DEVICE_ID_SYSTEM, ENVELOPE_EXTENSION_URL,
    MESSAGE_KIND_SYSTEM, NHS_NUMBER_SYSTEM, NhsNumber, PARTICIPANT_TYPE_SYSTEM, PatientSource,
    RESIDENCY_TAG_SYSTEM, Resource, SIGNATURE_TYPE_SYSTEM, URI_SYSTEM, kind_code,
};
use crate::b64;
use crate::envelope::{self, Envelope, EnvelopeError, Priority, Version};
use crate::ids::{ConversationId, DeviceId, MessageId, UserId};
use crate::keys::SigPublicKey;
use crate::residency::Region;
use crate::timestamp::Timestamp;

fn malformed<E>(name: &'static str) -> impl Fn(E) -> VerifyFailure {
    move |_| VerifyFailure::Malformed(name)
}

/// Why a bundle as a whole cannot be checked. Carries no content: serde's
/// messages can quote the text, which may identify a patient.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The file is not JSON.
    #[error("not JSON (line {line}, column {column})")]
    NotJson {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// JSON, but not a FHIR Bundle in the expected shape.
    #[error("not a FHIR Bundle")]
    NotABundle,
    /// A Bundle holding no Communication, so nothing was verified.
    #[error("the bundle holds no Communication")]
    NoCommunications,
}

/// One check that failed for an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyFailure {
    /// No Provenance targets the Communication.
    #[error("no Provenance targets this Communication")]
    MissingProvenance,
    /// Several Provenances target the Communication.
    #[error("more than one Provenance targets this Communication")]
    AmbiguousProvenance,
    /// A Provenance targets no Communication in the bundle.
    #[error("this Provenance targets no Communication in the bundle")]
    OrphanProvenance,
    /// A required element is missing or malformed; names the element.
    #[error("the Provenance lacks a valid `{0}`")]
    Malformed(&'static str),
    /// The Ed25519 signature does not verify over the disclosed header and ciphertext.
    #[error("the sender device's signature does not verify")]
    BadSignature,
    /// The ciphertext does not decrypt with the disclosed key and header.
    #[error("the ciphertext does not decrypt with the disclosed content key")]
    Decrypt,
    /// The plaintext is not a Wardline message body.
    #[error("the decrypted body is not a valid message body")]
    BadBody,
    /// `Communication.identifier` is not the signed `msg_id`.
    #[error("the Communication identifier is not the signed msg_id")]
    IdentifierMismatch,
    /// The text differs from the signed text.
    #[error("the text differs from the signed text")]
    TextMismatch,
    /// The subject is not the signed patient (or a marked exporter link).
    #[error("the patient differs from the signed patient")]
    PatientMismatch,
    /// The priority differs from the signed priority.
    #[error("the priority differs from the signed priority")]
    PriorityMismatch,
    /// The sent time differs from the signed `sent_at`.
    #[error("the sent time differs from the signed sent_at")]
    SentMismatch,
    /// Sender, author agent and signing device disagree.
    #[error("the sender does not match the Provenance author and signing device")]
    SenderMismatch,
    /// The residency tag differs from the signed residency.
    #[error("the residency tag differs from the signed residency")]
    ResidencyMismatch,
    /// The category differs from the signed message kind.
    #[error("the category differs from the signed message kind")]
    KindMismatch,
    /// `inResponseTo` differs from the signed `reply_to`.
    #[error("inResponseTo differs from the signed reply_to")]
    ReplyMismatch,
}

/// The outcome for one Communication (or one orphan Provenance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryVerdict {
    /// `fullUrl` of the Communication (of the Provenance, for an orphan).
    pub full_url: Option<String>,
    /// The signed message id, when the Provenance discloses a valid one.
    pub msg_id: Option<MessageId>,
    /// The signing device, when disclosed.
    pub sender_device: Option<DeviceId>,
    /// The disclosed signing key: a caller with a directory should also check
    /// that it belongs to `sender_device`, since the bundle cannot prove that.
    pub sender_sig_pk: Option<SigPublicKey>,
    /// Every check that failed; empty when the entry verifies.
    pub failures: Vec<VerifyFailure>,
}

impl EntryVerdict {
    /// True when every check passed.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Parses `bundle_json` and verifies every Communication: one verdict per
/// Communication in bundle order, then one per Provenance that targets none.
pub fn verify_bundle(bundle_json: &str) -> Result<Vec<EntryVerdict>, VerifyError> {
    let value: serde_json::Value =
        serde_json::from_str(bundle_json).map_err(|e| VerifyError::NotJson {
            line: e.line(),
            column: e.column(),
        })?;
    if value.get("resourceType").and_then(|v| v.as_str()) != Some("Bundle") {
        return Err(VerifyError::NotABundle);
    }
    let bundle: Bundle = serde_json::from_value(value).map_err(|_| VerifyError::NotABundle)?;
    let verdicts = verify(&bundle);
    if !bundle
        .entry
        .iter()
        .any(|e| matches!(e.resource, Some(Resource::Communication(_))))
    {
        return Err(VerifyError::NoCommunications);
    }
    Ok(verdicts)
}

/// [`verify_bundle`] for a bundle already parsed.
pub fn verify(bundle: &Bundle) -> Vec<EntryVerdict> {
    let provenances: Vec<(&BundleEntry, &Provenance)> = bundle
        .entry
        .iter()
        .filter_map(|e| match &e.resource {
            Some(Resource::Provenance(p)) => Some((e, &**p)),
            _ => None,
        })
        .collect();
    let targets =
        |p: &Provenance, url: &str| p.target.iter().any(|t| t.reference.as_deref() == Some(url));
    let mut verdicts = Vec::new();
    let mut comm_urls = HashSet::new();
    for e in &bundle.entry {
        let Some(Resource::Communication(c)) = &e.resource else {
            continue;
        };
        let url = e.full_url.as_deref().unwrap_or_default();
        comm_urls.insert(url);
        let mine: Vec<&Provenance> = provenances
            .iter()
            .filter(|(_, p)| !url.is_empty() && targets(p, url))
            .map(|(_, p)| *p)
            .collect();
        let mut verdict = EntryVerdict {
            full_url: e.full_url.clone(),
            msg_id: None,
            sender_device: None,
            sender_sig_pk: None,
            failures: Vec::new(),
        };
        match mine.as_slice() {
            [] => verdict.failures.push(VerifyFailure::MissingProvenance),
            [p] => check_entry(c, p, &mut verdict),
            _ => verdict.failures.push(VerifyFailure::AmbiguousProvenance),
        }
        verdicts.push(verdict);
    }
    for (e, p) in provenances {
        if !comm_urls.iter().any(|u| !u.is_empty() && targets(p, u)) {
            verdicts.push(EntryVerdict {
                full_url: e.full_url.clone(),
                msg_id: None,
                sender_device: None,
                sender_sig_pk: None,
                failures: vec![VerifyFailure::OrphanProvenance],
            });
        }
    }
    verdicts
}

/// What a Provenance discloses, parsed into the envelope it came from.
struct Disclosed {
    envelope: Envelope,
    content_key: Zeroizing<[u8; 32]>,
    sig_pk: SigPublicKey,
    source: PatientSource,
}

fn disclosed(p: &Provenance) -> Result<Disclosed, VerifyFailure> {
    use VerifyFailure::Malformed;
    let ext = p
        .extension
        .iter()
        .find(|e| e.url == ENVELOPE_EXTENSION_URL)
        .ok_or(Malformed("extension"))?;
    let sub = |name: &str| ext.extension.iter().find(|e| e.url == name);
    let text = |name: &'static str| {
        sub(name)
            .and_then(|e| e.value_string.as_deref())
            .ok_or(Malformed(name))
    };
    let bytes = |name: &'static str| {
        sub(name)
            .and_then(|e| e.value_base64_binary.as_deref())
            .and_then(|t| b64::decode(t).ok())
            .ok_or(Malformed(name))
    };
    if sub("version").and_then(|e| e.value_integer) != Some(1) {
        return Err(Malformed("version"));
    }
    let priority = match text("priority")? {
        "routine" => Priority::Routine,
        "urgent" => Priority::Urgent,
        _ => return Err(Malformed("priority")),
    };
    let source = match sub("patient_source").and_then(|e| e.value_code.as_deref()) {
        Some("message") => PatientSource::Message,
        Some("exporter") => PatientSource::Exporter,
        _ => return Err(Malformed("patient_source")),
    };
    let sig = p
        .signature
        .iter()
        .find(|s| find_coding(&s.sig_type, SIGNATURE_TYPE_SYSTEM) == Some(AUTHOR_SIGNATURE_CODE))
        .and_then(|s| s.data.as_deref())
        .and_then(|d| b64::decode(d).ok())
        .and_then(|d| <[u8; 64]>::try_from(d).ok())
        .ok_or(Malformed("signature"))?;
    let content_key: [u8; 32] = bytes("content_key")?
        .try_into()
        .map_err(malformed("content_key"))?;
    let sig_pk: [u8; 32] = bytes("sender_sig_pk")?
        .try_into()
        .map_err(malformed("sender_sig_pk"))?;
    Ok(Disclosed {
        envelope: Envelope {
            v: Version,
            msg_id: MessageId::parse(text("msg_id")?).map_err(malformed("msg_id"))?,
            conv_id: ConversationId::parse(text("conv_id")?).map_err(malformed("conv_id"))?,
            sender_user: UserId::parse(text("sender_user")?).map_err(malformed("sender_user"))?,
            sender_device: DeviceId::parse(text("sender_device")?)
                .map_err(malformed("sender_device"))?,
            sent_at: Timestamp::parse(text("sent_at")?).map_err(malformed("sent_at"))?,
            priority,
            residency: Region::parse(text("residency")?).map_err(malformed("residency"))?,
            nonce: bytes("nonce")?.try_into().map_err(malformed("nonce"))?,
            ciphertext: bytes("ciphertext")?,
            sig,
            keys: Vec::new(),
        },
        content_key: Zeroizing::new(content_key),
        sig_pk: SigPublicKey::from_bytes(sig_pk),
        source,
    })
}

fn same_instant(a: &str, b: &str) -> bool {
    // Compared as instants: a FHIR server may re-spell the same time.
    match (
        OffsetDateTime::parse(a, &Rfc3339),
        OffsetDateTime::parse(b, &Rfc3339),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn check_entry(c: &Communication, p: &Provenance, v: &mut EntryVerdict) {
    use VerifyFailure as F;
    let d = match disclosed(p) {
        Ok(d) => d,
        Err(f) => return v.failures.push(f),
    };
    let e = &d.envelope;
    v.msg_id = Some(e.msg_id);
    v.sender_device = Some(e.sender_device.clone());
    v.sender_sig_pk = Some(d.sig_pk);
    let mut fail = |ok: bool, f: F| {
        if !ok {
            v.failures.push(f);
        }
    };

    // The cryptographic checks: signed by the disclosed key, and the
    // ciphertext opens under the disclosed key and the same header.
    fail(e.verify_signature(&d.sig_pk).is_ok(), F::BadSignature);
    let body = match envelope::decrypt_with_content_key(e, &d.content_key) {
        Ok(b) => Some(b),
        Err(EnvelopeError::BadBody) => {
            fail(false, F::BadBody);
            None
        }
        Err(_) => {
            fail(false, F::Decrypt);
            None
        }
    };

    // The Communication must say what was signed.
    let msg_urn = urn(&e.msg_id);
    fail(
        c.identifier.contains(&identifier(URI_SYSTEM, &msg_urn)),
        F::IdentifierMismatch,
    );
    fail(
        c.priority.as_deref() == Some(e.priority.as_str()),
        F::PriorityMismatch,
    );
    fail(
        c.sent
            .as_deref()
            .is_some_and(|t| same_instant(t, e.sent_at.as_str())),
        F::SentMismatch,
    );
    let tags = c
        .meta
        .as_ref()
        .map(|m| m.tag.as_slice())
        .unwrap_or_default();
    fail(
        find_coding(tags, RESIDENCY_TAG_SYSTEM) == Some(e.residency.as_str()),
        F::ResidencyMismatch,
    );
    let author = p.agent.iter().find(|a| {
        a.agent_type
            .as_ref()
            .is_some_and(|t| find_coding(&t.coding, PARTICIPANT_TYPE_SYSTEM) == Some("author"))
    });
    let signer = p
        .signature
        .iter()
        .find(|s| find_coding(&s.sig_type, SIGNATURE_TYPE_SYSTEM) == Some(AUTHOR_SIGNATURE_CODE))
        .and_then(|s| s.who.identifier.as_ref());
    let sender = c.sender.as_ref().and_then(|r| r.identifier.as_ref());
    fail(
        sender.is_some_and(|s| s.value.is_some())
            && sender == author.and_then(|a| a.who.identifier.as_ref())
            && signer == Some(&identifier(DEVICE_ID_SYSTEM, e.sender_device.as_str())),
        F::SenderMismatch,
    );
    let Some(body) = body else { return };

    let text_ok = matches!(c.payload.as_slice(),
        [Payload { content_string: Some(t) }] if *t == body.text);
    fail(text_ok, F::TextMismatch);
    let subject = c
        .subject
        .as_ref()
        .and_then(|r| r.identifier.as_ref())
        .filter(|i| i.system.as_deref() == Some(NHS_NUMBER_SYSTEM))
        .and_then(|i| i.value.as_deref())
        .and_then(|n| NhsNumber::parse(n).ok());
    let patient_ok = match (&body.patient, d.source, &subject) {
        (Some(p), PatientSource::Message, Some(s)) => p.nhs_number == s.as_str(),
        (None, PatientSource::Exporter, Some(_)) => true,
        _ => false,
    };
    fail(patient_ok, F::PatientMismatch);
    let kind = c
        .category
        .first()
        .map(|k| k.coding.as_slice())
        .unwrap_or_default();
    fail(
        c.category.len() == 1
            && find_coding(kind, MESSAGE_KIND_SYSTEM) == Some(kind_code(body.kind).0),
        F::KindMismatch,
    );
    let reply_ok = match (body.reply_to, c.in_response_to.as_slice()) {
        (None, []) => true,
        (Some(r), [got]) => {
            let want = urn(&r);
            got.identifier == Some(identifier(URI_SYSTEM, &want))
                && got.reference.as_ref().is_none_or(|u| *u == want)
        }
        _ => false,
    };
    fail(reply_ok, F::ReplyMismatch);
}
