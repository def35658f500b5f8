//! `wardline admin`: governance, for users with the admin role. One file
//! per area: [`users`] (accounts), [`devices`] (devices and remote wipe),
//! [`audit`] (the audit log and its verification), [`policy`] (residency,
//! incident mode, legal holds).
//!
//! Users are named by username. `lookup` finds active, enrolling and
//! pending accounts but leaves disabled ones out, so a name it does not
//! know is looked for in `admin_user_list` too (which `enable` needs).
//! The server refuses every `admin_*` request from anyone but an admin
//! (`forbidden`); each command turns that into a sentence that says so.

mod audit;
mod devices;
mod policy;
mod users;

use clap::{Args, Subcommand, ValueEnum};
use wardline_protocol::wire::{AccountInfo, AdminUserList, AdminUserListOk, Lookup, LookupOk};
use wardline_protocol::{ErrorCode, Request, UserId, Username};

pub use self::audit::AuditArgs;
pub use self::devices::{DeviceCommand, DevicesArgs, WipeArgs, WipeStatusArgs};
pub use self::policy::{IncidentModeArgs, LegalHoldArgs};
pub use self::users::{RoleArg, UserAddArgs, UserCommand};
use super::{Context, Session};
use crate::connection::ConnectionError;
use crate::error::Error;

const USER_EXAMPLES: &str = "\
Examples:
  wardline admin user list
  wardline admin user list --state pending-approval
  wardline admin user add carol --display-name \"Dr Carol Jones (Cardiology)\"
  wardline admin user add dave --display-name \"Dave Smith\" --role records-officer
  wardline admin user disable carol --reason \"left the trust\"
  wardline admin user enable carol --reason \"returned from leave\"
  wardline admin user reset carol --reason \"lost phone with authenticator\"
  wardline admin user approve rahmed";

const DEVICE_EXAMPLES: &str = "\
Examples:
  wardline admin devices carol
  wardline admin device revoke 0193f7c2-6a1e-7c3d-9b2a-3f4e5d6c7b8a --reason \"workstation replaced\"
  wardline admin wipe 0193f7c2-6a1e-7c3d-9b2a-3f4e5d6c7b8a --reason \"stolen from ward 10\"
  wardline admin wipe-status w-0193f7d0-...";

const AUDIT_EXAMPLES: &str = "\
Examples:
  wardline admin audit                          # the newest 50 entries
  wardline admin audit --kind wipe_ordered --limit 200
  wardline admin audit --actor carol
  wardline admin audit --after 1200             # 50 entries after #1200
  wardline admin audit --verify                 # fetch and check the whole chain
  wardline admin audit --verify --audit-key w0S+MyTEKhh+dlDY32bsCxmIlyUtx+pM80FAa5c2JDE=";

const POLICY_EXAMPLES: &str = "\
Examples:
  wardline admin residency
  wardline admin incident-mode on --reason \"major incident: M6 pile-up\"
  wardline admin incident-mode off --reason \"incident stood down\"
  wardline admin legal-hold --user bnowak on --reason \"subject access request 2026/118\"
  wardline admin legal-hold --conversation \"Ward 10 night team\" off --reason \"request closed\"";

/// `wardline admin ...`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Manage user accounts: list, add, disable, enable, reset, approve.
    #[command(after_help = USER_EXAMPLES)]
    User {
        /// What to do.
        #[command(subcommand)]
        command: UserCommand,
    },
    /// List any user's devices with their state, when each was added and
    /// when it was last seen.
    #[command(after_help = DEVICE_EXAMPLES)]
    Devices(DevicesArgs),
    /// Take a device out of use.
    #[command(after_help = DEVICE_EXAMPLES)]
    Device {
        /// What to do.
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Order a device wiped (lost, stolen or redeployed): it is revoked at
    /// once, and destroys its keys and messages when it next connects.
    #[command(after_help = DEVICE_EXAMPLES)]
    Wipe(WipeArgs),
    /// Whether a wiped device has confirmed the wipe.
    #[command(after_help = DEVICE_EXAMPLES)]
    WipeStatus(WipeStatusArgs),
    /// Read the tamper-evident audit log of security events, and verify
    /// its hash chain (--verify).
    #[command(after_help = AUDIT_EXAMPLES)]
    Audit(AuditArgs),
    /// What is stored in which region, and the regions the residency
    /// policy permits (rule R6).
    #[command(after_help = POLICY_EXAMPLES)]
    Residency,
    /// Open (on) or close (off) self-registration for a major incident;
    /// accounts registered meanwhile wait for approval.
    #[command(after_help = POLICY_EXAMPLES)]
    IncidentMode(IncidentModeArgs),
    /// Place (on) or lift (off) a legal hold on a user or a conversation:
    /// retention deletes nothing it covers while it lasts.
    #[command(after_help = POLICY_EXAMPLES)]
    LegalHold(LegalHoldArgs),
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Turn it on.
    On,
    /// Turn it off.
    Off,
}

impl Switch {
    /// Whether it is on.
    pub fn is_on(self) -> bool {
        self == Switch::On
    }
}

/// A reason recorded in the audit log.
#[derive(Debug, Args)]
pub struct Reason {
    /// Why; recorded in the audit log (at most 200 characters).
    #[arg(long)]
    pub reason: String,
}

