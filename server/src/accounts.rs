//! Account and device management for administrators: revoke a device,
//! disable or re-enable an account, reset credentials, list accounts, and
//! the exceptional self-registration of incident mode (rule R5).

use wardline_protocol::wire::{
    AccountInfo, AccountState, AdminDeviceRevoke, AdminIncidentMode, AdminUserApprove,
    AdminUserList, AdminUserListOk, AdminUserReset, AdminUserSetState, EnrolCodeOk, ErrorCode,
    Register, Role,
};
use wardline_protocol::{Timestamp, UserId};

use crate::admin::{create_user, require_admin};
use crate::audit::{self, Event};
use crate::auth::{Authed, issue_enrolment};
use crate::error::ApiError;
use crate::notify;
use crate::state::State;
use crate::store::{DeviceState, User, UserState};

/// The store flag for incident mode.
pub const INCIDENT_MODE: &str = "incident_mode";

fn user(state: &State, id: &UserId) -> Result<User, ApiError> {
    state
        .store
        .user(id)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such user"))
}

/// Closes every connection of every device of `user` at once.
fn end_all_sessions(state: &State, user: &UserId) -> Result<(), ApiError> {
    for d in state.store.devices_of(user)? {
        state.hub.kick_device(&d.id);
    }
    Ok(())
}

/// `admin_device_revoke`: the device can no longer sign in or receive; unlike
/// a wipe, nothing is asked of the device itself.
pub fn revoke_device(
    state: &State,
    authed: &Authed,
    req: AdminDeviceRevoke,
) -> Result<(), ApiError> {
    require_admin(state, authed, "admin_device_revoke")?;
    let mut d = state
        .store
        .device(&req.device_id)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such device"))?;
    if d.state == DeviceState::Active {
        d.state = DeviceState::Revoked;
        state.store.put_device(&d)?;
        state.store.sync()?;
        state.hub.kick_device(&d.id);
        notify::devices_changed(state, &d.user_id)?;
    }
    audit::record(
        state,
        Event::new(
            "device_revoked",
            Some(&authed.user.id),
            Some(d.id.as_str()),
            "ok",
        )
        .device(&authed.device_id)
        .reason(&req.reason),
    )
}

/// `admin_user_set_state`: disabling ends every session at once.
pub async fn set_state(
    state: &State,
    authed: &Authed,
    req: AdminUserSetState,
) -> Result<(), ApiError> {
    require_admin(state, authed, "admin_user_set_state")?;
    if req.user_id == authed.user.id && req.disabled {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "you cannot disable your own account",
        ));
    }
    let lock = state.auth.lock_for(&req.user_id);
    let _guard = lock.lock().await;
    let mut u = user(state, &req.user_id)?;
    u.state = match (req.disabled, u.state) {
        (true, _) => UserState::Disabled,
        (false, UserState::Disabled) => {
            if u.password_hash.is_some() {
                UserState::Active
            } else {
                UserState::Enrolling
            }
        }
        (false, other) => other,
    };
    state.store.put_user(&u)?;
    state.store.sync()?;
    if req.disabled {
        end_all_sessions(state, &u.id)?;
    }
    audit::record(
        state,
        Event::new(
            if req.disabled {
                "user_disabled"
            } else {
                "user_enabled"
            },
            Some(&authed.user.id),
            Some(u.id.as_str()),
            "ok",
        )
        .device(&authed.device_id)
        .reason(&req.reason),
    )
}

/// `admin_user_reset`: old password and TOTP stop working at once; the user
/// enrols again with the new code (their devices stay registered).
pub async fn reset(
    state: &State,
    authed: &Authed,
    req: AdminUserReset,
) -> Result<EnrolCodeOk, ApiError> {
    require_admin(state, authed, "admin_user_reset")?;
    let lock = state.auth.lock_for(&req.user_id);
    let _guard = lock.lock().await;
    let mut u = user(state, &req.user_id)?;
    // A reset renews credentials; it neither re-enables a disabled account
    // nor skips an approval.
    if u.state == UserState::Active {
        u.state = UserState::Enrolling;
    }
    u.password_hash = None;
    u.totp_secret = None;
    state.store.put_user(&u)?;
    let (code, expires_at) = issue_enrolment(state, &u.id, state.config.enrol_code_ttl_ms)?;
    state.store.sync()?;
    end_all_sessions(state, &u.id)?;
    audit::record(
        state,
        Event::new(
            "credentials_reset",
            Some(&authed.user.id),
            Some(u.id.as_str()),
            "ok",
        )
        .device(&authed.device_id)
        .reason(&req.reason),
    )?;
    Ok(EnrolCodeOk {
        user_id: u.id,
        enrol_code: code,
        expires_at: Timestamp::from_unix_millis(expires_at).expect("server times are in range"),
    })
}

