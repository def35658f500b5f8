//! One module per command group. Each defines its clap arguments (whose doc
//! comments are the help text) next to the `run` function that carries the
//! command out, and returns [`crate::Error`].
//!
//! Secrets are asked for in one fixed order, so a script feeding standard
//! input knows what each line is: the keystore passphrase, then the account
//! password, then the TOTP code.

pub mod admin;
pub mod enrol;
pub mod inbox;
pub mod login;
pub mod send;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use wardline_protocol::wire::{NewDevice, Resume, ResumeOk};
use wardline_protocol::{DeviceSecrets, ErrorCode, Request};

use crate::connection::{Connection, Endpoint};
use crate::error::Error;
use crate::keystore::{Keystore, KeystoreError};
use crate::output::Output;
use crate::prompt::{self, SecretKind};
use crate::tls::{Trust, TrustError};

/// What every command needs.
#[derive(Debug, Clone)]
pub struct Context {
    /// The directory holding the keystore.
    pub home: PathBuf,
    /// Where results go.
    pub out: Output,
}

/// How to trust a `wss://` server, for the commands that set the server
/// (`enrol`, `login`); the keystore then remembers it for the others.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// For wss://: a PEM file with the certificate of the CA that signed the
    /// server's certificate (this client trusts no CA by default). Its
    /// contents are kept in the keystore.
    #[arg(long, env = "WARDLINE_CA", value_name = "FILE", conflicts_with = "pin")]
    pub ca: Option<PathBuf>,
    /// For wss://: the SHA-256 fingerprint of the server's certificate, as
    /// the server prints it at start ("tls certificate sha256 fingerprint
    /// AB:CD:..."); with or without colons, any case. Only that exact
    /// certificate is then accepted.
    #[arg(long, env = "WARDLINE_PIN", value_name = "SHA256")]
    pub pin: Option<String>,
}

impl TrustArgs {
    /// The trust these flags ask for, if any; a CA file is read now, so a
    /// bad file is reported before anything is asked or sent.
    pub fn load(&self) -> Result<Option<Trust>, TrustError> {
        Trust::from_args(self.ca.as_deref(), self.pin.as_deref())
    }
}

/// Opens the keystore in `home`, asking for its passphrase. A missing
/// keystore is reported before anything is asked.
pub(crate) fn open_keystore(home: &Path) -> Result<Keystore, Error> {
    if !Keystore::exists(home) {
        return Err(KeystoreError::NotFound(home.to_owned()).into());
    }
    let passphrase = prompt::secret(SecretKind::KeystorePassphrase, false)?;
    Ok(Keystore::open(home, &passphrase)?)
}

/// Connects to the keystore's server and resumes its session. The server
/// then starts pushing stored messages; they queue on the connection.
pub(crate) async fn resume(keystore: &mut Keystore) -> Result<Connection, Error> {
    let state = keystore.state();
    let endpoint = Endpoint::new(&state.server, state.trust.clone())?;
    let mut conn = Connection::connect(&endpoint).await?;
    let username = keystore.state().username.clone();
    let ok: ResumeOk = conn
        .call(Request::Resume(Resume {
            token: keystore.state().token.clone(),
        }))
        .await
        .map_err(|e| {
            Error::from(e).explain(&[ErrorCode::Unauthenticated], || {
                format!("Your session has ended; run `wardline login --username {username}`.")
            })
        })?;
    let state = keystore.state_mut();
    if ok.user_id != state.user_id || ok.device_id != state.device_id {
        return Err(Error::Refused(format!(
            "the server resumed a session for another device ({}) than the one in this keystore ({}); run `wardline login`",
            ok.device_id, state.device_id
        )));
    }
    state.expires_at = ok.expires_at;
    Ok(conn)
}

/// Milliseconds since the Unix epoch, by the system clock.
pub(crate) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The name a new device registers under: the one given, else one naming
/// this computer so the user can tell devices apart when one is lost.
pub(crate) fn device_name(given: Option<String>) -> String {
    if let Some(name) = given.filter(|n| !n.trim().is_empty()) {
        return name;
    }
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty());
    match host {
        Some(h) => format!("wardline-cli on {h}"),
        None => "wardline-cli".to_owned(),
    }
}

/// The public half of `secrets`, as a device registration.
pub(crate) fn new_device(name: &str, secrets: &DeviceSecrets) -> NewDevice {
    let public = secrets.public();
    NewDevice {
        name: name.to_owned(),
        kem_pk: public.kem_pk,
        sig_pk: public.sig_pk,
    }
}
