//! `wardline admin`: account administration, for users with the admin role.

use clap::{Args, Subcommand, ValueEnum};
use wardline_protocol::wire::{AdminUserCreate, AdminUserCreateOk};
use wardline_protocol::{ErrorCode, Request, Role, Username};

use super::{Context, open_keystore, resume};
use crate::error::Error;
use crate::output::Event;

/// `wardline admin ...`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Manage user accounts.
    User {
        /// What to do.
        #[command(subcommand)]
        command: UserCommand,
    },
}

/// `wardline admin user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account and print its one-time enrolment code.
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

/// Runs an admin command.
pub async fn run(ctx: &Context, command: AdminCommand) -> Result<(), Error> {
    match command {
        AdminCommand::User {
            command: UserCommand::Add(args),
        } => user_add(ctx, args).await,
    }
}

async fn user_add(ctx: &Context, args: UserAddArgs) -> Result<(), Error> {
    if args.display_name.trim().is_empty() {
        return Err(Error::Usage("the display name is empty".into()));
    }
    let mut keystore = open_keystore(&ctx.home)?;
    let mut conn = resume(&mut keystore).await?;
    let username = args.username.clone();
    let created: AdminUserCreateOk = conn
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
    conn.close().await;
    ctx.out.emit(&Event::UserCreated {
        user_id: created.user_id,
        username: args.username,
        enrol_code: created.enrol_code,
        expires_at: created.expires_at,
    })?;
    Ok(())
}
