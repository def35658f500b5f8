//! `wardline inbox`: receive, verify, decrypt and show new messages.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use wardline_protocol::wire::{
    Ack, Conversations, ConversationsOk, Devices, DevicesOk, Empty, MessagePush,
};
use wardline_protocol::{ConversationId, DeviceSecrets, Priority, Request, UserId, envelope};

use super::{Context, open_keystore, resume};
use crate::connection::{Connection, Push};
use crate::error::Error;
use crate::keystore::{Keystore, State, StoredMessage};
use crate::output::{Event, MessageView};

/// Receives everything stored for this device since its last acknowledgement.
///
/// After `resume` the server pushes the backlog before it answers any later
/// request, so by the time `conversations` is answered the backlog is queued.
/// Each batch is opened, saved in the keystore and only then acknowledged,
/// so a crash never loses a message; pushes that arrive while a batch is
/// handled form the next batch. A message that cannot be opened is reported
/// and acknowledged (it will never open), and does not stop the others.
/// Messages this device sent itself are acknowledged without being shown.
pub async fn run(ctx: &Context) -> Result<(), Error> {
    let mut keystore = open_keystore(&ctx.home)?;
    let mut conn = resume(&mut keystore).await?;
    let convs: ConversationsOk = conn.call(Request::Conversations(Conversations {})).await?;
    let titles: HashMap<ConversationId, String> = convs
        .conversations
        .into_iter()
        .map(|c| (c.conv_id, c.title))
        .collect();
    let secrets = keystore.state().device_secrets();

    let mut seen = HashSet::new();
    let mut received = Vec::new();
    let mut problems = Vec::new();
    loop {
        let batch = conn.take_pushes();
        if batch.is_empty() {
            break;
        }
        let mut highest: BTreeMap<ConversationId, u64> = BTreeMap::new();
        let mut messages = Vec::new();
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
                    problems.push(Event::Undecryptable {
                        conv_id,
                        seq,
                        msg_id: None,
                        sender_user: None,
                        reason: format!("the server sent it malformed ({reason})"),
                    });
                }
            }
        }
        fetch_sender_keys(&mut conn, &mut keystore, &messages, ctx).await?;
        for m in messages {
            raise(&mut highest, &m.conv_id, m.seq);
            match open_one(keystore.state(), &secrets, &m) {
                Ok(stored) => {
                    let shown = view(&stored, &titles, keystore.state());
                    // This device is one of the recipients of what it sends,
                    // so the server delivers those back; `send` cached them
                    // already, and they are no news to the user.
                    let own = stored.sender_device == keystore.state().device_id;
                    let fresh = keystore.state_mut().store_message(stored);
                    if fresh || !own {
                        received.push(shown);
                    }
                }
                Err(reason) => problems.push(Event::Undecryptable {
                    conv_id: Some(m.conv_id.clone()),
                    seq: Some(m.seq),
                    msg_id: Some(m.envelope.msg_id),
                    sender_user: Some(m.envelope.sender_user.clone()),
                    reason,
                }),
            }
        }
        keystore.save()?;
        for (conv_id, seq) in highest {
            let _: Empty = conn.call(Request::Ack(Ack { conv_id, seq })).await?;
        }
    }
    conn.close().await;

    received.sort_by(|a, b| {
        (
            a.priority != Priority::Urgent,
            a.sent_at.unix_millis(),
            &a.conv_id,
            a.seq,
        )
            .cmp(&(
                b.priority != Priority::Urgent,
                b.sent_at.unix_millis(),
                &b.conv_id,
                b.seq,
            ))
    });
    if received.is_empty() && problems.is_empty() && !ctx.out.is_json() {
        println!("No new messages.");
    }
    for m in received {
        ctx.out.emit(&Event::Message(m))?;
    }
    for p in &problems {
        ctx.out.emit(p)?;
        if ctx.out.is_json() {
            // People watching a script's standard error should see it too.
            if let Event::Undecryptable { reason, .. } = p {
                ctx.out.note(&format!(
                    "wardline: a message could not be opened: {reason}"
                ));
            }
        }
    }
    Ok(())
}

fn raise(highest: &mut BTreeMap<ConversationId, u64>, conv: &ConversationId, seq: u64) {
    let entry = highest.entry(conv.clone()).or_insert(seq);
    *entry = (*entry).max(seq);
}

/// Asks the directory, in one request, for the devices of senders whose
/// device keys are not pinned yet.
async fn fetch_sender_keys(
    conn: &mut Connection,
    keystore: &mut Keystore,
    messages: &[Box<MessagePush>],
    ctx: &Context,
) -> Result<(), Error> {
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
        return Ok(());
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
    for changed in keystore.state_mut().remember_devices(&devices) {
        ctx.out.note(&format!(
            "wardline: warning: the server published different keys for device {} of user {} than this device saw before; messages signed with the new keys will not be trusted. Report this to IT.",
            changed.device_id, changed.user_id
        ));
    }
    Ok(())
}

/// Verifies and decrypts one pushed message; the error says why it failed.
fn open_one(
    state: &State,
    secrets: &DeviceSecrets,
    push: &MessagePush,
) -> Result<StoredMessage, String> {
    let e = &push.envelope;
    if e.conv_id != push.conv_id {
        return Err(
            "the server delivered it under a different conversation than it was sent to".into(),
        );
    }
    let keys = state
        .device_keys(&e.sender_user, &e.sender_device)
        .ok_or("its sending device is not a known device of its sender")?;
    let body = envelope::open(e, &state.device_id, secrets, &keys.sig_pk)
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
    })
}

fn view(m: &StoredMessage, titles: &HashMap<ConversationId, String>, state: &State) -> MessageView {
    MessageView {
        conv_id: m.conv_id.clone(),
        conv_title: titles.get(&m.conv_id).cloned(),
        seq: m.seq,
        msg_id: m.msg_id,
        sender_user: m.sender_user.clone(),
        sender_username: state.username_of(&m.sender_user).cloned(),
        sent_at: m.sent_at.clone(),
        priority: m.priority,
        kind: m.body.kind,
        text: m.body.text.clone(),
        patient: m.body.patient.as_ref().map(|p| p.nhs_number.clone()),
        reply_to: m.body.reply_to,
    }
}
