//! `wardline admin user list|add|disable|enable|reset|approve`.

use clap::{Args, Subcommand, ValueEnum};
use wardline_protocol::wire::{
    AccountState, AdminUserApprove, AdminUserCreate, AdminUserCreateOk, AdminUserReset,
    AdminUserSetState, EnrolCodeOk,
};
use wardline_protocol::{ErrorCode, Request, Role, Username};

use super::{Reason, USER_EXAMPLES, not_found, refused, resolve_user};
use crate::commands::{Context, Session};
use crate::error::Error;
use crate::output::Event;
use crate::output::governance::AccountChange;

/// `wardline admin user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List every account with its role, state, region and legal hold.
    #[command(after_help = USER_EXAMPLES)]
    List(UserListArgs),
    /// Create an account and print its one-time enrolment code.
    #[command(after_help = USER_EXAMPLES)]
    Add(UserAddArgs),
    /// Disable an account at once: signed out on every device, no new
    /// sign-in. Its messages and devices stay.
    #[command(after_help = USER_EXAMPLES)]
    Disable(UserReasonArgs),
    /// Enable a disabled account again.
    #[command(after_help = USER_EXAMPLES)]
    Enable(UserReasonArgs),
    /// Reset a user's password and authenticator (lost phone, forgotten
    /// password): every session ends, and a new enrolment code is printed.
    #[command(after_help = USER_EXAMPLES)]
    Reset(UserReasonArgs),
    /// Approve an account that registered itself in incident mode.
    #[command(after_help = USER_EXAMPLES)]
    Approve(UserArgs),
}

/// An account state, as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    /// Created or reset; enrolment not finished.
    Enrolling,
    /// Registered in incident mode; waiting for an administrator.
    PendingApproval,
    /// In use.
    Active,
    /// Disabled by an administrator.
    Disabled,
}

impl From<StateArg> for AccountState {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::Enrolling => AccountState::Enrolling,
            StateArg::PendingApproval => AccountState::PendingApproval,
            StateArg::Active => AccountState::Active,
            StateArg::Disabled => AccountState::Disabled,
        }
    }
}

/// Arguments of `wardline admin user list`.
#[derive(Debug, Args)]
pub struct UserListArgs {
    /// Only accounts in this state.
    #[arg(long, value_enum)]
    pub state: Option<StateArg>,
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

/// Arguments naming one account.
#[derive(Debug, Args)]
pub struct UserArgs {
    /// The username (or user id).
    pub user: String,
}

/// Arguments naming one account, with a reason for the audit log.
#[derive(Debug, Args)]
pub struct UserReasonArgs {
    /// The username (or user id).
    pub user: String,
    /// Why.
    #[command(flatten)]
    pub reason: Reason,
}

/// Checks the arguments before the keystore or the network are touched.
pub(super) fn check(command: &UserCommand) -> Result<(), Error> {
    match command {
        UserCommand::Add(a) => {
            let n = a.display_name.trim().chars().count();
            if n == 0 || n > 100 {
                return Err(Error::Usage(
                    "the display name must be 1 to 100 characters".into(),
                ));
            }
            Ok(())
        }
        UserCommand::Disable(a) => a.reason.check("disabling"),
        UserCommand::Enable(a) => a.reason.check("enabling"),
        UserCommand::Reset(a) => a.reason.check("reset"),
        UserCommand::List(_) | UserCommand::Approve(_) => Ok(()),
    }
}

/// Runs a `user` subcommand.
pub(super) async fn run(ctx: &Context, s: &mut Session, command: UserCommand) -> Result<(), Error> {
    match command {
        UserCommand::List(args) => list(ctx, s, args).await,
        UserCommand::Add(args) => add(ctx, s, args).await,
        UserCommand::Disable(args) => set_state(ctx, s, args, true).await,
        UserCommand::Enable(args) => set_state(ctx, s, args, false).await,
        UserCommand::Reset(args) => reset(ctx, s, args).await,
        UserCommand::Approve(args) => approve(ctx, s, args).await,
    }
}

async fn list(ctx: &Context, s: &mut Session, args: UserListArgs) -> Result<(), Error> {
    let users = super::all_users(s).await?;
    let want: Option<AccountState> = args.state.map(Into::into);
    let rows: Vec<Event> = users
        .into_iter()
        .filter(|u| want.is_none_or(|w| u.state == w))
        .map(Event::Account)
        .collect();
    if rows.is_empty() && !ctx.out.is_json() {
        println!("No accounts in that state.");
        return Ok(());
    }
    ctx.out.emit_all(&rows)?;
    Ok(())
}

async fn add(ctx: &Context, s: &mut Session, args: UserAddArgs) -> Result<(), Error> {
    let username = args.username.clone();
    let created: AdminUserCreateOk = s
        .conn
        .call(Request::AdminUserCreate(AdminUserCreate {
            username: args.username.clone(),
            display_name: args.display_name.trim().to_owned(),
            role: args.role.into(),
        }))
        .await
        .map_err(|e| {
            refused(e).explain(&[ErrorCode::Conflict], || {
                format!("The username {username} is already taken; choose another.")
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

async fn set_state(
    ctx: &Context,
    s: &mut Session,
    args: UserReasonArgs,
    disabled: bool,
) -> Result<(), Error> {
    let (user_id, username) = resolve_user(s, &args.user).await?;
    let _: wardline_protocol::wire::Empty =
        s.conn
            .call(Request::AdminUserSetState(AdminUserSetState {
                user_id: user_id.clone(),
                disabled,
                reason: args.reason.reason.trim().to_owned(),
            }))
            .await
            .map_err(|e| {
                let name = username.clone();
                not_found(format!("There is no longer a user called {username}."))(refused(e))
                .explain(&[ErrorCode::Conflict], || {
                    format!(
                        "You cannot disable your own account ({name}); ask another administrator."
                    )
                })
            })?;
    ctx.out.emit(&Event::AccountChanged {
        user_id,
        username,
        change: if disabled {
            AccountChange::Disabled
        } else {
            AccountChange::Enabled
        },
    })?;
    Ok(())
}

async fn reset(ctx: &Context, s: &mut Session, args: UserReasonArgs) -> Result<(), Error> {
    let (user_id, username) = resolve_user(s, &args.user).await?;
    let reset: EnrolCodeOk = s
        .conn
        .call(Request::AdminUserReset(AdminUserReset {
            user_id,
            reason: args.reason.reason.trim().to_owned(),
        }))
        .await
        .map_err(|e| {
            not_found(format!("There is no longer a user called {username}."))(refused(e))
        })?;
    ctx.out.emit(&Event::UserReset {
        user_id: reset.user_id,
        username,
        enrol_code: reset.enrol_code,
        expires_at: reset.expires_at,
    })?;
    Ok(())
}

async fn approve(ctx: &Context, s: &mut Session, args: UserArgs) -> Result<(), Error> {
    let (user_id, username) = resolve_user(s, &args.user).await?;
    let _: wardline_protocol::wire::Empty = s
        .conn
        .call(Request::AdminUserApprove(AdminUserApprove {
            user_id: user_id.clone(),
        }))
        .await
        .map_err(|e| {
            let name = username.clone();
            not_found(format!("There is no longer a user called {username}."))(refused(e))
                .explain(&[ErrorCode::Conflict], || {
                    format!(
                        "{name} is not awaiting approval (only accounts registered in incident mode are); `wardline admin user list` shows each account's state."
                    )
                })
        })?;
    ctx.out.emit(&Event::AccountChanged {
        user_id,
        username,
        change: AccountChange::Approved,
    })?;
    Ok(())
}
