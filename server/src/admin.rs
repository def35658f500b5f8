//! Administration: provisioning accounts, and the bootstrap admin of a new deployment.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;

use wardline_protocol::wire::{AdminUserCreate, AdminUserCreateOk, ErrorCode, Role};
use wardline_protocol::{Secret, Timestamp, UserId, Username};

use crate::auth::{Authed, issue_enrolment, random10};
use crate::error::ApiError;
use crate::state::State;
use crate::store::{StoreError, User, UserState};

/// File in the data directory holding the bootstrap admin's enrolment code.
pub const BOOTSTRAP_CODE_FILE: &str = "bootstrap-admin.code";

/// Refuses non-admins, and records the attempt: a clinician probing admin
/// functions is exactly what the information-governance team must see.
pub fn require_admin(state: &State, authed: &Authed, action: &str) -> Result<(), ApiError> {
    if authed.user.role == Role::Admin {
        return Ok(());
    }
    crate::audit::record(
        state,
        crate::audit::Event::new("forbidden", Some(&authed.user.id), None, "refused")
            .device(&authed.device_id)
            .reason(action),
    )?;
    Err(ApiError::new(
        ErrorCode::Forbidden,
        "only an administrator may do this",
    ))
}

/// Creates an account in `initial` state with a one-time enrolment code.
pub fn create_user(
    state: &State,
    username: Username,
    display_name: &str,
    role: Role,
    code_ttl_ms: i64,
    initial: UserState,
) -> Result<(UserId, Secret, i64), ApiError> {
    let display_name = display_name.trim();
    if display_name.is_empty() || display_name.chars().count() > 100 {
        return Err(ApiError::bad_request(
            "display_name must be 1 to 100 characters",
        ));
    }
    let now = state.clock.now_ms();
    let user = User {
        id: UserId::generate_v7(now as u64, random10()),
        username,
        display_name: display_name.to_string(),
        role,
        state: initial,
        password_hash: None,
        totp_secret: None,
        totp_last_step: 0,
        failed_logins: Vec::new(),
        locked_until: 0,
        created_at: now,
        region: state.config.region,
        legal_hold: false,
    };
    match state.store.insert_user(&user) {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            return Err(ApiError::new(ErrorCode::Conflict, "that username is taken"));
        }
        Err(e) => return Err(e.into()),
    }
    let (code, expires_at) = issue_enrolment(state, &user.id, code_ttl_ms)?;
    state.store.sync()?;
    Ok((user.id, code, expires_at))
}

/// `admin_user_create`.
pub fn user_create(
    state: &State,
    authed: &Authed,
    req: AdminUserCreate,
) -> Result<AdminUserCreateOk, ApiError> {
    require_admin(state, authed, "admin_user_create")?;
    let (user_id, enrol_code, expires_at) = create_user(
        state,
        req.username,
        &req.display_name,
        req.role,
        state.config.enrol_code_ttl_ms,
        UserState::Enrolling,
    )?;
    tracing::info!(admin = %authed.user.id, user = %user_id, role = ?req.role, "user created");
    crate::audit::record(
        state,
        crate::audit::Event::new(
            "user_created",
            Some(&authed.user.id),
            Some(user_id.as_str()),
            "ok",
        )
        .device(&authed.device_id)
        .reason(&format!("role {:?}", req.role)),
    )?;
    Ok(AdminUserCreateOk {
        user_id,
        enrol_code,
        expires_at: Timestamp::from_unix_millis(expires_at).expect("server times are in range"),
    })
}

/// Why the bootstrap admin could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The code file could not be written.
    #[error("cannot write {BOOTSTRAP_CODE_FILE}: {0}")]
    File(#[from] std::io::Error),
    /// Creating the user failed.
    #[error("cannot create the bootstrap admin ({0:?})")]
    Create(ErrorCode),
}

/// On a store with no users, creates `admin` and writes its one-time
/// enrolment code to `<data-dir>/bootstrap-admin.code` (mode 0600).
/// Returns the code so the caller can print it once.
pub fn bootstrap(state: &State) -> Result<Option<Secret>, BootstrapError> {
    if state.store.has_users()? {
        return Ok(None);
    }
    let username = Username::parse("admin").expect("'admin' is a valid username");
    let (_, code, _) = create_user(
        state,
        username,
        "Administrator",
        Role::Admin,
        state.config.bootstrap_code_ttl_ms,
        UserState::Enrolling,
    )
    .map_err(|e| BootstrapError::Create(e.code()))?;
    let path = state.config.data_dir.join(BOOTSTRAP_CODE_FILE);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    writeln!(f, "{}", code.expose())?;
    f.sync_all()?;
    Ok(Some(code))
}

/// `device_list`: the caller's own devices, or (admins) any user's.
pub fn device_list(
    state: &State,
    authed: &Authed,
    req: wardline_protocol::wire::DeviceList,
) -> Result<wardline_protocol::wire::DeviceListOk, ApiError> {
    use wardline_protocol::wire::{DeviceDetail, DeviceStatus};
    let user = req.user_id.unwrap_or_else(|| authed.user.id.clone());
    if user != authed.user.id {
        require_admin(state, authed, "device_list")?;
    }
    let ts = |ms: i64| Timestamp::from_unix_millis(ms).expect("server times are in range");
    let mut list = state.store.devices_of(&user)?;
    list.sort_by_key(|d| d.created_at);
    let devices = list
        .into_iter()
        .map(|d| DeviceDetail {
            device_id: d.id,
            name: d.name,
            state: match d.state {
                crate::store::DeviceState::Active => DeviceStatus::Active,
                crate::store::DeviceState::Revoked => DeviceStatus::Revoked,
                crate::store::DeviceState::WipePending => DeviceStatus::WipePending,
                crate::store::DeviceState::Wiped => DeviceStatus::Wiped,
            },
            created_at: ts(d.created_at),
            last_seen: d.last_seen.map(ts),
            kem_pk: d.kem_pk,
            sig_pk: d.sig_pk,
        })
        .collect();
    Ok(wardline_protocol::wire::DeviceListOk { devices })
}
