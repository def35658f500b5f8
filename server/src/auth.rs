//! Authentication: passwords (Argon2id), TOTP with replay protection,
//! enrolment codes, session tokens and lockout.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use dashmap::DashMap;
use ring::digest;
use tokio::sync::Mutex;
use wardline_protocol::wire::{
    EnrolFinish, EnrolStart, EnrolStartOk, ErrorCode, Login, LoginDevice, NewDevice,
    PasswordChange, Resume, ResumeOk, SessionOk,
};
use wardline_protocol::{DeviceId, Secret, Timestamp, UserId, Username};

use crate::error::ApiError;
use crate::state::State;
use crate::store::{Device, DeviceState, Enrolment, Session, User, UserState};

/// Failed logins within [`LOCKOUT_WINDOW_MS`] that lock a username.
pub const LOCKOUT_THRESHOLD: usize = 5;
/// How far back failures count, and how long a lock lasts.
pub const LOCKOUT_WINDOW_MS: i64 = 15 * 60 * 1000;
/// Shortest password accepted at enrolment.
pub const MIN_PASSWORD_CHARS: usize = 10;

const TOTP_ISSUER: &str = "Wardline";
/// Crockford's base32 alphabet: no I, L, O or U to misread.
const CODE_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// An authenticated connection: the user and device a session belongs to.
/// Only code that has checked credentials or a token can make one.
#[derive(Debug, Clone)]
pub struct Authed {
    /// The user, as of authentication.
    pub user: User,
    /// The device the session is bound to.
    pub device_id: DeviceId,
    /// SHA-256 of the session token.
    pub token_hash: [u8; 32],
    /// When the session ends.
    pub expires_at: i64,
}

/// Authentication state shared by all connections.
pub struct Auth {
    argon2: Argon2<'static>,
    /// Verified against when a username does not exist, so that an unknown
    /// user costs the same time as a wrong password.
    dummy_hash: String,
    /// Serialises credential checks per user: a TOTP step must be spent once
    /// even when two logins race.
    user_locks: DashMap<UserId, Arc<Mutex<()>>>,
    /// Failed logins for usernames that do not exist, so that they lock out
    /// exactly like real ones and `locked_out` reveals nothing.
    phantom_failures: DashMap<String, (Vec<i64>, i64)>,
    /// Argon2 hashes running at once. Each takes 19 MiB: unbounded, a burst
    /// of logins (a shift change, or an attacker on many connections) would
    /// run one per blocking thread, up to 512, and exhaust memory. More than
    /// two per core gains no throughput.
    hashing: Arc<tokio::sync::Semaphore>,
}

/// Most unknown usernames whose failures are remembered; beyond it the
/// oldest are forgotten (memory stays bounded under a username spray).
const MAX_PHANTOMS: usize = 100_000;

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

impl Default for Auth {
    fn default() -> Self {
        Self::new()
    }
}

impl Auth {
    /// Argon2id with the crate's default (OWASP-recommended) parameters.
    pub fn new() -> Self {
        let argon2 = Argon2::default();
        let mut pw = [0u8; 32];
        wardline_protocol::rng::fill(&mut pw);
        let dummy_hash = hash_password_with(&argon2, &wardline_protocol::b64::encode(pw))
            .expect("hashing a random password");
        Self {
            argon2,
            dummy_hash,
            user_locks: DashMap::new(),
            phantom_failures: DashMap::new(),
            hashing: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get() * 2),
            )),
        }
    }

    /// The lock every read-modify-write of `user`'s record holds, so that
    /// a login, a password change and an administrator's change to the
    /// same account never overwrite one another.
    pub(crate) fn lock_for(&self, user: &UserId) -> Arc<Mutex<()>> {
        self.user_locks.entry(user.clone()).or_default().clone()
    }
}

fn hash_password_with(argon2: &Argon2<'static>, password: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    wardline_protocol::rng::fill(&mut salt);
    argon2
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| internal("password hashing"))
}

fn internal(what: &str) -> ApiError {
    tracing::error!(what, "authentication fault");
    ApiError::new(
        ErrorCode::Internal,
        "the server could not complete this request; try again",
    )
}

