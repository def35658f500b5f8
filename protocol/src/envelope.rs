//! The v1 envelope: seal a message body for a set of recipient devices and
//! open it again (PROTOCOL.md, "Envelope").
//!
//! The body is AES-256-GCM encrypted under a fresh 32-byte content key; the
//! key is wrapped to every recipient device with HPKE (X25519, HKDF-SHA256,
//! AES-256-GCM); the sender device signs the header and ciphertext with
//! Ed25519. Every field of the header is bound into the AEAD's associated data
//! and into the signature, so no header field can be changed unnoticed.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead as _, KeyInit as _, Nonce, Payload};
use hpke::{Deserializable as _, OpModeR, OpModeS, Serializable as _};
use rand_core::CryptoRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::b64;
use crate::ids::{ConversationId, DeviceId, MessageId, UserId};
use crate::keys::{DeviceSecrets, KemPublicKey, SigPublicKey};
use crate::residency::Region;
use crate::timestamp::Timestamp;

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type HpkeAead = hpke::aead::AesGcm256;

const HEADER_LABEL: &[u8] = b"wardline/v1/header";
const SIGNATURE_LABEL: &[u8] = b"wardline/v1/signature";
const KEY_WRAP_INFO: &[u8] = b"wardline/v1/content-key";

/// Why an envelope could not be sealed or opened. Deliberately coarse: it
/// says which check failed, never anything about keys or plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The signature does not verify under the sender device's key.
    #[error("the sender's signature does not verify")]
    BadSignature,
    /// The envelope holds no key entry for the opening device.
    #[error("the envelope holds no key for this device")]
    NoKeyForDevice,
    /// The key entry for this device does not open.
    #[error("the content key could not be unwrapped")]
    KeyUnwrap,
    /// The ciphertext does not decrypt under the content key and header.
    #[error("the message does not decrypt")]
    Decrypt,
    /// The plaintext is not a valid body.
    #[error("the decrypted body is not valid")]
    BadBody,
    /// A recipient public key is unusable, or there are no recipients.
    #[error("cannot seal to these recipients")]
    Seal,
}

/// How urgently the message should reach its readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Ordinary clinical traffic.
    Routine,
    /// Needs attention now; re-notified until read.
    Urgent,
}

impl Priority {
    /// The wire spelling, as bound into the header.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Routine => "routine",
            Priority::Urgent => "urgent",
        }
    }
}

/// What kind of content the body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyKind {
    /// Conversation.
    Message,
    /// A clinical decision or advice, meant for the health record.
    ClinicalNote,
}

/// The patient a message concerns. Travels only inside the encrypted body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patient {
    /// The 10-digit NHS number.
    pub nhs_number: String,
}

/// The plaintext of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    /// What the sender wrote.
    pub text: String,
    /// Conversation or clinical note.
    pub kind: BodyKind,
    /// The patient concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<Patient>,
    /// The message this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageId>,
}

/// The header fields: visible to the server, bound to the ciphertext and signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Sender-made UUIDv7.
    pub msg_id: MessageId,
    /// Conversation it belongs to.
    pub conv_id: ConversationId,
    /// Sending user.
    pub sender_user: UserId,
    /// Sending device.
    pub sender_device: DeviceId,
    /// When the sender sent it.
    pub sent_at: Timestamp,
    /// Routine or urgent.
    pub priority: Priority,
    /// Region whose rules govern where it is stored.
    pub residency: Region,
}

impl Header {
    /// The header bytes (the AEAD associated data): a label, then each field
    /// as a 4-byte big-endian length and its UTF-8 bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let msg_id = self.msg_id.to_text();
        let fields: [&str; 7] = [
            &msg_id,
            self.conv_id.as_str(),
            self.sender_user.as_str(),
            self.sender_device.as_str(),
            self.sent_at.as_str(),
            self.priority.as_str(),
            self.residency.as_str(),
        ];
        let len = HEADER_LABEL.len() + fields.iter().map(|f| 4 + f.len()).sum::<usize>();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(HEADER_LABEL);
        for f in fields {
            // Ids are at most 64 bytes, so the length always fits.
            out.extend_from_slice(&(f.len() as u32).to_be_bytes());
            out.extend_from_slice(f.as_bytes());
        }
        out
    }
}

