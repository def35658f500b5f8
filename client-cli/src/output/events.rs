//! What commands report. With `--json` each [`Event`] is one line of JSON
//! whose `event` field names it; the other fields are a stable interface
//! for scripts. Fields marked "for people only" are left out of JSON.

use std::path::PathBuf;

use serde::Serialize;
use wardline_protocol::wire::{
    AccountInfo, AdminResidencyOk, DeviceStatus, ReceiptKind, WipeState,
};
use wardline_protocol::{
    BodyKind, ConversationId, DeviceId, MessageId, Priority, Role, Secret, Timestamp, UserId,
    Username,
};

use super::governance::{AccountChange, AuditRow};
use super::record::{ExportSummary, Incomplete, VerifiedEntry};
use crate::keystore::DeviceStanding;

/// Something a command reports.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Enrolment: the TOTP secret to add to an authenticator app.
    Totp {
        /// The account.
        user_id: UserId,
        /// Its username.
        username: Username,
        /// Base32 secret; printed on purpose, once.
        totp_secret: Secret,
        /// `otpauth://` URI holding the same secret.
        totp_uri: Secret,
    },
    /// Enrolment finished; the keystore exists.
    Enrolled {
        /// The account.
        user_id: UserId,
        /// The new device.
        device_id: DeviceId,
        /// For people only.
        #[serde(skip)]
        username: Username,
        /// For people only.
        #[serde(skip)]
        keystore: PathBuf,
    },
    /// A new session; the token is saved.
    LoggedIn {
        /// The account.
        user_id: UserId,
        /// The device the session is for.
        device_id: DeviceId,
        /// Whether this login registered the device.
        new_device: bool,
        /// For people only.
        #[serde(skip)]
        username: Username,
    },
    /// The session ended; the device keeps its keys.
    LoggedOut {
        /// This device.
        device_id: DeviceId,
        /// For people only.
        #[serde(skip)]
        username: Username,
    },
    /// Who this device belongs to.
    Whoami(WhoamiView),
    /// One device of a user (`wardline devices`).
    Device(DeviceRow),
    /// One conversation (`wardline conversations`).
    Conversation(ConversationRow),
    /// A conversation was created.
    ConversationCreated {
        /// Its id.
        conv_id: ConversationId,
        /// Title.
        title: String,
        /// Members' usernames (or ids, when unknown).
        members: Vec<String>,
    },
    /// A conversation's members changed.
    MembersChanged {
        /// Conversation.
        conv_id: ConversationId,
        /// Title.
        title: String,
        /// Members now.
        members: Vec<String>,
        /// Who joined.
        added: Vec<String>,
        /// Who left.
        removed: Vec<String>,
    },
    /// A message is stored on the server.
    Sent {
        /// Conversation.
        conv_id: ConversationId,
        /// The message.
        msg_id: MessageId,
        /// Its sequence number.
        seq: u64,
    },
    /// A message received and opened.
    Message(MessageView),
    /// A message that could not be opened.
    Undecryptable {
        /// Conversation, if known.
        conv_id: Option<ConversationId>,
        /// Sequence number, if known.
        seq: Option<u64>,
        /// Message id, if known.
        msg_id: Option<MessageId>,
        /// Claimed sender, if known.
        sender_user: Option<UserId>,
        /// Why.
        reason: String,
    },
    /// The user's read position moved (`read`, `inbox`).
    MarkedRead {
        /// Conversation.
        conv_id: ConversationId,
        /// Read up to here.
        seq: u64,
    },
    /// A member received or read the user's messages.
    Receipt {
        /// Conversation.
        conv_id: ConversationId,
        /// Up to this message.
        seq: u64,
        /// Who.
        user_id: UserId,
        /// Their username, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        username: Option<Username>,
        /// Delivered or read.
        kind: ReceiptKind,
    },
    /// The user's urgent message is still unread: they should phone.
    UnreadUrgent {
        /// Conversation.
        conv_id: ConversationId,
        /// Its title, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        conv_title: Option<String>,
        /// The urgent message.
        seq: u64,
        /// Its id.
        msg_id: MessageId,
        /// Who has not read it (usernames, or ids when unknown).
        unread: Vec<String>,
    },
    /// The live connection's state (`chat`).
    Connection {
        /// `connected` or `reconnecting`.
        state: &'static str,
        /// Why, for people.
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Something the user should know before going on; the command goes on
    /// (or asks).
    Warning {
        /// A stable code, e.g. `nhs_number_in_text`, `new_device`.
        code: &'static str,
        /// What and why, for people.
        message: String,
    },
    /// A safety number to compare (`verify`).
    SafetyNumber(SafetyRow),
    /// The user confirmed the safety numbers of a contact.
    Verified {
        /// The contact.
        user_id: UserId,
        /// Their username.
        username: Username,
        /// How many devices were confirmed.
        devices: usize,
    },
    /// An admin created an account.
    UserCreated {
        /// The account.
        user_id: UserId,
        /// Its username.
        username: Username,
        /// One-time enrolment code to hand to the user.
        enrol_code: Secret,
        /// When the code stops working.
        expires_at: Timestamp,
    },
    /// The keystore stays unlocked for a while.
    Unlocked {
        /// It locks after this many seconds without use.
        idle_timeout_secs: u64,
    },
    /// The unlocked key was forgotten.
    Locked {
        /// Whether it had been unlocked.
        was_unlocked: bool,
    },
    /// The account password was changed on the server (`wardline password`).
    PasswordChanged {
        /// The account.
        username: String,
    },
    /// The keystore is sealed under a new passphrase (`wardline passphrase`).
    PassphraseChanged {
        /// Whether it had been unlocked (it is locked now).
        was_unlocked: bool,
        /// For people only.
        #[serde(skip)]
        keystore: PathBuf,
    },
    /// A wipe of a device was ordered.
    WipeOrdered {
        /// The order.
        wipe_id: String,
        /// The device.
        device_id: DeviceId,
    },
    /// Where a wipe order stands.
    WipeStatus {
        /// The order.
        wipe_id: String,
        /// Pending or confirmed.
        state: WipeState,
    },
    /// This device was wiped by order of the organisation.
    Wiped {
        /// The order.
        wipe_id: String,
        /// The reason given.
        reason: String,
        /// Whether the server received the signed confirmation.
        confirmed: bool,
    },
    /// One account (`wardline admin user list`).
    Account(AccountInfo),
    /// An account was disabled, enabled or approved.
    AccountChanged {
        /// The account.
        user_id: UserId,
        /// Its username.
        username: Username,
        /// What changed.
        change: AccountChange,
    },
    /// An account's credentials were reset: a new enrolment code.
    UserReset {
        /// The account.
        user_id: UserId,
        /// Its username.
        username: Username,
        /// One-time enrolment code to hand to the user.
        enrol_code: Secret,
        /// When the code stops working.
        expires_at: Timestamp,
    },
    /// A device was revoked.
    DeviceRevoked {
        /// The device.
        device_id: DeviceId,
    },
    /// One audit log entry.
    AuditEntry(AuditRow),
    /// The whole audit chain was fetched and verified.
    AuditVerified {
        /// How many entries were checked.
        entries: usize,
        /// The first entry kept (earlier ones were pruned behind a checkpoint).
        first_seq: u64,
        /// The last entry.
        last_seq: u64,
        /// Whether a signed checkpoint vouches for a pruned prefix.
        checkpoint: bool,
        /// The audit key checkpoints were checked against (base64).
        audit_key: String,
        /// `given` (--audit-key) or `server` (the key in the server's reply).
        audit_key_source: &'static str,
    },
    /// What is stored where (`wardline admin residency`).
    Residency(AdminResidencyOk),
    /// Self-registration was opened or closed.
    IncidentMode {
        /// Whether it is open now.
        enabled: bool,
    },
    /// A legal hold was placed or lifted.
    LegalHold {
        /// The user held, if a user.
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<UserId>,
        /// The conversation held, if a conversation.
        #[serde(skip_serializing_if = "Option::is_none")]
        conv_id: Option<ConversationId>,
        /// Placed (true) or lifted.
        hold: bool,
        /// For people only.
        #[serde(skip)]
        subject: String,
    },
    /// Self-registration (incident mode): an account awaiting approval.
    Registered {
        /// The account.
        user_id: UserId,
        /// Its username.
        username: Username,
        /// One-time enrolment code.
        enrol_code: Secret,
        /// When the code stops working.
        expires_at: Timestamp,
        /// For people only: the `enrol` command line to run next.
        #[serde(skip)]
        enrol_hint: String,
    },
    /// A conversation's retention period was set.
    RetentionSet {
        /// The conversation.
        conv_id: ConversationId,
        /// Days its messages are kept.
        days: u32,
        /// For people only.
        #[serde(skip)]
        title: String,
    },
    /// A health-record export was written.
    Exported(ExportSummary),
    /// An export was POSTed to a FHIR server.
    Posted {
        /// The server's base URL.
        url: String,
        /// Its HTTP status.
        http_status: u16,
        /// Resources it created.
        created: usize,
        /// Resources it already held (a repeated export).
        already_present: usize,
    },
    /// One entry of a checked export (`wardline verify-export`).
    ExportEntry(VerifiedEntry),
    /// The outcome of `wardline verify-export`.
    ExportChecked {
        /// The file.
        file: PathBuf,
        /// Entries checked.
        entries: usize,
        /// Entries that failed.
        failed: usize,
        /// Entries whose signing key could not be compared with one this
        /// device pinned.
        keys_unknown: usize,
    },
    /// The command failed (JSON mode only; people read standard error).
    Error {
        /// A stable code: a server error code or one of this client's.
        code: String,
        /// What happened and what to do.
        message: String,
        /// For an export that did not finish: what was done, what was
        /// not, and the command that retries.
        #[serde(skip_serializing_if = "Option::is_none")]
        incomplete: Option<Box<Incomplete>>,
    },
}

