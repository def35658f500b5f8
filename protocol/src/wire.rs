//! The frames both ends exchange (PROTOCOL.md, "Requests, replies, pushes").
//!
//! A request is a JSON object with `type`, an integer `id` and the fields of
//! that type. Decoding is two steps: the head (`type`, `id`) first, so every
//! failure after it can still be answered with the right `re`, then the
//! fields of that one type. Unknown fields are ignored, unknown types refused.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::envelope::{Envelope, KeyEntry};
use crate::ids::{ConversationId, DeviceId, MessageId, UserId, Username};
use crate::keys::{KemPublicKey, SigPublicKey};
use crate::residency::Region;
use crate::secret::Secret;
use crate::timestamp::Timestamp;

/// Largest frame accepted, in bytes.
pub const MAX_FRAME_BYTES: usize = 256 * 1024;

/// Stable error codes. Clients act on these, never on the message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not a JSON object in a text frame.
    BadFrame,
    /// The request's type is unknown or its fields are missing or invalid.
    BadRequest,
    /// The request needs an authenticated session.
    Unauthenticated,
    /// Wrong credentials, or an unknown user (indistinguishable on purpose).
    AuthFailed,
    /// Too many failed logins; try later.
    LockedOut,
    /// This TOTP code, or an earlier one, was already used.
    TotpReplayed,
    /// The caller's role does not allow this.
    Forbidden,
    /// No such thing.
    NotFound,
    /// The caller is not a member of the conversation.
    NotMember,
    /// The thing exists already or clashes with current state.
    Conflict,
    /// The frame is larger than [`MAX_FRAME_BYTES`].
    TooLarge,
    /// Too many requests; slow down.
    RateLimited,
    /// Storing this would break the residency policy.
    ResidencyDenied,
    /// The envelope's header or key entries are wrong.
    InvalidEnvelope,
    /// This device has a wipe order pending.
    WipePending,
    /// A fault in the server; the request may be retried.
    Internal,
}

impl ErrorCode {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::AuthFailed => "auth_failed",
            ErrorCode::LockedOut => "locked_out",
            ErrorCode::TotpReplayed => "totp_replayed",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NotMember => "not_member",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::ResidencyDenied => "residency_denied",
            ErrorCode::InvalidEnvelope => "invalid_envelope",
            ErrorCode::WipePending => "wipe_pending",
            ErrorCode::Internal => "internal",
        }
    }
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Doctors, nurses, allied health professionals.
    Clinician,
    /// Provisions accounts and devices.
    Admin,
    /// Handles exports and lawful-access requests.
    RecordsOfficer,
}

// ---------------------------------------------------------------- requests

/// A new device's name and public keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDevice {
    /// A name the user recognises ("ward 10 workstation").
    pub name: String,
    /// X25519 public key.
    pub kem_pk: KemPublicKey,
    /// Ed25519 public key.
    pub sig_pk: SigPublicKey,
}

/// The device a login is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LoginDevice {
    /// A device this user registered before.
    Existing {
        /// Its id.
        device_id: DeviceId,
    },
    /// A device to register now.
    New(NewDevice),
}

/// `enrol_start`: redeem an enrolment code and choose a password.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrolStart {
    /// One-time code from the admin.
    pub code: Secret,
    /// The chosen password.
    pub password: Secret,
}

/// `enrol_finish`: confirm TOTP and register the first device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrolFinish {
    /// The same enrolment code.
    pub code: Secret,
    /// A current TOTP code.
    pub totp: Secret,
    /// The device to register.
    pub device: NewDevice,
}

/// `login`: password and TOTP for a new session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Login {
    /// The username (not validated: an unknown one is just `auth_failed`).
    pub username: String,
    /// Password.
    pub password: Secret,
    /// Current TOTP code.
    pub totp: Secret,
    /// Which device.
    pub device: LoginDevice,
}

/// `resume`: continue a session on a new connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resume {
    /// Session token from `enrol_finish` or `login`.
    pub token: Secret,
}

/// `logout`: end the session; the token dies.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Logout {}

/// `password_change`: a signed-in user replaces their own password, proving
/// who they are with the current password and a fresh TOTP code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasswordChange {
    /// The password in use now.
    pub password: Secret,
    /// A fresh TOTP code.
    pub totp: Secret,
    /// The password to use from now on.
    pub new_password: Secret,
}

