//! Receiving: turns the pushes queued on a connection into verified,
//! decrypted messages in the keystore, then acknowledges them.
//!
//! After `resume` the server sends the backlog (everything after this
//! device's acknowledged `seq`, per conversation) before it answers any
//! later request, so once [`catch_up`] has its `conversations` answer the
//! backlog is queued. Each batch is opened, saved in the keystore and only
//! then acknowledged, so a crash never loses a message; a message that
//! arrives twice (a reconnect racing an acknowledgement) is recognised by
//! its `(conv_id, seq)` and not shown again. A message that cannot be opened
//! is reported and acknowledged (it will never open), and does not stop the
//! others.
//!
//! Envelopes name people by user id only; the usernames of senders,
//! members and readers this device has not seen yet are fetched with
//! `users` ([`learn_names`]) so they show by name.

use std::collections::{BTreeMap, BTreeSet};

use wardline_protocol::wire::{
    Ack, ConversationChangedPush, ConversationInfo, Conversations, ConversationsOk, Devices,
    DevicesOk, Empty, LookupOk, MessagePush, ReceiptPush, Receipts, ReceiptsOk, UnreadUrgentPush,
    UserInfo, Users,
};
use wardline_protocol::{ConversationId, DeviceSecrets, MessageId, Request, UserId, envelope};

use crate::connection::{Connection, ConnectionError, Push};
use crate::error::Error;
use crate::keystore::{KeyChange, Keystore, Reading, State, StoredMessage};

/// A message that could not be opened.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Conversation, if known.
    pub conv_id: Option<ConversationId>,
    /// Sequence number, if known.
    pub seq: Option<u64>,
    /// Message id, if known.
    pub msg_id: Option<MessageId>,
    /// Claimed sender, if known.
    pub sender_user: Option<UserId>,
    /// Why.
    pub reason: String,
}

/// What a round of receiving brought.
#[derive(Debug, Default)]
pub struct Received {
    /// Messages new to this device (cached now), in arrival order.
    pub messages: Vec<StoredMessage>,
    /// Messages that could not be opened.
    pub problems: Vec<Problem>,
    /// Receipts for the user's messages.
    pub receipts: Vec<ReceiptPush>,
    /// The user's urgent messages still unread by someone.
    pub unread_urgent: Vec<UnreadUrgentPush>,
    /// Conversations whose title or members changed.
    pub conversations_changed: Vec<ConversationChangedPush>,
    /// Senders' devices whose keys differ from the pinned ones.
    pub key_changes: Vec<KeyChange>,
    /// Users whose devices changed.
    pub devices_changed: Vec<UserId>,
}

impl Received {
    /// Everyone this round names: senders, members, readers.
    fn people(&self) -> Vec<UserId> {
        let mut out: Vec<UserId> = self
            .messages
            .iter()
            .map(|m| m.sender_user.clone())
            .collect();
        out.extend(self.receipts.iter().map(|r| r.user_id.clone()));
        out.extend(
            self.unread_urgent
                .iter()
                .flat_map(|u| u.unread.iter().cloned()),
        );
        out.extend(
            self.conversations_changed
                .iter()
                .flat_map(|c| c.members.iter().cloned()),
        );
        out
    }

    fn absorb(&mut self, other: Received) {
        self.messages.extend(other.messages);
        self.problems.extend(other.problems);
        self.receipts.extend(other.receipts);
        self.unread_urgent.extend(other.unread_urgent);
        self.conversations_changed
            .extend(other.conversations_changed);
        self.key_changes.extend(other.key_changes);
        self.devices_changed.extend(other.devices_changed);
    }
}

/// Lists the user's conversations (which also makes sure the backlog has
/// arrived), records them in the keystore, and receives everything queued.
pub async fn catch_up(
    conn: &mut Connection,
    keystore: &mut Keystore,
) -> Result<(Vec<ConversationInfo>, Received), Error> {
    let listed: ConversationsOk = conn.call(Request::Conversations(Conversations {})).await?;
    keystore
        .state_mut()
        .update_conversations(&listed.conversations);
    let received = receive_queued(conn, keystore).await?;
    let members: Vec<UserId> = listed
        .conversations
        .iter()
        .flat_map(|c| c.members.iter().cloned())
        .collect();
    learn_names(conn, keystore, &members).await?;
    Ok((listed.conversations, received))
}

