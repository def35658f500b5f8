//! One module per command group. Each defines its clap arguments (whose doc
//! comments are the help text) next to the `run` function that carries the
//! command out, and returns [`crate::Error`].
//!
//! Commands that talk to the server run inside [`with_session`]: it opens
//! the keystore, connects and resumes the session, runs the command, saves
//! the keystore and closes the connection. If the server orders this device
//! wiped, at `resume` or at any moment during the command, it carries the
//! wipe out ([`wipe::carry_out`]) instead.
//!
//! Every question has a non-interactive form. Answers are read in one fixed
//! order, so a script feeding standard input knows what each line is:
//! first any confirmation about the command's own arguments (for example
//! sending a message whose text holds an NHS number), then the keystore
//! passphrase, then the account password, then the TOTP code. (`passphrase`
//! reads the current keystore passphrase, then the new one.)

pub mod account;
pub mod admin;
pub mod chat;
pub mod conversations;
pub mod enrol;
pub mod export;
pub mod lock;
pub mod login;
pub mod messages;
pub mod passphrase;
pub mod register;
pub mod send;
pub mod verify;
pub mod wipe;

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use wardline_protocol::wire::{NewDevice, Resume, ResumeOk};
use wardline_protocol::{DeviceSecrets, ErrorCode, Request};

use crate::agent;
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
    /// How long the keystore stays unlocked without use (0: not at all).
    pub idle_timeout: Duration,
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

/// Opens the keystore in `ctx.home`: with the key held by the unlock agent
/// when one is running, else by asking for the passphrase. A passphrase
/// typed at the terminal starts the agent, so the next command within the
/// idle timeout does not ask again; one from the environment or a pipe
/// (a script) does not. A missing keystore is reported before anything is
/// asked.
pub(crate) fn open_keystore(ctx: &Context) -> Result<Keystore, Error> {
    if !Keystore::exists(&ctx.home) {
        return Err(KeystoreError::NotFound(ctx.home.clone()).into());
    }
    if let Some(key) = agent::fetch_key(&ctx.home)
        && let Ok(keystore) = Keystore::open_with_data_key(&ctx.home, key)
    {
        return Ok(keystore);
    }
    let interactive = prompt::is_interactive(SecretKind::KeystorePassphrase);
    let passphrase = prompt::secret(SecretKind::KeystorePassphrase, false)?;
    let keystore = Keystore::open(&ctx.home, &passphrase)?;
    if interactive
        && !ctx.idle_timeout.is_zero()
        && let Err(e) = agent::start(&ctx.home, keystore.data_key(), ctx.idle_timeout)
    {
        ctx.out.note(&format!(
            "wardline: note: the keystore could not be kept unlocked ({e}); the next command will ask for the passphrase again"
        ));
    }
    Ok(keystore)
}

/// An open keystore and a resumed session with its server.
#[derive(Debug)]
pub struct Session {
    /// This device's keystore.
    pub keystore: Keystore,
    /// The connection, authenticated as this device.
    pub conn: Connection,
}

impl Session {
    /// Opens the keystore, connects and resumes the session. A wipe order
    /// met at `resume` is carried out at once.
    pub async fn open(ctx: &Context) -> Result<Self, Error> {
        let keystore = open_keystore(ctx)?;
        if keystore.state().token.expose().is_empty() {
            return Err(Error::Explained {
                code: ErrorCode::Unauthenticated,
                message: format!(
                    "You are logged out on this device; run `wardline login --username {}`.",
                    keystore.state().username
                ),
            });
        }
        let conn = connect(&keystore).await?;
        let mut session = Self { keystore, conn };
        match session.resume().await {
            Ok(()) => Ok(session),
            Err(e) => match session.conn.wipe_order().cloned() {
                Some(order) => Err(wipe::carry_out(ctx, session, order).await),
                None => Err(e),
            },
        }
    }

    /// Connects again and resumes (after the connection was lost). On a
    /// wipe order the new connection holds it and the error says so; the
    /// caller returns it, and [`with_session`] carries the wipe out.
    pub async fn reconnect(&mut self) -> Result<(), Error> {
        self.conn = connect(&self.keystore).await?;
        self.resume().await
    }

    /// `resume` with the keystore's token; the server then sends the
    /// backlog, which queues on the connection.
    async fn resume(&mut self) -> Result<(), Error> {
        let username = self.keystore.state().username.clone();
        let resumed = self
            .conn
            .call::<ResumeOk>(Request::Resume(Resume {
                token: self.keystore.state().token.clone(),
            }))
            .await;
        let ok = match resumed {
            Ok(ok) => ok,
            Err(e) if e.code() == Some(ErrorCode::WipePending) => {
                // The server pushes the order right after this error.
                return match self.conn.await_wipe().await {
                    Some(order) => Err(Error::Connection(
                        crate::connection::ConnectionError::WipeOrdered(order),
                    )),
                    None => Err(e.into()),
                };
            }
            Err(e) => {
                return Err(Error::from(e).explain(&[ErrorCode::Unauthenticated], || {
                    format!("Your session has ended; run `wardline login --username {username}`.")
                }));
            }
        };
        let state = self.keystore.state_mut();
        if ok.user_id != state.user_id || ok.device_id != state.device_id {
            return Err(Error::Refused(format!(
                "the server resumed a session for another device ({}) than the one in this keystore ({}); run `wardline login`",
                ok.device_id, state.device_id
            )));
        }
        state.expires_at = ok.expires_at;
        Ok(())
    }
}

/// Connects to the keystore's server with the trust stored for it.
async fn connect(keystore: &Keystore) -> Result<Connection, Error> {
    let state = keystore.state();
    let endpoint = Endpoint::new(&state.server, state.trust.clone())?;
    Ok(Connection::connect(&endpoint).await?)
}

/// Runs `command` in a session (see the module docs): the keystore is saved
/// afterwards whether or not the command succeeded, since it may have
/// pinned keys or cached messages before failing.
pub async fn with_session<F>(ctx: &Context, command: F) -> Result<(), Error>
where
    F: AsyncFnOnce(&mut Session) -> Result<(), Error>,
{
    let mut session = Session::open(ctx).await?;
    let result = command(&mut session).await;
    if let Some(order) = session.conn.wipe_order().cloned() {
        return Err(wipe::carry_out(ctx, session, order).await);
    }
    let saved = session.keystore.save();
    session.conn.close().await;
    result?;
    saved.map_err(|e| {
        Error::Refused(format!(
            "the command was carried out, but the keystore could not be saved: {e}"
        ))
    })
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
