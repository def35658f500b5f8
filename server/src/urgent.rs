//! Urgent escalation. An urgent message that a recipient has not read is
//! pushed to that recipient's devices again every `urgent_renotify_ms`;
//! if it is still unread after `urgent_escalate_ms`, the sender's devices
//! get `unread_urgent` naming who has not read it, so the sender can phone
//! instead. A bleep nobody answers must not fail silently.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use wardline_protocol::wire::{self, UnreadUrgentPush, render_message_push};

use crate::directory::active_devices;
use crate::error::ApiError;
use crate::notify;
use crate::state::State;

/// Checks every watched urgent message once: re-notifies, escalates, or
/// stops watching those read by everyone. Returns how many are still watched.
pub fn tick(state: &State) -> Result<usize, ApiError> {
    let now = state.clock.now_ms();
    let mut watching = 0;
    for mut w in state.store.urgent_watches()? {
        let members = match state.store.conversation(&w.conv_id)? {
            Some(c) => c.members,
            None => Vec::new(),
        };
        let mut unread = Vec::new();
        for r in &w.recipients {
            if members.contains(r) && state.store.read_cursor(r, &w.conv_id)? < w.seq {
                unread.push(r.clone());
            }
        }
        if unread.is_empty() {
            state.store.remove_urgent_watch(&w.conv_id, w.seq)?;
            continue;
        }
        if now - w.stored_at >= state.config.urgent_escalate_ms {
            let frame = wire::encode_push(
                "unread_urgent",
                &UnreadUrgentPush {
                    conv_id: w.conv_id.clone(),
                    seq: w.seq,
                    msg_id: w.msg_id,
                    unread,
                },
            );
            notify::to_users(state, [&w.sender_user], &frame)?;
            tracing::info!(conv = %w.conv_id, seq = w.seq, "urgent message escalated to its sender");
            state.store.remove_urgent_watch(&w.conv_id, w.seq)?;
            continue;
        }
        watching += 1;
        if now - w.last_notified >= state.config.urgent_renotify_ms {
            renotify(state, &w, &unread)?;
            w.last_notified = now;
            state.store.put_urgent_watch(&w)?;
        }
    }
    Ok(watching)
}

fn renotify(
    state: &State,
    w: &crate::store::UrgentWatch,
    unread: &[wardline_protocol::UserId],
) -> Result<(), ApiError> {
    let Some(m) = state
        .store
        .messages_after(&w.conv_id, w.seq.saturating_sub(1), 1)?
        .into_iter()
        .find(|m| m.seq == w.seq)
    else {
        return Ok(());
    };
    for user in unread {
        for d in active_devices(state, user)? {
            if let Some(entry) = m.envelope.entry_for(&d.id) {
                let frame = render_message_push(&w.conv_id, w.seq, &m.envelope, Some(entry));
                state.hub.push_to_device(&d.id, &frame);
            }
        }
    }
    Ok(())
}

/// Runs [`tick`] periodically until shutdown.
pub async fn run(state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    // Check often enough to keep to the configured interval within a few seconds.
    let period =
        Duration::from_millis((state.config.urgent_renotify_ms / 8).clamp(1_000, 15_000) as u64);
    let mut interval = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                let st = state.clone();
                match tokio::task::spawn_blocking(move || tick(&st)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(code = ?e.code(), "urgent escalation check failed"),
                    Err(e) => tracing::error!(error = %e, "urgent escalation task failed"),
                }
            }
            _ = shutdown.changed() => break,
        }
    }
}