/// The most ids one `users` request may name.
const USERS_PER_REQUEST: usize = 250;

/// Directory entries for `users` by id (`users`, in requests of at most
/// 250 ids), their usernames remembered. Unknown ids are left out.
pub async fn directory(
    conn: &mut Connection,
    keystore: &mut Keystore,
    users: &BTreeSet<UserId>,
) -> Result<Vec<UserInfo>, Error> {
    let ids: Vec<UserId> = users.iter().cloned().collect();
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(USERS_PER_REQUEST) {
        let page: LookupOk = conn
            .call(Request::Users(Users {
                user_ids: chunk.to_vec(),
            }))
            .await?;
        let state = keystore.state_mut();
        for u in page
            .users
            .into_iter()
            .filter(|u| users.contains(&u.user_id))
        {
            state.remember_username(&u.user_id, &u.username);
            found.push(u);
        }
    }
    Ok(found)
}

/// Learns the usernames of those of `users` this device does not know yet,
/// so senders and members show by name rather than by id. A server that
/// cannot answer (one older than `users`) leaves them shown by id; a lost
/// connection or a wipe order is still an error.
pub async fn learn_names<'a>(
    conn: &mut Connection,
    keystore: &mut Keystore,
    users: impl IntoIterator<Item = &'a UserId>,
) -> Result<(), Error> {
    let state = keystore.state();
    let unknown: BTreeSet<UserId> = users
        .into_iter()
        .filter(|u| state.username_of(u).is_none())
        .cloned()
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    match directory(conn, keystore, &unknown).await {
        Ok(_) => Ok(()),
        Err(Error::Connection(ConnectionError::Server(_) | ConnectionError::Protocol(_))) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Handles every push queued on `conn`, batch by batch, until none is left.
pub async fn receive_queued(
    conn: &mut Connection,
    keystore: &mut Keystore,
) -> Result<Received, Error> {
    let secrets = keystore.state().device_secrets();
    let mut all = Received::default();
    loop {
        let batch: Vec<Push> = conn.take_pushes().into_iter().collect();
        if batch.is_empty() {
            break;
        }
        let round = receive_batch(conn, keystore, &secrets, batch).await?;
        all.absorb(round);
    }
    Ok(all)
}

/// Handles pushes already taken from the connection (by
/// [`Connection::next_push`]), then anything queued meanwhile.
pub async fn receive(
    conn: &mut Connection,
    keystore: &mut Keystore,
    pushes: Vec<Push>,
) -> Result<Received, Error> {
    let secrets = keystore.state().device_secrets();
    let mut all = receive_batch(conn, keystore, &secrets, pushes).await?;
    all.absorb(receive_queued(conn, keystore).await?);
    Ok(all)
}

async fn receive_batch(
    conn: &mut Connection,
    keystore: &mut Keystore,
    secrets: &DeviceSecrets,
    batch: Vec<Push>,
) -> Result<Received, Error> {
    let mut out = Received::default();
    let mut highest: BTreeMap<ConversationId, u64> = BTreeMap::new();
    let mut messages = Vec::new();
    let mut seen = BTreeSet::new();
    for push in batch {
        match push {
            Push::Message(m) => {
                if seen.insert((m.conv_id.clone(), m.seq)) {
                    messages.push(m);
                }
            }
            Push::Unreadable {
                conv_id,
                seq,
                reason,
            } => {
                if let (Some(c), Some(s)) = (&conv_id, seq) {
                    raise(&mut highest, c, s);
                }
                out.problems.push(Problem {
                    conv_id,
                    seq,
                    msg_id: None,
                    sender_user: None,
                    reason: format!("the server sent it malformed ({reason})"),
                });
            }
            Push::Receipt(r) => out.receipts.push(r),
            Push::DevicesChanged(d) => out.devices_changed.push(d.user_id),
            Push::ConversationChanged(c) => {
                let state = keystore.state_mut();
                if let Some(known) = state.conversations.get_mut(&c.conv_id) {
                    known.title.clone_from(&c.title);
                    known.members.clone_from(&c.members);
                }
                out.conversations_changed.push(c);
            }
            Push::UnreadUrgent(u) => out.unread_urgent.push(u),
        }
    }
    out.key_changes = fetch_sender_keys(conn, keystore, &messages).await?;
    for m in messages {
        raise(&mut highest, &m.conv_id, m.seq);
        // Newly received: a replaced key is never accepted here, since its
        // holder could backdate `sent_at` into the time it was pinned.
        match open_one(keystore.state(), secrets, &m, Reading::New) {
            Ok(stored) => {
                if keystore.state_mut().store_message(stored.clone()) {
                    out.messages.push(stored);
                }
            }
            Err(reason) => out.problems.push(Problem {
                conv_id: Some(m.conv_id.clone()),
                seq: Some(m.seq),
                msg_id: Some(m.envelope.msg_id),
                sender_user: Some(m.envelope.sender_user.clone()),
                reason,
            }),
        }
    }
    if !highest.is_empty() || !out.conversations_changed.is_empty() {
        // Saved before acknowledging: a crash in between means the server
        // sends it again, and the cache recognises it.
        keystore.save()?;
        for (conv_id, seq) in highest {
            let _: Empty = conn.call(Request::Ack(Ack { conv_id, seq })).await?;
        }
    }
    // Names are for display only: failing to learn them must not lose this
    // round (its messages are cached now, so a repeat would not show them
    // again). A lost connection or a wipe order shows at the next request.
    let _ = learn_names(conn, keystore, &out.people()).await;
    Ok(out)
}

fn raise(highest: &mut BTreeMap<ConversationId, u64>, conv: &ConversationId, seq: u64) {
    let entry = highest.entry(conv.clone()).or_insert(seq);
    *entry = (*entry).max(seq);
}

/// Asks the directory, in one request, for the devices of senders whose
/// device keys are not pinned yet, and pins them.
async fn fetch_sender_keys(
    conn: &mut Connection,
    keystore: &mut Keystore,
    messages: &[Box<MessagePush>],
) -> Result<Vec<KeyChange>, Error> {
    let unknown: BTreeSet<UserId> = messages
        .iter()
        .map(|m| &m.envelope)
        .filter(|e| {
            keystore
                .state()
                .device_keys(&e.sender_user, &e.sender_device)
                .is_none()
        })
        .map(|e| e.sender_user.clone())
        .collect();
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let listed: DevicesOk = conn
        .call(Request::Devices(Devices {
            user_ids: unknown.iter().cloned().collect(),
        }))
        .await?;
    let devices: Vec<_> = listed
        .devices
        .into_iter()
        .filter(|d| unknown.contains(&d.user_id))
        .collect();
    Ok(keystore.state_mut().remember_devices(&devices))
}

/// Verifies and decrypts one pushed message, just received or read again
/// (`reading`); the error says why it failed.
pub fn open_one(
    state: &State,
    secrets: &DeviceSecrets,
    push: &MessagePush,
    reading: Reading,
) -> Result<StoredMessage, String> {
    let e = &push.envelope;
    if e.conv_id != push.conv_id {
        return Err(
            "the server delivered it under a different conversation than it was sent to".into(),
        );
    }
    // The key pinned for the sending device: the current pin, or, for a
    // message read again, one verified in person and replaced since by
    // `verify --confirm` that was pinned when the message was sent.
    let key = state.signing_key(e, reading)?;
    let body = envelope::open(e, &state.device_id, secrets, &key.keys().sig_pk)
        .map_err(|err| err.to_string())?;
    Ok(StoredMessage {
        conv_id: push.conv_id.clone(),
        seq: push.seq,
        msg_id: e.msg_id,
        sender_user: e.sender_user.clone(),
        sender_device: e.sender_device.clone(),
        sent_at: e.sent_at.clone(),
        priority: e.priority,
        body,
        envelope: Some(StoredMessage::cached_envelope(e, &state.device_id)),
    })
}

/// Learns how far the user has read `conv` on any device (`receipts`), so
/// unread counts agree across devices.
pub async fn refresh_read_cursor(
    conn: &mut Connection,
    keystore: &mut Keystore,
    conv: &ConversationId,
) -> Result<(), Error> {
    let receipts: ReceiptsOk = conn
        .call(Request::Receipts(Receipts {
            conv_id: conv.clone(),
        }))
        .await?;
    let me = keystore.state().user_id.clone();
    if let Some(mine) = receipts.receipts.iter().find(|r| r.user_id == me) {
        keystore.state_mut().mark_read(conv, mine.read_seq);
    }
    Ok(())
}