/// Argon2 takes tens of milliseconds of CPU: keep it off the async workers,
/// and only a few at a time (see `Auth::hashing`).
async fn hash_password(state: &Arc<State>, password: Secret) -> Result<String, ApiError> {
    let permit = state
        .auth
        .hashing
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| internal("password hashing permits"))?;
    let st = state.clone();
    // The permit goes with the hash: a client that hangs up mid-request
    // must not free a slot while its hash still runs.
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        hash_password_with(&st.auth.argon2, password.expose())
    })
    .await
    .map_err(|_| internal("password hashing task"))?
}

async fn verify_password(state: &Arc<State>, hash: Option<String>, password: Secret) -> bool {
    // The semaphore is never closed; without a permit, fail closed.
    let Ok(permit) = state.auth.hashing.clone().acquire_owned().await else {
        return false;
    };
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let (hash, real) = match &hash {
            Some(h) => (h.as_str(), true),
            None => (st.auth.dummy_hash.as_str(), false),
        };
        let ok = PasswordHash::new(hash)
            .map(|h| {
                st.auth
                    .argon2
                    .verify_password(password.expose().as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        ok && real
    })
    .await
    .unwrap_or(false)
}

/// The outcome of checking a TOTP code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpCheck {
    /// Valid for this time step, which is now spent.
    Valid(u64),
    /// Valid, but this step or a later one was already used.
    Replayed,
    /// Wrong.
    Invalid,
}

fn totp_for(secret: &[u8], account: &str) -> Option<totp_rs::Totp> {
    totp_rs::Builder::new()
        .with_secret(secret.to_vec())
        .with_account_name(account)
        .with_issuer(Some(TOTP_ISSUER))
        .build()
        .ok()
}

/// Checks `code` against `secret` at `now_secs`, allowing one step of clock
/// skew either way; a step at or before `last_step` counts as replayed.
pub fn check_totp(secret: &[u8], code: &str, now_secs: u64, last_step: u64) -> TotpCheck {
    let Some(totp) = totp_for(secret, "x") else {
        return TotpCheck::Invalid;
    };
    match totp.check(code.trim(), now_secs) {
        None => TotpCheck::Invalid,
        Some(step) if step <= last_step => TotpCheck::Replayed,
        Some(step) => TotpCheck::Valid(step),
    }
}

