//! The organisation's directory: users by username, and their devices' public keys.

use std::collections::BTreeSet;

use wardline_protocol::wire::{DeviceInfo, DevicesOk, Lookup, LookupOk, UserInfo};
use wardline_protocol::{UserId, Username};

use crate::auth::Authed;
use crate::error::ApiError;
use crate::state::State;
use crate::store::{Device, DeviceState, UserState};

/// Most names or ids in one directory request.
pub const MAX_DIRECTORY_QUERY: usize = 250;

/// `lookup`: users by username; unknown and disabled ones are left out.
pub fn lookup(state: &State, _authed: &Authed, req: Lookup) -> Result<LookupOk, ApiError> {
    if req.usernames.len() > MAX_DIRECTORY_QUERY {
        return Err(ApiError::bad_request(format!(
            "look up at most {MAX_DIRECTORY_QUERY} usernames at a time"
        )));
    }
    let mut users = Vec::new();
    let unique: BTreeSet<&String> = req.usernames.iter().collect();
    for name in unique {
        let Ok(name) = Username::parse(name.trim()) else {
            continue;
        };
        let Some(id) = state.store.user_id_by_username(&name)? else {
            continue;
        };
        if let Some(u) = state.store.user(&id)?
            && u.state != UserState::Disabled
        {
            users.push(info(u));
        }
    }
    Ok(LookupOk { users })
}

/// The distinct ids of a directory request, refusing oversized ones.
fn distinct_ids(ids: &[UserId]) -> Result<BTreeSet<&UserId>, ApiError> {
    if ids.len() > MAX_DIRECTORY_QUERY {
        return Err(ApiError::bad_request(format!(
            "ask for at most {MAX_DIRECTORY_QUERY} users at a time"
        )));
    }
    Ok(ids.iter().collect())
}

fn info(u: crate::store::User) -> UserInfo {
    UserInfo {
        user_id: u.id,
        username: u.username,
        display_name: u.display_name,
        role: u.role,
    }
}

/// `users`: directory entries by id (disabled users included, so that old
/// messages still show who sent them); the reply shape is `lookup`'s.
pub fn users(
    state: &State,
    _authed: &Authed,
    req: wardline_protocol::wire::Users,
) -> Result<LookupOk, ApiError> {
    let unique = distinct_ids(&req.user_ids)?;
    let mut users = Vec::new();
    for id in unique {
        if let Some(u) = state.store.user(id)? {
            users.push(info(u));
        }
    }
    Ok(LookupOk { users })
}

/// The active devices of `user`.
pub fn active_devices(state: &State, user: &UserId) -> Result<Vec<Device>, ApiError> {
    // A disabled account's devices receive nothing: nobody seals to them.
    if state
        .store
        .user(user)?
        .is_none_or(|u| u.state == UserState::Disabled)
    {
        return Ok(Vec::new());
    }
    let mut list = state.store.devices_of(user)?;
    list.retain(|d| d.state == DeviceState::Active);
    Ok(list)
}

/// `devices`: active devices of the given users, for sealing.
pub fn devices(
    state: &State,
    _authed: &Authed,
    req: wardline_protocol::wire::Devices,
) -> Result<DevicesOk, ApiError> {
    let unique = distinct_ids(&req.user_ids)?;
    let mut devices = Vec::new();
    for user in unique {
        for d in active_devices(state, user)? {
            devices.push(DeviceInfo {
                user_id: d.user_id,
                device_id: d.id,
                kem_pk: d.kem_pk,
                sig_pk: d.sig_pk,
            });
        }
    }
    Ok(DevicesOk { devices })
}
