//! Sending, acknowledging and catching up on messages.

use std::collections::BTreeSet;

use wardline_protocol::wire::{self, Ack, ErrorCode, SendOk, SplitEnvelope, render_message_push};
use wardline_protocol::{ConversationId, DeviceId, Envelope};

use crate::auth::Authed;
use crate::conversations;
use crate::directory::active_devices;
use crate::error::ApiError;
use crate::state::State;
use crate::store::{Appended, NewMessage, Writer};

/// Messages read from the store at a time when catching a device up.
pub const BACKLOG_PAGE: usize = 256;

/// Checks everything the server can see of an envelope (PROTOCOL.md,
/// "Opening": the server's part) and prepares it for the store.
pub fn check_send(
    state: &State,
    authed: &Authed,
    envelope: &Envelope,
) -> Result<NewMessage, ApiError> {
    if envelope.sender_user != authed.user.id || envelope.sender_device != authed.device_id {
        return Err(ApiError::new(
            ErrorCode::InvalidEnvelope,
            "sender_user and sender_device must be your own user and this device",
        ));
    }
    let conv = conversations::for_member(state, authed, &envelope.conv_id)?;
    if envelope.residency != conv.residency {
        return Err(ApiError::new(
            ErrorCode::ResidencyDenied,
            format!(
                "this conversation's messages are stored in {}; seal with residency {}",
                conv.residency, conv.residency
            ),
        ));
    }
    let mut named = BTreeSet::new();
    for k in &envelope.keys {
        if !named.insert(&k.device_id) {
            return Err(ApiError::new(
                ErrorCode::InvalidEnvelope,
                "a device has more than one key entry",
            ));
        }
    }
    let mut expected = BTreeSet::new();
    for m in &conv.members {
        for d in active_devices(state, m)? {
            expected.insert(d.id);
        }
    }
    let missing: Vec<DeviceId> = expected
        .iter()
        .filter(|d| !named.contains(d))
        .cloned()
        .collect();
    let extra: Vec<DeviceId> = named
        .iter()
        .filter(|d| !expected.contains(**d))
        .map(|d| (*d).clone())
        .collect();
    if !missing.is_empty() || !extra.is_empty() {
        return Err(ApiError::device_mismatch(missing, extra));
    }
    Ok(NewMessage {
        conv_id: envelope.conv_id.clone(),
        msg_id: envelope.msg_id,
        priority: envelope.priority,
        envelope: SplitEnvelope::new(envelope),
    })
}

/// Commits a checked message; resolves to the `ok` frame once it is durable.
pub async fn commit(writer: Writer, re: u64, msg: NewMessage) -> Result<String, ApiError> {
    let conv_id = msg.conv_id.clone();
    let msg_id = msg.msg_id;
    let seq = match writer.append(msg).await? {
        Appended::Stored(seq) | Appended::Duplicate(seq) => seq,
        Appended::IdClash => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "this msg_id is already used by a message of another conversation",
            ));
        }
    };
    Ok(wire::encode_ok(
        re,
        &SendOk {
            conv_id,
            msg_id,
            seq,
        },
    ))
}

/// `ack`: moves this device's cursor forward.
pub fn ack(state: &State, authed: &Authed, req: Ack) -> Result<(), ApiError> {
    conversations::for_member(state, authed, &req.conv_id)?;
    let last = state.store.last_seq(&req.conv_id)?;
    if req.seq > last {
        return Err(ApiError::bad_request(format!(
            "seq {} is beyond the newest message ({last})",
            req.seq
        )));
    }
    state
        .store
        .advance_cursor(&authed.device_id, &req.conv_id, req.seq)?;
    Ok(())
}

/// One page of catch-up: `(seq, frame)` pairs, and where the next page
/// starts if there is one.
#[derive(Debug)]
pub struct BacklogPage {
    /// Rendered `message` pushes with their `seq`.
    pub frames: Vec<(u64, String)>,
    /// Read on after this `seq`; `None` when the conversation is exhausted.
    pub next_after: Option<u64>,
}

/// The next page of stored messages after `after` for `device`, rendered as
/// `message` pushes holding only that device's key entry. Messages sealed
/// before the device existed hold no key for it and are skipped.
pub fn backlog_page(
    state: &State,
    device: &DeviceId,
    conv: &ConversationId,
    after: u64,
) -> Result<BacklogPage, ApiError> {
    let page = state.store.messages_after(conv, after, BACKLOG_PAGE)?;
    let next_after = if page.len() == BACKLOG_PAGE {
        page.last().map(|m| m.seq)
    } else {
        None
    };
    let frames = page
        .iter()
        .filter_map(|m| {
            let entry = m.envelope.entry_for(device)?;
            Some((
                m.seq,
                render_message_push(conv, m.seq, &m.envelope, Some(entry)),
            ))
        })
        .collect();
    Ok(BacklogPage { frames, next_after })
}
