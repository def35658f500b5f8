//! Conversations: creating them and listing the caller's.

use std::collections::BTreeSet;

use wardline_protocol::wire::{
    self, ConversationAdd, ConversationChangedPush, ConversationCreate, ConversationCreateOk,
    ConversationInfo, ConversationRemove, ConversationsOk, ErrorCode, Role,
};
use wardline_protocol::{ConversationId, UserId};

use crate::auth::{Authed, random10};
use crate::error::ApiError;
use crate::notify;
use crate::state::State;
use crate::store::{Conversation, UserState};

/// Largest conversation, the caller included (see DESIGN.md, "Group size").
pub const MAX_MEMBERS: usize = 250;
/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// `conversation_create`.
pub fn create(
    state: &State,
    authed: &Authed,
    req: ConversationCreate,
) -> Result<ConversationCreateOk, ApiError> {
    let title = req.title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
        return Err(ApiError::bad_request(format!(
            "title must be 1 to {MAX_TITLE_CHARS} characters"
        )));
    }
    let mut members: BTreeSet<UserId> = req.members.into_iter().collect();
    members.insert(authed.user.id.clone());
    if members.len() > MAX_MEMBERS {
        return Err(ApiError::bad_request(format!(
            "a conversation has at most {MAX_MEMBERS} members"
        )));
    }
    check_users_exist(state, &members)?;
    let now = state.clock.now_ms();
    let conv = Conversation {
        id: ConversationId::generate_v7(now as u64, random10()),
        title: title.to_string(),
        members: members.into_iter().collect(),
        residency: state.config.region,
        created_at: now,
        retention_days: None,
        legal_hold: false,
    };
    state.store.insert_conversation(&conv)?;
    state.store.sync()?;
    Ok(ConversationCreateOk {
        conv_id: conv.id,
        residency: conv.residency,
    })
}

/// `conversations`: the caller's conversations with their newest `seq`.
pub fn list(state: &State, authed: &Authed) -> Result<ConversationsOk, ApiError> {
    let mut conversations = Vec::new();
    for id in state.store.conversations_of(&authed.user.id)? {
        let Some(c) = state.store.conversation(&id)? else {
            continue;
        };
        let last_seq = state.store.last_seq(&c.id)?;
        conversations.push(ConversationInfo {
            conv_id: c.id,
            title: c.title,
            members: c.members,
            residency: c.residency,
            last_seq,
        });
    }
    Ok(ConversationsOk { conversations })
}

/// The conversation, if the caller is a member.
pub fn for_member(
    state: &State,
    authed: &Authed,
    id: &ConversationId,
) -> Result<Conversation, ApiError> {
    let c = state
        .store
        .conversation(id)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such conversation"))?;
    if !c.members.contains(&authed.user.id) {
        return Err(ApiError::new(
            ErrorCode::NotMember,
            "you are not a member of this conversation",
        ));
    }
    Ok(c)
}

fn check_users_exist<'a>(
    state: &State,
    users: impl IntoIterator<Item = &'a UserId>,
) -> Result<(), ApiError> {
    for m in users {
        match state.store.user(m)? {
            Some(u) if u.state != UserState::Disabled => {}
            _ => {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("no active user with id {m}"),
                ));
            }
        }
    }
    Ok(())
}

/// A conversation the caller may change: members change their own
/// conversations; admins change any.
fn for_editor(
    state: &State,
    authed: &Authed,
    id: &ConversationId,
) -> Result<Conversation, ApiError> {
    if authed.user.role == Role::Admin {
        return state
            .store
            .conversation(id)?
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such conversation"));
    }
    for_member(state, authed, id)
}

/// Stores the new membership and tells old and new members. Removed members
/// are told too, so their clients drop the conversation.
fn save_and_announce(
    state: &State,
    conv: &Conversation,
    removed: &[UserId],
) -> Result<(), ApiError> {
    state.store.update_conversation(conv, removed)?;
    state.store.sync()?;
    let frame = wire::encode_push(
        "conversation_changed",
        &ConversationChangedPush {
            conv_id: conv.id.clone(),
            title: conv.title.clone(),
            members: conv.members.clone(),
        },
    );
    notify::to_users(state, conv.members.iter().chain(removed), &frame)
}

/// `conversation_add`.
pub fn add(state: &State, authed: &Authed, req: ConversationAdd) -> Result<(), ApiError> {
    let mut conv = for_editor(state, authed, &req.conv_id)?;
    let mut members: BTreeSet<UserId> = conv.members.iter().cloned().collect();
    let new: Vec<&UserId> = req
        .members
        .iter()
        .filter(|m| !members.contains(*m))
        .collect();
    check_users_exist(state, new.iter().copied())?;
    members.extend(new.into_iter().cloned());
    if members.len() > MAX_MEMBERS {
        return Err(ApiError::bad_request(format!(
            "a conversation has at most {MAX_MEMBERS} members"
        )));
    }
    conv.members = members.into_iter().collect();
    save_and_announce(state, &conv, &[])
}

/// `conversation_remove`: anyone may leave; members and admins may remove others.
pub fn remove(state: &State, authed: &Authed, req: ConversationRemove) -> Result<(), ApiError> {
    let mut conv = for_editor(state, authed, &req.conv_id)?;
    let gone: BTreeSet<&UserId> = req.members.iter().collect();
    let removed: Vec<UserId> = conv
        .members
        .iter()
        .filter(|m| gone.contains(m))
        .cloned()
        .collect();
    conv.members.retain(|m| !gone.contains(m));
    save_and_announce(state, &conv, &removed)
}
