//! `wardline passphrase`: seal this device's keystore under a new
//! passphrase (see [`Keystore::change_passphrase`]).

use subtle::ConstantTimeEq as _;

use super::Context;
use crate::agent;
use crate::error::Error;
use crate::keystore::{Keystore, KeystoreError};
use crate::output::Event;
use crate::prompt::{self, PromptError, SecretKind};

/// Asks for the current passphrase and checks it opens the keystore, then
/// asks for the new one (twice at a terminal; at least as long as
/// enrolment requires; not the current one), reseals the keystore under it
/// and locks any unlocked keystore, whose key opens only the old file.
///
/// Without a terminal the current passphrase comes from
/// `WARDLINE_PASSPHRASE` and the new one from `WARDLINE_NEW_PASSPHRASE`,
/// else one line each from standard input, in that order. The unlock agent
/// is never used: whoever finds the workstation unlocked cannot change the
/// passphrase without knowing it.
pub fn run(ctx: &Context) -> Result<(), Error> {
    if !Keystore::exists(&ctx.home) {
        return Err(KeystoreError::NotFound(ctx.home.clone()).into());
    }
    let current = prompt::secret(SecretKind::KeystorePassphrase, false)?;
    let mut keystore = Keystore::open(&ctx.home, &current)?;
    let new = prompt::secret(SecretKind::NewKeystorePassphrase, true)?;
    let same: bool = current
        .expose()
        .as_bytes()
        .ct_eq(new.expose().as_bytes())
        .into();
    drop(current);
    if same {
        return Err(PromptError::Unchanged.into());
    }
    let changed = keystore.change_passphrase(&new);
    // Whatever the outcome: an unlock agent holds the old data key, which
    // opens at most the old file. Locking it is what the user expects of a
    // passphrase change, and it is harmless if the change failed.
    let was_unlocked = agent::lock(&ctx.home);
    changed?;
    ctx.out.emit(&Event::PassphraseChanged {
        was_unlocked,
        keystore: keystore.path().to_owned(),
    })?;
    Ok(())
}