/// A received message as shown to the user.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    /// Conversation.
    pub conv_id: ConversationId,
    /// Its title, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conv_title: Option<String>,
    /// Sequence number.
    pub seq: u64,
    /// Message id.
    pub msg_id: MessageId,
    /// Sender.
    pub sender_user: UserId,
    /// Sender's username, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_username: Option<Username>,
    /// When sent.
    pub sent_at: Timestamp,
    /// Routine or urgent.
    pub priority: Priority,
    /// Message or clinical note.
    pub kind: BodyKind,
    /// The text.
    pub text: String,
    /// The patient's NHS number, if any.
    pub patient: Option<String>,
    /// The message this answers, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageId>,
}

/// `wardline whoami`.
#[derive(Debug, Clone, Serialize)]
pub struct WhoamiView {
    /// The account.
    pub user_id: UserId,
    /// Its username.
    pub username: Username,
    /// Display name, when the server was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Role, when the server was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// This device.
    pub device_id: DeviceId,
    /// Its name.
    pub device_name: String,
    /// The server.
    pub server: String,
    /// How its certificate is trusted, for `wss://`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust: Option<String>,
    /// When the session ends at the latest.
    pub session_expires_at: Timestamp,
    /// Seconds until the unlocked keystore locks, when it is unlocked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unlocked_for_secs: Option<u64>,
    /// This device's key fingerprint.
    pub fingerprint: String,
}

