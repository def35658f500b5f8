//! `wardline verify USER`: safety numbers to compare in person, and
//! `--confirm` to record that they matched.

use clap::Args;
use wardline_protocol::wire::{Devices, DevicesOk};
use wardline_protocol::{DevicePublicKeys, Request};

use super::{Context, Session};
use crate::error::Error;
use crate::keystore::DeviceStanding;
use crate::outgoing::lookup_users;
use crate::output::{Event, SafetyRow};
use crate::safety::SafetyNumber;

/// Arguments of `wardline verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The username of the colleague (your own, to check your other devices).
    pub user: String,
    /// Record that every number shown matched what the colleague's device
    /// shows: sends to them are no longer flagged, and changed keys are
    /// accepted. Only after comparing in person.
    #[arg(long)]
    pub confirm: bool,
}

/// Shows one safety number per active device of the user, each computed
/// from that device's public keys and this device's; with `--confirm`,
/// marks them verified.
pub async fn run(ctx: &Context, s: &mut Session, args: VerifyArgs) -> Result<(), Error> {
    let user = lookup_users(
        &mut s.conn,
        &mut s.keystore,
        std::slice::from_ref(&args.user),
    )
    .await?
    .remove(0);
    let listed: DevicesOk = s
        .conn
        .call(Request::Devices(Devices {
            user_ids: vec![user.user_id.clone()],
        }))
        .await?;
    let state = s.keystore.state_mut();
    let devices: Vec<_> = listed
        .devices
        .into_iter()
        .filter(|d| d.user_id == user.user_id && d.device_id != state.device_id)
        .collect();
    if devices.is_empty() {
        return Err(Error::Usage(if user.user_id == state.user_id {
            "you have no other active device to verify".into()
        } else {
            format!("{} has no active device yet", user.username)
        }));
    }
    // Pin what is new, and note replaced keys, before showing anything.
    state.remember_devices(&devices);
    let mine = state.device_secrets().public();
    let rows: Vec<Event> = devices
        .iter()
        .map(|d| {
            let published = DevicePublicKeys {
                kem_pk: d.kem_pk,
                sig_pk: d.sig_pk,
            };
            Event::SafetyNumber(SafetyRow {
                user_id: user.user_id.clone(),
                username: user.username.clone(),
                device_id: d.device_id.clone(),
                safety_number: SafetyNumber::of(&mine, &published).to_string(),
                standing: state
                    .standing(&d.user_id, &d.device_id)
                    .unwrap_or(DeviceStanding::Unverified),
                first_seen: state
                    .contacts
                    .get(&d.user_id)
                    .and_then(|c| c.trust.get(&d.device_id))
                    .map(|t| t.first_seen.clone()),
            })
        })
        .collect();
    let me = state.username.clone();
    let my_device = state.device_id.clone();
    if !ctx.out.is_json() {
        println!(
            "Safety numbers between this device ({my_device}) and each device of {}. Compare them in person with what `wardline verify {me}` shows on that device, not over Wardline or the phone:\n",
            user.username
        );
    }
    ctx.out.emit_all(&rows)?;
    if args.confirm {
        let now = crate::clock::now()
            .ok_or_else(|| Error::Refused("the system clock is not set to a usable time".into()))?;
        let confirmed = s
            .keystore
            .state_mut()
            .confirm_verified(&user.user_id, &devices, &now);
        s.keystore.save()?;
        ctx.out.emit(&Event::Verified {
            user_id: user.user_id,
            username: user.username,
            devices: confirmed,
        })?;
    } else if !ctx.out.is_json() {
        println!(
            "\nIf every number matches, run: wardline verify {} --confirm",
            user.username
        );
    }
    Ok(())
}
