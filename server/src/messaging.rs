//! Sending, acknowledging and catching up on messages.

use std::collections::BTreeSet;

use std::collections::BTreeMap;

use wardline_protocol::wire::{
    self, Ack, ErrorCode, History, MemberReceipt, Read, ReceiptKind, ReceiptPush, Receipts,
    ReceiptsOk, SendOk, SplitEnvelope, render_message_push,
};
use wardline_protocol::{ConversationId, DeviceId, Envelope, UserId};

use crate::auth::Authed;
use crate::conversations;
use crate::directory::active_devices;
use crate::error::ApiError;
use crate::notify;
use crate::state::State;
use crate::store::{Appended, NewMessage, Writer};

/// Messages read from the store at a time when catching a device up.
pub const BACKLOG_PAGE: usize = 32;
/// Bytes of frames in one catch-up page, about.
pub const BACKLOG_PAGE_BYTES: usize = 1024 * 1024;

/// What to do with a `send` after the server's checks.
#[derive(Debug)]
pub enum SendPlan {
    /// Store it (and answer once durable).
    Store(NewMessage),
    /// Already stored: answer with this `seq` at once, store nothing.
    AlreadyStored(u64),
}

/// Checks everything the server can see of an envelope (PROTOCOL.md,
/// "Opening": the server's part) and prepares it for the store.
///
/// A re-sent `msg_id` is recognised before the device checks, so a client
/// retrying after a reconnect gets its `seq` even if devices changed since.
pub fn check_send(
    state: &State,
    authed: &Authed,
    envelope: &Envelope,
) -> Result<SendPlan, ApiError> {
    if envelope.sender_user != authed.user.id || envelope.sender_device != authed.device_id {
        return Err(ApiError::new(
            ErrorCode::InvalidEnvelope,
            "sender_user and sender_device must be your own user and this device",
        ));
    }
    let conv = conversations::for_member(state, authed, &envelope.conv_id)?;
    match state.store.find_message(&envelope.msg_id)? {
        Some((c, seq)) if c == envelope.conv_id => return Ok(SendPlan::AlreadyStored(seq)),
        Some(_) => return Err(id_clash()),
        None => {}
    }
    if envelope.ciphertext.len() < 16 {
        return Err(ApiError::new(
            ErrorCode::InvalidEnvelope,
            "ciphertext is shorter than its 16-byte authentication tag",
        ));
    }
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
    // Every active device of every member must be named, and nothing else:
    // count the matches, and only on a mismatch work out what is extra.
    let mut matched = 0;
    let mut missing = Vec::new();
    let mut expected = Vec::new();
    for m in &conv.members {
        for d in active_devices(state, m)? {
            if named.contains(&d.id) {
                matched += 1;
                expected.push(d.id);
            } else {
                missing.push(d.id);
            }
        }
    }
    if !missing.is_empty() || matched != named.len() {
        let extra: Vec<DeviceId> = named
            .iter()
            .filter(|d| !expected.contains(d))
            .map(|d| (*d).clone())
            .collect();
        return Err(ApiError::device_mismatch(missing, extra));
    }
    Ok(SendPlan::Store(NewMessage {
        conv_id: envelope.conv_id.clone(),
        sender_user: envelope.sender_user.clone(),
        msg_id: envelope.msg_id,
        priority: envelope.priority,
        envelope: SplitEnvelope::new(envelope),
        urgent_recipients: if envelope.priority == wardline_protocol::Priority::Urgent {
            conv.members
                .iter()
                .filter(|m| **m != authed.user.id)
                .cloned()
                .collect()
        } else {
            Vec::new()
        },
    }))
}

fn id_clash() -> ApiError {
    ApiError::new(
        ErrorCode::Conflict,
        "this msg_id is already used by a message of another conversation",
    )
}

