//! Reading passwords, passphrases and TOTP codes.
//!
//! Each secret comes from its environment variable when set, else from a
//! no-echo prompt when standard input is a terminal, else from one line of
//! standard input, so scripts and tests can drive every command. Prompts go
//! to the terminal or standard error, never to standard output, which
//! belongs to the command's results (and to `--json`).

use std::io::{self, BufRead as _, IsTerminal as _, Write as _};

use thiserror::Error;
use wardline_protocol::Secret;
use zeroize::Zeroizing;

/// The shortest passphrase accepted for a new keystore.
pub const MIN_PASSPHRASE_CHARS: usize = 8;
/// The shortest account password the server accepts (checked here too, so
/// a short one is refused before the enrolment code is spent).
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Why a secret or code could not be read.
#[derive(Debug, Error)]
pub enum PromptError {
    /// Standard input ended before the value.
    #[error("no {what} was given: {how}")]
    Missing {
        /// What was wanted.
        what: &'static str,
        /// How to give it.
        how: &'static str,
    },
    /// The confirmation differs from the first entry.
    #[error("the two {0}s you typed do not match; try again")]
    Mismatch(&'static str),
    /// An empty value.
    #[error("the {0} must not be empty")]
    Empty(&'static str),
    /// A new passphrase that is too short.
    #[error("the keystore passphrase must be at least {MIN_PASSPHRASE_CHARS} characters")]
    TooShort,
    /// A new keystore passphrase equal to the current one.
    #[error("the new passphrase is the same as the current one; choose a different one")]
    Unchanged,
    /// A new account password that is too short.
    #[error("the account password must be at least {MIN_PASSWORD_CHARS} characters")]
    PasswordTooShort,
    /// A TOTP code that is not digits.
    #[error("the code must be the 6 digits your authenticator app shows now (for example 123456)")]
    BadTotp,
    /// The terminal or standard input failed.
    #[error("cannot read the {what}: {source}")]
    Io {
        /// What was wanted.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// Which secret to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// The Wardline account password (sent to the server).
    AccountPassword,
    /// The passphrase that seals this device's keystore (never sent anywhere).
    KeystorePassphrase,
    /// The passphrase that is to seal the keystore instead of its current
    /// one (`wardline passphrase`).
    NewKeystorePassphrase,
    /// The account password that is to replace the current one
    /// (`wardline password`).
    NewAccountPassword,
}

impl SecretKind {
    /// Whether it seals the keystore (and so must be long enough when chosen).
    fn is_keystore_passphrase(self) -> bool {
        matches!(
            self,
            SecretKind::KeystorePassphrase | SecretKind::NewKeystorePassphrase
        )
    }

    /// The environment variable that may hold it.
    pub fn env_var(self) -> &'static str {
        match self {
            SecretKind::AccountPassword => "WARDLINE_PASSWORD",
            SecretKind::KeystorePassphrase => "WARDLINE_PASSPHRASE",
            SecretKind::NewKeystorePassphrase => "WARDLINE_NEW_PASSPHRASE",
            SecretKind::NewAccountPassword => "WARDLINE_NEW_PASSWORD",
        }
    }

    fn how(self) -> &'static str {
        match self {
            SecretKind::AccountPassword => "set WARDLINE_PASSWORD or type it when asked",
            SecretKind::KeystorePassphrase => "set WARDLINE_PASSPHRASE or type it when asked",
            SecretKind::NewKeystorePassphrase => {
                "set WARDLINE_NEW_PASSPHRASE or type it when asked"
            }
            SecretKind::NewAccountPassword => "set WARDLINE_NEW_PASSWORD or type it when asked",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            SecretKind::AccountPassword => "password",
            SecretKind::KeystorePassphrase => "passphrase",
            SecretKind::NewKeystorePassphrase => "new passphrase",
            SecretKind::NewAccountPassword => "new password",
        }
    }

    fn prompt(self, new: bool) -> &'static str {
        match (self, new) {
            (SecretKind::AccountPassword, true) => "Choose your Wardline account password: ",
            (SecretKind::AccountPassword, false) => "Wardline account password: ",
            (SecretKind::KeystorePassphrase, true) => {
                "Choose a passphrase to protect the keys on this device: "
            }
            (SecretKind::KeystorePassphrase, false) => "Passphrase for this device's keystore: ",
            (SecretKind::NewKeystorePassphrase, _) => {
                "Choose a new passphrase for this device's keystore: "
            }
            (SecretKind::NewAccountPassword, _) => "Choose a new Wardline account password: ",
        }
    }
}