/// `admin_user_create`: provision an account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminUserCreate {
    /// Organisational username.
    pub username: Username,
    /// Name shown to others.
    pub display_name: String,
    /// Role.
    pub role: Role,
}

/// `lookup`: find users by username.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lookup {
    /// Usernames to look up; unknown ones are left out of the answer.
    pub usernames: Vec<String>,
}

/// `users`: directory entries by user id (to show who sent a message).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Users {
    /// Users to describe; unknown ones are left out.
    pub user_ids: Vec<UserId>,
}

/// `export_record`: the client tells the server what it exported to the
/// health record, for the audit log (never the content).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportRecord {
    /// The exported messages (at most 10,000).
    pub msg_ids: Vec<MessageId>,
    /// Where to: a file name or a FHIR server's base URL.
    pub destination: String,
}

/// `devices`: the active devices of users.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Devices {
    /// Users whose devices to list.
    pub user_ids: Vec<UserId>,
}

/// `conversation_create`: a conversation with the caller and `members`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationCreate {
    /// The other members (the caller is added).
    pub members: Vec<UserId>,
    /// Title shown to members.
    pub title: String,
}

/// `conversations`: the caller's conversations.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Conversations {}

/// `send`: store and deliver a sealed message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Send {
    /// The sealed message.
    pub envelope: Envelope,
}

/// `ack`: this device has everything up to `seq`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ack {
    /// Conversation.
    pub conv_id: ConversationId,
    /// Highest sequence number received.
    pub seq: u64,
}

/// `read`: the user has read everything up to `seq`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Read {
    /// Conversation.
    pub conv_id: ConversationId,
    /// Highest sequence number read.
    pub seq: u64,
}

/// `history`: page back through a conversation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct History {
    /// Conversation.
    pub conv_id: ConversationId,
    /// Only messages with `seq` below this; the newest when absent.
    #[serde(default)]
    pub before_seq: Option<u64>,
    /// At most this many (default 100, capped at 500).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `receipts`: how far each member has received and read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipts {
    /// Conversation.
    pub conv_id: ConversationId,
}

/// `conversation_add`: add members (members or admins only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationAdd {
    /// Conversation.
    pub conv_id: ConversationId,
    /// Users to add.
    pub members: Vec<UserId>,
}

/// `conversation_remove`: remove members (members or admins only; anyone may remove themselves).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationRemove {
    /// Conversation.
    pub conv_id: ConversationId,
    /// Users to remove.
    pub members: Vec<UserId>,
}

/// `admin_wipe`: order a device wiped (admins only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminWipe {
    /// The device to wipe.
    pub device_id: DeviceId,
    /// Why (lost, stolen, redeployed); shown to the device and audited.
    pub reason: String,
}

/// `wipe_own_device`: a user wipes one of their own devices from another,
/// re-entering password and a fresh TOTP code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WipeOwnDevice {
    /// The lost device.
    pub device_id: DeviceId,
    /// Why.
    pub reason: String,
    /// The account password, again.
    pub password: Secret,
    /// A fresh TOTP code.
    pub totp: Secret,
}

/// `admin_wipe_status`: has the device confirmed the wipe?
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminWipeStatus {
    /// The wipe order.
    pub wipe_id: String,
}

/// `wipe_done`: the device's signed confirmation that it destroyed its data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WipeDone {
    /// The wipe order.
    pub wipe_id: String,
    /// Ed25519 over `wardline/v1/wipe-done` ‖ wipe_id ‖ device_id.
    #[serde(with = "crate::b64")]
    pub sig: [u8; 64],
}

/// `device_list`: devices with their state and times. Without `user_id`, the
/// caller's own; an admin may name any user.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeviceList {
    /// Whose devices (admins only for others).
    #[serde(default)]
    pub user_id: Option<UserId>,
}

/// `admin_audit`: pages through the audit log (admins only).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AdminAudit {
    /// Entries after this `seq` (from the start when absent).
    #[serde(default)]
    pub after_seq: Option<u64>,
    /// At most this many (default 100, at most 1000).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only this kind of event.
    #[serde(default)]
    pub kind: Option<String>,
    /// Only events by this actor.
    #[serde(default)]
    pub actor: Option<String>,
}

/// `admin_device_revoke`: revoke a device without wiping it (admins only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminDeviceRevoke {
    /// The device.
    pub device_id: DeviceId,
    /// Why.
    pub reason: String,
}

