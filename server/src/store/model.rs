//! The records the server keeps. Stored sealed; never sent as-is to clients.

use serde::{Deserialize, Serialize};
use wardline_protocol::wire::{Role, SplitEnvelope};
use wardline_protocol::{
    ConversationId, DeviceId, KemPublicKey, MessageId, Priority, Region, SigPublicKey, UserId,
    Username,
};

/// Where an account is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserState {
    /// Created by an admin; enrolment not finished.
    Enrolling,
    /// Can log in.
    Active,
    /// Disabled by an admin.
    Disabled,
    /// Self-registered in incident mode; can do nothing until approved.
    PendingApproval,
}

impl UserState {
    /// May authenticate (a pending account may, but can then do nothing).
    pub fn may_sign_in(self) -> bool {
        matches!(self, UserState::Active | UserState::PendingApproval)
    }
}

fn gb() -> Region {
    Region::GB
}

/// An account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub username: Username,
    pub display_name: String,
    pub role: Role,
    pub state: UserState,
    /// Argon2id PHC string.
    pub password_hash: Option<String>,
    /// TOTP secret (raw bytes); set by `enrol_start`, confirmed by `enrol_finish`.
    pub totp_secret: Option<Vec<u8>>,
    /// Highest TOTP time step accepted so far: that code and earlier ones are spent.
    pub totp_last_step: u64,
    /// Times (ms) of recent failed logins, for lockout.
    pub failed_logins: Vec<i64>,
    /// Logins refused until this time (ms).
    pub locked_until: i64,
    pub created_at: i64,
    /// Home region (rule R6).
    #[serde(default = "gb")]
    pub region: Region,
    /// Retention deletion is suspended for this user's conversations.
    #[serde(default)]
    pub legal_hold: bool,
}

/// A pending enrolment, stored under the hash of its one-time code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Enrolment {
    pub user_id: UserId,
    pub expires_at: i64,
}

/// Whether a device may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    Active,
    /// Revoked by an admin without a wipe.
    Revoked,
    /// A wipe was ordered; the device has not confirmed yet.
    WipePending,
    /// The device confirmed the wipe with a valid signature.
    Wiped,
}

/// A registered device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Device {
    pub id: DeviceId,
    pub user_id: UserId,
    pub name: String,
    pub kem_pk: KemPublicKey,
    pub sig_pk: SigPublicKey,
    pub state: DeviceState,
    pub created_at: i64,
    /// When it last authenticated.
    #[serde(default)]
    pub last_seen: Option<i64>,
    /// The wipe order, once one is given.
    #[serde(default)]
    pub wipe_id: Option<String>,
}

/// A remote wipe order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WipeOrder {
    pub wipe_id: String,
    pub device_id: DeviceId,
    pub user_id: UserId,
    pub reason: String,
    pub ordered_by: UserId,
    pub ordered_at: i64,
    pub confirmed_at: Option<i64>,
}

/// A session, stored under the SHA-256 of its token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub user_id: UserId,
    pub device_id: DeviceId,
    pub created_at: i64,
    pub expires_at: i64,
    /// Last time a connection used it (for the idle timeout).
    pub last_used: i64,
}

/// A conversation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub title: String,
    pub members: Vec<UserId>,
    pub residency: Region,
    pub created_at: i64,
    /// Members chose to keep messages for fewer days than the deployment.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Retention deletion is suspended.
    #[serde(default)]
    pub legal_hold: bool,
}

/// A message on its way to the store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub conv_id: ConversationId,
    pub sender_user: UserId,
    pub msg_id: MessageId,
    pub priority: Priority,
    pub envelope: SplitEnvelope,
    /// For an urgent message: the members who must read it (all but the sender).
    pub urgent_recipients: Vec<UserId>,
}

/// An urgent message not yet read by everyone, awaiting re-notification or
/// escalation. Stored with the message, in the same atomic batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UrgentWatch {
    pub conv_id: ConversationId,
    pub seq: u64,
    pub msg_id: MessageId,
    pub sender_user: UserId,
    pub recipients: Vec<UserId>,
    pub stored_at: i64,
    pub last_notified: i64,
}

/// A stored message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredMessage {
    pub seq: u64,
    pub sender_user: UserId,
    pub msg_id: MessageId,
    pub priority: Priority,
    pub stored_at: i64,
    pub envelope: SplitEnvelope,
}

/// The outcome of appending one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Newly stored with this sequence number.
    Stored(u64),
    /// The same `msg_id` was stored before in this conversation with this `seq`.
    Duplicate(u64),
    /// The `msg_id` is taken by a message of another conversation.
    IdClash,
}
