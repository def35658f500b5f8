//! Contacts: the device keys of other users as this device first saw them,
//! and what the user has verified in person.
//!
//! Keys are pinned on first sight (trust on first use). The devices a user
//! had when this device first saw them are the *baseline*. Later changes
//! are of two kinds, treated differently:
//!
//! * a **new device** (a device id not seen before, after the baseline):
//!   normal when a colleague logs in on a new computer, but also what an
//!   attacker who registered a device on their account would look like. It
//!   is sealed to, and flagged on every send until the user compares safety
//!   numbers and runs `wardline verify USER --confirm`;
//! * **replaced keys** (a known device id with other keys): device ids are
//!   never reused, so this can only be a substitution. Nothing is sealed to
//!   the new keys until the user has verified them in person.
//!
//! When the user does verify replaced keys (`wardline verify USER
//! --confirm`), the keys pinned until then are kept in the contact's
//! history of replaced keys, with when they were pinned and replaced, and
//! whether the user had verified them in person. A replaced key is never
//! accepted for a newly received message: its holder picks the signed
//! `sent_at`, so it could backdate new messages. Only a message read again
//! (history, export, `verify-export`) that device signed while its keys
//! were pinned *and verified in person* (sent no later than the
//! replacement) still opens, exports and verifies as signed with the key
//! this device pinned for it at the time ([`State::signing_key`]). Keys
//! replaced without having been verified were most likely substituted, and
//! are never accepted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wardline_protocol::wire::DeviceInfo;
use wardline_protocol::{
    DeviceId, DevicePublicKeys, Envelope, EnvelopeError, SigPublicKey, Timestamp, UserId, Username,
};

use super::State;

/// What this device knows about another user (or about its own user's
/// other devices).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Contact {
    /// Username, once learnt from a lookup.
    pub username: Option<Username>,
    /// Device keys as first seen (or as last verified).
    pub devices: BTreeMap<DeviceId, DevicePublicKeys>,
    /// When this device first saw the user's devices. (Absent in keystores
    /// made before verification existed.)
    #[serde(default)]
    pub first_seen: Option<Timestamp>,
    /// Per device: when it was first seen and whether it was verified.
    /// A device missing here was pinned before this was recorded, and
    /// counts as part of the baseline.
    #[serde(default)]
    pub trust: BTreeMap<DeviceId, DeviceTrust>,
    /// Per device: the keys pinned for it earlier and replaced since,
    /// oldest first. (Absent in keystores made before this history was
    /// kept, and for devices whose keys never changed.)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replaced: BTreeMap<DeviceId, Vec<ReplacedKeys>>,
}

/// Keys once pinned for a device and replaced since by keys the user
/// verified in person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplacedKeys {
    /// The keys.
    pub keys: DevicePublicKeys,
    /// When they were pinned: first sight, or the replacement before.
    /// (Unknown for keys pinned before first sight was recorded.)
    #[serde(default)]
    pub pinned_from: Option<Timestamp>,
    /// When the user replaced them.
    pub replaced_at: Timestamp,
    /// Whether the user had verified them in person.
    pub verified: bool,
}

/// The pinned key that signed a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKey<'a> {
    /// The key pinned now.
    Current(&'a DevicePublicKeys),
    /// A key pinned when the message was sent, replaced since.
    Replaced(&'a ReplacedKeys),
}

impl SigningKey<'_> {
    /// The keys.
    pub fn keys(&self) -> &DevicePublicKeys {
        match self {
            SigningKey::Current(k) => k,
            SigningKey::Replaced(r) => &r.keys,
        }
    }

    /// When the key stopped being the pinned one, if it has.
    pub fn pinned_until(&self) -> Option<&Timestamp> {
        match self {
            SigningKey::Current(_) => None,
            SigningKey::Replaced(r) => Some(&r.replaced_at),
        }
    }
}

/// Why a message's signature is being checked, which decides whether a
/// replaced key may be accepted for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// A message just received (a live push): only the current pin. Whoever
    /// still holds a replaced key chooses the signed `sent_at`, so a new
    /// message could be backdated into the time that key was pinned.
    New,
    /// A message read again (history, export): also a replaced key, if it
    /// was verified in person and the message says it was sent while it
    /// was pinned.
    Again,
}

