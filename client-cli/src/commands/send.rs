//! `wardline send`: seal a message to every device of a conversation's
//! members and hand it to the server.

use std::collections::BTreeSet;
use std::time::Duration;

use clap::{Args, ValueEnum};
use wardline_protocol::wire::{ConversationInfo, ReceiptKind, Receipts, ReceiptsOk};
use wardline_protocol::{Body, BodyKind, MessageId, Patient, Priority, Request, UserId};

use super::{Context, Session};
use crate::error::Error;
use crate::keystore::{DeviceFlag, State};
use crate::nhs::{self, NhsNumber};
use crate::outgoing::{deliver, new_header, resolve_conversation};
use crate::output::Event;
use crate::output::time::ago;
use crate::prompt;
use crate::sync;

/// What kind of message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Ordinary conversation.
    Message,
    /// A clinical decision or advice, meant for the health record.
    ClinicalNote,
}

impl From<Kind> for BodyKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Message => BodyKind::Message,
            Kind::ClinicalNote => BodyKind::ClinicalNote,
        }
    }
}

/// Arguments of `wardline send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The conversation: its id, its title, or the username of the person
    /// to message (your one-to-one conversation is found or created).
    pub target: String,
    /// The message text.
    pub text: String,
    /// Mark the message urgent: shown first and marked on every screen; if
    /// it stays unread the server tells you who to phone.
    #[arg(long)]
    pub urgent: bool,
    /// Message or clinical note.
    #[arg(long, value_enum, default_value_t = Kind::Message)]
    pub kind: Kind,
    /// The NHS number of the patient the message is about, checked before
    /// sending (10 digits, spaces allowed, valid check digit).
    #[arg(long, value_name = "NHS_NUMBER")]
    pub patient: Option<String>,
    /// The id of the message this one answers.
    #[arg(long, value_name = "MSG_ID")]
    pub reply_to: Option<MessageId>,
    /// After sending, stay until every other member has read the message,
    /// at most this long (90s, 10m); if someone has not, say who to phone
    /// and fail. Reports the server's escalation of an unread urgent
    /// message as it comes.
    #[arg(long, value_name = "DURATION", value_parser = crate::agent::parse_duration)]
    pub wait_read: Option<std::time::Duration>,
    /// Send even if the text holds what looks like an NHS number while no
    /// --patient is given (otherwise you are asked, or, without a terminal,
    /// a line `y` is read from standard input).
    #[arg(long)]
    pub allow_nhs_number_in_text: bool,
}

/// Checks the arguments and builds the body, before the keystore or the
/// network are touched: a wrong NHS number is refused, and a patient
/// identifier in the free text is questioned.
pub fn prepare(ctx: &Context, args: &SendArgs) -> Result<Body, Error> {
    let patient = args.patient.as_deref().map(NhsNumber::parse).transpose()?;
    if args.text.trim().is_empty() {
        return Err(Error::Usage("the message text is empty".into()));
    }
    if patient.is_none() && !args.allow_nhs_number_in_text {
        let found = nhs::find_in_text(&args.text);
        if let Some(first) = found.first() {
            ctx.out.warn(
                "nhs_number_in_text",
                format!(
                    "the message text contains what looks like an NHS number ({first}). Patient identifiers belong in the patient tag, not the text: send with --patient {} and leave the number out of the text",
                    first.as_str()
                ),
            )?;
            if !prompt::confirm("Send it with the number in the text anyway?")? {
                return Err(Error::Refused(format!(
                    "not sent. Put the patient's NHS number in the tag instead: wardline send {} \"...\" --patient {}",
                    args.target,
                    first.as_str()
                )));
            }
        }
    }
    Ok(Body {
        text: args.text.clone(),
        kind: args.kind.into(),
        patient: patient.map(|p| Patient {
            nhs_number: p.as_str().to_owned(),
        }),
        reply_to: args.reply_to,
    })
}