/// SHA-256 of a bearer secret: what the store keeps instead of the secret.
pub fn secret_hash(s: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, s.as_bytes());
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// Enrolment codes are typed by people: ignore case, spaces and dashes.
fn normalise_code(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// A new enrolment code: 20 characters (100 bits), in groups of five.
pub fn new_enrolment_code() -> Secret {
    let mut raw = [0u8; 20];
    wardline_protocol::rng::fill(&mut raw);
    let chars: Vec<char> = raw
        .iter()
        .map(|b| CODE_ALPHABET[(*b as usize) % 32] as char)
        .collect();
    let groups: Vec<String> = chars.chunks(5).map(|c| c.iter().collect()).collect();
    Secret::new(groups.join("-"))
}

/// Stores a fresh enrolment code for `user`; returns the code and its expiry.
pub fn issue_enrolment(
    state: &State,
    user: &UserId,
    ttl_ms: i64,
) -> Result<(Secret, i64), ApiError> {
    let code = new_enrolment_code();
    let expires_at = state.clock.now_ms() + ttl_ms;
    state.store.put_enrolment(
        &secret_hash(&normalise_code(code.expose())),
        &Enrolment {
            user_id: user.clone(),
            expires_at,
        },
    )?;
    Ok((code, expires_at))
}

fn enrolment_failed() -> ApiError {
    ApiError::new(
        ErrorCode::AuthFailed,
        "this enrolment code is not valid or has expired; ask an administrator for a new one",
    )
}

fn login_failed() -> ApiError {
    ApiError::new(ErrorCode::AuthFailed, "wrong username, password or code")
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(ms).expect("server times are in range")
}

async fn redeem(state: &Arc<State>, code: &Secret) -> Result<([u8; 32], User), ApiError> {
    let hash = secret_hash(&normalise_code(code.expose()));
    let e = state.store.enrolment(&hash)?.ok_or_else(enrolment_failed)?;
    if e.expires_at <= state.clock.now_ms() {
        return Err(enrolment_failed());
    }
    let user = state.store.user(&e.user_id)?.ok_or_else(enrolment_failed)?;
    if user.state == UserState::Disabled {
        // A disabled account must not come back through an old code.
        return Err(enrolment_failed());
    }
    Ok((hash, user))
}

/// `enrol_start`: set the password, issue a TOTP secret.
pub async fn enrol_start(state: &Arc<State>, req: EnrolStart) -> Result<EnrolStartOk, ApiError> {
    let (_, user) = redeem(state, &req.code).await?;
    check_password_policy(&req.password)?;
    let lock = state.auth.lock_for(&user.id);
    let _guard = lock.lock().await;
    let mut user = state.store.user(&user.id)?.ok_or_else(enrolment_failed)?;
    let mut secret = [0u8; 20];
    wardline_protocol::rng::fill(&mut secret);
    user.password_hash = Some(hash_password(state, req.password).await?);
    user.totp_secret = Some(secret.to_vec());
    state.store.put_user(&user)?;
    state.store.sync()?;
    let totp = totp_for(&secret, user.username.as_str()).ok_or_else(|| internal("totp"))?;
    Ok(EnrolStartOk {
        user_id: user.id.clone(),
        username: user.username.clone(),
        totp_secret: Secret::new(totp_rs::Secret::from(secret.to_vec()).to_base32()),
        totp_uri: Secret::new(totp.to_url().map_err(|_| internal("totp uri"))?),
    })
}

/// `enrol_finish`: confirm the TOTP code, register the first device, open a session.
pub async fn enrol_finish(
    state: &Arc<State>,
    req: EnrolFinish,
) -> Result<(SessionOk, Authed), ApiError> {
    let (code_hash, user) = redeem(state, &req.code).await?;
    let lock = state.auth.lock_for(&user.id);
    let _guard = lock.lock().await;
    let mut user = state.store.user(&user.id)?.ok_or_else(enrolment_failed)?;
    let Some(secret) = user.totp_secret.clone() else {
        return Err(ApiError::bad_request(
            "call enrol_start before enrol_finish",
        ));
    };
    match check_totp(
        &secret,
        req.totp.expose(),
        state.clock.now_secs(),
        user.totp_last_step,
    ) {
        TotpCheck::Valid(step) => user.totp_last_step = step,
        TotpCheck::Replayed => return Err(replayed()),
        TotpCheck::Invalid => return Err(login_failed()),
    }
    if user.state == UserState::Enrolling {
        user.state = UserState::Active;
    }
    // (PendingApproval stays pending; Disabled never gets here: see `redeem`.)
    let device = new_device(state, &user.id, req.device)?;
    state.store.put_user(&user)?;
    state.store.remove_enrolment(&code_hash)?;
    tracing::info!(user = %user.id, device = %device.id, "enrolment finished");
    crate::audit::record(
        state,
        crate::audit::Event::new("enrolled", Some(&user.id), Some(device.id.as_str()), "ok")
            .device(&device.id),
    )?;
    open_session(state, user, device.id)
}

fn replayed() -> ApiError {
    ApiError::new(
        ErrorCode::TotpReplayed,
        "this code was already used; wait for the next code from your authenticator app",
    )
}

fn new_device(state: &State, user: &UserId, d: NewDevice) -> Result<Device, ApiError> {
    let name = d.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::bad_request(
            "device name must be 1 to 64 characters",
        ));
    }
    // A signing key that is not a valid Ed25519 point could never verify.
    if !d.sig_pk.is_valid() {
        return Err(ApiError::bad_request(
            "sig_pk is not a valid Ed25519 public key",
        ));
    }
    let device = Device {
        id: DeviceId::generate_v7(state.clock.now_ms() as u64, random10()),
        user_id: user.clone(),
        name: name.to_string(),
        kem_pk: d.kem_pk,
        sig_pk: d.sig_pk,
        state: DeviceState::Active,
        created_at: state.clock.now_ms(),
        last_seen: None,
        wipe_id: None,
    };
    state.store.put_device(&device)?;
    Ok(device)
}

