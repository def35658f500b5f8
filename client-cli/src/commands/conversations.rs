//! `wardline conversations` and `wardline conversation
//! create|add|remove|retention`.

use clap::{Args, Subcommand};
use wardline_protocol::wire::{
    ConversationAdd, ConversationCreate, ConversationCreateOk, ConversationInfo,
    ConversationRemove, ConversationRetention, Conversations, ConversationsOk, Empty,
};
use wardline_protocol::{ErrorCode, Priority, Request, UserId};

use super::messages::report_received;
use super::{Context, Session};
use crate::connection::ConnectionError;
use crate::error::Error;
use crate::keystore::State;
use crate::outgoing::{lookup_users, resolve_conversation};
use crate::output::{ConversationRow, Event};
use crate::sync;

const CREATE_EXAMPLES: &str = "\
Examples:
  wardline conversation create --title \"Ward 10 night team\" bob carol
  wardline conversation create --title \"Bed 4 handover\" bob";

const CHANGE_EXAMPLES: &str = "\
Examples:
  wardline conversation add \"Ward 10 night team\" dave
  wardline conversation remove \"Ward 10 night team\" dave
  wardline conversation remove \"Ward 10 night team\" alice    # leave it (if you are alice)";

/// `wardline conversation ...`
#[derive(Debug, Subcommand)]
pub enum ConversationCommand {
    /// Start a conversation with a title and members (you are added).
    #[command(after_help = CREATE_EXAMPLES)]
    Create(CreateArgs),
    /// Add members to a conversation.
    #[command(after_help = CHANGE_EXAMPLES)]
    Add(MembersArgs),
    /// Remove members from a conversation (name yourself to leave it).
    #[command(after_help = CHANGE_EXAMPLES)]
    Remove(MembersArgs),
    /// Keep the conversation's messages on the server for DAYS days only
    /// (at most the deployment's period, 30 days by default).
    #[command(after_help = RETENTION_EXAMPLES)]
    Retention(RetentionArgs),
}

const RETENTION_EXAMPLES: &str = "\
Examples:
  wardline conversation retention \"Bed 4 handover\" 7
  wardline conversation retention bob 1          # your conversation with bob";

/// Arguments of `wardline conversation retention`.
#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// The conversation: its id, its title, or the username of the person
    /// in a one-to-one conversation.
    pub conversation: String,
    /// Days to keep its messages on the server, from when the server
    /// stored each one.
    #[arg(value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
}

/// Arguments of `wardline conversation create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The title members see, e.g. "Ward 10 night team".
    #[arg(long)]
    pub title: String,
    /// Usernames of the other members.
    #[arg(required = true, value_name = "USER")]
    pub members: Vec<String>,
}

/// Arguments of `wardline conversation add|remove`.
#[derive(Debug, Args)]
pub struct MembersArgs {
    /// The conversation: its id, its title, or the username of the person
    /// in a one-to-one conversation.
    pub conversation: String,
    /// Usernames to add or remove.
    #[arg(required = true, value_name = "USER")]
    pub members: Vec<String>,
}

/// Lists the user's conversations with unread counts, those with unread
/// urgent messages first, then by latest activity. Receives what is waiting
/// first, so the counts are current; nothing is marked read.
pub async fn list(ctx: &Context, s: &mut Session) -> Result<(), Error> {
    let (convs, received) = sync::catch_up(&mut s.conn, &mut s.keystore).await?;
    report_received(ctx, s.keystore.state(), &received)?;
    for c in &convs {
        if !s.keystore.state().unread_in(&c.conv_id).is_empty() {
            // Read on another device, perhaps.
            sync::refresh_read_cursor(&mut s.conn, &mut s.keystore, &c.conv_id).await?;
        }
    }
    let state = s.keystore.state();
    let mut rows: Vec<ConversationRow> = convs.iter().map(|c| row(state, c)).collect();
    rows.sort_by(|a, b| {
        let key = |r: &ConversationRow| {
            (
                r.unread_urgent > 0,
                r.unread > 0,
                r.last_message_at.as_ref().map(|t| t.unix_millis()),
            )
        };
        key(b).cmp(&key(a))
    });
    if rows.is_empty() && !ctx.out.is_json() {
        println!(
            "You are in no conversations yet. `wardline send USER TEXT` starts one; `wardline conversation create --title T USER...` starts a group."
        );
        return Ok(());
    }
    let events: Vec<Event> = rows.into_iter().map(Event::Conversation).collect();
    ctx.out.emit_all(&events)?;
    Ok(())
}

/// One conversation as a list row.
fn row(state: &State, c: &ConversationInfo) -> ConversationRow {
    let unread = state.unread_in(&c.conv_id);
    ConversationRow {
        conv_id: c.conv_id.clone(),
        title: c.title.clone(),
        members: names(state, &c.members),
        unread: unread.len(),
        unread_urgent: unread
            .iter()
            .filter(|m| m.priority == Priority::Urgent)
            .count(),
        last_seq: c.last_seq,
        last_message_at: state
            .messages_in(&c.conv_id)
            .last()
            .map(|m| m.sent_at.clone()),
    }
}

