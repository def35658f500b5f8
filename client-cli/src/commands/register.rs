//! `wardline register`: self-registration while the trust has opened it for
//! a major incident (rule R5). No account is needed; the new account can
//! enrol at once but do nothing until an administrator approves it.

use clap::Args;
use wardline_protocol::wire::{EnrolCodeOk, Register};
use wardline_protocol::{ErrorCode, Request, Username};

use super::{Context, TrustArgs};
use crate::DEFAULT_SERVER;
use crate::connection::{Connection, Endpoint};
use crate::error::Error;
use crate::output::Event;

/// Arguments of `wardline register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Server address: wss://HOST[:PORT]/v1 (with --pin or --ca), or
    /// ws:// for a server on this computer.
    #[arg(long, env = "WARDLINE_SERVER", default_value = DEFAULT_SERVER, value_name = "URL")]
    pub server: String,
    /// How to trust a wss:// server.
    #[command(flatten)]
    pub trust: TrustArgs,
    /// The username you ask for (lower case: a-z, 0-9, '.', '-', '_'),
    /// ideally your organisational one.
    #[arg(long)]
    pub username: Username,
    /// Your name as colleagues should see it, with your role and where you
    /// come from, e.g. "Dr Rana Ahmed (locum, A&E, from St Elsewhere)".
    #[arg(long, value_name = "NAME")]
    pub display_name: String,
}

/// Registers an account awaiting approval and prints its enrolment code.
pub async fn run(ctx: &Context, args: RegisterArgs) -> Result<(), Error> {
    let display_name = args.display_name.trim().to_owned();
    let n = display_name.chars().count();
    if n == 0 || n > 100 {
        return Err(Error::Usage(
            "the display name must be 1 to 100 characters".into(),
        ));
    }
    let endpoint = Endpoint::new(&args.server, args.trust.load()?)?;
    let mut conn = Connection::connect(&endpoint).await?;
    let username = args.username.clone();
    let registered: EnrolCodeOk = conn
        .call(Request::Register(Register {
            username: args.username.clone(),
            display_name,
        }))
        .await
        .map_err(|e| {
            Error::from(e)
                .explain(&[ErrorCode::Forbidden], || {
                    "Self-registration is closed: a trust opens it only during a major incident. Ask a Wardline administrator for an account.".into()
                })
                .explain(&[ErrorCode::Conflict], || {
                    format!("The username {username} is already taken; choose another.")
                })
        })?;
    conn.close().await;
    let trust = match (&args.trust.pin, &args.trust.ca) {
        (Some(pin), _) => format!(" --pin {pin}"),
        (None, Some(ca)) => format!(" --ca {}", ca.display()),
        (None, None) => String::new(),
    };
    ctx.out.emit(&Event::Registered {
        user_id: registered.user_id,
        username: args.username,
        enrol_code: registered.enrol_code.clone(),
        expires_at: registered.expires_at,
        enrol_hint: format!(
            "wardline enrol --server {}{trust} --code {}",
            endpoint.url(),
            registered.enrol_code.expose()
        ),
    })?;
    Ok(())
}
