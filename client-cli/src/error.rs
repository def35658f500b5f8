//! The one error type commands return, and its stable code for `--json`.

use std::io;

use thiserror::Error;
use wardline_protocol::ErrorCode;

use crate::agent::AgentError;
use crate::connection::ConnectionError;
use crate::keystore::KeystoreError;
use crate::nhs::NhsNumberError;
use crate::output::record::Incomplete;
use crate::prompt::PromptError;
use crate::tls::TrustError;

/// Why a command failed. `Display` is a sentence for the user that says
/// what to do; [`Error::code`] is stable for scripts. Neither ever holds a
/// password, passphrase or token.
#[derive(Debug, Error)]
pub enum Error {
    /// The keystore could not be created, opened or saved.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The server could not be reached or answered `error`.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// `--ca` or `--pin` cannot be used.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// A secret or code could not be read.
    #[error(transparent)]
    Prompt(#[from] PromptError),
    /// A patient's NHS number is invalid.
    #[error(transparent)]
    NhsNumber(#[from] NhsNumberError),
    /// A server error with advice specific to the command that got it.
    #[error("{message}")]
    Explained {
        /// The server's code.
        code: ErrorCode,
        /// What to do.
        message: String,
    },
    /// The command's arguments do not make sense.
    #[error("{0}")]
    Usage(String),
    /// The client refused to go on, to protect the user (for example, a
    /// contact's keys changed).
    #[error("{0}")]
    Refused(String),
    /// A check of something the user gave or fetched failed: an audit chain
    /// that does not verify, an export with entries that do not.
    #[error("{message}")]
    Unverified {
        /// Stable, for scripts: `audit_chain_broken`, `export_invalid`.
        code: &'static str,
        /// What failed, naming the first broken entry.
        message: String,
    },
    /// An export did not finish (`--post` failed, or the audit log could
    /// not record it): says what was done, what was not, and the command
    /// that retries.
    #[error("{}", .0.message)]
    Incomplete(Box<Incomplete>),
    /// The unlock agent could not be started.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
    /// This device was wiped by order of the organisation (already
    /// reported to the user as it happened).
    #[error("this device was wiped by order of your organisation ({reason})")]
    Wiped {
        /// The reason the order gave.
        reason: String,
    },
    /// A wipe was ordered but the keystore could not be destroyed.
    #[error(
        "this device was ordered wiped by your organisation, but its keystore could not be destroyed ({0}); switch the computer off and take it to IT"
    )]
    WipeFailed(KeystoreError),
}

impl Error {
    /// A stable code: the server's error code when it answered `error`,
    /// otherwise one of this client's own.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Connection(ConnectionError::Server(e)) => e.code.as_str(),
            Error::Explained { code, .. } => code.as_str(),
            Error::Connection(ConnectionError::BadUrl(_) | ConnectionError::NoTrust(_)) => "usage",
            Error::Connection(ConnectionError::PinMismatch { .. }) => "tls_pin_mismatch",
            Error::Connection(ConnectionError::Untrusted { .. }) => "tls_untrusted",
            Error::Connection(ConnectionError::WipeOrdered(_)) => "wipe_pending",
            Error::Connection(_) => "connection_failed",
            Error::Trust(_) => "usage",
            Error::Keystore(KeystoreError::NotFound(_)) => "no_keystore",
            Error::Keystore(KeystoreError::AlreadyExists(_)) => "keystore_exists",
            Error::Keystore(KeystoreError::WrongPassphrase(_)) => "wrong_passphrase",
            Error::Keystore(KeystoreError::Corrupt { .. }) => "keystore_damaged",
            Error::Keystore(KeystoreError::KdfTooCostly { .. }) => "keystore_kdf_too_costly",
            Error::Keystore(KeystoreError::Changed(_)) => "keystore_changed",
            Error::Keystore(KeystoreError::OldCopyRemains { .. }) => "keystore_old_copy_remains",
            Error::Keystore(KeystoreError::Io { .. }) => "keystore_io",
            Error::Prompt(PromptError::Unchanged) => "passphrase_unchanged",
            Error::Prompt(_) => "input",
            Error::NhsNumber(_) => "invalid_nhs_number",
            Error::Usage(_) => "usage",
            Error::Refused(_) => "refused",
            Error::Unverified { code, .. } => code,
            Error::Incomplete(i) => i.code,
            Error::Agent(_) => "agent",
            Error::Output(_) => "output",
            Error::Wiped { .. } => "wiped",
            Error::WipeFailed(_) => "wipe_failed",
        }
    }

    /// What is left to do, for an export that did not finish.
    pub fn incomplete(&self) -> Option<&Incomplete> {
        match self {
            Error::Incomplete(i) => Some(i),
            _ => None,
        }
    }

    /// The process exit status: 3 when this device was wiped (or ordered
    /// wiped), so a script can tell that from an ordinary failure (1).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Wiped { .. } | Error::WipeFailed(_) => 3,
            _ => 1,
        }
    }

    /// Replaces the generic advice for the server codes in `codes` with
    /// `message`, which knows what the command was doing.
    pub(crate) fn explain(self, codes: &[ErrorCode], message: impl FnOnce() -> String) -> Self {
        match self {
            Error::Connection(ConnectionError::Server(e)) if codes.contains(&e.code) => {
                Error::Explained {
                    code: e.code,
                    message: message(),
                }
            }
            other => other,
        }
    }
}