/// How a signing key disclosed by someone else (an exported bundle)
/// compares with the keys this device pinned for its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinnedMatch {
    /// This device knows nothing of the device.
    UnknownDevice,
    /// It is the key pinned now.
    Current,
    /// It was the pinned key until then, and the message was sent before.
    PinnedUntil(Timestamp),
    /// It was the pinned key only until then, before the message was sent.
    ReplacedBefore(Timestamp),
    /// It was the pinned key until then, but never verified in person:
    /// most likely a substituted key, so not accepted.
    ReplacedUnverified(Timestamp),
    /// It was never pinned for the device.
    Differs,
}

/// What is known about one pinned device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceTrust {
    /// When this device first saw it.
    pub first_seen: Timestamp,
    /// Seen together with the user's first devices: the baseline that
    /// later changes are measured against.
    pub baseline: bool,
    /// The user compared the safety number in person and confirmed it.
    pub verified: bool,
    /// Other keys the server later published under this device id; never
    /// sealed to until verified.
    #[serde(default)]
    pub replaced_by: Option<DevicePublicKeys>,
}

/// A device whose published keys differ from the ones pinned for it, or
/// that the server attributes to another user than before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    /// Owner.
    pub user_id: UserId,
    /// Device.
    pub device_id: DeviceId,
}

/// How far a contact's device is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStanding {
    /// Compared in person and confirmed.
    Verified,
    /// One of the devices the user had at first sight; not compared.
    Unverified,
    /// Appeared after first sight and not verified since: flagged on send.
    New,
    /// The server now publishes other keys for it: refused until verified.
    KeysChanged,
    /// This very device.
    ThisDevice,
}

impl DeviceStanding {
    /// Whether sending should flag this device.
    pub fn is_flagged(self) -> bool {
        matches!(self, DeviceStanding::New | DeviceStanding::KeysChanged)
    }
}

/// A recipient device the user should know about before trusting a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFlag {
    /// Owner.
    pub user_id: UserId,
    /// Device.
    pub device_id: DeviceId,
    /// When this device first saw it.
    pub first_seen: Option<Timestamp>,
}