/// One recipient device's wrapped copy of the content key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// The device that can open it.
    pub device_id: DeviceId,
    /// HPKE encapsulated key.
    #[serde(with = "b64")]
    pub enc: [u8; 32],
    /// The content key sealed with HPKE (32 bytes and a 16-byte tag).
    #[serde(with = "b64")]
    pub wrapped: [u8; 48],
}

/// A device a message is sealed to.
#[derive(Debug, Clone)]
pub struct Recipient {
    /// The device.
    pub device_id: DeviceId,
    /// Its published X25519 key.
    pub kem_pk: KemPublicKey,
}

/// A sealed message as it travels: header, ciphertext, key entries, signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Always 1.
    pub v: Version,
    /// Sender-made UUIDv7.
    pub msg_id: MessageId,
    /// Conversation.
    pub conv_id: ConversationId,
    /// Sending user.
    pub sender_user: UserId,
    /// Sending device.
    pub sender_device: DeviceId,
    /// When sent.
    pub sent_at: Timestamp,
    /// Routine or urgent.
    pub priority: Priority,
    /// Storage region.
    pub residency: Region,
    /// AES-GCM nonce.
    #[serde(with = "b64")]
    pub nonce: [u8; 12],
    /// AES-256-GCM ciphertext with its tag.
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
    /// Ed25519 signature of the sender device.
    #[serde(with = "b64")]
    pub sig: [u8; 64],
    /// One entry per recipient device. Last, so a server can splice in a
    /// single device's entry after the shared part (see `wire::MessagePush`).
    pub keys: Vec<KeyEntry>,
}

/// The envelope version: only `1` exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Version;

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(1)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u64::deserialize(d)? {
            1 => Ok(Version),
            other => Err(serde::de::Error::custom(format!(
                "unsupported envelope version {other}"
            ))),
        }
    }
}

impl Envelope {
    /// The header fields of this envelope.
    pub fn header(&self) -> Header {
        Header {
            msg_id: self.msg_id,
            conv_id: self.conv_id.clone(),
            sender_user: self.sender_user.clone(),
            sender_device: self.sender_device.clone(),
            sent_at: self.sent_at.clone(),
            priority: self.priority,
            residency: self.residency,
        }
    }

    /// The bytes the sender signed: a label, SHA-256 of the header bytes,
    /// SHA-256 of nonce ‖ ciphertext.
    pub fn signature_input(&self) -> Vec<u8> {
        signature_input(&self.header().to_bytes(), &self.nonce, &self.ciphertext)
    }

    /// Checks the sender device's signature.
    pub fn verify_signature(&self, sender_sig_pk: &SigPublicKey) -> Result<(), EnvelopeError> {
        sender_sig_pk
            .verify(&self.signature_input(), &self.sig)
            .map_err(|_| EnvelopeError::BadSignature)
    }
}

fn signature_input(header: &[u8], nonce: &[u8; 12], ciphertext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIGNATURE_LABEL.len() + 64);
    out.extend_from_slice(SIGNATURE_LABEL);
    out.extend_from_slice(&Sha256::digest(header));
    let mut h = Sha256::new();
    h.update(nonce);
    h.update(ciphertext);
    out.extend_from_slice(&h.finalize());
    out
}

/// Seals `body` for `recipients`, signed by `sender`, with fresh randomness.
pub fn seal(
    header: Header,
    body: &Body,
    sender: &DeviceSecrets,
    recipients: &[Recipient],
) -> Result<Envelope, EnvelopeError> {
    seal_with_rng(header, body, sender, recipients, &mut crate::rng::system())
}

