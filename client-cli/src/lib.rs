//! `wardline`, the command-line client of Wardline, secure messaging for
//! clinical staff.
//!
//! * [`keystore`]: this device's secrets, session and message cache, sealed
//!   under the user's passphrase (Argon2id, AES-256-GCM).
//! * [`connection`]: the WebSocket connection: requests matched to replies,
//!   pushes queued, server error codes turned into advice; `ws://` only to
//!   this computer.
//! * [`tls`]: `wss://` with rustls (ring), trusting only the CA or the
//!   certificate fingerprint the operator names.
//! * [`prompt`]: passwords, passphrases and TOTP codes from the environment,
//!   the terminal or standard input.
//! * [`output`]: events printed for people or as JSON lines.
//! * [`nhs`]: NHS number validation.
//! * [`commands`]: one module per command group (`enrol`, `login`, `send`,
//!   `inbox`, `admin`), each with its arguments and its `run`.
//! * [`error`]: the error every command returns.
//!
//! Data flows one way: commands use the other modules; nothing else
//! reaches back into commands. Messages are sealed and opened with
//! [`wardline_protocol::envelope`], so plaintext never leaves this process
//! except into the sealed keystore.

pub mod commands;
pub mod connection;
pub mod error;
pub mod keystore;
pub mod nhs;
pub mod output;
pub mod prompt;
pub mod tls;

pub use error::Error;

/// The server used when none is given: a server on this computer.
pub const DEFAULT_SERVER: &str = "ws://127.0.0.1:7443/v1";