/// `admin_user_set_state`: disable (killing every session at once) or re-enable an account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminUserSetState {
    /// The account.
    pub user_id: UserId,
    /// True to disable, false to enable.
    pub disabled: bool,
    /// Why.
    pub reason: String,
}

/// `admin_user_reset`: a fresh enrolment code with which the user sets a new
/// password and TOTP secret; the old credentials stop working at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminUserReset {
    /// The account.
    pub user_id: UserId,
    /// Why.
    pub reason: String,
}

/// `admin_user_list`: accounts with role and state, a page at a time in
/// username order (admins only).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AdminUserList {
    /// Accounts whose username sorts after this one; from the first when
    /// absent.
    #[serde(default)]
    pub after: Option<Username>,
    /// At most this many (default and largest 1000).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `admin_user_approve`: let a self-registered (incident mode) account in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminUserApprove {
    /// The pending account.
    pub user_id: UserId,
}

/// `admin_incident_mode`: turn exceptional self-registration on or off.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminIncidentMode {
    /// On or off.
    pub enabled: bool,
    /// Why (the incident).
    pub reason: String,
}

/// `register`: self-registration, only while incident mode is on. The
/// account stays pending, able to do nothing, until an admin approves it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Register {
    /// Wanted username.
    pub username: Username,
    /// Name shown to others.
    pub display_name: String,
}

/// `admin_residency`: what is held where (admins only).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AdminResidency {}

/// `admin_legal_hold`: suspend (or resume) retention deletion for a user's
/// or a conversation's messages (admins only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminLegalHold {
    /// A user whose conversations are held, or
    #[serde(default)]
    pub user_id: Option<UserId>,
    /// a conversation that is held.
    #[serde(default)]
    pub conv_id: Option<ConversationId>,
    /// Place (true) or lift (false) the hold.
    pub hold: bool,
    /// Why (the case or request).
    pub reason: String,
}

/// `conversation_retention`: members shorten how long a conversation's
/// messages are kept (never beyond the deployment's period).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationRetention {
    /// Conversation.
    pub conv_id: ConversationId,
    /// Days to keep messages.
    pub days: u32,
}

macro_rules! requests {
    ($($variant:ident = $name:literal),* $(,)?) => {
        /// Every request a client may send.
        #[derive(Debug, Clone, Serialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        pub enum Request {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant($variant),
            )*
        }

        impl Request {
            /// Every request type name, for tables and tests.
            pub const TYPES: &'static [&'static str] = &[$($name),*];

            /// The request's `type`.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(Request::$variant(_) => $name,)*
                }
            }

            fn decode_fields(type_name: &str, text: &str) -> Option<Result<Request, serde_json::Error>> {
                Some(match type_name {
                    $($name => serde_json::from_str::<$variant>(text).map(Request::$variant),)*
                    _ => return None,
                })
            }
        }
    };
}

requests! {
    EnrolStart = "enrol_start",
    EnrolFinish = "enrol_finish",
    Login = "login",
    Resume = "resume",
    Logout = "logout",
    PasswordChange = "password_change",
    AdminUserCreate = "admin_user_create",
    Lookup = "lookup",
    Users = "users",
    ExportRecord = "export_record",
    Devices = "devices",
    ConversationCreate = "conversation_create",
    Conversations = "conversations",
    Send = "send",
    Ack = "ack",
    Read = "read",
    History = "history",
    Receipts = "receipts",
    ConversationAdd = "conversation_add",
    ConversationRemove = "conversation_remove",
    AdminWipe = "admin_wipe",
    WipeOwnDevice = "wipe_own_device",
    AdminWipeStatus = "admin_wipe_status",
    WipeDone = "wipe_done",
    DeviceList = "device_list",
    AdminAudit = "admin_audit",
    AdminDeviceRevoke = "admin_device_revoke",
    AdminUserSetState = "admin_user_set_state",
    AdminUserReset = "admin_user_reset",
    AdminUserList = "admin_user_list",
    AdminUserApprove = "admin_user_approve",
    AdminIncidentMode = "admin_incident_mode",
    Register = "register",
    AdminResidency = "admin_residency",
    AdminLegalHold = "admin_legal_hold",
    ConversationRetention = "conversation_retention",
}

/// A request with its client-chosen id.
#[derive(Debug, Clone)]
pub struct RequestFrame {
    /// Echoed back as `re`.
    pub id: u64,
    /// What is asked.
    pub request: Request,
}