/// Largest (and default) `admin_user_list` page: a few hundred KiB.
pub const USER_PAGE: u32 = 1000;

/// `admin_user_list`: a page of accounts in username order.
pub fn list(
    state: &State,
    authed: &Authed,
    req: AdminUserList,
) -> Result<AdminUserListOk, ApiError> {
    require_admin(state, authed, "admin_user_list")?;
    if req.limit == Some(0) {
        return Err(ApiError::bad_request("limit must be 1 to 1000"));
    }
    let limit = req.limit.unwrap_or(USER_PAGE).min(USER_PAGE) as usize;
    let mut users: Vec<AccountInfo> = state
        .store
        .all_users()?
        .into_iter()
        .filter(|u| req.after.as_ref().is_none_or(|a| u.username > *a))
        .map(|u| AccountInfo {
            user_id: u.id,
            username: u.username,
            display_name: u.display_name,
            role: u.role,
            state: match u.state {
                UserState::Enrolling => AccountState::Enrolling,
                UserState::PendingApproval => AccountState::PendingApproval,
                UserState::Active => AccountState::Active,
                UserState::Disabled => AccountState::Disabled,
            },
            region: u.region,
            legal_hold: u.legal_hold,
        })
        .collect();
    users.sort_by(|a, b| a.username.cmp(&b.username));
    let next_after = (users.len() > limit).then(|| users[limit - 1].username.clone());
    users.truncate(limit);
    Ok(AdminUserListOk { users, next_after })
}

/// `admin_incident_mode`.
pub fn incident_mode(
    state: &State,
    authed: &Authed,
    req: AdminIncidentMode,
) -> Result<(), ApiError> {
    require_admin(state, authed, "admin_incident_mode")?;
    state.store.set_flag(INCIDENT_MODE, req.enabled)?;
    state.store.sync()?;
    audit::record(
        state,
        Event::new(
            if req.enabled {
                "incident_mode_on"
            } else {
                "incident_mode_off"
            },
            Some(&authed.user.id),
            None,
            "ok",
        )
        .device(&authed.device_id)
        .reason(&req.reason),
    )
}

/// `register`: only in incident mode. The account is a clinician's and stays
/// pending (it can do nothing) until an admin approves it.
pub fn register(state: &State, req: Register) -> Result<EnrolCodeOk, ApiError> {
    if !state.store.flag(INCIDENT_MODE)? {
        audit::record(
            state,
            Event::new(
                "self_registration",
                None,
                Some(req.username.as_str()),
                "refused",
            ),
        )?;
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "self-registration is closed; ask an administrator for an account",
        ));
    }
    let (user_id, code, expires_at) = create_user(
        state,
        req.username,
        &req.display_name,
        Role::Clinician,
        state.config.enrol_code_ttl_ms,
        UserState::PendingApproval,
    )?;
    audit::record(
        state,
        Event::new("self_registration", None, Some(user_id.as_str()), "pending"),
    )?;
    Ok(EnrolCodeOk {
        user_id,
        enrol_code: code,
        expires_at: Timestamp::from_unix_millis(expires_at).expect("server times are in range"),
    })
}

/// `admin_user_approve`: a pending self-registration becomes a normal account.
pub async fn approve(
    state: &State,
    authed: &Authed,
    req: AdminUserApprove,
) -> Result<(), ApiError> {
    require_admin(state, authed, "admin_user_approve")?;
    let lock = state.auth.lock_for(&req.user_id);
    let _guard = lock.lock().await;
    let mut u = user(state, &req.user_id)?;
    if u.state != UserState::PendingApproval {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "this account is not awaiting approval",
        ));
    }
    u.state = UserState::Active;
    state.store.put_user(&u)?;
    state.store.sync()?;
    // Its open sessions carry the old state: make them sign in again.
    end_all_sessions(state, &u.id)?;
    audit::record(
        state,
        Event::new(
            "user_approved",
            Some(&authed.user.id),
            Some(u.id.as_str()),
            "ok",
        )
        .device(&authed.device_id),
    )
}