impl State {
    /// Pins the keys of devices not seen before, at `now`. A known device
    /// whose keys or owner changed is not updated but reported (and its new
    /// keys remembered for `verify`): device ids are never reused, so new
    /// keys or a new owner under an old id mean someone is substituting keys.
    pub fn remember_devices_at(
        &mut self,
        devices: &[DeviceInfo],
        now: &Timestamp,
    ) -> Vec<KeyChange> {
        let mut changed = Vec::new();
        // Users seen for the first time in this answer: all their devices
        // in it form the baseline.
        let first_sight: Vec<UserId> = devices
            .iter()
            .map(|d| d.user_id.clone())
            .filter(|u| self.contacts.get(u).is_none_or(|c| c.devices.is_empty()))
            .collect();
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
                Some(pinned) if *pinned != keys => {
                    if let Some(t) = contact.trust.get_mut(&d.device_id) {
                        t.replaced_by = Some(keys);
                    } else {
                        contact.trust.insert(
                            d.device_id.clone(),
                            DeviceTrust {
                                first_seen: now.clone(),
                                baseline: true,
                                verified: false,
                                replaced_by: Some(keys),
                            },
                        );
                    }
                    changed.push(KeyChange {
                        user_id: d.user_id.clone(),
                        device_id: d.device_id.clone(),
                    });
                }
                Some(_) => {}
                None => {
                    let baseline = first_sight.contains(&d.user_id);
                    if contact.first_seen.is_none() {
                        contact.first_seen = Some(now.clone());
                    }
                    contact.devices.insert(d.device_id.clone(), keys);
                    contact.trust.insert(
                        d.device_id.clone(),
                        DeviceTrust {
                            first_seen: now.clone(),
                            baseline,
                            verified: false,
                            replaced_by: None,
                        },
                    );
                }
            }
        }
        changed
    }

    /// [`State::remember_devices_at`] at the system clock's time.
    pub fn remember_devices(&mut self, devices: &[DeviceInfo]) -> Vec<KeyChange> {
        let now = crate::clock::now().unwrap_or_else(epoch);
        self.remember_devices_at(devices, &now)
    }

    /// How far `device` of `user` is trusted; `None` if it is not pinned.
    pub fn standing(&self, user: &UserId, device: &DeviceId) -> Option<DeviceStanding> {
        if *device == self.device_id && *user == self.user_id {
            return Some(DeviceStanding::ThisDevice);
        }
        let contact = self.contacts.get(user)?;
        contact.devices.get(device)?;
        Some(match contact.trust.get(device) {
            None => DeviceStanding::Unverified,
            Some(t) if t.replaced_by.is_some() => DeviceStanding::KeysChanged,
            Some(t) if t.verified => DeviceStanding::Verified,
            Some(t) if t.baseline => DeviceStanding::Unverified,
            Some(_) => DeviceStanding::New,
        })
    }

    /// The devices among `devices` that sending should flag: new since
    /// first sight and not verified since.
    pub fn flags(&self, devices: &[DeviceInfo]) -> Vec<DeviceFlag> {
        devices
            .iter()
            .filter(|d| {
                self.standing(&d.user_id, &d.device_id)
                    .is_some_and(DeviceStanding::is_flagged)
            })
            .map(|d| DeviceFlag {
                user_id: d.user_id.clone(),
                device_id: d.device_id.clone(),
                first_seen: self
                    .contacts
                    .get(&d.user_id)
                    .and_then(|c| c.trust.get(&d.device_id))
                    .map(|t| t.first_seen.clone()),
            })
            .collect()
    }

    /// Records that the user compared the safety numbers of `devices` (the
    /// devices of `user` the server publishes now) in person: each is
    /// pinned with its published keys and marked verified. Devices the
    /// server attributes to another user than before are left alone.
    /// Returns how many devices were confirmed.
    pub fn confirm_verified(
        &mut self,
        user: &UserId,
        devices: &[DeviceInfo],
        now: &Timestamp,
    ) -> usize {
        let mut confirmed = 0;
        for d in devices.iter().filter(|d| d.user_id == *user) {
            let owned_by_other = self
                .contacts
                .iter()
                .any(|(u, c)| u != user && c.devices.contains_key(&d.device_id));
            if owned_by_other {
                continue;
            }
            let contact = self.contacts.entry(user.clone()).or_default();
            if contact.first_seen.is_none() {
                contact.first_seen = Some(now.clone());
            }
            let keys = DevicePublicKeys {
                kem_pk: d.kem_pk,
                sig_pk: d.sig_pk,
            };
            if let Some(old) = contact.devices.insert(d.device_id.clone(), keys)
                && old != keys
            {
                let trust = contact.trust.get(&d.device_id);
                let history = contact.replaced.entry(d.device_id.clone()).or_default();
                let pinned_from = history
                    .last()
                    .map(|r| r.replaced_at.clone())
                    .or_else(|| trust.map(|t| t.first_seen.clone()));
                history.push(ReplacedKeys {
                    keys: old,
                    pinned_from,
                    replaced_at: now.clone(),
                    verified: trust.is_some_and(|t| t.verified),
                });
            }
            let trust = contact
                .trust
                .entry(d.device_id.clone())
                .or_insert_with(|| DeviceTrust {
                    first_seen: now.clone(),
                    baseline: false,
                    verified: false,
                    replaced_by: None,
                });
            trust.verified = true;
            trust.replaced_by = None;
            confirmed += 1;
        }
        confirmed
    }

    /// The pinned keys of `device`, if it is known to belong to `user`.
    pub fn device_keys(&self, user: &UserId, device: &DeviceId) -> Option<&DevicePublicKeys> {
        self.contacts.get(user)?.devices.get(device)
    }

    /// The key, pinned here for the sending device, that signed
    /// `envelope`: the current pin, or, for a message read again
    /// ([`Reading::Again`]), one replaced since that the user had verified
    /// in person and that was pinned when the message was sent (no later
    /// than its replacement). The error says why there is none.
    pub fn signing_key(
        &self,
        envelope: &Envelope,
        reading: Reading,
    ) -> Result<SigningKey<'_>, String> {
        let contact = self.contacts.get(&envelope.sender_user);
        let current = contact
            .and_then(|c| c.devices.get(&envelope.sender_device))
            .ok_or("its sending device is not a known device of its sender")?;
        let history = contact
            .and_then(|c| c.replaced.get(&envelope.sender_device))
            .map_or(&[][..], Vec::as_slice);
        // Most devices never had their keys replaced: the current pin is
        // the only candidate, and opening checks the signature.
        if history.is_empty() || envelope.verify_signature(&current.sig_pk).is_ok() {
            return Ok(SigningKey::Current(current));
        }
        let signed = |r: &&ReplacedKeys| envelope.verify_signature(&r.keys.sig_pk).is_ok();
        let sent = envelope.sent_at.unix_millis();
        match history.iter().rev().find(signed) {
            Some(r) if reading == Reading::New => Err(format!(
                "it is new but signed with a key this device pinned for its sending device only until {}, replaced since",
                r.replaced_at
            )),
            Some(r) if !r.verified => Err(format!(
                "it is signed with a key this device pinned for its sending device until {}, never verified in person and replaced since",
                r.replaced_at
            )),
            Some(r) if sent <= r.replaced_at.unix_millis() => Ok(SigningKey::Replaced(r)),
            Some(r) => Err(format!(
                "it is signed with a key this device pinned for its sending device only until {}, before it was sent",
                r.replaced_at
            )),
            None => Err(EnvelopeError::BadSignature.to_string()),
        }
    }

    /// How `sig_pk`, disclosed as the key of `device` for a message sent
    /// at `sent_at` (`None`: not known), compares with the keys pinned here
    /// for that device; with the device's owner when known.
    pub fn pinned_match(
        &self,
        device: &DeviceId,
        sig_pk: &SigPublicKey,
        sent_at: Option<&Timestamp>,
    ) -> (Option<&UserId>, PinnedMatch) {
        if *device == self.device_id {
            let own = self.device_secrets().public().sig_pk;
            let found = if own == *sig_pk {
                PinnedMatch::Current
            } else {
                PinnedMatch::Differs
            };
            return (Some(&self.user_id), found);
        }
        let Some((user, contact)) = self
            .contacts
            .iter()
            .find(|(_, c)| c.devices.contains_key(device))
        else {
            return (None, PinnedMatch::UnknownDevice);
        };
        if contact
            .devices
            .get(device)
            .is_some_and(|k| k.sig_pk == *sig_pk)
        {
            return (Some(user), PinnedMatch::Current);
        }
        let earlier = contact
            .replaced
            .get(device)
            .and_then(|h| h.iter().rev().find(|r| r.keys.sig_pk == *sig_pk));
        let found = match (earlier, sent_at) {
            (None, _) => PinnedMatch::Differs,
            (Some(r), _) if !r.verified => PinnedMatch::ReplacedUnverified(r.replaced_at.clone()),
            (Some(r), Some(t)) if t.unix_millis() <= r.replaced_at.unix_millis() => {
                PinnedMatch::PinnedUntil(r.replaced_at.clone())
            }
            (Some(r), Some(_)) => PinnedMatch::ReplacedBefore(r.replaced_at.clone()),
            // Without a send time nothing says it was pinned then.
            (Some(_), None) => PinnedMatch::Differs,
        };
        (Some(user), found)
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

    /// The id of the user called `username`, when known locally.
    pub fn user_named(&self, username: &str) -> Option<&UserId> {
        if self.username.as_str() == username {
            return Some(&self.user_id);
        }
        self.contacts
            .iter()
            .find(|(_, c)| c.username.as_ref().is_some_and(|u| u.as_str() == username))
            .map(|(id, _)| id)
    }

    /// A name for `user` that people read: the username when known, else the id.
    pub fn display_name(&self, user: &UserId) -> String {
        self.username_of(user)
            .map_or_else(|| user.to_string(), ToString::to_string)
    }
}

fn epoch() -> Timestamp {
    Timestamp::from_unix_millis(0).expect("the Unix epoch is a valid timestamp")
}
