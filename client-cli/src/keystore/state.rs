//! What the keystore protects: the device's identity and secrets, its
//! session, pinned contact keys and the message cache.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use wardline_protocol::wire::ConversationInfo;
use wardline_protocol::{
    Body, ConversationId, DeviceId, DeviceSecrets, Envelope, MessageId, Priority, Region, Secret,
    Timestamp, UserId, Username, b64,
};
use zeroize::Zeroizing;

use super::contacts::{Contact, DeviceTrust};
use crate::tls::Trust;

/// Everything the keystore protects.
#[derive(Debug, Serialize, Deserialize)]
pub struct State {
    /// Server URL this device is registered with.
    pub server: String,
    /// How the server's certificate is trusted, for a `wss://` server.
    /// (Absent in keystores made before TLS, which only knew `ws://`.)
    #[serde(default)]
    pub trust: Option<Trust>,
    /// The account.
    pub user_id: UserId,
    /// Its username.
    pub username: Username,
    /// This device.
    pub device_id: DeviceId,
    /// The name it was registered under.
    pub device_name: String,
    device_keys: DeviceKeyBytes,
    /// Session token for `resume`.
    pub token: Secret,
    /// When the session ends at the latest.
    pub expires_at: Timestamp,
    /// Public keys and usernames of users seen so far, pinned on first sight.
    #[serde(default)]
    pub contacts: BTreeMap<UserId, Contact>,
    /// Messages sent and received by this device, decrypted.
    #[serde(default)]
    pub messages: Vec<StoredMessage>,
    /// The user's conversations as last listed, with this device's cursors.
    #[serde(default)]
    pub conversations: BTreeMap<ConversationId, ConversationState>,
}

/// A conversation as this device last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationState {
    /// Title.
    pub title: String,
    /// Members, the user included.
    pub members: Vec<UserId>,
    /// Where its messages are stored.
    pub residency: Region,
    /// Sequence number of the newest message the server holds.
    pub last_seq: u64,
    /// The user has read everything up to here (on any of their devices).
    pub read_seq: u64,
}

/// A message in the local cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Conversation.
    pub conv_id: ConversationId,
    /// Sequence number the server gave it.
    pub seq: u64,
    /// Sender-made id.
    pub msg_id: MessageId,
    /// Sending user.
    pub sender_user: UserId,
    /// Sending device.
    pub sender_device: DeviceId,
    /// When sent.
    pub sent_at: Timestamp,
    /// Routine or urgent.
    pub priority: Priority,
    /// The decrypted body.
    pub body: Body,
    /// The envelope as received, its key entries cut down to this device's
    /// own: with it the message can be opened and verified again later,
    /// which an export to the health record needs (`wardline export`).
    /// (Absent in messages cached before exports existed; those are
    /// fetched again with `history`.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Envelope>,
}

impl StoredMessage {
    /// The copy of `envelope` worth caching on `device`: only its own key
    /// entry opens anything here, and a group message carries one per
    /// recipient device (up to some 50 KiB).
    pub fn cached_envelope(envelope: &Envelope, device: &DeviceId) -> Envelope {
        let mut copy = envelope.clone();
        copy.keys.retain(|k| k.device_id == *device);
        copy
    }
}

/// What the server said when it registered this device.
#[derive(Debug)]
pub struct Registration {
    /// Server URL.
    pub server: String,
    /// How its certificate is trusted, for `wss://`.
    pub trust: Option<Trust>,
    /// The account.
    pub user_id: UserId,
    /// Its username.
    pub username: Username,
    /// The new device.
    pub device_id: DeviceId,
    /// The name it was registered under.
    pub device_name: String,
    /// Session token.
    pub token: Secret,
    /// When the session ends at the latest.
    pub expires_at: Timestamp,
}