/// Commits a checked message; resolves to the `ok` frame once it is durable.
pub async fn commit(writer: Writer, re: u64, msg: NewMessage) -> Result<String, ApiError> {
    let conv_id = msg.conv_id.clone();
    let msg_id = msg.msg_id;
    let seq = match writer.append(msg).await? {
        Appended::Stored(seq) | Appended::Duplicate(seq) => seq,
        Appended::IdClash => return Err(id_clash()),
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

/// Most messages one receipt scan looks at; older ones in a huge jump are
/// covered by the receipt for the newest anyway.
const RECEIPT_SCAN: u64 = 1000;

/// `ack`: moves this device's cursor forward and tells the senders.
pub fn ack(state: &State, authed: &Authed, req: Ack) -> Result<(), ApiError> {
    conversations::for_member(state, authed, &req.conv_id)?;
    check_seq(state, &req.conv_id, req.seq)?;
    let before = state.store.cursor(&authed.device_id, &req.conv_id)?;
    let now = state
        .store
        .advance_cursor(&authed.device_id, &req.conv_id, req.seq)?;
    if now > before {
        send_receipts(
            state,
            authed,
            &req.conv_id,
            before,
            now,
            ReceiptKind::Delivered,
        )?;
    }
    Ok(())
}

/// `read`: moves the user's read cursor forward and tells the senders.
pub fn read(state: &State, authed: &Authed, req: Read) -> Result<(), ApiError> {
    conversations::for_member(state, authed, &req.conv_id)?;
    check_seq(state, &req.conv_id, req.seq)?;
    let before = state.store.read_cursor(&authed.user.id, &req.conv_id)?;
    let now = state
        .store
        .advance_read(&authed.user.id, &req.conv_id, req.seq)?;
    if now > before {
        send_receipts(state, authed, &req.conv_id, before, now, ReceiptKind::Read)?;
    }
    Ok(())
}

fn check_seq(state: &State, conv: &ConversationId, seq: u64) -> Result<(), ApiError> {
    let last = state.store.last_seq(conv)?;
    if seq > last {
        return Err(ApiError::bad_request(format!(
            "seq {seq} is beyond the newest message ({last})"
        )));
    }
    Ok(())
}

/// One receipt per sender of a message in `(from, to]`, naming that
/// sender's newest message in the range, pushed to the sender's devices.
fn send_receipts(
    state: &State,
    authed: &Authed,
    conv: &ConversationId,
    from: u64,
    to: u64,
    kind: ReceiptKind,
) -> Result<(), ApiError> {
    let after = from.max(to.saturating_sub(RECEIPT_SCAN));
    let mut newest: BTreeMap<UserId, u64> = BTreeMap::new();
    for (seq, sender) in state.store.senders_between(conv, after, to)? {
        if sender != authed.user.id {
            newest.insert(sender, seq);
        }
    }
    for (sender, seq) in newest {
        let frame = wire::encode_push(
            "receipt",
            &ReceiptPush {
                conv_id: conv.clone(),
                seq,
                user_id: authed.user.id.clone(),
                device_id: authed.device_id.clone(),
                kind,
            },
        );
        notify::to_users(state, [&sender], &frame)?;
    }
    Ok(())
}

/// `receipts`: each member's delivered and read position.
pub fn receipts(state: &State, authed: &Authed, req: Receipts) -> Result<ReceiptsOk, ApiError> {
    let conv = conversations::for_member(state, authed, &req.conv_id)?;
    let mut receipts = Vec::with_capacity(conv.members.len());
    for m in &conv.members {
        let mut delivered_seq = 0;
        for d in state.store.devices_of(m)? {
            delivered_seq = delivered_seq.max(state.store.cursor(&d.id, &conv.id)?);
        }
        receipts.push(MemberReceipt {
            user_id: m.clone(),
            delivered_seq,
            read_seq: state.store.read_cursor(m, &conv.id)?,
        });
    }
    Ok(ReceiptsOk { receipts })
}

/// Default and largest page for `history`.
pub const HISTORY_DEFAULT: u64 = 100;
/// The protocol lets a server cap `limit`, but not below 100.
pub const HISTORY_MAX: u64 = 500;
/// A `history` reply holds at most about this many bytes of envelopes.
pub const HISTORY_MAX_BYTES: usize = 1024 * 1024;

/// `history`: up to `limit` messages below `before_seq`, oldest first, each
/// with only this device's key entry (messages it cannot open are left out).
pub fn history(state: &State, authed: &Authed, re: u64, req: History) -> Result<String, ApiError> {
    conversations::for_member(state, authed, &req.conv_id)?;
    let limit = req
        .limit
        .map_or(HISTORY_DEFAULT, u64::from)
        .min(HISTORY_MAX);
    let newest = state.store.last_seq(&req.conv_id)?;
    let before = req
        .before_seq
        .unwrap_or(u64::MAX)
        .min(newest.saturating_add(1));
    let lo = before.saturating_sub(limit).max(1);
    let mut page = if before > lo && limit > 0 {
        state
            .store
            .messages_after(&req.conv_id, lo - 1, (before - lo) as usize)?
    } else {
        Vec::new()
    };
    // Keep the reply well inside one frame a connection can write: drop the
    // oldest messages of the page; the client pages on from the first `seq`.
    let mut bytes = 0;
    let keep_from = page
        .iter()
        .rposition(|m| {
            bytes += m.envelope.shared.len() + 300;
            bytes > HISTORY_MAX_BYTES
        })
        .map_or(0, |i| i + 1);
    page.drain(..keep_from);
    Ok(wire::render_history_ok(
        re,
        &authed.device_id,
        page.iter().map(|m| (m.seq, &m.envelope)),
    ))
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
    let mut next_after = if page.len() == BACKLOG_PAGE {
        page.last().map(|m| m.seq)
    } else {
        None
    };
    let mut frames = Vec::new();
    let mut bytes = 0;
    for m in &page {
        // A page holds about a megabyte: the connection writes it before the
        // next is read, so catching up never holds the whole backlog.
        if bytes > BACKLOG_PAGE_BYTES {
            next_after = Some(m.seq - 1);
            break;
        }
        if let Some(entry) = m.envelope.entry_for(device) {
            let frame = render_message_push(conv, m.seq, &m.envelope, Some(entry));
            bytes += frame.len();
            frames.push((m.seq, frame));
        }
    }
    Ok(BacklogPage { frames, next_after })
}
