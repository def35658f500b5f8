//! Remote wipe, both ways round:
//!
//! * [`carry_out`]: this device was ordered wiped (a `wipe` push). It signs
//!   the confirmation while it still has its keys, makes the unlock agent
//!   forget the data key, destroys the keystore (the wrapped data key
//!   first, so whatever remains on the disk is unreadable), sends the
//!   signed `wipe_done`, tells the person at the screen why, and the
//!   process exits with status 3.
//! * `wardline wipe DEVICE`: the user orders one of their own devices
//!   (lost, stolen) wiped from this one, after entering password and TOTP
//!   again.

use clap::Args;
use wardline_protocol::wire::{
    DeviceList, DeviceListOk, WipeDone, WipeOk, WipeOwnDevice, WipePush,
};
use wardline_protocol::{DeviceId, ErrorCode, Request, wipe as signing};

use super::{Context, Session};
use crate::agent;
use crate::error::Error;
use crate::output::Event;
use crate::prompt::{self, SecretKind};

/// Carries out the wipe `order` on this device (see the module docs) and
/// returns the error the process ends with.
pub async fn carry_out(ctx: &Context, session: Session, order: WipePush) -> Error {
    let Session { keystore, mut conn } = session;
    let device_id = keystore.state().device_id.clone();
    let sig = signing::sign_wipe_done(
        &keystore.state().device_secrets(),
        &order.wipe_id,
        &device_id,
    );
    // The agent holds the data key in memory: it goes first.
    agent::lock(&ctx.home);
    let destroyed = keystore.destroy();
    let _ = std::fs::remove_file(agent::socket_path(&ctx.home));
    let confirmed = conn
        .request(Request::WipeDone(WipeDone {
            wipe_id: order.wipe_id.clone(),
            sig,
        }))
        .await
        .is_ok();
    conn.close().await;
    let event = Event::Wiped {
        wipe_id: order.wipe_id,
        reason: order.reason.clone(),
        confirmed,
    };
    if ctx.out.is_json() {
        ctx.out.note(&format!(
            "wardline: this device was wiped by order of your organisation (reason: {}); its Wardline keys and messages have been destroyed",
            crate::output::clean(&order.reason)
        ));
    }
    let _ = ctx.out.emit(&event);
    match destroyed {
        Ok(()) => Error::Wiped {
            reason: order.reason,
        },
        Err(e) => Error::WipeFailed(e),
    }
}

/// Arguments of `wardline wipe`.
#[derive(Debug, Args)]
pub struct WipeArgs {
    /// The lost device: its id, or its name as `wardline devices` shows it.
    pub device: String,
    /// Why, for the audit log and the person who finds the device.
    #[arg(
        long,
        default_value = "lost or stolen; wiped by its owner from another device"
    )]
    pub reason: String,
    /// The current code from your authenticator app (otherwise asked for,
    /// or read from standard input after the password).
    #[arg(long, value_name = "CODE")]
    pub totp: Option<String>,
}

/// Orders one of the user's other devices wiped.
pub async fn run(ctx: &Context, s: &mut Session, args: WipeArgs) -> Result<(), Error> {
    let listed: DeviceListOk = s
        .conn
        .call(Request::DeviceList(DeviceList { user_id: None }))
        .await?;
    let matches: Vec<_> = listed
        .devices
        .iter()
        .filter(|d| d.device_id.as_str() == args.device || d.name == args.device)
        .collect();
    let device_id: DeviceId = match matches.as_slice() {
        [one] => one.device_id.clone(),
        [] => {
            return Err(Error::Usage(format!(
                "you have no device called '{}'; `wardline devices` lists them",
                args.device
            )));
        }
        many => {
            return Err(Error::Usage(format!(
                "{} of your devices are called '{}'; name one by its id: {}",
                many.len(),
                args.device,
                many.iter()
                    .map(|d| d.device_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    if device_id == s.keystore.state().device_id {
        return Err(Error::Usage(
            "that is the device you are using now; to stop using it, run `wardline logout`, or ask IT to wipe it"
                .into(),
        ));
    }
    let password = prompt::secret(SecretKind::AccountPassword, false)?;
    let totp = prompt::totp(args.totp.as_deref())?;
    let ordered: WipeOk = s
        .conn
        .call(Request::WipeOwnDevice(WipeOwnDevice {
            device_id: device_id.clone(),
            reason: args.reason,
            password,
            totp,
        }))
        .await
        .map_err(|e| {
            Error::from(e)
                .explain(&[ErrorCode::AuthFailed], || {
                    "Wrong password or authenticator code; nothing was wiped. Check and try again."
                        .into()
                })
                .explain(&[ErrorCode::Conflict], || {
                    "That device is already wiped or has a wipe pending.".into()
                })
        })?;
    ctx.out.emit(&Event::WipeOrdered {
        wipe_id: ordered.wipe_id,
        device_id,
    })?;
    Ok(())
}
