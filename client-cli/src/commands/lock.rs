//! `wardline unlock`, `wardline lock` and the hidden `wardline agent`: the
//! keystore kept unlocked for a while (see [`crate::agent`]).

use super::Context;
use crate::agent;
use crate::error::Error;
use crate::keystore::{Keystore, KeystoreError};
use crate::output::Event;
use crate::prompt::{self, SecretKind};

/// Asks for the passphrase (from any source) and keeps the keystore
/// unlocked until `ctx.idle_timeout` passes without use.
pub fn unlock(ctx: &Context) -> Result<(), Error> {
    if ctx.idle_timeout.is_zero() {
        return Err(Error::Usage(
            "the idle timeout is 0, which means never stay unlocked; give --idle-timeout (or WARDLINE_IDLE_TIMEOUT) such as 5m".into(),
        ));
    }
    if !Keystore::exists(&ctx.home) {
        return Err(KeystoreError::NotFound(ctx.home.clone()).into());
    }
    let passphrase = prompt::secret(SecretKind::KeystorePassphrase, false)?;
    let keystore = Keystore::open(&ctx.home, &passphrase)?;
    agent::start(&ctx.home, keystore.data_key(), ctx.idle_timeout)?;
    ctx.out.emit(&Event::Unlocked {
        idle_timeout_secs: ctx.idle_timeout.as_secs(),
    })?;
    Ok(())
}

/// Makes the agent forget the key at once.
pub fn lock(ctx: &Context) -> Result<(), Error> {
    let was_unlocked = agent::lock(&ctx.home);
    ctx.out.emit(&Event::Locked { was_unlocked })?;
    Ok(())
}

/// Runs the agent (started by `unlock` or after a typed passphrase).
pub async fn agent(ctx: &Context) -> Result<(), Error> {
    Ok(agent::serve(&ctx.home, ctx.idle_timeout).await?)
}