/// A frame that could not be decoded, with what to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct DecodeError {
    /// The request id, when it could be read.
    pub re: Option<u64>,
    /// The code to answer with.
    pub code: ErrorCode,
    /// What is wrong, for people. Never echoes field values.
    pub message: String,
}

/// The head of a request. Both fields are taken as any JSON value so that a
/// wrong type in one does not hide the other (a numeric `type` still lets the
/// error name the request `id`).
#[derive(Deserialize)]
struct RequestHead {
    #[serde(rename = "type", default)]
    kind: Option<serde_json::Value>,
    #[serde(default)]
    id: Option<serde_json::Value>,
}

/// The head of a server frame.
#[derive(Deserialize)]
struct ServerHead<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    re: Option<u64>,
}

/// serde reads a struct from a JSON array by position; the protocol only
/// has objects, so anything else is refused before parsing.
fn is_object(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// Decodes one text frame from a client.
pub fn decode_request(text: &str) -> Result<RequestFrame, DecodeError> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(DecodeError {
            re: None,
            code: ErrorCode::TooLarge,
            message: format!("frame is larger than {MAX_FRAME_BYTES} bytes"),
        });
    }
    let not_object = || DecodeError {
        re: None,
        code: ErrorCode::BadFrame,
        message: "frame must be a JSON object".into(),
    };
    if !is_object(text) {
        return Err(not_object());
    }
    let head: RequestHead = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            not_object()
        } else {
            DecodeError {
                re: None,
                code: ErrorCode::BadFrame,
                message: format!("frame is not valid JSON ({})", e.classify_name()),
            }
        }
    })?;
    let id = match head.id {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        _ => None,
    };
    let Some(id) = id else {
        return Err(DecodeError {
            re: None,
            code: ErrorCode::BadRequest,
            message: "request needs an integer `id` of 0 or more".into(),
        });
    };
    let Some(serde_json::Value::String(kind)) = head.kind else {
        return Err(DecodeError {
            re: Some(id),
            code: ErrorCode::BadRequest,
            message: "request needs a `type` string".into(),
        });
    };
    match Request::decode_fields(&kind, text) {
        None => Err(DecodeError {
            re: Some(id),
            code: ErrorCode::BadRequest,
            message: "unknown request type".into(),
        }),
        Some(Err(e)) => Err(DecodeError {
            re: Some(id),
            code: ErrorCode::BadRequest,
            message: format!("invalid `{kind}` request: {}", describe(&e)),
        }),
        Some(Ok(request)) => Ok(RequestFrame { id, request }),
    }
}

/// A serde error in words that name the problem but never a value sent.
fn describe(e: &serde_json::Error) -> String {
    // serde's messages quote offending values ("invalid value: string \"...\"");
    // a value might be a password, so keep only the part before any quote.
    let msg = e.to_string();
    let cut = msg.find(['"', '`']).map_or(msg.as_str(), |i| &msg[..i]);
    let cut = cut
        .split(" at line ")
        .next()
        .unwrap_or(cut)
        .trim_end_matches([':', ' ', ',']);
    if cut.is_empty() {
        "malformed fields".into()
    } else {
        cut.to_string()
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Eof => "truncated",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Data => "wrong shape",
        }
    }
}

/// Encodes a request for sending (client side).
pub fn encode_request(id: u64, request: &Request) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        id: u64,
        #[serde(flatten)]
        request: &'a Request,
    }
    serde_json::to_string(&Out { id, request }).expect("requests always serialise")
}

// ----------------------------------------------------------------- replies

/// `ok` to `enrol_start`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrolStartOk {
    /// The account.
    pub user_id: UserId,
    /// Its username.
    pub username: Username,
    /// TOTP secret, base32.
    pub totp_secret: Secret,
    /// `otpauth://totp/...` URI for authenticator apps.
    pub totp_uri: Secret,
}

/// `ok` to `enrol_finish` and `login`: a new session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionOk {
    /// The user.
    pub user_id: UserId,
    /// The device the session belongs to.
    pub device_id: DeviceId,
    /// Bearer token for `resume`.
    pub token: Secret,
    /// When the session ends at the latest.
    pub expires_at: Timestamp,
}

