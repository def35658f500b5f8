//! `wardline login`: start a new session with password and TOTP, for this
//! device or, on a computer without a keystore, for a new device.

use clap::Args;
use wardline_protocol::wire::{Login, LoginDevice, SessionOk};
use wardline_protocol::{DeviceSecrets, Request, Secret, Username};

use super::{Context, TrustArgs, device_name, new_device, open_keystore};
use crate::DEFAULT_SERVER;
use crate::connection::{Connection, Endpoint};
use crate::error::Error;
use crate::keystore::{Keystore, Registration, State};
use crate::output::Event;
use crate::prompt::{self, SecretKind};

/// Arguments of `wardline login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Server address: wss://HOST[:PORT]/v1 (with --pin or --ca), or ws://
    /// for a server on this computer [default: the keystore's server, else
    /// ws://127.0.0.1:7443/v1].
    #[arg(long, env = "WARDLINE_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// How to trust a wss:// server [default: as stored in the keystore].
    /// Give --pin again, without --server, when the server's certificate
    /// has been replaced.
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Your Wardline username.
    #[arg(long, env = "WARDLINE_USERNAME")]
    pub username: Username,
    /// The current code from your authenticator app (otherwise asked for,
    /// or read from standard input).
    #[arg(long, value_name = "CODE")]
    pub totp: Option<String>,
    /// A name for this device when it is new [default: from the host name].
    #[arg(long, value_name = "NAME")]
    pub device_name: Option<String>,
}

/// Which device the login is for.
enum Device {
    /// The device of the keystore in the home directory.
    Known(Keystore),
    /// A device to register now, and the passphrase for its new keystore.
    New {
        secrets: DeviceSecrets,
        passphrase: Secret,
    },
}

/// Whether two server addresses name the same server, ignoring the
/// default `/v1` path that [`Endpoint::new`] adds and the case of the text.
fn same_server(a: &str, b: &str) -> bool {
    let norm = |u: &str| {
        u.trim_end_matches('/')
            .trim_end_matches("/v1")
            .to_ascii_lowercase()
    };
    norm(a) == norm(b)
}

/// Logs in. With a keystore for this user, the session is for its device
/// and the new token is saved in it; without one, fresh device keys are
/// registered and a keystore is created for them.
pub async fn run(ctx: &Context, args: LoginArgs) -> Result<(), Error> {
    let trust = args.trust.load()?;
    let device = if Keystore::exists(&ctx.home) {
        let keystore = open_keystore(ctx)?;
        if keystore.state().username != args.username {
            return Err(Error::Usage(format!(
                "this home ({}) holds the keystore of {}, not {}; use --home to keep each user's keystore apart",
                ctx.home.display(),
                keystore.state().username,
                args.username
            )));
        }
        Device::Known(keystore)
    } else {
        Keystore::prepare_home(&ctx.home)?;
        Device::New {
            passphrase: prompt::secret(SecretKind::KeystorePassphrase, true)?,
            secrets: DeviceSecrets::generate(),
        }
    };
    // A server given on the command line comes with the trust given there
    // (or the stored trust, if it is the keystore's own server); otherwise
    // the keystore's server, with new trust if some was given.
    let (server, trust) = match (&args.server, &device) {
        (Some(s), Device::Known(k)) if trust.is_none() && same_server(s, &k.state().server) => {
            (s.clone(), k.state().trust.clone())
        }
        (Some(s), _) => (s.clone(), trust),
        (None, Device::Known(k)) => (
            k.state().server.clone(),
            trust.or_else(|| k.state().trust.clone()),
        ),
        (None, Device::New { .. }) => (DEFAULT_SERVER.to_owned(), trust),
    };
    let endpoint = Endpoint::new(&server, trust)?;
    let password = prompt::secret(SecretKind::AccountPassword, false)?;
    let totp = prompt::totp(args.totp.as_deref())?;

    let name = device_name(args.device_name);
    let login_device = match &device {
        Device::Known(k) => LoginDevice::Existing {
            device_id: k.state().device_id.clone(),
        },
        Device::New { secrets, .. } => LoginDevice::New(new_device(&name, secrets)),
    };
    let mut conn = Connection::connect(&endpoint).await?;
    let session: SessionOk = conn
        .call(Request::Login(Login {
            username: args.username.to_string(),
            password,
            totp,
            device: login_device,
        }))
        .await?;
    conn.close().await;

    let new_device = matches!(device, Device::New { .. });
    match device {
        Device::Known(mut keystore) => {
            let state = keystore.state_mut();
            if session.user_id != state.user_id || session.device_id != state.device_id {
                return Err(Error::Refused(format!(
                    "the server opened a session for device {} but this keystore is device {}; nothing was saved",
                    session.device_id, state.device_id
                )));
            }
            state.token = session.token;
            state.expires_at = session.expires_at;
            state.server = endpoint.url().to_owned();
            state.trust = endpoint.trust().cloned();
            keystore.save()?;
        }
        Device::New {
            secrets,
            passphrase,
        } => {
            let registration = Registration {
                server: endpoint.url().to_owned(),
                trust: endpoint.trust().cloned(),
                user_id: session.user_id.clone(),
                username: args.username.clone(),
                device_id: session.device_id.clone(),
                device_name: name,
                token: session.token,
                expires_at: session.expires_at,
            };
            Keystore::create(&ctx.home, &passphrase, State::new(registration, &secrets))
                .map_err(|e| {
                    Error::Refused(format!(
                        "device {} was registered, but its keys could not be saved ({e}). Ask your administrator to remove that device, then log in again",
                        session.device_id
                    ))
                })?;
        }
    }
    ctx.out.emit(&Event::LoggedIn {
        user_id: session.user_id,
        device_id: session.device_id,
        new_device,
        username: args.username,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::same_server;

    #[test]
    fn the_keystores_server_is_recognised_with_or_without_its_path() {
        let stored = "wss://wardline.nhs.example:7443/v1";
        for given in [
            stored,
            "wss://wardline.nhs.example:7443",
            "wss://wardline.nhs.example:7443/",
            "WSS://Wardline.NHS.example:7443/v1",
        ] {
            assert!(same_server(given, stored), "{given}");
        }
        for other in [
            "wss://wardline.nhs.example/v1",
            "wss://evil.example:7443/v1",
            "ws://wardline.nhs.example:7443/v1",
        ] {
            assert!(!same_server(other, stored), "{other}");
        }
    }
}