/// Sends `body` (from [`prepare`]): resolves the target, seals to the
/// members' current devices and sends, warning about any of their devices
/// that appeared since they were first seen and are not verified.
pub async fn run(ctx: &Context, s: &mut Session, args: SendArgs, body: Body) -> Result<(), Error> {
    let (convs, _) = sync::catch_up(&mut s.conn, &mut s.keystore).await?;
    let conv =
        resolve_conversation(&mut s.conn, &mut s.keystore, &convs, &args.target, true).await?;
    let priority = if args.urgent {
        Priority::Urgent
    } else {
        Priority::Routine
    };
    let header = new_header(&s.keystore, &conv, priority)?;
    let sent = deliver(&mut s.conn, &mut s.keystore, &conv.members, &header, &body).await?;
    ctx.out.emit(&Event::Sent {
        conv_id: sent.ok.conv_id.clone(),
        msg_id: sent.ok.msg_id,
        seq: sent.ok.seq,
    })?;
    warn_flags(ctx, s.keystore.state(), &sent.flags)?;
    s.keystore.save().map_err(|e| {
        Error::Refused(format!(
            "the message was sent, but the local copy could not be saved: {e}"
        ))
    })?;
    match args.wait_read {
        Some(limit) => wait_read(ctx, s, &conv, sent.ok.seq, limit).await,
        None => Ok(()),
    }
}

/// Waits until every other member of `conv` has read message `seq`, or
/// `limit` passes; then names whoever has not, so the sender can phone.
async fn wait_read(
    ctx: &Context,
    s: &mut Session,
    conv: &ConversationInfo,
    seq: u64,
    limit: Duration,
) -> Result<(), Error> {
    let me = s.keystore.state().user_id.clone();
    let others: BTreeSet<UserId> = conv.members.iter().filter(|m| **m != me).cloned().collect();
    let positions: ReceiptsOk = s
        .conn
        .call(Request::Receipts(Receipts {
            conv_id: conv.conv_id.clone(),
        }))
        .await?;
    let mut read: BTreeSet<UserId> = positions
        .receipts
        .into_iter()
        .filter(|r| r.read_seq >= seq && others.contains(&r.user_id))
        .map(|r| r.user_id)
        .collect();
    let deadline = tokio::time::Instant::now() + limit;
    while read != others {
        let Ok(push) = tokio::time::timeout_at(deadline, s.conn.next_push()).await else {
            break;
        };
        let received = sync::receive(&mut s.conn, &mut s.keystore, vec![push?]).await?;
        let state = s.keystore.state();
        for r in received.receipts.iter().filter(|r| {
            r.conv_id == conv.conv_id
                && r.kind == ReceiptKind::Read
                && r.seq >= seq
                && others.contains(&r.user_id)
        }) {
            if read.insert(r.user_id.clone()) {
                ctx.out.emit(&Event::Receipt {
                    conv_id: r.conv_id.clone(),
                    seq,
                    user_id: r.user_id.clone(),
                    username: state.username_of(&r.user_id).cloned(),
                    kind: r.kind,
                })?;
            }
        }
        for u in received
            .unread_urgent
            .iter()
            .filter(|u| u.conv_id == conv.conv_id && u.seq == seq)
        {
            ctx.out.emit(&Event::UnreadUrgent {
                conv_id: u.conv_id.clone(),
                conv_title: Some(conv.title.clone()),
                seq: u.seq,
                msg_id: u.msg_id,
                unread: u.unread.iter().map(|id| state.display_name(id)).collect(),
            })?;
        }
    }
    let state = s.keystore.state();
    let missing: Vec<String> = others
        .difference(&read)
        .map(|u| state.display_name(u))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "message #{seq} was not read by {} within {}: phone them",
        missing.join(", "),
        crate::agent::describe_duration(limit)
    )))
}

/// One warning per contact with devices that are new since first sight
/// and not verified: repeated on every send until they are.
pub(crate) fn warn_flags(ctx: &Context, state: &State, flags: &[DeviceFlag]) -> Result<(), Error> {
    let now = ctx.out.now();
    let users: BTreeSet<_> = flags.iter().map(|f| &f.user_id).collect();
    for user in users {
        let name = state.display_name(user);
        let devices: Vec<String> = flags
            .iter()
            .filter(|f| f.user_id == *user)
            .map(|f| match &f.first_seen {
                Some(t) => format!("{} (first seen {})", f.device_id, ago(t, &now)),
                None => f.device_id.to_string(),
            })
            .collect();
        let whose = if *user == state.user_id {
            "your own account".to_owned()
        } else {
            name.clone()
        };
        ctx.out.warn(
            "unverified_new_device",
            format!(
                "this message was also sealed to {} device(s) of {whose} that appeared since this device first saw them and are not verified: {}. If you did not expect that, compare safety numbers in person (`wardline verify {name}`), then `wardline verify {name} --confirm`",
                devices.len(),
                devices.join(", ")
            ),
        )?;
    }
    Ok(())
}