/// `ok` to `resume`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumeOk {
    /// The user.
    pub user_id: UserId,
    /// The device.
    pub device_id: DeviceId,
    /// When the session ends at the latest.
    pub expires_at: Timestamp,
}

/// `ok` with no fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Empty {}

/// `ok` to `admin_user_create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminUserCreateOk {
    /// The new account.
    pub user_id: UserId,
    /// One-time enrolment code to hand to the user.
    pub enrol_code: Secret,
    /// When the code stops working.
    pub expires_at: Timestamp,
}

/// A user as the directory shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// Id.
    pub user_id: UserId,
    /// Username.
    pub username: Username,
    /// Display name.
    pub display_name: String,
    /// Role.
    pub role: Role,
}

/// `ok` to `lookup`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LookupOk {
    /// The users found.
    pub users: Vec<UserInfo>,
}

/// A device as the directory shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Owner.
    pub user_id: UserId,
    /// Id.
    pub device_id: DeviceId,
    /// X25519 public key.
    pub kem_pk: KemPublicKey,
    /// Ed25519 public key.
    pub sig_pk: SigPublicKey,
}

/// `ok` to `devices`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevicesOk {
    /// Active devices.
    pub devices: Vec<DeviceInfo>,
}

/// `ok` to `conversation_create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationCreateOk {
    /// The new conversation.
    pub conv_id: ConversationId,
    /// Where its messages are stored.
    pub residency: Region,
}

/// A conversation as its members see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationInfo {
    /// Id.
    pub conv_id: ConversationId,
    /// Title.
    pub title: String,
    /// Members, the caller included.
    pub members: Vec<UserId>,
    /// Where its messages are stored.
    pub residency: Region,
    /// Sequence number of the newest message (0 when empty).
    pub last_seq: u64,
}

/// `ok` to `conversations`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationsOk {
    /// The caller's conversations.
    pub conversations: Vec<ConversationInfo>,
}

/// `ok` to `send`: the message is durable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendOk {
    /// Conversation.
    pub conv_id: ConversationId,
    /// The message.
    pub msg_id: MessageId,
    /// Its sequence number in the conversation.
    pub seq: u64,
}

/// How far one member has got in a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberReceipt {
    /// The member.
    pub user_id: UserId,
    /// Highest `seq` any of their devices acknowledged.
    pub delivered_seq: u64,
    /// Highest `seq` they marked read.
    pub read_seq: u64,
}

/// `ok` to `receipts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiptsOk {
    /// One entry per member.
    pub receipts: Vec<MemberReceipt>,
}

/// `ok` to `history`: decode as this on the client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryOk {
    /// Messages in ascending `seq` order.
    pub messages: Vec<HistoryEntry>,
}

/// One message of a `history` page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Its sequence number.
    pub seq: u64,
    /// The envelope with this device's key entry.
    pub envelope: Envelope,
}

/// `ok` to `admin_wipe` and `wipe_own_device`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WipeOk {
    /// The order's id.
    pub wipe_id: String,
}

/// Where a wipe order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WipeState {
    /// Ordered; the device has not confirmed yet.
    Pending,
    /// The device sent a valid signed confirmation.
    Confirmed,
}

/// `ok` to `admin_wipe_status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WipeStatusOk {
    /// Pending or confirmed.
    pub state: WipeState,
}

/// A device's state as `device_list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// In use.
    Active,
    /// Revoked without a wipe.
    Revoked,
    /// Wipe ordered, not yet confirmed.
    WipePending,
    /// Wiped and confirmed.
    Wiped,
}

/// One device in `device_list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceDetail {
    /// Id.
    pub device_id: DeviceId,
    /// Name given at registration.
    pub name: String,
    /// State.
    pub state: DeviceStatus,
    /// When it was registered.
    pub created_at: Timestamp,
    /// When it last authenticated, if ever since registration.
    #[serde(default)]
    pub last_seen: Option<Timestamp>,
    /// Public keys, for safety numbers.
    pub kem_pk: KemPublicKey,
    /// Public keys, for safety numbers.
    pub sig_pk: SigPublicKey,
}

/// `ok` to `device_list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceListOk {
    /// The devices, oldest first.
    pub devices: Vec<DeviceDetail>,
}

/// push `wipe`: this device must destroy its keys and data, then send `wipe_done`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WipePush {
    /// The order.
    pub wipe_id: String,
    /// Why, for the person holding the device.
    pub reason: String,
}