/// Ten random bytes for a UUIDv7.
pub fn random10() -> [u8; 10] {
    let mut r = [0u8; 10];
    wardline_protocol::rng::fill(&mut r);
    r
}

fn open_session(
    state: &Arc<State>,
    user: User,
    device_id: DeviceId,
) -> Result<(SessionOk, Authed), ApiError> {
    let mut raw = [0u8; 32];
    wardline_protocol::rng::fill(&mut raw);
    let token = Secret::new(wardline_protocol::b64::encode(raw));
    let now = state.clock.now_ms();
    let expires_at = now + state.config.session_ttl_ms;
    let token_hash = secret_hash(token.expose());
    state.store.put_session(
        &token_hash,
        &Session {
            user_id: user.id.clone(),
            device_id: device_id.clone(),
            created_at: now,
            expires_at,
            last_used: now,
        },
    )?;
    // The client will rely on this token at once: make it durable first.
    state.store.sync()?;
    let ok = SessionOk {
        user_id: user.id.clone(),
        device_id: device_id.clone(),
        token,
        expires_at: ts(expires_at),
    };
    Ok((
        ok,
        Authed {
            user,
            device_id,
            token_hash,
            expires_at,
        },
    ))
}

/// `login`: password and TOTP; registers a new device or reuses an old one.
pub async fn login(state: &Arc<State>, req: Login) -> Result<(SessionOk, Authed), ApiError> {
    let found = match Username::parse(req.username.trim()) {
        Ok(name) => match state.store.user_id_by_username(&name)? {
            Some(id) => state.store.user(&id)?,
            None => None,
        },
        Err(_) => None,
    };
    let Some(user) = found else {
        // Same work, same answers (including lockout) as a wrong password.
        let now = state.clock.now_ms();
        let key = req.username.trim().to_ascii_lowercase();
        if phantom_locked(state, &key, now) {
            return Err(locked_out());
        }
        verify_password(state, None, req.password).await;
        record_phantom_failure(state, key, now);
        return Err(login_failed());
    };
    let lock = state.auth.lock_for(&user.id);
    let _guard = lock.lock().await;
    let user = check_credentials(state, &user.id, req.password, req.totp).await?;
    let device_id = match req.device {
        LoginDevice::Existing { device_id } => {
            let d = state.store.device(&device_id)?;
            match d {
                Some(d) if d.user_id == user.id && d.state == DeviceState::Active => d.id,
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::NotFound,
                        "this device is not registered to you or was revoked; log in as a new device",
                    ));
                }
            }
        }
        LoginDevice::New(d) => {
            let id = new_device(state, &user.id, d)?.id;
            crate::audit::record(
                state,
                crate::audit::Event::new("device_added", Some(&user.id), Some(id.as_str()), "ok")
                    .device(&id),
            )?;
            crate::notify::devices_changed(state, &user.id)?;
            id
        }
    };
    crate::audit::record(
        state,
        crate::audit::Event::new("login", Some(&user.id), None, "ok").device(&device_id),
    )?;
    state.store.put_user(&user)?;
    tracing::info!(user = %user.id, device = %device_id, "login");
    open_session(state, user, device_id)
}

/// Checks password and TOTP for `user` (caller holds the user's lock):
/// lockout, constant work, the TOTP step spent at once, failures counted
/// and audited. Returns the updated user.
async fn check_credentials(
    state: &Arc<State>,
    user: &UserId,
    password: Secret,
    totp: Secret,
) -> Result<User, ApiError> {
    let mut user = state.store.user(user)?.ok_or_else(login_failed)?;
    let now = state.clock.now_ms();
    if user.locked_until > now {
        audit_login(state, &user.id, "locked_out")?;
        return Err(locked_out());
    }
    let password_ok = verify_password(state, user.password_hash.clone(), password).await;
    let check = match (&user.totp_secret, password_ok) {
        (Some(secret), true) => check_totp(
            secret,
            totp.expose(),
            state.clock.now_secs(),
            user.totp_last_step,
        ),
        _ => TotpCheck::Invalid,
    };
    let step = match check {
        TotpCheck::Valid(step) if user.state.may_sign_in() => step,
        TotpCheck::Replayed => {
            audit_login(state, &user.id, "totp_replayed")?;
            return Err(replayed());
        }
        _ => {
            let locked = record_failure(state, &mut user, now)?;
            audit_login(
                state,
                &user.id,
                if locked {
                    "failed_and_locked"
                } else {
                    "failed"
                },
            )?;
            return Err(login_failed());
        }
    };
    user.totp_last_step = step;
    user.failed_logins.clear();
    // Spend the code now, whatever happens next.
    state.store.put_user(&user)?;
    Ok(user)
}

