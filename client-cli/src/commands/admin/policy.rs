//! `wardline admin residency`, `admin incident-mode` and `admin legal-hold`.

use clap::{ArgGroup, Args};
use wardline_protocol::wire::{
    AdminIncidentMode, AdminLegalHold, AdminResidency, AdminResidencyOk, Conversations,
    ConversationsOk, Empty,
};
use wardline_protocol::{ConversationId, ErrorCode, Request};

use super::{Reason, Switch, not_found, refused, resolve_user};
use crate::commands::{Context, Session};
use crate::error::Error;
use crate::output::Event;
use crate::output::governance::hold_subject;

/// Arguments of `wardline admin incident-mode`.
#[derive(Debug, Args)]
pub struct IncidentModeArgs {
    /// `on` opens self-registration (`wardline register`); `off` closes it.
    #[arg(value_enum)]
    pub switch: Switch,
    /// Why.
    #[command(flatten)]
    pub reason: Reason,
}

/// Arguments of `wardline admin legal-hold`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("subject").required(true).args(["user", "conversation"])))]
pub struct LegalHoldArgs {
    /// Hold every conversation this user is a member of (username).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Hold one conversation: its id, or its title if you are a member.
    #[arg(long, value_name = "CONV")]
    pub conversation: Option<String>,
    /// `on` places the hold; `off` lifts it.
    #[arg(value_enum)]
    pub switch: Switch,
    /// Why (the request or case it serves).
    #[command(flatten)]
    pub reason: Reason,
}

pub(super) async fn residency(ctx: &Context, s: &mut Session) -> Result<(), Error> {
    let report: AdminResidencyOk = s
        .conn
        .call(Request::AdminResidency(AdminResidency {}))
        .await
        .map_err(refused)?;
    ctx.out.emit(&Event::Residency(report))?;
    Ok(())
}

pub(super) async fn incident_mode(
    ctx: &Context,
    s: &mut Session,
    args: IncidentModeArgs,
) -> Result<(), Error> {
    let enabled = args.switch.is_on();
    let _: Empty = s
        .conn
        .call(Request::AdminIncidentMode(AdminIncidentMode {
            enabled,
            reason: args.reason.reason.trim().to_owned(),
        }))
        .await
        .map_err(refused)?;
    ctx.out.emit(&Event::IncidentMode { enabled })?;
    Ok(())
}

pub(super) async fn legal_hold(
    ctx: &Context,
    s: &mut Session,
    args: LegalHoldArgs,
) -> Result<(), Error> {
    let hold = args.switch.is_on();
    let (user, conv, subject) = match (&args.user, &args.conversation) {
        (Some(name), _) => {
            let (id, username) = resolve_user(s, name).await?;
            let subject = hold_subject(Some(&username), None, id.as_str());
            (Some(id), None, subject)
        }
        (None, Some(name)) => {
            let (id, title) = resolve_conversation(s, name).await?;
            let subject = hold_subject(None, title.as_deref(), id.as_str());
            (None, Some(id), subject)
        }
        (None, None) => {
            return Err(Error::Usage(
                "name what to hold: --user USER or --conversation CONV".into(),
            ));
        }
    };
    let _: Empty = s
        .conn
        .call(Request::AdminLegalHold(AdminLegalHold {
            user_id: user.clone(),
            conv_id: conv.clone(),
            hold,
            reason: args.reason.reason.trim().to_owned(),
        }))
        .await
        .map_err(|e| {
            not_found(format!("There is no {subject} on this server."))(refused(e))
                .explain(&[ErrorCode::BadRequest], || {
                    "Name exactly one of --user and --conversation.".into()
                })
        })?;
    ctx.out.emit(&Event::LegalHold {
        user_id: user,
        conv_id: conv,
        hold,
        subject,
    })?;
    Ok(())
}

/// A conversation for a legal hold: one of the admin's own by id or title,
/// else any conversation by id (an admin need not be a member). Only the
/// list is asked for, so the admin's unread messages stay unread.
async fn resolve_conversation(
    s: &mut Session,
    name: &str,
) -> Result<(ConversationId, Option<String>), Error> {
    let listed: ConversationsOk = s
        .conn
        .call(Request::Conversations(Conversations {}))
        .await?;
    if let Some(c) = listed
        .conversations
        .iter()
        .find(|c| c.conv_id.as_str() == name)
    {
        return Ok((c.conv_id.clone(), Some(c.title.clone())));
    }
    let titled: Vec<_> = listed
        .conversations
        .iter()
        .filter(|c| c.title.trim().eq_ignore_ascii_case(name.trim()))
        .collect();
    match titled.as_slice() {
        [one] => return Ok((one.conv_id.clone(), Some(one.title.clone()))),
        [] => {}
        many => {
            return Err(Error::Usage(format!(
                "{} of your conversations are called '{name}'; name one by its id: {}",
                many.len(),
                many.iter()
                    .map(|c| c.conv_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    ConversationId::parse(name.trim())
        .map(|id| (id, None))
        .map_err(|_| {
            Error::Usage(format!(
                "'{name}' is not a conversation id, nor the title of one of your conversations; name a conversation you are not in by its id"
            ))
        })
}
