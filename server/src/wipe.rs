//! Remote wipe (rule R7): a lost, stolen or redeployed device is revoked at
//! once, its undelivered key entries are purged, and when it next connects
//! it is told to destroy its keys and data and to confirm with a signature.

use wardline_protocol::wire::{
    self, AdminWipe, AdminWipeStatus, ErrorCode, WipeDone, WipeOk, WipeOwnDevice, WipePush,
    WipeState, WipeStatusOk,
};
use wardline_protocol::{DeviceId, UserId, wipe as signing};

use crate::auth::{self, Authed, random10};
use crate::error::ApiError;
use crate::notify;
use crate::state::State;
use crate::store::{DeviceState, WipeOrder};

/// A device that must wipe itself: the only request it may still make is
/// `wipe_done`.
#[derive(Debug, Clone)]
pub struct Wiping {
    /// The device.
    pub device_id: DeviceId,
    /// The order it must confirm.
    pub wipe_id: String,
}

fn check_reason(reason: &str) -> Result<String, ApiError> {
    let r = reason.trim();
    if r.is_empty() || r.chars().count() > 200 {
        return Err(ApiError::bad_request("reason must be 1 to 200 characters"));
    }
    Ok(r.to_string())
}

/// `admin_wipe`.
pub fn admin_wipe(state: &State, authed: &Authed, req: AdminWipe) -> Result<WipeOk, ApiError> {
    crate::admin::require_admin(state, authed, "admin_wipe")?;
    order(
        state,
        &authed.user.id,
        &req.device_id,
        check_reason(&req.reason)?,
        None,
    )
}

/// `wipe_own_device`: the user proves who they are again first.
pub async fn own_device(
    state: &std::sync::Arc<State>,
    authed: &Authed,
    req: WipeOwnDevice,
) -> Result<WipeOk, ApiError> {
    let reason = check_reason(&req.reason)?;
    auth::reauthenticate(state, &authed.user.id, req.password, req.totp).await?;
    order(
        state,
        &authed.user.id,
        &req.device_id,
        reason,
        Some(&authed.user.id),
    )
}

/// Records the order, revokes the device at once, purges what it has not
/// received, tells its contacts, and pushes `wipe` if it is connected.
fn order(
    state: &State,
    by: &UserId,
    device_id: &DeviceId,
    reason: String,
    owner: Option<&UserId>,
) -> Result<WipeOk, ApiError> {
    let not_found = || ApiError::new(ErrorCode::NotFound, "no such device");
    let mut device = state.store.device(device_id)?.ok_or_else(not_found)?;
    if owner.is_some_and(|o| *o != device.user_id) {
        return Err(not_found());
    }
    if let (DeviceState::WipePending | DeviceState::Wiped, Some(id)) =
        (device.state, &device.wipe_id)
    {
        // Ordering twice is harmless: answer with the existing order.
        return Ok(WipeOk {
            wipe_id: id.clone(),
        });
    }
    let now = state.clock.now_ms();
    let wipe_id = format!("w-{}", UserId::generate_v7(now as u64, random10()));
    state.store.put_wipe(&WipeOrder {
        wipe_id: wipe_id.clone(),
        device_id: device.id.clone(),
        user_id: device.user_id.clone(),
        reason: reason.clone(),
        ordered_by: by.clone(),
        ordered_at: now,
        confirmed_at: None,
    })?;
    device.state = DeviceState::WipePending;
    device.wipe_id = Some(wipe_id.clone());
    state.store.put_device(&device)?;
    let mut purged = 0;
    for conv in state.store.conversations_of(&device.user_id)? {
        let cursor = state.store.cursor(&device.id, &conv)?;
        purged += state
            .store
            .purge_device_entries(&device.id, &conv, cursor)?;
    }
    state.store.sync()?;
    tracing::info!(device = %device.id, %wipe_id, purged, "wipe ordered");
    crate::audit::record(
        state,
        crate::audit::Event::new("wipe_ordered", Some(by), Some(&device.id.to_string()), "ok")
            .reason(&reason),
    )?;
    let frame = wire::encode_push(
        "wipe",
        &WipePush {
            wipe_id: wipe_id.clone(),
            reason,
        },
    );
    state.hub.order_wipe(&device.id, &wipe_id, &frame);
    notify::devices_changed(state, &device.user_id)?;
    Ok(WipeOk { wipe_id })
}

/// `admin_wipe_status`.
pub fn status(
    state: &State,
    authed: &Authed,
    req: AdminWipeStatus,
) -> Result<WipeStatusOk, ApiError> {
    crate::admin::require_admin(state, authed, "admin_wipe_status")?;
    let w = state
        .store
        .wipe(&req.wipe_id)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such wipe order"))?;
    Ok(WipeStatusOk {
        state: if w.confirmed_at.is_some() {
            WipeState::Confirmed
        } else {
            WipeState::Pending
        },
    })
}

/// The `wipe` push for a device whose wipe is pending, if it is.
pub fn pending_push(
    state: &State,
    device: &DeviceId,
) -> Result<Option<(Wiping, String)>, ApiError> {
    let Some(d) = state.store.device(device)? else {
        return Ok(None);
    };
    let (DeviceState::WipePending, Some(wipe_id)) = (d.state, d.wipe_id) else {
        return Ok(None);
    };
    let reason = state
        .store
        .wipe(&wipe_id)?
        .map(|w| w.reason)
        .unwrap_or_default();
    let frame = wire::encode_push(
        "wipe",
        &WipePush {
            wipe_id: wipe_id.clone(),
            reason,
        },
    );
    Ok(Some((
        Wiping {
            device_id: d.id,
            wipe_id,
        },
        frame,
    )))
}

/// `wipe_done`: verifies the device's signature and records the confirmation.
/// A forged confirmation is refused and audited, and the wipe stays pending.
pub fn done(state: &State, wiping: &Wiping, req: WipeDone) -> Result<(), ApiError> {
    let refuse = |why: &str| -> Result<(), ApiError> {
        tracing::warn!(device = %wiping.device_id, why, "wipe confirmation refused");
        crate::audit::record(
            state,
            crate::audit::Event::new(
                "wipe_confirmed",
                None,
                Some(wiping.device_id.as_str()),
                "refused",
            )
            .reason(why),
        )?;
        Err(ApiError::new(
            ErrorCode::AuthFailed,
            "the wipe confirmation does not verify",
        ))
    };
    if req.wipe_id != wiping.wipe_id {
        return refuse("wrong wipe id");
    }
    let Some(mut device) = state.store.device(&wiping.device_id)? else {
        return refuse("unknown device");
    };
    if signing::verify_wipe_done(&device.sig_pk, &req.wipe_id, &device.id, &req.sig).is_err() {
        return refuse("bad signature");
    }
    let mut order = state
        .store
        .wipe(&req.wipe_id)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such wipe order"))?;
    order.confirmed_at = Some(state.clock.now_ms());
    state.store.put_wipe(&order)?;
    device.state = DeviceState::Wiped;
    state.store.put_device(&device)?;
    state.store.sync()?;
    crate::audit::record(
        state,
        crate::audit::Event::new("wipe_confirmed", None, Some(device.id.as_str()), "ok"),
    )?;
    tracing::info!(device = %device.id, wipe_id = %req.wipe_id, "wipe confirmed");
    Ok(())
}