fn check_password_policy(password: &Secret) -> Result<(), ApiError> {
    if password.expose().chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::bad_request(format!(
            "choose a password of at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

/// `password_change`: the user proves who they are as for `login` (current
/// password and a fresh TOTP code; failures count towards lockout) and sets
/// a new password. Sessions go on: a device that may be in the wrong hands
/// is wiped or revoked, not logged out by a password change.
pub async fn password_change(
    state: &Arc<State>,
    authed: &Authed,
    req: PasswordChange,
) -> Result<(), ApiError> {
    check_password_policy(&req.new_password)?;
    if req.new_password.expose() == req.password.expose() {
        return Err(ApiError::bad_request(
            "the new password must differ from the current one",
        ));
    }
    let lock = state.auth.lock_for(&authed.user.id);
    let _guard = lock.lock().await;
    let mut user = check_credentials(state, &authed.user.id, req.password, req.totp).await?;
    user.password_hash = Some(hash_password(state, req.new_password).await?);
    state.store.put_user(&user)?;
    crate::audit::record(
        state,
        crate::audit::Event::new("password_changed", Some(&user.id), None, "ok")
            .device(&authed.device_id),
    )?;
    state.store.sync()?;
    tracing::info!(user = %user.id, "password changed");
    Ok(())
}

fn audit_login(state: &State, user: &UserId, outcome: &'static str) -> Result<(), ApiError> {
    crate::audit::record(
        state,
        crate::audit::Event::new("login", Some(user), None, outcome),
    )
}

/// Asks a signed-in user to prove who they are again (password and a fresh
/// TOTP code) before a destructive action such as wiping a device.
pub async fn reauthenticate(
    state: &Arc<State>,
    user: &UserId,
    password: Secret,
    totp: Secret,
) -> Result<(), ApiError> {
    let lock = state.auth.lock_for(user);
    let _guard = lock.lock().await;
    check_credentials(state, user, password, totp)
        .await
        .map(|_| ())
}

fn locked_out() -> ApiError {
    ApiError::new(
        ErrorCode::LockedOut,
        "too many failed attempts; this account is locked for 15 minutes",
    )
}

fn phantom_locked(state: &State, key: &str, now: i64) -> bool {
    state
        .auth
        .phantom_failures
        .get(key)
        .is_some_and(|f| f.1 > now)
}

fn record_phantom_failure(state: &State, key: String, now: i64) {
    let map = &state.auth.phantom_failures;
    if map.len() >= MAX_PHANTOMS {
        map.retain(|_, f| f.1 > now || f.0.last().is_some_and(|t| now - t < LOCKOUT_WINDOW_MS));
        if map.len() >= MAX_PHANTOMS {
            map.clear();
        }
    }
    // The same rule as for real accounts (`record_failure`), so that the
    // timing of `locked_out` says nothing about whether the account exists.
    let mut f = map.entry(key).or_default();
    f.0.retain(|t| now - t < LOCKOUT_WINDOW_MS);
    f.0.push(now);
    if f.0.len() >= LOCKOUT_THRESHOLD {
        f.1 = now + LOCKOUT_WINDOW_MS;
        f.0.clear();
    }
}

/// Counts a failed login; returns true if it locked the account.
fn record_failure(state: &State, user: &mut User, now: i64) -> Result<bool, ApiError> {
    user.failed_logins.retain(|t| now - t < LOCKOUT_WINDOW_MS);
    user.failed_logins.push(now);
    let locked = user.failed_logins.len() >= LOCKOUT_THRESHOLD;
    if locked {
        user.locked_until = now + LOCKOUT_WINDOW_MS;
        user.failed_logins.clear();
        tracing::warn!(user = %user.id, "account locked after repeated failed logins");
    }
    state.store.put_user(user)?;
    Ok(locked)
}

fn session_ended() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthenticated,
        "this session has ended; log in again",
    )
}

/// What a `resume` leads to.
#[derive(Debug)]
pub enum Resumed {
    /// The session goes on.
    Session(ResumeOk, Box<Authed>),
    /// The token belongs to a device with a wipe pending: it must wipe.
    WipePending(DeviceId),
}

/// `resume`: continue a session on a new connection.
pub async fn resume(state: &Arc<State>, req: Resume) -> Result<Resumed, ApiError> {
    let token_hash = secret_hash(req.token.expose());
    let mut s = state
        .store
        .session(&token_hash)?
        .ok_or_else(session_ended)?;
    // A lost device may come back long after its session would have
    // expired: its old token must still get it the order to wipe itself.
    if let Some(d) = state.store.device(&s.device_id)?
        && d.state == DeviceState::WipePending
    {
        return Ok(Resumed::WipePending(d.id));
    }
    let now = state.clock.now_ms();
    if s.expires_at <= now || now - s.last_used >= state.config.session_idle_ms {
        state.store.remove_session(&token_hash)?;
        crate::audit::record(
            state,
            crate::audit::Event::new("session_expired", Some(&s.user_id), None, "ok")
                .device(&s.device_id),
        )?;
        return Err(session_ended());
    }
    s.last_used = now;
    // Only the idle clock: while the disk refuses writes, a clinician may
    // still reconnect and read.
    if let Err(e) = state.store.put_session(&token_hash, &s) {
        tracing::warn!(error = %e, "could not record the session's use; it goes on");
    }
    let user = state.store.user(&s.user_id)?.ok_or_else(session_ended)?;
    let device = state
        .store
        .device(&s.device_id)?
        .ok_or_else(session_ended)?;
    if !user.state.may_sign_in() || device.state != DeviceState::Active {
        return Err(session_ended());
    }
    let ok = ResumeOk {
        user_id: user.id.clone(),
        device_id: device.id.clone(),
        expires_at: ts(s.expires_at),
    };
    Ok(Resumed::Session(
        ok,
        Box::new(Authed {
            user,
            device_id: device.id,
            token_hash,
            expires_at: s.expires_at,
        }),
    ))
}

/// Records that a session was in use until now (its connection is closing),
/// so the idle timeout counts from the end of use, not the start.
pub fn touch(state: &State, authed: &Authed) -> Result<(), ApiError> {
    if let Some(mut s) = state.store.session(&authed.token_hash)? {
        s.last_used = state.clock.now_ms();
        state.store.put_session(&authed.token_hash, &s)?;
    }
    Ok(())
}

/// `logout`: the token dies.
pub fn logout(state: &State, authed: &Authed) -> Result<(), ApiError> {
    state.store.remove_session(&authed.token_hash)?;
    crate::audit::record(
        state,
        crate::audit::Event::new("logout", Some(&authed.user.id), None, "ok")
            .device(&authed.device_id),
    )?;
    state.store.sync()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_codes_are_spent_once() {
        let secret = [42u8; 20];
        let totp = totp_for(&secret, "a").expect("valid");
        let now = 1_795_419_114;
        let code = totp.generate(now).to_string();
        let TotpCheck::Valid(step) = check_totp(&secret, &code, now, 0) else {
            panic!("fresh code must be valid");
        };
        assert_eq!(check_totp(&secret, &code, now, step), TotpCheck::Replayed);
        let earlier = totp.generate(now - 30).to_string();
        assert_eq!(
            check_totp(&secret, &earlier, now, step),
            TotpCheck::Replayed
        );
        let next = totp.generate(now + 30).to_string();
        assert!(matches!(
            check_totp(&secret, &next, now + 30, step),
            TotpCheck::Valid(_)
        ));
        assert_eq!(check_totp(&secret, "000000x", now, 0), TotpCheck::Invalid);
    }

    #[test]
    fn enrolment_codes_are_long_and_forgiving_to_type() {
        let code = new_enrolment_code();
        assert_eq!(code.expose().len(), 23);
        let typed = code.expose().to_lowercase().replace('-', " ");
        assert_eq!(normalise_code(&typed), normalise_code(code.expose()));
    }
}
