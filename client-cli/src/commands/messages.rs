//! Reading: `wardline inbox` (unread across conversations, urgent first),
//! `wardline read CONVERSATION` and `wardline history CONVERSATION`.
//!
//! Showing a message's text to the user counts as reading it: `inbox` and
//! `read` move the user's read position (the senders get read receipts,
//! and an urgent message stops escalating), unless `inbox --peek`. The read
//! position is the user's, shared by their devices: what was read on one is
//! not unread on another (though a device shows a message it has just
//! received once, since its screen has not shown it yet).

use std::collections::{BTreeMap, HashMap};

use clap::Args;
use wardline_protocol::wire::{Empty, History, HistoryOk, MessagePush, Read};
use wardline_protocol::{ConversationId, Priority, Request};

use super::{Context, Session};
use crate::error::Error;
use crate::keystore::{Reading, State, StoredMessage};
use crate::outgoing::resolve_conversation;
use crate::output::{Event, MessageView};
use crate::sync::{self, Problem, Received};

/// Arguments of `wardline inbox`.
#[derive(Debug, Args)]
pub struct InboxArgs {
    /// Show unread messages without marking them read (no read receipts).
    #[arg(long)]
    pub peek: bool,
}

/// Arguments of `wardline read`.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// The conversation: its id, its title, or the username of the person
    /// in a one-to-one conversation.
    pub conversation: String,
}

/// Arguments of `wardline history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The conversation: its id, its title, or the username of the person
    /// in a one-to-one conversation.
    pub conversation: String,
    /// How many messages, at most.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: u32,
    /// Only messages before this sequence number (to page further back).
    #[arg(long, value_name = "SEQ")]
    pub before: Option<u64>,
}