/// `ok` to `admin_audit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminAuditOk {
    /// Entries in `seq` order.
    pub entries: Vec<crate::audit::AuditEntry>,
    /// The hash the first entry of the whole retained log follows: the
    /// genesis, or the hash of the last pruned entry.
    pub chain_start: String,
    /// `seq` of the first retained entry.
    pub first_seq: u64,
    /// The signed checkpoint of the pruned prefix, once retention pruned any.
    #[serde(default)]
    pub checkpoint: Option<crate::audit::Checkpoint>,
    /// The server's audit signing key (record it at deployment to check
    /// checkpoints against).
    pub audit_key: SigPublicKey,
    /// When the page was full: ask again with `after_seq` set to this (with
    /// a filter, a page may hold fewer entries than were read).
    #[serde(default)]
    pub next_after_seq: Option<u64>,
}

/// An account's state as admins see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountState {
    /// Created; enrolment not finished.
    Enrolling,
    /// Self-registered in incident mode, awaiting approval.
    PendingApproval,
    /// In use.
    Active,
    /// Disabled by an admin.
    Disabled,
}

/// One account in `admin_user_list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    /// Id.
    pub user_id: UserId,
    /// Username.
    pub username: Username,
    /// Display name.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// State.
    pub state: AccountState,
    /// Home region.
    pub region: Region,
    /// Legal hold on this user's conversations.
    pub legal_hold: bool,
}

/// `ok` to `admin_user_list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminUserListOk {
    /// A page of accounts, in username order.
    pub users: Vec<AccountInfo>,
    /// When more follow: pass as `after` for the next page.
    #[serde(default)]
    pub next_after: Option<Username>,
}

/// `ok` to `admin_user_reset` and `register`: a one-time enrolment code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrolCodeOk {
    /// The account.
    pub user_id: UserId,
    /// One-time code for `enrol_start`.
    pub enrol_code: Secret,
    /// When it stops working.
    pub expires_at: Timestamp,
}

/// Holdings in one region, for `admin_residency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionHoldings {
    /// The region.
    pub region: Region,
    /// Users whose home region it is.
    pub users: u64,
    /// Conversations stored there.
    pub conversations: u64,
    /// Messages stored there.
    pub messages: u64,
    /// Bytes of stored messages (sealed envelopes) there.
    pub message_bytes: u64,
}

/// `ok` to `admin_residency`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminResidencyOk {
    /// Where this deployment stores data.
    pub deployment_region: Region,
    /// Regions the policy permits.
    pub permitted: Vec<Region>,
    /// Where the permitted list comes from.
    pub policy_source: String,
    /// What is held, by region.
    pub regions: Vec<RegionHoldings>,
}

/// An `error` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// The request it answers, or `null` for the connection as a whole.
    pub re: Option<u64>,
    /// Stable code.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
    /// With `invalid_envelope`: active devices the key entries missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_devices: Option<Vec<DeviceId>>,
    /// With `invalid_envelope`: key entries for devices that are not recipients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_devices: Option<Vec<DeviceId>>,
}

impl ErrorFrame {
    /// An error with no extra fields.
    pub fn new(re: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            re,
            code,
            message: message.into(),
            missing_devices: None,
            extra_devices: None,
        }
    }
}

impl From<DecodeError> for ErrorFrame {
    fn from(e: DecodeError) -> Self {
        ErrorFrame::new(e.re, e.code, e.message)
    }
}

/// Encodes `ok` for request `re` with the fields of `body`.
pub fn encode_ok<T: Serialize>(re: u64, body: &T) -> String {
    #[derive(Serialize)]
    struct Out<'a, T> {
        #[serde(rename = "type")]
        kind: &'static str,
        re: u64,
        #[serde(flatten)]
        body: &'a T,
    }
    serde_json::to_string(&Out {
        kind: "ok",
        re,
        body,
    })
    .expect("reply types always serialise")
}

/// Encodes an `error` frame.
pub fn encode_error(e: &ErrorFrame) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(flatten)]
        e: &'a ErrorFrame,
    }
    serde_json::to_string(&Out { kind: "error", e }).expect("error frames always serialise")
}

// ------------------------------------------------------------------ pushes

/// push `message`: a stored message for this device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessagePush {
    /// Conversation.
    pub conv_id: ConversationId,
    /// Its sequence number.
    pub seq: u64,
    /// The envelope, with at least this device's key entry.
    pub envelope: Envelope,
}

