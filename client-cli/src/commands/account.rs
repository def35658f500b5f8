//! `wardline whoami`, `wardline devices`, `wardline logout`, `wardline
//! password`: this device's account and the user's devices.

use clap::Args;
use wardline_protocol::wire::{DeviceList, DeviceListOk, Empty, Logout, PasswordChange};
use wardline_protocol::{DevicePublicKeys, ErrorCode, Request};

use super::{Context, Session, open_keystore};
use crate::agent;
use crate::error::Error;
use crate::output::{DeviceRow, Event, WhoamiView};
use crate::prompt::{self, SecretKind};

/// Shows who this device belongs to, from the keystore alone (no network),
/// and whether the keystore is unlocked.
pub async fn whoami(ctx: &Context) -> Result<(), Error> {
    let keystore = open_keystore(ctx)?;
    let state = keystore.state();
    let own_keys = state
        .device_keys(&state.user_id, &state.device_id)
        .copied()
        .unwrap_or_else(|| state.device_secrets().public());
    let view = WhoamiView {
        user_id: state.user_id.clone(),
        username: state.username.clone(),
        display_name: None,
        role: None,
        device_id: state.device_id.clone(),
        device_name: state.device_name.clone(),
        server: state.server.clone(),
        trust: state.trust.as_ref().map(ToString::to_string),
        session_expires_at: state.expires_at.clone(),
        unlocked_for_secs: agent::time_left(&ctx.home).map(|d| d.as_secs()),
        fingerprint: own_keys.fingerprint(),
    };
    ctx.out.emit(&Event::Whoami(view))?;
    Ok(())
}

/// Lists the user's devices, with their state and when each was last seen.
pub async fn devices(ctx: &Context, s: &mut Session) -> Result<(), Error> {
    let listed: DeviceListOk = s
        .conn
        .call(Request::DeviceList(DeviceList { user_id: None }))
        .await?;
    emit_devices(ctx, &s.keystore.state().device_id, listed)
}

/// Prints a `device_list` answer, marking the device in use (shared by
/// `wardline devices` and `wardline admin devices`).
pub(crate) fn emit_devices(
    ctx: &Context,
    me: &wardline_protocol::DeviceId,
    listed: DeviceListOk,
) -> Result<(), Error> {
    let rows: Vec<Event> = listed
        .devices
        .into_iter()
        .map(|d| {
            Event::Device(DeviceRow {
                this_device: d.device_id == *me,
                fingerprint: DevicePublicKeys {
                    kem_pk: d.kem_pk,
                    sig_pk: d.sig_pk,
                }
                .fingerprint(),
                device_id: d.device_id,
                name: d.name,
                state: d.state,
                created_at: d.created_at,
                last_seen: d.last_seen,
            })
        })
        .collect();
    ctx.out.emit_all(&rows)?;
    Ok(())
}

/// Ends this device's session on the server and forgets the token. The
/// device keeps its keys and messages (sealed), so `wardline login` makes it
/// usable again; the unlock agent forgets the key too.
pub async fn logout(ctx: &Context, s: &mut Session) -> Result<(), Error> {
    let _: Empty = s.conn.call(Request::Logout(Logout {})).await?;
    let state = s.keystore.state_mut();
    state.token = wardline_protocol::Secret::new("");
    s.keystore.save()?;
    agent::lock(&ctx.home);
    ctx.out.emit(&Event::LoggedOut {
        device_id: s.keystore.state().device_id.clone(),
        username: s.keystore.state().username.clone(),
    })?;
    Ok(())
}

/// Arguments of `wardline password`.
#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// The current code from your authenticator app (otherwise asked for,
    /// or read from standard input after the passwords).
    #[arg(long, value_name = "CODE")]
    pub totp: Option<String>,
}

/// Changes the account password on the server: the current one, the new
/// one (twice at a terminal), then a fresh authenticator code.
pub async fn change_password(
    ctx: &Context,
    s: &mut Session,
    args: PasswordArgs,
) -> Result<(), Error> {
    let password = prompt::secret(SecretKind::AccountPassword, false)?;
    let new_password = prompt::secret(SecretKind::NewAccountPassword, true)?;
    if new_password.expose() == password.expose() {
        return Err(Error::Usage(
            "the new password is the same as the current one; choose a different one".into(),
        ));
    }
    let totp = prompt::totp(args.totp.as_deref())?;
    let _: Empty = s
        .conn
        .call(Request::PasswordChange(PasswordChange {
            password,
            totp,
            new_password,
        }))
        .await
        .map_err(|e| {
            Error::from(e).explain(&[ErrorCode::AuthFailed], || {
                "Wrong password or authenticator code; your password is unchanged. Check and try again (repeated failures lock the account for 15 minutes)."
                    .into()
            })
        })?;
    ctx.out.emit(&Event::PasswordChanged {
        username: s.keystore.state().username.to_string(),
    })?;
    Ok(())
}
