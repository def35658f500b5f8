//! The FHIR R4 elements Wardline emits, as plain serde types.
//!
//! Field names and order follow the R4 specification; optional elements are
//! left out when empty (FHIR forbids empty arrays and strings). Unknown
//! elements are ignored when reading, so a bundle a server has touched still
//! parses.

use serde::{Deserialize, Serialize};

use crate::ids::MessageId;

/// FHIR `Bundle`, reduced to the elements Wardline emits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    /// Always `Bundle`.
    pub resource_type: String,
    /// A stable identifier for this export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    /// `collection` or `transaction` (bundle-type value set).
    #[serde(rename = "type")]
    pub bundle_type: String,
    /// When the bundle was assembled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// A Communication then its Provenance, per message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entry: Vec<BundleEntry>,
}

/// FHIR `Bundle.entry`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleEntry {
    /// `urn:uuid:...`, the name other entries use to refer to this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_url: Option<String>,
    /// The resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// How to apply it (transaction bundles only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<BundleRequest>,
}

/// FHIR `Bundle.entry.request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleRequest {
    /// `POST` (http-verb value set).
    pub method: String,
    /// The resource type, e.g. `Communication`.
    pub url: String,
    /// Conditional create: skip if a resource matching this query exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_none_exist: Option<String>,
}

/// A resource in a bundle entry; resource types Wardline does not emit are
/// read as [`Resource::Other`] and ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "resourceType")]
pub enum Resource {
    /// One message.
    Communication(Box<Communication>),
    /// Who signed the message, with the data to check it.
    Provenance(Box<Provenance>),
    /// Any other resource type.
    #[serde(other)]
    Other,
}

/// FHIR `Communication`, in the element order of the R4 specification.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Communication {
    /// Carries the residency tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    /// `urn:uuid:<msg_id>` in system `urn:ietf:rfc:3986`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    /// The message this one answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_response_to: Vec<Reference>,
    /// Always `completed` (event-status value set).
    #[serde(default)]
    pub status: String,
    /// The Wardline message kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<CodeableConcept>,
    /// `routine` or `urgent` (request-priority value set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// The patient, by NHS number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference>,
    /// When the sender sent it (the signed `sent_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<String>,
    /// Recipients, by organisational username.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipient: Vec<Reference>,
    /// The sender, by organisational username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<Reference>,
    /// The text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payload: Vec<Payload>,
}

/// FHIR `Communication.payload`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    /// The message text, exactly as signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_string: Option<String>,
}

/// FHIR `Provenance`, in the element order of the R4 specification.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// The [`ENVELOPE_EXTENSION_URL`](super::ENVELOPE_EXTENSION_URL) extension.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension>,
    /// The Communication, by its `fullUrl`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target: Vec<Reference>,
    /// When the message was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_date_time: Option<String>,
    /// When the export was made.
    #[serde(default)]
    pub recorded: String,
    /// The author (sender) and the enterer (the exporting user).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent: Vec<Agent>,
    /// The sender device's Ed25519 signature.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signature: Vec<Signature>,
}

/// FHIR `Provenance.agent`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    /// `author` or `enterer` (provenance-participant-type).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub agent_type: Option<CodeableConcept>,
    /// The person.
    #[serde(default)]
    pub who: Reference,
}

/// FHIR `Signature` (R4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signature {
    /// "Author's Signature".
    #[serde(default, rename = "type", skip_serializing_if = "Vec::is_empty")]
    pub sig_type: Vec<Coding>,
    /// When signed (the message's `sent_at`).
    #[serde(default)]
    pub when: String,
    /// The signing device.
    #[serde(default)]
    pub who: Reference,
    /// Media type of the signed bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_format: Option<String>,
    /// Media type of the signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig_format: Option<String>,
    /// The 64-byte Ed25519 signature, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// FHIR `Extension`: a value or nested extensions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extension {
    /// Absolute URL, or a simple name inside a complex extension.
    pub url: String,
    /// Nested extensions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension>,
    /// A text value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_string: Option<String>,
    /// A code value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_code: Option<String>,
    /// An integer value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_integer: Option<i64>,
    /// Bytes, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64_binary: Option<String>,
}

/// FHIR `Reference`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reference {
    /// A `fullUrl` in this bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The resource type referred to.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub ref_type: Option<String>,
    /// A logical reference by business identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    /// Text for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

/// FHIR `Identifier`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identifier {
    /// Namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Value within it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// FHIR `Coding`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Coding {
    /// Code system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Text for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

/// FHIR `CodeableConcept`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CodeableConcept {
    /// Codings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coding: Vec<Coding>,
}

/// FHIR `Meta`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tag: Vec<Coding>,
}

pub(crate) fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

pub(crate) fn coding(system: &str, code: &str, display: &str) -> Coding {
    Coding {
        system: s(system),
        code: s(code),
        display: s(display),
    }
}

pub(crate) fn identifier(system: &str, value: &str) -> Identifier {
    Identifier {
        system: s(system),
        value: s(value),
    }
}

pub(crate) fn by_identifier(ref_type: &str, id: Identifier, display: Option<String>) -> Reference {
    Reference {
        reference: None,
        ref_type: s(ref_type),
        identifier: Some(id),
        display,
    }
}

pub(crate) fn urn(msg_id: &MessageId) -> String {
    format!("urn:uuid:{msg_id}")
}

pub(crate) fn find_coding<'a>(codings: &'a [Coding], system: &str) -> Option<&'a str> {
    codings
        .iter()
        .find(|c| c.system.as_deref() == Some(system))
        .and_then(|c| c.code.as_deref())
}
