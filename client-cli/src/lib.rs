//! `wardline`, the command-line client of Wardline, secure messaging for
//! clinical staff.
//!
//! * [`keystore`]: this device's secrets, session, message cache (each
//!   message with its envelope, so it can be verified again for an export),
//!   conversation cursors and contacts' pinned device keys, sealed under a
//!   random data key that the user's passphrase wraps (Argon2id, its cost
//!   capped so a hostile file cannot stall the client; AES-256-GCM);
//!   destroyed first on a wipe.
//! * [`agent`]: keeps the data key in memory for a while after the
//!   passphrase is typed (`unlock`/`lock`, idle timeout).
//! * [`connection`]: the WebSocket connection: requests matched to replies,
//!   pushes queued, a wipe order noticed, server error codes turned into
//!   advice; `ws://` only to this computer.
//! * [`tls`]: `wss://` with rustls (ring), trusting only the CA or the
//!   certificate fingerprint the operator names.
//! * [`sync`]: receiving: pushes opened, verified, cached, acknowledged;
//!   usernames of senders and members learnt from the directory.
//! * [`outgoing`]: sending: conversations resolved by id, title or
//!   username, messages sealed to the members' current devices.
//! * [`safety`]: safety numbers to compare device keys in person.
//! * [`prompt`]: passwords, passphrases, TOTP codes and confirmations from
//!   the environment, flags, the terminal or standard input.
//! * [`output`]: events printed for people (tables, local and relative
//!   times, colour on a terminal) or as JSON lines.
//! * [`nhs`]: NHS number validation, and spotting one in free text.
//! * [`commands`]: one module per command group, each with its arguments
//!   and its `run` (messaging, conversations, `export` to the health
//!   record, `admin` governance, ...); [`cli`]: the command line that
//!   names them.
//! * [`error`]: the error every command returns.
//!
//! Data flows one way: [`cli`] and `main` use commands; commands use the
//! other modules; nothing reaches back up. Messages are sealed and opened
//! with [`wardline_protocol::envelope`], so plaintext never leaves this
//! process except into the sealed keystore and onto the user's screen.

pub mod agent;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod connection;
pub mod error;
pub mod keystore;
pub mod nhs;
pub mod outgoing;
pub mod output;
pub mod prompt;
pub mod safety;
pub mod sync;
pub mod tls;

pub use error::Error;

/// The server used when none is given: a server on this computer.
pub const DEFAULT_SERVER: &str = "ws://127.0.0.1:7443/v1";
