//! What the keystore protects: the device's identity and secrets, its
//! session, pinned contact keys and the message cache.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use wardline_protocol::wire::DeviceInfo;
use wardline_protocol::{
    Body, ConversationId, DeviceId, DevicePublicKeys, DeviceSecrets, MessageId, Priority, Secret,
    Timestamp, UserId, Username, b64,
};
use zeroize::Zeroizing;

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
}

/// What this device knows about another user.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Contact {
    /// Username, once learnt from a lookup.
    pub username: Option<Username>,
    /// Device keys as first seen.
    pub devices: BTreeMap<DeviceId, DevicePublicKeys>,
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

/// A device whose published keys differ from the ones pinned for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    /// Owner.
    pub user_id: UserId,
    /// Device.
    pub device_id: DeviceId,
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
            devices: BTreeMap::new(),
        };
        own.devices.insert(device_id.clone(), secrets.public());
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
        }
    }

    /// This device's secret keys.
    pub fn device_secrets(&self) -> DeviceSecrets {
        DeviceSecrets::from_bytes(&self.device_keys.kem_sk.0, &self.device_keys.sig_sk.0)
    }

    /// Pins the keys of devices not seen before. A known device whose keys
    /// or owner changed is not updated but reported: device ids are never
    /// reused, so new keys or a new owner under an old id mean someone is
    /// substituting keys.
    pub fn remember_devices(&mut self, devices: &[DeviceInfo]) -> Vec<KeyChange> {
        let mut changed = Vec::new();
        for d in devices {
            let keys = DevicePublicKeys {
                kem_pk: d.kem_pk,
                sig_pk: d.sig_pk,
            };
            let owned_by_other = self
                .contacts
                .iter()
                .any(|(user, c)| *user != d.user_id && c.devices.contains_key(&d.device_id));
            if owned_by_other {
                changed.push(KeyChange {
                    user_id: d.user_id.clone(),
                    device_id: d.device_id.clone(),
                });
                continue;
            }
            let contact = self.contacts.entry(d.user_id.clone()).or_default();
            match contact.devices.get(&d.device_id) {
                Some(pinned) if *pinned != keys => changed.push(KeyChange {
                    user_id: d.user_id.clone(),
                    device_id: d.device_id.clone(),
                }),
                Some(_) => {}
                None => {
                    contact.devices.insert(d.device_id.clone(), keys);
                }
            }
        }
        changed
    }

    /// The pinned keys of `device`, if it is known to belong to `user`.
    pub fn device_keys(&self, user: &UserId, device: &DeviceId) -> Option<&DevicePublicKeys> {
        self.contacts.get(user)?.devices.get(device)
    }

    /// Records a username learnt from the directory.
    pub fn remember_username(&mut self, user: &UserId, username: &Username) {
        self.contacts.entry(user.clone()).or_default().username = Some(username.clone());
    }

    /// The username of `user`, when known.
    pub fn username_of(&self, user: &UserId) -> Option<&Username> {
        if *user == self.user_id {
            return Some(&self.username);
        }
        self.contacts.get(user)?.username.as_ref()
    }

    /// Adds a message to the cache unless its `(conv_id, seq)` is there already.
    pub fn store_message(&mut self, message: StoredMessage) -> bool {
        let known = self
            .messages
            .iter()
            .any(|m| m.conv_id == message.conv_id && m.seq == message.seq);
        if !known {
            self.messages.push(message);
        }
        !known
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