/// The longest reason the audit log keeps.
const MAX_REASON_CHARS: usize = 200;

impl Reason {
    fn check(&self, what: &str) -> Result<(), Error> {
        let n = self.reason.trim().chars().count();
        if n == 0 {
            return Err(Error::Usage(format!(
                "give a --reason for the {what}; it is recorded in the audit log"
            )));
        }
        if n > MAX_REASON_CHARS {
            return Err(Error::Usage(format!(
                "the --reason is {n} characters; the audit log keeps at most {MAX_REASON_CHARS}, so shorten it"
            )));
        }
        Ok(())
    }
}

/// Checks the arguments before the keystore or the network are touched.
pub fn check(command: &AdminCommand) -> Result<(), Error> {
    match command {
        AdminCommand::User { command } => users::check(command),
        AdminCommand::Device {
            command: DeviceCommand::Revoke(a),
        } => a.reason.check("revocation"),
        AdminCommand::Wipe(a) => a.reason.check("wipe"),
        AdminCommand::Audit(a) => audit::check(a),
        AdminCommand::IncidentMode(a) => a.reason.check("change of incident mode"),
        AdminCommand::LegalHold(a) => a.reason.check("legal hold"),
        AdminCommand::Devices(_) | AdminCommand::WipeStatus(_) | AdminCommand::Residency => Ok(()),
    }
}

/// Runs an admin command.
pub async fn run(ctx: &Context, s: &mut Session, command: AdminCommand) -> Result<(), Error> {
    match command {
        AdminCommand::User { command } => users::run(ctx, s, command).await,
        AdminCommand::Devices(args) => devices::list(ctx, s, args).await,
        AdminCommand::Device {
            command: DeviceCommand::Revoke(args),
        } => devices::revoke(ctx, s, args).await,
        AdminCommand::Wipe(args) => devices::wipe(ctx, s, args).await,
        AdminCommand::WipeStatus(args) => devices::wipe_status(ctx, s, args).await,
        AdminCommand::Audit(args) => audit::run(ctx, s, args).await,
        AdminCommand::Residency => policy::residency(ctx, s).await,
        AdminCommand::IncidentMode(args) => policy::incident_mode(ctx, s, args).await,
        AdminCommand::LegalHold(args) => policy::legal_hold(ctx, s, args).await,
    }
}

/// The error for a refused admin request: `forbidden` becomes a sentence
/// about administrators (or about approval, for an account that awaits
/// it); other codes keep their usual advice.
pub(crate) fn refused(e: ConnectionError) -> Error {
    match e {
        ConnectionError::Server(se) if se.code == ErrorCode::Forbidden => Error::Explained {
            code: ErrorCode::Forbidden,
            message: if se.message.contains("approval") {
                "Your account is awaiting an administrator's approval; until then it can only log out.".into()
            } else {
                "Only administrators can do this, and your account does not have the admin role. Ask one of the trust's Wardline administrators if it needs doing.".into()
            },
        },
        other => other.into(),
    }
}

/// A `not_found` answer as a sentence naming what was not found.
fn not_found(what: String) -> impl FnOnce(Error) -> Error {
    move |e| e.explain(&[ErrorCode::NotFound], || what)
}

/// Every account, page by page (`admin_user_list`).
pub(crate) async fn all_users(s: &mut Session) -> Result<Vec<AccountInfo>, Error> {
    let mut users = Vec::new();
    let mut after = None;
    loop {
        let page: AdminUserListOk = s
            .conn
            .call(Request::AdminUserList(AdminUserList {
                after: after.clone(),
                limit: None,
            }))
            .await
            .map_err(refused)?;
        users.extend(page.users);
        match page.next_after {
            // Each page must move on, or a faulty server would loop us.
            Some(next) if after.as_ref().is_none_or(|a| next > *a) => after = Some(next),
            Some(_) => {
                return Err(Error::Refused(
                    "the server's account list did not move on to a next page".into(),
                ));
            }
            None => return Ok(users),
        }
    }
}

/// The account `name` names: a username, or a user id as `admin user list`
/// shows it. Looked up with `lookup`, then, for accounts that leaves out
/// (disabled ones), in `admin_user_list`.
pub(crate) async fn resolve_user(s: &mut Session, name: &str) -> Result<(UserId, Username), Error> {
    let name = name.trim();
    if let Ok(username) = Username::parse(name) {
        let found: LookupOk = s
            .conn
            .call(Request::Lookup(Lookup {
                usernames: vec![username.to_string()],
            }))
            .await?;
        if let Some(u) = found.users.into_iter().find(|u| u.username == username) {
            s.keystore
                .state_mut()
                .remember_username(&u.user_id, &u.username);
            return Ok((u.user_id, u.username));
        }
    }
    all_users(s)
        .await?
        .into_iter()
        .find(|u| u.username.as_str() == name || u.user_id.as_str() == name)
        .map(|u| {
            s.keystore
                .state_mut()
                .remember_username(&u.user_id, &u.username);
            (u.user_id, u.username)
        })
        .ok_or_else(|| {
            Error::Usage(format!(
                "no user called '{name}' on this server; `wardline admin user list` lists every account"
            ))
        })
}