/// What a receipt reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptKind {
    /// A device of the user acknowledged it.
    Delivered,
    /// The user marked it read.
    Read,
}

/// push `receipt`: a recipient got or read the sender's messages up to `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptPush {
    /// Conversation.
    pub conv_id: ConversationId,
    /// The sender's newest message covered.
    pub seq: u64,
    /// Who received or read it.
    pub user_id: UserId,
    /// Which device (for `read`, the device the user read on).
    pub device_id: DeviceId,
    /// Delivered or read.
    pub kind: ReceiptKind,
}

/// push `devices_changed`: a user's device list changed; refetch `devices`
/// before sealing to them again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicesChangedPush {
    /// Whose devices changed.
    pub user_id: UserId,
}

/// push `conversation_changed`: members or title changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationChangedPush {
    /// Conversation.
    pub conv_id: ConversationId,
    /// Title.
    pub title: String,
    /// Current members.
    pub members: Vec<UserId>,
}

/// push `unread_urgent`: an urgent message is still unread after the
/// escalation time; the sender should call instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadUrgentPush {
    /// Conversation.
    pub conv_id: ConversationId,
    /// The urgent message.
    pub seq: u64,
    /// Its id.
    pub msg_id: MessageId,
    /// Members who have not read it.
    pub unread: Vec<UserId>,
}

/// Encodes a push of `kind` with the fields of `body`.
pub fn encode_push<T: Serialize>(kind: &'static str, body: &T) -> String {
    #[derive(Serialize)]
    struct Out<'a, T> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(flatten)]
        body: &'a T,
    }
    serde_json::to_string(&Out { kind, body }).expect("push types always serialise")
}

/// An envelope cut into the part every recipient shares and one JSON key
/// entry per device, so a server serialises a message once and delivers each
/// device only its own key (see [`render_message_push`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitEnvelope {
    /// The envelope's JSON object without `keys` and without its closing brace.
    pub shared: String,
    /// Each recipient device and its key entry as JSON.
    pub entries: Vec<(DeviceId, String)>,
}

impl SplitEnvelope {
    /// Splits an envelope.
    pub fn new(envelope: &Envelope) -> Self {
        #[derive(Serialize)]
        struct Shared<'a> {
            v: crate::envelope::Version,
            msg_id: &'a MessageId,
            conv_id: &'a ConversationId,
            sender_user: &'a UserId,
            sender_device: &'a DeviceId,
            sent_at: &'a Timestamp,
            priority: crate::envelope::Priority,
            residency: Region,
            #[serde(with = "crate::b64")]
            nonce: &'a [u8; 12],
            #[serde(with = "crate::b64")]
            ciphertext: &'a Vec<u8>,
            #[serde(with = "crate::b64")]
            sig: &'a [u8; 64],
        }
        let e = envelope;
        let mut shared = serde_json::to_string(&Shared {
            v: e.v,
            msg_id: &e.msg_id,
            conv_id: &e.conv_id,
            sender_user: &e.sender_user,
            sender_device: &e.sender_device,
            sent_at: &e.sent_at,
            priority: e.priority,
            residency: e.residency,
            nonce: &e.nonce,
            ciphertext: &e.ciphertext,
            sig: &e.sig,
        })
        .expect("envelopes always serialise");
        shared.pop(); // the closing '}'
        let entries = e
            .keys
            .iter()
            .map(|k: &KeyEntry| {
                (
                    k.device_id.clone(),
                    serde_json::to_string(k).expect("key entries always serialise"),
                )
            })
            .collect();
        Self { shared, entries }
    }

    /// The key entry of `device`, if it is a recipient.
    pub fn entry_for(&self, device: &DeviceId) -> Option<&str> {
        self.entries
            .iter()
            .find(|(d, _)| d == device)
            .map(|(_, e)| e.as_str())
    }

    /// Writes the envelope JSON with only `entry` (or no keys) into `out`.
    pub fn write_for(&self, entry: Option<&str>, out: &mut String) {
        out.push_str(&self.shared);
        out.push_str(",\"keys\":[");
        if let Some(e) = entry {
            out.push_str(e);
        }
        out.push_str("]}");
    }
}

