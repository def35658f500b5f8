//! Retention: NHS guidance says the chat is not the record (transcribe to
//! the health record, then delete). Stored messages are deleted after the
//! deployment's period, or a conversation's shorter one, in the background
//! and without pausing traffic; legal holds suspend deletion. Deletions and
//! holds are audited as counts, never content.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use wardline_protocol::wire::{AdminLegalHold, ConversationRetention, ErrorCode};

use crate::admin::require_admin;
use crate::audit::{self, Event};
use crate::auth::Authed;
use crate::conversations;
use crate::error::ApiError;
use crate::state::State;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Deletes what has expired in every conversation not on hold. Returns the
/// number of messages deleted.
pub fn tick(state: &State) -> Result<u64, ApiError> {
    let now = state.clock.now_ms();
    let held_users: std::collections::HashSet<_> = state
        .store
        .all_users()?
        .into_iter()
        .filter(|u| u.legal_hold)
        .map(|u| u.id)
        .collect();
    let mut deleted = 0;
    let mut held = 0;
    for c in state.store.all_conversations()? {
        if c.legal_hold || c.members.iter().any(|m| held_users.contains(m)) {
            held += 1;
            continue;
        }
        let days = c
            .retention_days
            .unwrap_or(state.config.retention_days)
            .min(state.config.retention_days);
        deleted += state
            .store
            .delete_messages_before(&c.id, now - i64::from(days) * DAY_MS)?;
    }
    let audit_pruned = audit::prune(
        state,
        now - i64::from(state.config.audit_retention_days) * DAY_MS,
    )?;
    if audit_pruned > 0 {
        audit::record(
            state,
            Event::new("audit_pruned", None, None, "ok").reason(&format!(
                "{audit_pruned} entries behind a signed checkpoint"
            )),
        )?;
    }
    if deleted > 0 {
        state.store.sync()?;
        audit::record(
            state,
            Event::new("retention_deleted", None, None, "ok").reason(&format!(
                "{deleted} messages deleted; {held} conversations on legal hold"
            )),
        )?;
    }
    Ok(deleted)
}

/// Runs [`tick`] every few minutes until shutdown.
pub async fn run(state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(Duration::from_secs(300));
    loop {
        tokio::select! {
            _ = interval.tick() => {
                let st = state.clone();
                match tokio::task::spawn_blocking(move || tick(&st)).await {
                    Ok(Ok(n)) if n > 0 => tracing::info!(deleted = n, "retention pass"),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(code = ?e.code(), "retention pass failed"),
                    Err(e) => tracing::error!(error = %e, "retention task failed"),
                }
            }
            _ = shutdown.changed() => break,
        }
    }
}

/// `admin_legal_hold`: on a user (all their conversations) or one conversation.
pub async fn legal_hold(
    state: &State,
    authed: &Authed,
    req: AdminLegalHold,
) -> Result<(), ApiError> {
    require_admin(state, authed, "admin_legal_hold")?;
    let target = match (&req.user_id, &req.conv_id) {
        (Some(u), None) => {
            let lock = state.auth.lock_for(u);
            let _guard = lock.lock().await;
            let mut user = state
                .store
                .user(u)?
                .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such user"))?;
            user.legal_hold = req.hold;
            state.store.put_user(&user)?;
            u.to_string()
        }
        (None, Some(c)) => {
            let mut conv = state
                .store
                .conversation(c)?
                .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such conversation"))?;
            conv.legal_hold = req.hold;
            state.store.update_conversation(&conv, &[])?;
            c.to_string()
        }
        _ => {
            return Err(ApiError::bad_request(
                "name exactly one of user_id and conv_id",
            ));
        }
    };
    state.store.sync()?;
    audit::record(
        state,
        Event::new(
            if req.hold {
                "legal_hold_placed"
            } else {
                "legal_hold_lifted"
            },
            Some(&authed.user.id),
            Some(&target),
            "ok",
        )
        .device(&authed.device_id)
        .reason(&req.reason),
    )
}

/// `conversation_retention`: members may keep messages for less time, never more.
pub fn set_conversation(
    state: &State,
    authed: &Authed,
    req: ConversationRetention,
) -> Result<(), ApiError> {
    let mut conv = conversations::for_member(state, authed, &req.conv_id)?;
    if req.days == 0 || req.days > state.config.retention_days {
        return Err(ApiError::bad_request(format!(
            "days must be between 1 and the deployment's {} days",
            state.config.retention_days
        )));
    }
    conv.retention_days = Some(req.days);
    state.store.update_conversation(&conv, &[])?;
    state.store.sync()?;
    audit::record(
        state,
        Event::new(
            "retention_changed",
            Some(&authed.user.id),
            Some(conv.id.as_str()),
            "ok",
        )
        .device(&authed.device_id)
        .reason(&format!("{} days", req.days)),
    )
}
