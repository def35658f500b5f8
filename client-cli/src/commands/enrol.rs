//! `wardline enrol`: redeem an enrolment code, set up TOTP and register
//! this device.

use clap::Args;
use wardline_protocol::wire::{EnrolFinish, EnrolStart, EnrolStartOk, SessionOk};
use wardline_protocol::{DeviceSecrets, ErrorCode, Request, Secret};

use super::{Context, TrustArgs, device_name, new_device};
use crate::DEFAULT_SERVER;
use crate::connection::{Connection, Endpoint};
use crate::error::Error;
use crate::keystore::{Keystore, Registration, State};
use crate::output::Event;
use crate::prompt::{self, PromptError, SecretKind};

/// Arguments of `wardline enrol`.
#[derive(Debug, Args)]
pub struct EnrolArgs {
    /// Server address: wss://HOST[:PORT]/v1 (with --pin or --ca), or
    /// ws:// for a server on this computer.
    #[arg(long, env = "WARDLINE_SERVER", default_value = DEFAULT_SERVER, value_name = "URL")]
    pub server: String,
    /// How to trust a wss:// server.
    #[command(flatten)]
    pub trust: TrustArgs,
    /// The one-time enrolment code your administrator gave you.
    #[arg(long, env = "WARDLINE_ENROL_CODE", hide_env_values = true)]
    pub code: String,
    /// A name for this device, so you can recognise it later [default: from the host name].
    #[arg(long, value_name = "NAME")]
    pub device_name: Option<String>,
    /// The current code from your authenticator app (otherwise asked for
    /// after the secret is shown, or read from standard input).
    #[arg(long, value_name = "CODE")]
    pub totp: Option<String>,
}

/// Enrols: asks for a keystore passphrase and an account password (both
/// before any network use, so a typo costs nothing), sends `enrol_start`,
/// shows the TOTP secret, reads the first code, registers fresh device keys
/// with `enrol_finish` and creates the keystore.
pub async fn run(ctx: &Context, args: EnrolArgs) -> Result<(), Error> {
    Keystore::prepare_home(&ctx.home)?;
    let endpoint = Endpoint::new(&args.server, args.trust.load()?)?;
    let passphrase = prompt::secret(SecretKind::KeystorePassphrase, true)?;
    let password = prompt::secret(SecretKind::AccountPassword, true)?;
    let code = Secret::new(args.code);

    let mut conn = Connection::connect(&endpoint).await?;
    let started: EnrolStartOk = conn
        .call(Request::EnrolStart(EnrolStart {
            code: code.clone(),
            password,
        }))
        .await
        .map_err(|e| {
            Error::from(e).explain(
                &[ErrorCode::AuthFailed, ErrorCode::NotFound, ErrorCode::Conflict],
                || {
                    "That enrolment code is not valid, was already used or has expired; ask your administrator for a new one.".into()
                },
            )
        })?;
    ctx.out.emit(&Event::Totp {
        user_id: started.user_id.clone(),
        username: started.username.clone(),
        totp_secret: started.totp_secret,
        totp_uri: started.totp_uri,
    })?;

    // Typing the code can take a while: keep the connection answering pings
    // meanwhile, and reconnect if the server dropped it anyway.
    let given = args.totp;
    let reading = tokio::task::spawn_blocking(move || prompt::totp(given.as_deref()));
    let totp = conn
        .keep_alive_during(reading)
        .await
        .map_err(|e| PromptError::Io {
            what: "code",
            source: std::io::Error::other(e),
        })??;
    if conn.is_closed() {
        conn = Connection::connect(&endpoint).await?;
    }

    let secrets = DeviceSecrets::generate();
    let name = device_name(args.device_name);
    let session: SessionOk = conn
        .call(Request::EnrolFinish(EnrolFinish {
            code,
            totp,
            device: new_device(&name, &secrets),
        }))
        .await?;
    conn.close().await;

    let device_id = session.device_id.clone();
    let state = State::new(
        Registration {
            server: endpoint.url().to_owned(),
            trust: endpoint.trust().cloned(),
            user_id: session.user_id.clone(),
            username: started.username.clone(),
            device_id: session.device_id,
            device_name: name,
            token: session.token,
            expires_at: session.expires_at,
        },
        &secrets,
    );
    let keystore = Keystore::create(&ctx.home, &passphrase, state).map_err(|e| {
        Error::Refused(format!(
            "device {device_id} was registered, but its keys could not be saved ({e}). Ask your administrator to remove that device, then enrol again"
        ))
    })?;
    ctx.out.emit(&Event::Enrolled {
        user_id: session.user_id,
        device_id,
        username: started.username,
        keystore: keystore.path().to_owned(),
    })?;
    Ok(())
}