/// The `message` push for one device: the shared envelope part with that
/// device's key entry spliced in.
pub fn render_message_push(
    conv_id: &ConversationId,
    seq: u64,
    envelope: &SplitEnvelope,
    entry: Option<&str>,
) -> String {
    let mut out = String::with_capacity(envelope.shared.len() + 200);
    out.push_str("{\"type\":\"message\",\"conv_id\":");
    out.push_str(&serde_json::to_string(conv_id).expect("ids serialise"));
    out.push_str(",\"seq\":");
    out.push_str(&seq.to_string());
    out.push_str(",\"envelope\":");
    envelope.write_for(entry, &mut out);
    out.push('}');
    out
}

/// The `ok` to `history`: `(seq, envelope)` pairs, each envelope with only
/// the requesting device's key entry.
pub fn render_history_ok<'a>(
    re: u64,
    device: &DeviceId,
    messages: impl Iterator<Item = (u64, &'a SplitEnvelope)>,
) -> String {
    let mut out = format!("{{\"type\":\"ok\",\"re\":{re},\"messages\":[");
    let mut first = true;
    for (seq, env) in messages {
        let Some(entry) = env.entry_for(device) else {
            continue;
        };
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str("{\"seq\":");
        out.push_str(&seq.to_string());
        out.push_str(",\"envelope\":");
        env.write_for(Some(entry), &mut out);
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// What a client reads from the server, after the head is known.
#[derive(Debug, Clone)]
pub enum ServerFrame {
    /// `ok` to request `re`; decode its fields with [`decode_ok`].
    Ok {
        /// The request answered.
        re: u64,
    },
    /// An `error`.
    Error(ErrorFrame),
    /// A `message` push.
    Message(Box<MessagePush>),
    /// A `receipt` push.
    Receipt(ReceiptPush),
    /// A `devices_changed` push.
    DevicesChanged(DevicesChangedPush),
    /// A `conversation_changed` push.
    ConversationChanged(ConversationChangedPush),
    /// An `unread_urgent` push.
    UnreadUrgent(UnreadUrgentPush),
    /// A `wipe` push.
    Wipe(WipePush),
    /// A push this client does not know; ignore it.
    UnknownPush(String),
}

/// Decodes a frame from the server (client side).
pub fn decode_server_frame(text: &str) -> Result<ServerFrame, DecodeError> {
    let bad = |message: String| DecodeError {
        re: None,
        code: ErrorCode::BadFrame,
        message,
    };
    if !is_object(text) {
        return Err(bad("server frame is not a JSON object".into()));
    }
    let head: ServerHead<'_> =
        serde_json::from_str(text).map_err(|e| bad(format!("server frame: {}", describe(&e))))?;
    match head.kind.as_deref() {
        Some("ok") => match head.re {
            Some(re) => Ok(ServerFrame::Ok { re }),
            None => Err(bad("`ok` without `re`".into())),
        },
        Some("error") => serde_json::from_str(text)
            .map(ServerFrame::Error)
            .map_err(|e| bad(format!("error frame: {}", describe(&e)))),
        Some("message") => serde_json::from_str(text)
            .map(|m| ServerFrame::Message(Box::new(m)))
            .map_err(|e| bad(format!("message push: {}", describe(&e)))),
        Some("receipt") => push(text, ServerFrame::Receipt),
        Some("devices_changed") => push(text, ServerFrame::DevicesChanged),
        Some("conversation_changed") => push(text, ServerFrame::ConversationChanged),
        Some("unread_urgent") => push(text, ServerFrame::UnreadUrgent),
        Some("wipe") => push(text, ServerFrame::Wipe),
        Some(other) => Ok(ServerFrame::UnknownPush(other.to_string())),
        None => Err(bad("server frame without `type`".into())),
    }
}

fn push<T: DeserializeOwned>(
    text: &str,
    wrap: impl FnOnce(T) -> ServerFrame,
) -> Result<ServerFrame, DecodeError> {
    serde_json::from_str(text)
        .map(wrap)
        .map_err(|e| DecodeError {
            re: None,
            code: ErrorCode::BadFrame,
            message: format!("push: {}", describe(&e)),
        })
}

/// Decodes the fields of an `ok` frame as `T`.
pub fn decode_ok<T: DeserializeOwned>(text: &str) -> Result<T, DecodeError> {
    serde_json::from_str(text).map_err(|e| DecodeError {
        re: None,
        code: ErrorCode::BadFrame,
        message: format!("unexpected reply: {}", describe(&e)),
    })
}