/// Reads a secret of `kind`. `new` means the user is choosing it: a
/// terminal asks twice, and a keystore passphrase must be long enough.
pub fn secret(kind: SecretKind, new: bool) -> Result<Secret, PromptError> {
    let value = match std::env::var(kind.env_var()) {
        Ok(v) if !v.is_empty() => Secret::new(v),
        _ if io::stdin().is_terminal() => {
            let first = ask_hidden(kind.prompt(new), kind.noun())?;
            if new {
                let again = ask_hidden("Type it again to confirm: ", kind.noun())?;
                if first != again {
                    return Err(PromptError::Mismatch(kind.noun()));
                }
            }
            first
        }
        _ => read_line(kind.noun(), kind.how())?,
    };
    if value.expose().is_empty() {
        return Err(PromptError::Empty(kind.noun()));
    }
    if new && kind.is_keystore_passphrase() && value.expose().chars().count() < MIN_PASSPHRASE_CHARS
    {
        return Err(PromptError::TooShort);
    }
    if new
        && matches!(
            kind,
            SecretKind::AccountPassword | SecretKind::NewAccountPassword
        )
        && value.expose().chars().count() < MIN_PASSWORD_CHARS
    {
        return Err(PromptError::PasswordTooShort);
    }
    Ok(value)
}

/// Whether a secret of `kind` would be typed at the terminal (rather than
/// taken from the environment or a pipe).
pub fn is_interactive(kind: SecretKind) -> bool {
    std::env::var(kind.env_var()).map_or(true, |v| v.is_empty()) && io::stdin().is_terminal()
}

/// Asks a yes/no `question` (default no): on the terminal when standard
/// input is one, else as one line of standard input, so a script answers
/// `y` or `n` in the order documented in `commands`. No answer at all (end
/// of input) is no.
pub fn confirm(question: &str) -> Result<bool, PromptError> {
    if io::stdin().is_terminal() {
        eprint!("{question} [y/N] ");
        // A prompt that does not appear only delays the user; ignore failure.
        let _ = io::stderr().flush();
    }
    let mut line = String::new();
    io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|source| PromptError::Io {
            what: "answer",
            source,
        })?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// The TOTP code: `given` (from `--totp`), else asked on the terminal, else
/// one line of standard input.
pub fn totp(given: Option<&str>) -> Result<Secret, PromptError> {
    let raw = match given {
        Some(code) => Secret::new(code),
        None => {
            if io::stdin().is_terminal() {
                eprint!("Code from your authenticator app: ");
                // A prompt that does not appear only delays the user; ignore failure.
                let _ = io::stderr().flush();
            }
            read_line("code", "pass --totp CODE or type it when asked")?
        }
    };
    normalise_totp(raw.expose())
}

/// Digits only, so "123 456" as some apps show it is accepted.
fn normalise_totp(raw: &str) -> Result<Secret, PromptError> {
    let code: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    if !(6..=8).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PromptError::BadTotp);
    }
    Ok(Secret::new(code))
}

fn ask_hidden(prompt: &str, what: &'static str) -> Result<Secret, PromptError> {
    rpassword::prompt_password(prompt)
        .map(Secret::new)
        .map_err(|source| PromptError::Io { what, source })
}

/// One line of standard input without its line ending. Only the ending is
/// removed: spaces may be part of a password.
fn read_line(what: &'static str, how: &'static str) -> Result<Secret, PromptError> {
    let mut line = Zeroizing::new(String::with_capacity(256));
    let n = io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|source| PromptError::Io { what, source })?;
    if n == 0 {
        return Err(PromptError::Missing { what, how });
    }
    let trimmed = line.strip_suffix('\n').unwrap_or(&line);
    let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    Ok(Secret::new(trimmed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_codes_may_contain_spaces_but_only_digits() {
        assert_eq!(normalise_totp("123 456").expect("valid").expose(), "123456");
        assert_eq!(
            normalise_totp(" 654321\n").expect("valid").expose(),
            "654321"
        );
        for bad in ["", "12345", "12345a", "123456789", "one two"] {
            assert!(
                matches!(normalise_totp(bad), Err(PromptError::BadTotp)),
                "{bad}"
            );
        }
    }

    #[test]
    fn errors_name_the_environment_variable_not_the_value() {
        let err = PromptError::Missing {
            what: "password",
            how: SecretKind::AccountPassword.how(),
        };
        assert!(err.to_string().contains("WARDLINE_PASSWORD"));
    }
}
