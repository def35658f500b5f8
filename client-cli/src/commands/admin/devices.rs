//! `wardline admin devices USER`, `admin device revoke`, `admin wipe` and
//! `admin wipe-status`.

use clap::{Args, Subcommand};
use wardline_protocol::wire::{
    AdminDeviceRevoke, AdminWipe, AdminWipeStatus, DeviceList, DeviceListOk, Empty, WipeOk,
    WipeStatusOk,
};
use wardline_protocol::{DeviceId, ErrorCode, Request};

use super::{DEVICE_EXAMPLES, Reason, not_found, refused, resolve_user};
use crate::commands::{Context, Session};
use crate::error::Error;
use crate::output::Event;

/// Arguments of `wardline admin devices`.
#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// Whose devices (username).
    pub username: String,
}

/// `wardline admin device ...`
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Revoke a device at once (signed out, never again a recipient),
    /// without asking it to destroy its keys; see `admin wipe` for that.
    #[command(after_help = DEVICE_EXAMPLES)]
    Revoke(RevokeArgs),
}

/// Arguments of `wardline admin device revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The device id (see `wardline admin devices USER`).
    pub device: DeviceId,
    /// Why.
    #[command(flatten)]
    pub reason: Reason,
}

/// Arguments of `wardline admin wipe`.
#[derive(Debug, Args)]
pub struct WipeArgs {
    /// The device id (see `wardline admin devices USER`).
    pub device: DeviceId,
    /// Why; also shown on the device.
    #[command(flatten)]
    pub reason: Reason,
}

/// Arguments of `wardline admin wipe-status`.
#[derive(Debug, Args)]
pub struct WipeStatusArgs {
    /// The wipe order's id, as `wardline admin wipe` printed it.
    pub wipe_id: String,
}

/// Lists a user's devices in every state.
pub(super) async fn list(ctx: &Context, s: &mut Session, args: DevicesArgs) -> Result<(), Error> {
    let (user_id, username) = resolve_user(s, &args.username).await?;
    let listed: DeviceListOk = s
        .conn
        .call(Request::DeviceList(DeviceList {
            user_id: Some(user_id),
        }))
        .await
        .map_err(refused)?;
    if listed.devices.is_empty() && !ctx.out.is_json() {
        println!("{username} has no devices yet (they have not enrolled).");
        return Ok(());
    }
    crate::commands::account::emit_devices(ctx, &s.keystore.state().device_id, listed)
}

pub(super) async fn revoke(ctx: &Context, s: &mut Session, args: RevokeArgs) -> Result<(), Error> {
    if args.device == s.keystore.state().device_id {
        return Err(Error::Usage(
            "that is the device you are using now; revoke it from another administrator's device"
                .into(),
        ));
    }
    let _: Empty = s
        .conn
        .call(Request::AdminDeviceRevoke(AdminDeviceRevoke {
            device_id: args.device.clone(),
            reason: args.reason.reason.trim().to_owned(),
        }))
        .await
        .map_err(|e| no_device(&args.device)(refused(e)))?;
    ctx.out.emit(&Event::DeviceRevoked {
        device_id: args.device,
    })?;
    Ok(())
}

pub(super) async fn wipe(ctx: &Context, s: &mut Session, args: WipeArgs) -> Result<(), Error> {
    let ordered: WipeOk = s
        .conn
        .call(Request::AdminWipe(AdminWipe {
            device_id: args.device.clone(),
            reason: args.reason.reason.trim().to_owned(),
        }))
        .await
        .map_err(|e| {
            no_device(&args.device)(refused(e)).explain(&[ErrorCode::Conflict], || {
                "That device is already wiped or has a wipe pending.".into()
            })
        })?;
    ctx.out.emit(&Event::WipeOrdered {
        wipe_id: ordered.wipe_id,
        device_id: args.device,
    })?;
    Ok(())
}

pub(super) async fn wipe_status(
    ctx: &Context,
    s: &mut Session,
    args: WipeStatusArgs,
) -> Result<(), Error> {
    let status: WipeStatusOk = s
        .conn
        .call(Request::AdminWipeStatus(AdminWipeStatus {
            wipe_id: args.wipe_id.clone(),
        }))
        .await
        .map_err(|e| {
            not_found(format!(
                "There is no wipe order {}; use the id `wardline admin wipe` printed (w-...).",
                args.wipe_id
            ))(refused(e))
        })?;
    ctx.out.emit(&Event::WipeStatus {
        wipe_id: args.wipe_id,
        state: status.state,
    })?;
    Ok(())
}

fn no_device(device: &DeviceId) -> impl FnOnce(Error) -> Error {
    not_found(format!(
        "There is no device {device}; `wardline admin devices USER` lists a user's devices."
    ))
}