/// Shows every unread message from others, across conversations, urgent
/// ones first, and marks them read.
pub async fn inbox(ctx: &Context, s: &mut Session, args: InboxArgs) -> Result<(), Error> {
    let (convs, received) = sync::catch_up(&mut s.conn, &mut s.keystore).await?;
    // What this device has just received from others is shown once even if
    // it was read on another of the user's devices meanwhile: this screen
    // has not shown it yet.
    let me = s.keystore.state().user_id.clone();
    let mut unread: Vec<StoredMessage> = received
        .messages
        .iter()
        .filter(|m| m.sender_user != me)
        .cloned()
        .collect();
    for c in &convs {
        if s.keystore.state().unread_in(&c.conv_id).is_empty() {
            continue;
        }
        sync::refresh_read_cursor(&mut s.conn, &mut s.keystore, &c.conv_id).await?;
        for m in s.keystore.state().unread_in(&c.conv_id) {
            if !unread
                .iter()
                .any(|u| u.conv_id == m.conv_id && u.seq == m.seq)
            {
                unread.push(m.clone());
            }
        }
    }
    unread.sort_by(|a, b| {
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
    let state = s.keystore.state();
    if unread.is_empty() && received.problems.is_empty() && !ctx.out.is_json() {
        println!("No new messages.");
    }
    let events: Vec<Event> = unread
        .iter()
        .map(|m| Event::Message(view(m, state)))
        .collect();
    ctx.out.emit_all(&events)?;
    report_received(ctx, state, &received)?;
    if !args.peek {
        let mut upto: BTreeMap<ConversationId, u64> = BTreeMap::new();
        for m in &unread {
            let e = upto.entry(m.conv_id.clone()).or_insert(m.seq);
            *e = (*e).max(m.seq);
        }
        mark_read(s, upto).await?;
    }
    Ok(())
}

/// Shows the unread messages of one conversation and marks it read.
pub async fn read(ctx: &Context, s: &mut Session, args: ReadArgs) -> Result<(), Error> {
    let (convs, received) = sync::catch_up(&mut s.conn, &mut s.keystore).await?;
    let conv = resolve_conversation(
        &mut s.conn,
        &mut s.keystore,
        &convs,
        &args.conversation,
        false,
    )
    .await?;
    sync::refresh_read_cursor(&mut s.conn, &mut s.keystore, &conv.conv_id).await?;
    let state = s.keystore.state();
    let unread: Vec<Event> = state
        .unread_in(&conv.conv_id)
        .into_iter()
        .map(|m| Event::Message(view(m, state)))
        .collect();
    if unread.is_empty() && !ctx.out.is_json() {
        println!(
            "No unread messages in {}. `wardline history {}` shows earlier ones.",
            crate::output::clean(&conv.title),
            args.conversation
        );
    }
    ctx.out.emit_all(&unread)?;
    report_received(ctx, state, &received)?;
    if conv.last_seq > 0 {
        mark_read(s, BTreeMap::from([(conv.conv_id, conv.last_seq)])).await?;
    }
    Ok(())
}

/// Shows earlier messages of a conversation, fetched from the server and
/// verified here (only those sealed to this device; a device sees nothing
/// from before it was registered).
pub async fn history(ctx: &Context, s: &mut Session, args: HistoryArgs) -> Result<(), Error> {
    let (convs, received) = sync::catch_up(&mut s.conn, &mut s.keystore).await?;
    let conv = resolve_conversation(
        &mut s.conn,
        &mut s.keystore,
        &convs,
        &args.conversation,
        false,
    )
    .await?;
    let page: HistoryOk = s
        .conn
        .call(Request::History(History {
            conv_id: conv.conv_id.clone(),
            before_seq: args.before,
            limit: Some(args.limit),
        }))
        .await?;
    let pushes: Vec<MessagePush> = page
        .messages
        .into_iter()
        .map(|h| MessagePush {
            conv_id: conv.conv_id.clone(),
            seq: h.seq,
            envelope: h.envelope,
        })
        .collect();
    let (opened, problems) = open_history(s, pushes).await?;
    let state = s.keystore.state();
    if opened.is_empty() && problems.is_empty() && !ctx.out.is_json() {
        println!(
            "No earlier messages in {} that this device can open.",
            crate::output::clean(&conv.title)
        );
    }
    let events: Vec<Event> = opened
        .iter()
        .map(|m| Event::Message(view(m, state)))
        .collect();
    ctx.out.emit_all(&events)?;
    for p in &problems {
        emit_problem(ctx, p)?;
    }
    report_received(ctx, state, &received)?;
    Ok(())
}

/// Opens a page of history: pins unknown senders' keys first, caches what
/// opens. Returns the messages in `seq` order and the ones that failed.
pub(crate) async fn open_history(
    s: &mut Session,
    pushes: Vec<MessagePush>,
) -> Result<(Vec<StoredMessage>, Vec<Problem>), Error> {
    let senders: Vec<_> = pushes
        .iter()
        .filter(|p| {
            s.keystore
                .state()
                .device_keys(&p.envelope.sender_user, &p.envelope.sender_device)
                .is_none()
        })
        .map(|p| p.envelope.sender_user.clone())
        .collect();
    if !senders.is_empty() {
        let listed: wardline_protocol::wire::DevicesOk = s
            .conn
            .call(Request::Devices(wardline_protocol::wire::Devices {
                user_ids: senders.clone(),
            }))
            .await?;
        let devices: Vec<_> = listed
            .devices
            .into_iter()
            .filter(|d| senders.contains(&d.user_id))
            .collect();
        s.keystore.state_mut().remember_devices(&devices);
    }
    let secrets = s.keystore.state().device_secrets();
    let mut opened = Vec::new();
    let mut problems = Vec::new();
    for p in &pushes {
        match sync::open_one(s.keystore.state(), &secrets, p, Reading::Again) {
            Ok(m) => {
                s.keystore.state_mut().store_message(m.clone());
                opened.push(m);
            }
            Err(reason) => problems.push(Problem {
                conv_id: Some(p.conv_id.clone()),
                seq: Some(p.seq),
                msg_id: Some(p.envelope.msg_id),
                sender_user: Some(p.envelope.sender_user.clone()),
                reason,
            }),
        }
    }
    opened.sort_by_key(|m| m.seq);
    let senders: Vec<_> = opened.iter().map(|m| m.sender_user.clone()).collect();
    sync::learn_names(&mut s.conn, &mut s.keystore, &senders).await?;
    Ok((opened, problems))
}

/// Sends `read` for each conversation up to the given `seq`, and records it.
async fn mark_read(s: &mut Session, upto: BTreeMap<ConversationId, u64>) -> Result<(), Error> {
    for (conv_id, seq) in upto {
        let already = s
            .keystore
            .state()
            .conversations
            .get(&conv_id)
            .is_some_and(|c| c.read_seq >= seq);
        if already {
            continue;
        }
        let _: Empty = s
            .conn
            .call(Request::Read(Read {
                conv_id: conv_id.clone(),
                seq,
            }))
            .await?;
        s.keystore.state_mut().mark_read(&conv_id, seq);
    }
    Ok(())
}

/// Reports what receiving brought besides messages: messages that could
/// not be opened, urgent messages of the user's still unread, and changed
/// keys of senders.
pub(crate) fn report_received(ctx: &Context, state: &State, r: &Received) -> Result<(), Error> {
    for p in &r.problems {
        emit_problem(ctx, p)?;
    }
    let titles: HashMap<&ConversationId, &str> = state
        .conversations
        .iter()
        .map(|(id, c)| (id, c.title.as_str()))
        .collect();
    for u in &r.unread_urgent {
        ctx.out.emit(&Event::UnreadUrgent {
            conv_id: u.conv_id.clone(),
            conv_title: titles.get(&u.conv_id).map(|t| (*t).to_owned()),
            seq: u.seq,
            msg_id: u.msg_id,
            unread: u.unread.iter().map(|id| state.display_name(id)).collect(),
        })?;
    }
    for k in &r.key_changes {
        ctx.out.warn(
            "keys_changed",
            format!(
                "the server published different keys for device {} of {} than this device saw before; messages signed with the new keys are not trusted. Compare safety numbers in person (`wardline verify {}`), and report it to IT if they differ",
                k.device_id,
                state.display_name(&k.user_id),
                state.display_name(&k.user_id)
            ),
        )?;
    }
    Ok(())
}

fn emit_problem(ctx: &Context, p: &Problem) -> Result<(), Error> {
    ctx.out.emit(&Event::Undecryptable {
        conv_id: p.conv_id.clone(),
        seq: p.seq,
        msg_id: p.msg_id,
        sender_user: p.sender_user.clone(),
        reason: p.reason.clone(),
    })?;
    if ctx.out.is_json() {
        // People watching a script's standard error should see it too.
        ctx.out.note(&format!(
            "wardline: a message could not be opened: {}",
            p.reason
        ));
    }
    Ok(())
}

/// A cached message as shown to the user.
pub(crate) fn view(m: &StoredMessage, state: &State) -> MessageView {
    MessageView {
        conv_id: m.conv_id.clone(),
        conv_title: state.conversations.get(&m.conv_id).map(|c| c.title.clone()),
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
