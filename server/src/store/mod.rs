//! Persistence: the [`Store`] trait (the seam where a PostgreSQL backend will
//! later fit), its embedded sled implementation, encryption at rest, and the
//! single writer that group-commits messages.
//!
//! Nothing outside this module knows sled exists or how keys are laid out.

mod data_key;
mod keys;
pub mod model;
mod rekey;
mod seal;
mod sled_store;
mod space;
mod writer;

pub use data_key::{DataKeySource, load_or_create_data_key};
pub use model::*;
pub use rekey::{check_no_interrupted_rotation, rotate as rotate_data_key};
pub use sled_store::SledStore;
pub use writer::{Committed, Writer};

use wardline_protocol::{ConversationId, DeviceId, MessageId, UserId, Username};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The disk or the database failed.
    #[error("storage I/O failed: {0}")]
    Io(String),
    /// Writes are refused: the disk is nearly full or read-only, or an
    /// earlier write failed (see `space`). Nothing was written.
    #[error("writes are refused: {0}")]
    Refused(&'static str),
    /// Stored bytes are unreadable (wrong data key, or damage).
    #[error("stored data is unreadable: {0}")]
    Corrupt(&'static str),
    /// The data key does not open this data directory.
    #[error(
        "the data key does not match this data directory: use the data.key (or \
         WARDLINE_DATA_KEY) that was in use when the directory was created"
    )]
    WrongKey,
    /// A unique name is taken.
    #[error("already exists")]
    Conflict,
    /// The writer has stopped (the server is shutting down).
    #[error("the store is closed")]
    Closed,
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// Shorthand for store results.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Everything the server keeps. Implementations are shared between tasks.
///
/// `append_messages` must only be called by the [`Writer`], which is what
/// makes sequence numbers gap-free without a lock on the send path.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// True when no user exists yet (a new deployment).
    fn has_users(&self) -> Result<bool>;
    /// Creates a user; `Conflict` if the username is taken.
    fn insert_user(&self, user: &User) -> Result<()>;
    /// Replaces a user record.
    fn put_user(&self, user: &User) -> Result<()>;
    /// A user by id.
    fn user(&self, id: &UserId) -> Result<Option<User>>;
    /// A user id by username.
    fn user_id_by_username(&self, name: &Username) -> Result<Option<UserId>>;

    /// Stores a pending enrolment under the hash of its code.
    fn put_enrolment(&self, code_hash: &[u8; 32], e: &Enrolment) -> Result<()>;
    /// The pending enrolment for a code hash.
    fn enrolment(&self, code_hash: &[u8; 32]) -> Result<Option<Enrolment>>;
    /// Removes a spent enrolment code.
    fn remove_enrolment(&self, code_hash: &[u8; 32]) -> Result<()>;

    /// Creates or replaces a device.
    fn put_device(&self, d: &Device) -> Result<()>;
    /// A device by id.
    fn device(&self, id: &DeviceId) -> Result<Option<Device>>;
    /// Records when a device last authenticated.
    fn set_last_seen(&self, device: &DeviceId, at_ms: i64) -> Result<()>;
    /// All devices of a user, in any state.
    fn devices_of(&self, user: &UserId) -> Result<Vec<Device>>;

    /// Creates or replaces a wipe order.
    fn put_wipe(&self, w: &WipeOrder) -> Result<()>;
    /// A wipe order by id.
    fn wipe(&self, wipe_id: &str) -> Result<Option<WipeOrder>>;
    /// Removes `device`'s key entry from every stored message of `conv` after
    /// `after`: what a wiped device had not yet received can never be opened
    /// with its keys, even from a stolen copy of the store.
    fn purge_device_entries(
        &self,
        device: &DeviceId,
        conv: &ConversationId,
        after: u64,
    ) -> Result<usize>;

    /// Stores a session under the hash of its token.
    fn put_session(&self, token_hash: &[u8; 32], s: &Session) -> Result<()>;
    /// The session for a token hash.
    fn session(&self, token_hash: &[u8; 32]) -> Result<Option<Session>>;
    /// Ends a session.
    fn remove_session(&self, token_hash: &[u8; 32]) -> Result<()>;

    /// Creates a conversation and indexes it under each member.
    fn insert_conversation(&self, c: &Conversation) -> Result<()>;
    /// Replaces a conversation's record and membership index; `removed`
    /// members lose it from their list.
    fn update_conversation(&self, c: &Conversation, removed: &[UserId]) -> Result<()>;
    /// A conversation by id.
    fn conversation(&self, id: &ConversationId) -> Result<Option<Conversation>>;
    /// The conversations a user belongs to.
    fn conversations_of(&self, user: &UserId) -> Result<Vec<ConversationId>>;

    /// Appends messages in order, assigning sequence numbers (writer only).
    fn append_messages(&self, batch: &[NewMessage], now_ms: i64) -> Result<Vec<Appended>>;
    /// Where a message id is stored, if it is: its conversation and `seq`.
    fn find_message(&self, id: &MessageId) -> Result<Option<(ConversationId, u64)>>;
    /// Urgent messages not yet read by all their recipients.
    fn urgent_watches(&self) -> Result<Vec<UrgentWatch>>;
    /// Updates an urgent watch (after a re-notification).
    fn put_urgent_watch(&self, w: &UrgentWatch) -> Result<()>;
    /// Stops watching an urgent message.
    fn remove_urgent_watch(&self, conv: &ConversationId, seq: u64) -> Result<()>;
    /// The newest sequence number of a conversation (0 when empty).
    fn last_seq(&self, conv: &ConversationId) -> Result<u64>;
    /// Up to `limit` messages with `seq > after`, in order.
    fn messages_after(
        &self,
        conv: &ConversationId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>>;

    /// `(seq, sender)` of each message with `after < seq <= to`, in order
    /// (what receipts need, without reading whole messages).
    fn senders_between(
        &self,
        conv: &ConversationId,
        after: u64,
        to: u64,
    ) -> Result<Vec<(u64, UserId)>>;

    /// The highest `seq` this device acknowledged in a conversation.
    fn cursor(&self, device: &DeviceId, conv: &ConversationId) -> Result<u64>;
    /// Moves a cursor forward (never back); returns the new value.
    fn advance_cursor(&self, device: &DeviceId, conv: &ConversationId, seq: u64) -> Result<u64>;

    /// The highest `seq` the user marked read in a conversation.
    fn read_cursor(&self, user: &UserId, conv: &ConversationId) -> Result<u64>;
    /// Moves a read cursor forward (never back); returns the new value.
    fn advance_read(&self, user: &UserId, conv: &ConversationId, seq: u64) -> Result<u64>;

    /// Writes an audit entry under its `seq` (the audit log appends; tests
    /// use it to tamper).
    fn put_audit(&self, e: &wardline_protocol::audit::AuditEntry) -> Result<()>;
    /// Up to `limit` audit entries with `seq > after`, in order.
    fn audit_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<wardline_protocol::audit::AuditEntry>>;
    /// Deletes audit entries with `seq < first_kept` and stores the
    /// checkpoint that vouches for them, in one atomic step.
    fn prune_audit(
        &self,
        first_kept: u64,
        checkpoint: &wardline_protocol::audit::Checkpoint,
    ) -> Result<()>;
    /// The latest audit checkpoint.
    fn audit_checkpoint(&self) -> Result<Option<wardline_protocol::audit::Checkpoint>>;
    /// The newest audit entry.
    fn audit_last(&self) -> Result<Option<wardline_protocol::audit::AuditEntry>>;

    /// Every user.
    fn all_users(&self) -> Result<Vec<User>>;
    /// Every conversation.
    fn all_conversations(&self) -> Result<Vec<Conversation>>;
    /// Number of stored messages of a conversation and their stored bytes.
    fn message_stats(&self, conv: &ConversationId) -> Result<(u64, u64)>;
    /// Deletes the messages of `conv` stored before `before_ms` (with their
    /// de-duplication entries and urgent watches); returns how many.
    fn delete_messages_before(&self, conv: &ConversationId, before_ms: i64) -> Result<u64>;
    /// A deployment-wide switch (incident mode).
    fn flag(&self, name: &str) -> Result<bool>;
    /// Sets a deployment-wide switch.
    fn set_flag(&self, name: &str, on: bool) -> Result<()>;

    /// The server's audit signing key.
    fn audit_signing_key(&self) -> wardline_protocol::DeviceSecrets;

    /// Makes every write so far durable: on disk, past the drive's cache.
    fn sync(&self) -> Result<()>;

    /// Why writes are refused right now, if they are: the disk is nearly
    /// full or read-only (writes resume by themselves once it is not), or a
    /// write failed (a restart is needed). Reads go on regardless.
    fn write_refusal(&self) -> Option<&'static str>;
}
