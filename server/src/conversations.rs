//! Conversations: creating them and listing the caller's.

use std::collections::BTreeSet;

use wardline_protocol::wire::{
    ConversationCreate, ConversationCreateOk, ConversationInfo, ConversationsOk, ErrorCode,
};
use wardline_protocol::{ConversationId, UserId};

use crate::auth::{Authed, random10};
use crate::error::ApiError;
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
    for m in &members {
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
    let now = state.clock.now_ms();
    let conv = Conversation {
        id: ConversationId::generate_v7(now as u64, random10()),
        title: title.to_string(),
        members: members.into_iter().collect(),
        residency: state.config.region,
        created_at: now,
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
