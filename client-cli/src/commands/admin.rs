//! `wardline admin`: account administration, for users with the admin role.

use clap::{Args, Subcommand, ValueEnum};
use wardline_protocol::wire::{
    AdminUserCreate, AdminUserCreateOk, AdminWipe, AdminWipeStatus, DeviceList, DeviceListOk,
    WipeOk, WipeStatusOk,
};
use wardline_protocol::{DeviceId, DevicePublicKeys, ErrorCode, Request, Role, Username};

use super::{Context, Session};
use crate::error::Error;
use crate::outgoing::lookup_users;
use crate::output::{DeviceRow, Event};

const USER_EXAMPLES: &str = "\
Examples:
  wardline admin user add carol --display-name \"Dr Carol Jones (Cardiology)\"
  wardline admin user add dave --display-name \"Dave Smith\" --role records-officer";

const DEVICE_EXAMPLES: &str = "\
Examples:
  wardline admin devices carol
  wardline admin wipe 0193f7c2-6a1e-7c3d-9b2a-3f4e5d6c7b8a --reason \"stolen from ward 10\"
  wardline admin wipe-status w-0193f7d0-...";

/// `wardline admin ...`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Manage user accounts.
    #[command(after_help = USER_EXAMPLES)]
    User {
        /// What to do.
        #[command(subcommand)]
        command: UserCommand,
    },
    /// List any user's devices with their state.
    #[command(after_help = DEVICE_EXAMPLES)]
    Devices(DevicesArgs),
    /// Order a device wiped (lost, stolen or redeployed): it is revoked at
    /// once, and destroys its keys and messages when it next connects.
    #[command(after_help = DEVICE_EXAMPLES)]
    Wipe(WipeArgs),
    /// Whether a wiped device has confirmed the wipe.
    #[command(after_help = DEVICE_EXAMPLES)]
    WipeStatus(WipeStatusArgs),
}

/// Arguments of `wardline admin devices`.
#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// Whose devices.
    pub username: String,
}

/// Arguments of `wardline admin wipe`.
#[derive(Debug, Args)]
pub struct WipeArgs {
    /// The device id (see `wardline admin devices USER`).
    pub device: DeviceId,
    /// Why; recorded in the audit log and shown on the device.
    #[arg(long)]
    pub reason: String,
}

/// Arguments of `wardline admin wipe-status`.
#[derive(Debug, Args)]
pub struct WipeStatusArgs {
    /// The wipe order's id, as `wardline admin wipe` printed it.
    pub wipe_id: String,
}

/// `wardline admin user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account and print its one-time enrolment code.
    #[command(after_help = USER_EXAMPLES)]
    Add(UserAddArgs),
}

/// A user's role, as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Doctors, nurses, allied health professionals.
    Clinician,
    /// Provisions accounts and devices.
    Admin,
    /// Handles exports and lawful-access requests.
    RecordsOfficer,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Clinician => Role::Clinician,
            RoleArg::Admin => Role::Admin,
            RoleArg::RecordsOfficer => Role::RecordsOfficer,
        }
    }
}

/// Arguments of `wardline admin user add`.
#[derive(Debug, Args)]
pub struct UserAddArgs {
    /// The organisational username (lower case: a-z, 0-9, '.', '-', '_').
    pub username: Username,
    /// The name other users see, e.g. "Dr Alice Smith (Cardiology)".
    #[arg(long, value_name = "NAME")]
    pub display_name: String,
    /// The account's role.
    #[arg(long, value_enum, default_value_t = RoleArg::Clinician)]
    pub role: RoleArg,
}

/// Checks the arguments before the keystore or the network are touched.
pub fn check(command: &AdminCommand) -> Result<(), Error> {
    match command {
        AdminCommand::User {
            command: UserCommand::Add(a),
        } if a.display_name.trim().is_empty() => {
            Err(Error::Usage("the display name is empty".into()))
        }
        AdminCommand::Wipe(a) if a.reason.trim().is_empty() => {
            Err(Error::Usage("give a --reason for the wipe".into()))
        }
        _ => Ok(()),
    }
}

/// Runs an admin command.
pub async fn run(ctx: &Context, s: &mut Session, command: AdminCommand) -> Result<(), Error> {
    let forbidden = |e: crate::connection::ConnectionError| {
        Error::from(e).explain(&[ErrorCode::Forbidden], || {
            "Only administrators can do this.".into()
        })
    };
    match command {
        AdminCommand::User {
            command: UserCommand::Add(args),
        } => user_add(ctx, s, args).await,
        AdminCommand::Devices(args) => {
            let user = lookup_users(&mut s.conn, &mut s.keystore, &[args.username])
                .await?
                .remove(0);
            let listed: DeviceListOk = s
                .conn
                .call(Request::DeviceList(DeviceList {
                    user_id: Some(user.user_id),
                }))
                .await
                .map_err(forbidden)?;
            let me = &s.keystore.state().device_id;
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
        AdminCommand::Wipe(args) => {
            let ordered: WipeOk = s
                .conn
                .call(Request::AdminWipe(AdminWipe {
                    device_id: args.device.clone(),
                    reason: args.reason,
                }))
                .await
                .map_err(|e| {
                    forbidden(e).explain(&[ErrorCode::Conflict], || {
                        "That device is already wiped or has a wipe pending.".into()
                    })
                })?;
            ctx.out.emit(&Event::WipeOrdered {
                wipe_id: ordered.wipe_id,
                device_id: args.device,
            })?;
            Ok(())
        }
        AdminCommand::WipeStatus(args) => {
            let status: WipeStatusOk = s
                .conn
                .call(Request::AdminWipeStatus(AdminWipeStatus {
                    wipe_id: args.wipe_id.clone(),
                }))
                .await
                .map_err(forbidden)?;
            ctx.out.emit(&Event::WipeStatus {
                wipe_id: args.wipe_id,
                state: status.state,
            })?;
            Ok(())
        }
    }
}

async fn user_add(ctx: &Context, s: &mut Session, args: UserAddArgs) -> Result<(), Error> {
    let username = args.username.clone();
    let created: AdminUserCreateOk = s
        .conn
        .call(Request::AdminUserCreate(AdminUserCreate {
            username: args.username.clone(),
            display_name: args.display_name,
            role: args.role.into(),
        }))
        .await
        .map_err(|e| {
            Error::from(e)
                .explain(&[ErrorCode::Conflict], || {
                    format!("The username {username} is already taken; choose another.")
                })
                .explain(&[ErrorCode::Forbidden], || {
                    "Only administrators can create accounts.".into()
                })
        })?;
    ctx.out.emit(&Event::UserCreated {
        user_id: created.user_id,
        username: args.username,
        enrol_code: created.enrol_code,
        expires_at: created.expires_at,
    })?;
    Ok(())
}
