//! Pushes that are not messages: receipts, device-list and membership changes.
//! Works out who must hear of a change (from the store) and hands the frame
//! to the hub for each of their connected devices.

use std::collections::BTreeSet;

use wardline_protocol::UserId;
use wardline_protocol::wire::{self, DevicesChangedPush};

use crate::directory::active_devices;
use crate::error::ApiError;
use crate::state::State;

/// Pushes `frame` to every active device of `users`.
pub fn to_users<'a>(
    state: &State,
    users: impl IntoIterator<Item = &'a UserId>,
    frame: &str,
) -> Result<(), ApiError> {
    for u in users {
        for d in active_devices(state, u)? {
            state.hub.push_to_device(&d.id, frame);
        }
    }
    Ok(())
}

/// Everyone who shares a conversation with `user`, `user` included.
pub fn contacts_of(state: &State, user: &UserId) -> Result<BTreeSet<UserId>, ApiError> {
    let mut out = BTreeSet::from([user.clone()]);
    for conv in state.store.conversations_of(user)? {
        if let Some(c) = state.store.conversation(&conv)? {
            out.extend(c.members);
        }
    }
    Ok(out)
}

/// Tells everyone who shares a conversation with `user` that its device list
/// changed, so they stop (or start) sealing to those devices.
pub fn devices_changed(state: &State, user: &UserId) -> Result<(), ApiError> {
    let frame = wire::encode_push(
        "devices_changed",
        &DevicesChangedPush {
            user_id: user.clone(),
        },
    );
    to_users(state, &contacts_of(state, user)?, &frame)
}