/// [`seal`] with the caller's random generator (deterministic in tests).
pub fn seal_with_rng(
    header: Header,
    body: &Body,
    sender: &DeviceSecrets,
    recipients: &[Recipient],
    rng: &mut impl CryptoRng,
) -> Result<Envelope, EnvelopeError> {
    if recipients.is_empty() {
        return Err(EnvelopeError::Seal);
    }
    let aad = header.to_bytes();
    let mut content_key = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(content_key.as_mut());
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut nonce);

    let plaintext = Zeroizing::new(serde_json::to_vec(body).map_err(|_| EnvelopeError::Seal)?);
    let cipher =
        Aes256Gcm::new_from_slice(content_key.as_ref()).map_err(|_| EnvelopeError::Seal)?;
    let ciphertext = cipher
        .encrypt(
            &Nonce::<Aes256Gcm>::from(nonce),
            Payload {
                msg: &plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| EnvelopeError::Seal)?;

    let mut keys = Vec::with_capacity(recipients.len());
    for r in recipients {
        let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(r.kem_pk.as_bytes())
            .map_err(|_| EnvelopeError::Seal)?;
        let (enc, wrapped) = hpke::single_shot_seal_with_rng::<HpkeAead, Kdf, Kem>(
            &OpModeS::Base,
            &pk,
            KEY_WRAP_INFO,
            content_key.as_ref(),
            &aad,
            rng,
        )
        .map_err(|_| EnvelopeError::Seal)?;
        keys.push(KeyEntry {
            device_id: r.device_id.clone(),
            enc: enc.to_bytes().into(),
            wrapped: wrapped.try_into().map_err(|_| EnvelopeError::Seal)?,
        });
    }

    let sig = sender.sign(&signature_input(&aad, &nonce, &ciphertext));
    Ok(Envelope {
        v: Version,
        msg_id: header.msg_id,
        conv_id: header.conv_id,
        sender_user: header.sender_user,
        sender_device: header.sender_device,
        sent_at: header.sent_at,
        priority: header.priority,
        residency: header.residency,
        nonce,
        ciphertext,
        sig,
        keys,
    })
}

/// Opens `envelope` as device `me`: verifies the signature with the sender
/// device's key, unwraps this device's content key, decrypts and parses the
/// body. The caller must have checked that `sender_sig_pk` belongs to a
/// device of `envelope.sender_user`.
pub fn open(
    envelope: &Envelope,
    me: &DeviceId,
    my_secrets: &DeviceSecrets,
    sender_sig_pk: &SigPublicKey,
) -> Result<Body, EnvelopeError> {
    let key = open_content_key(envelope, me, my_secrets, sender_sig_pk)?;
    decrypt_with_content_key(envelope, &key)
}

/// Verifies the envelope and returns this device's content key. Revealing one
/// message's content key exposes only that message (used for attribution).
pub fn open_content_key(
    envelope: &Envelope,
    me: &DeviceId,
    my_secrets: &DeviceSecrets,
    sender_sig_pk: &SigPublicKey,
) -> Result<Zeroizing<[u8; 32]>, EnvelopeError> {
    envelope.verify_signature(sender_sig_pk)?;
    let entry = envelope
        .keys
        .iter()
        .find(|k| &k.device_id == me)
        .ok_or(EnvelopeError::NoKeyForDevice)?;
    let aad = envelope.header().to_bytes();
    let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(my_secrets.kem_secret_bytes())
        .map_err(|_| EnvelopeError::KeyUnwrap)?;
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&entry.enc)
        .map_err(|_| EnvelopeError::KeyUnwrap)?;
    let key = Zeroizing::new(
        hpke::single_shot_open::<HpkeAead, Kdf, Kem>(
            &OpModeR::Base,
            &sk,
            &enc,
            KEY_WRAP_INFO,
            &entry.wrapped,
            &aad,
        )
        .map_err(|_| EnvelopeError::KeyUnwrap)?,
    );
    let mut out = Zeroizing::new([0u8; 32]);
    if key.len() != 32 {
        return Err(EnvelopeError::KeyUnwrap);
    }
    out.copy_from_slice(&key);
    Ok(out)
}

/// Decrypts the body with a known content key (no signature check: call
/// [`Envelope::verify_signature`] first).
pub fn decrypt_with_content_key(
    envelope: &Envelope,
    content_key: &[u8; 32],
) -> Result<Body, EnvelopeError> {
    let aad = envelope.header().to_bytes();
    let cipher = Aes256Gcm::new_from_slice(content_key).map_err(|_| EnvelopeError::Decrypt)?;
    let plaintext = Zeroizing::new(
        cipher
            .decrypt(
                &Nonce::<Aes256Gcm>::from(envelope.nonce),
                Payload {
                    msg: &envelope.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| EnvelopeError::Decrypt)?,
    );
    serde_json::from_slice(&plaintext).map_err(|_| EnvelopeError::BadBody)
}