impl State {
    /// The state of a freshly registered device.
    pub fn new(registration: Registration, secrets: &DeviceSecrets) -> Self {
        let Registration {
            server,
            trust,
            user_id,
            username,
            device_id,
            device_name,
            token,
            expires_at,
        } = registration;
        let mut own = Contact {
            username: Some(username.clone()),
            ..Contact::default()
        };
        own.devices.insert(device_id.clone(), secrets.public());
        if let Some(now) = crate::clock::now() {
            own.first_seen = Some(now.clone());
            own.trust.insert(
                device_id.clone(),
                DeviceTrust {
                    first_seen: now,
                    baseline: true,
                    verified: true,
                    replaced_by: None,
                },
            );
        }
        Self {
            server,
            trust,
            contacts: BTreeMap::from([(user_id.clone(), own)]),
            user_id,
            username,
            device_id,
            device_name,
            device_keys: DeviceKeyBytes {
                kem_sk: SecretBytes(Zeroizing::new(*secrets.kem_secret_bytes())),
                sig_sk: SecretBytes(secrets.sig_secret_bytes()),
            },
            token,
            expires_at,
            messages: Vec::new(),
            conversations: BTreeMap::new(),
        }
    }

    /// This device's secret keys.
    pub fn device_secrets(&self) -> DeviceSecrets {
        DeviceSecrets::from_bytes(&self.device_keys.kem_sk.0, &self.device_keys.sig_sk.0)
    }

    /// Adds a message to the cache unless its `(conv_id, seq)` is there
    /// already; returns whether it was new. A cached message that lacks its
    /// envelope gets this one's.
    pub fn store_message(&mut self, message: StoredMessage) -> bool {
        let known = self
            .messages
            .iter_mut()
            .find(|m| m.conv_id == message.conv_id && m.seq == message.seq);
        if let Some(m) = known {
            if m.envelope.is_none() && m.msg_id == message.msg_id {
                m.envelope = message.envelope;
            }
            return false;
        }
        if let Some(c) = self.conversations.get_mut(&message.conv_id) {
            c.last_seq = c.last_seq.max(message.seq);
        }
        self.messages.push(message);
        true
    }

    /// Replaces the conversation list with the server's, keeping the read
    /// cursors of conversations still listed. Cached messages of
    /// conversations the user has left stay: they are the user's record.
    pub fn update_conversations(&mut self, listed: &[ConversationInfo]) {
        let mut next = BTreeMap::new();
        for c in listed {
            let read_seq = self
                .conversations
                .get(&c.conv_id)
                .map_or(0, |old| old.read_seq)
                .min(c.last_seq);
            next.insert(
                c.conv_id.clone(),
                ConversationState {
                    title: c.title.clone(),
                    members: c.members.clone(),
                    residency: c.residency,
                    last_seq: c.last_seq,
                    read_seq,
                },
            );
        }
        self.conversations = next;
    }

    /// Cached messages of `conv`, oldest first.
    pub fn messages_in(&self, conv: &ConversationId) -> Vec<&StoredMessage> {
        let mut out: Vec<&StoredMessage> = self
            .messages
            .iter()
            .filter(|m| m.conv_id == *conv)
            .collect();
        out.sort_by_key(|m| m.seq);
        out
    }

    /// Cached messages of `conv` from others that the user has not read,
    /// oldest first.
    pub fn unread_in(&self, conv: &ConversationId) -> Vec<&StoredMessage> {
        let read = self.conversations.get(conv).map_or(0, |c| c.read_seq);
        self.messages_in(conv)
            .into_iter()
            .filter(|m| m.seq > read && m.sender_user != self.user_id)
            .collect()
    }

    /// Moves the user's read cursor in `conv` forward to `seq`.
    pub fn mark_read(&mut self, conv: &ConversationId, seq: u64) {
        if let Some(c) = self.conversations.get_mut(conv) {
            c.read_seq = c.read_seq.max(seq);
        }
    }
}

#[derive(Serialize, Deserialize)]
struct DeviceKeyBytes {
    kem_sk: SecretBytes,
    sig_sk: SecretBytes,
}

impl fmt::Debug for DeviceKeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceKeyBytes([redacted])")
    }
}

/// 32 secret bytes, base64 in the sealed JSON. Every intermediate copy
/// (the base64 text, the decoded vector) is zeroized too.
struct SecretBytes(Zeroizing<[u8; 32]>);

impl Serialize for SecretBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&Zeroizing::new(b64::encode(*self.0)))
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        let bytes = Zeroizing::new(
            b64::decode(&text).map_err(|_| serde::de::Error::custom("invalid base64"))?,
        );
        let mut out = Zeroizing::new([0u8; 32]);
        if bytes.len() != out.len() {
            return Err(serde::de::Error::custom("secret key must be 32 bytes"));
        }
        out.copy_from_slice(&bytes);
        Ok(Self(out))
    }
}