/// One device in `wardline devices`.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceRow {
    /// Id.
    pub device_id: DeviceId,
    /// Name.
    pub name: String,
    /// State.
    pub state: DeviceStatus,
    /// Registered.
    pub created_at: Timestamp,
    /// Last authenticated.
    pub last_seen: Option<Timestamp>,
    /// Whether it is the device running this command.
    pub this_device: bool,
    /// Key fingerprint.
    pub fingerprint: String,
}

/// One conversation in `wardline conversations`.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationRow {
    /// Id.
    pub conv_id: ConversationId,
    /// Title.
    pub title: String,
    /// Members' usernames (or ids, when unknown).
    pub members: Vec<String>,
    /// Messages from others not read yet.
    pub unread: usize,
    /// Of which urgent.
    pub unread_urgent: usize,
    /// Sequence number of the newest message.
    pub last_seq: u64,
    /// When the newest cached message was sent.
    pub last_message_at: Option<Timestamp>,
}

/// One device's safety number in `wardline verify`.
#[derive(Debug, Clone, Serialize)]
pub struct SafetyRow {
    /// The contact.
    pub user_id: UserId,
    /// Their username.
    pub username: Username,
    /// Their device.
    pub device_id: DeviceId,
    /// 12 groups of 5 digits.
    pub safety_number: String,
    /// How far it is trusted.
    pub standing: DeviceStanding,
    /// When this device first saw it.
    pub first_seen: Option<Timestamp>,
}