/// Usernames where known, ids otherwise; the user first, the others in
/// alphabetical order.
pub(crate) fn names(state: &State, users: &[UserId]) -> Vec<String> {
    let mut out: Vec<String> = users
        .iter()
        .filter(|u| **u != state.user_id)
        .map(|u| state.display_name(u))
        .collect();
    out.sort();
    if users.contains(&state.user_id) {
        out.insert(0, state.username.to_string());
    }
    out
}

/// Runs a `conversation` subcommand.
pub async fn run(
    ctx: &Context,
    s: &mut Session,
    command: ConversationCommand,
) -> Result<(), Error> {
    match command {
        ConversationCommand::Create(args) => create(ctx, s, args).await,
        ConversationCommand::Add(args) => change(ctx, s, args, true).await,
        ConversationCommand::Remove(args) => change(ctx, s, args, false).await,
        ConversationCommand::Retention(args) => retention(ctx, s, args).await,
    }
}

async fn retention(ctx: &Context, s: &mut Session, args: RetentionArgs) -> Result<(), Error> {
    let listed: ConversationsOk = s
        .conn
        .call(Request::Conversations(Conversations {}))
        .await?;
    let conv = resolve_conversation(
        &mut s.conn,
        &mut s.keystore,
        &listed.conversations,
        &args.conversation,
        false,
    )
    .await?;
    let days = args.days;
    let _: Empty = s
        .conn
        .call(Request::ConversationRetention(ConversationRetention {
            conv_id: conv.conv_id.clone(),
            days,
        }))
        .await
        .map_err(|e| match e {
            ConnectionError::Server(se) if se.code == ErrorCode::BadRequest => Error::Explained {
                code: se.code,
                message: format!(
                    "{days} days is longer than this deployment keeps any message; choose fewer (the server said: {}).",
                    se.message
                ),
            },
            other => Error::from(other).explain(&[ErrorCode::NotMember], || {
                "Only members of a conversation can set how long it is kept.".into()
            }),
        })?;
    ctx.out.emit(&Event::RetentionSet {
        conv_id: conv.conv_id,
        days,
        title: conv.title,
    })?;
    Ok(())
}

async fn create(ctx: &Context, s: &mut Session, args: CreateArgs) -> Result<(), Error> {
    let title = args.title.trim().to_owned();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(Error::Usage("the title must be 1 to 200 characters".into()));
    }
    let users = lookup_users(&mut s.conn, &mut s.keystore, &args.members).await?;
    let me = s.keystore.state().user_id.clone();
    let mut members: Vec<UserId> = users.into_iter().map(|u| u.user_id).collect();
    members.retain(|u| *u != me);
    members.dedup();
    let created: ConversationCreateOk = s
        .conn
        .call(Request::ConversationCreate(ConversationCreate {
            members: members.clone(),
            title: title.clone(),
        }))
        .await?;
    members.push(me);
    ctx.out.emit(&Event::ConversationCreated {
        conv_id: created.conv_id,
        title,
        members: names(s.keystore.state(), &members),
    })?;
    Ok(())
}

async fn change(ctx: &Context, s: &mut Session, args: MembersArgs, add: bool) -> Result<(), Error> {
    let (convs, _) = sync::catch_up(&mut s.conn, &mut s.keystore).await?;
    let conv = resolve_conversation(
        &mut s.conn,
        &mut s.keystore,
        &convs,
        &args.conversation,
        false,
    )
    .await?;
    let users = lookup_users(&mut s.conn, &mut s.keystore, &args.members).await?;
    let ids: Vec<UserId> = users.iter().map(|u| u.user_id.clone()).collect();
    let request = if add {
        Request::ConversationAdd(ConversationAdd {
            conv_id: conv.conv_id.clone(),
            members: ids.clone(),
        })
    } else {
        Request::ConversationRemove(ConversationRemove {
            conv_id: conv.conv_id.clone(),
            members: ids.clone(),
        })
    };
    let _: Empty = s.conn.call(request).await.map_err(|e| {
        Error::from(e).explain(&[ErrorCode::Forbidden], || {
            "Only members of the conversation (or administrators) can change who is in it.".into()
        })
    })?;
    let mut members = conv.members.clone();
    if add {
        members.extend(ids.iter().filter(|u| !conv.members.contains(u)).cloned());
    } else {
        members.retain(|u| !ids.contains(u));
    }
    let state = s.keystore.state();
    let (added, removed) = if add {
        (names(state, &ids), Vec::new())
    } else {
        (Vec::new(), names(state, &ids))
    };
    ctx.out.emit(&Event::MembersChanged {
        conv_id: conv.conv_id,
        title: conv.title,
        members: names(state, &members),
        added,
        removed,
    })?;
    Ok(())
}
