//! `wardline`: parses the command line and runs the command on a
//! single-threaded runtime (a client does one thing at a time).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use wardline_cli::commands::admin::AdminCommand;
use wardline_cli::commands::enrol::EnrolArgs;
use wardline_cli::commands::login::LoginArgs;
use wardline_cli::commands::send::SendArgs;
use wardline_cli::commands::{self, Context};
use wardline_cli::keystore::default_home;
use wardline_cli::output::{Event, Output};

/// Examples shown by `wardline --help`.
const EXAMPLES: &str = "\
Examples:
  # Enrol this computer with the code from your administrator, pinning the
  # server's certificate by the fingerprint the server printed at start:
  wardline enrol --server wss://wardline.trust.nhs.uk/v1 \\
      --pin 3A:91:0F:5C:D2:7B:E8:14:6A:C0:93:2F:B5:58:E1:07:4D:9C:A6:32:F0:1B:8E:77:C5:29:6D:B3:04:EA:58:1F \\
      --code K7QX-2M9P-4TRW
  # ... or trusting the CA that signed the server's certificate:
  wardline enrol --server wss://wardline.trust.nhs.uk/v1 --ca trust-ca.pem --code K7QX-2M9P-4TRW

  # Later commands use the server and trust saved in the keystore:
  wardline send bob \"Bed 4: repeat ECG please\" --urgent --patient \"943 476 5919\"
  wardline inbox
  wardline login --username alice
  wardline admin user add carol --display-name \"Dr Carol Jones (Cardiology)\"

  # A server on this computer needs no TLS:
  wardline enrol --server ws://127.0.0.1:7443/v1 --code K7QX-2M9P-4TRW";

/// Examples shown by `wardline enrol --help`.
const ENROL_EXAMPLES: &str = "\
Examples:
  # A trust's server, pinned to the certificate fingerprint the server
  # printed at start (\"tls certificate sha256 fingerprint ...\"):
  wardline enrol --server wss://wardline.trust.nhs.uk/v1 \\
      --pin 3A:91:0F:5C:D2:7B:E8:14:6A:C0:93:2F:B5:58:E1:07:4D:9C:A6:32:F0:1B:8E:77:C5:29:6D:B3:04:EA:58:1F \\
      --code K7QX-2M9P-4TRW
  # A server whose certificate is signed by the trust's CA:
  wardline enrol --server wss://wardline.trust.nhs.uk/v1 --ca /etc/wardline/trust-ca.pem --code K7QX-2M9P-4TRW
  # The same, from the environment (for scripts):
  WARDLINE_SERVER=wss://wardline.trust.nhs.uk/v1 WARDLINE_PIN=3a910f5cd27be8146ac0932fb558e1074d9ca632f01b8e77c5296db304ea581f \\
      wardline enrol --code K7QX-2M9P-4TRW
  # A server on this computer, over plain ws://:
  wardline enrol --server ws://127.0.0.1:7443/v1 --code K7QX-2M9P-4TRW";

/// Wardline: end-to-end encrypted messaging for clinical staff.
///
/// Secrets come from the environment when set (WARDLINE_PASSPHRASE for this
/// device's keystore, WARDLINE_PASSWORD for the account), else from a prompt
/// on the terminal, else one line each from standard input, in the order
/// passphrase, password, TOTP code.
///
/// A server elsewhere is reached over TLS (wss://) only, trusting either the
/// certificate fingerprint the server prints at start (--pin, WARDLINE_PIN)
/// or a CA certificate file (--ca, WARDLINE_CA); `enrol` and `login` save
/// the server and that choice in the keystore for the other commands.
#[derive(Debug, Parser)]
#[command(name = "wardline", version, after_help = EXAMPLES)]
struct Cli {
    /// Directory holding this device's keystore
    /// [default: $XDG_DATA_HOME/wardline or ~/.local/share/wardline].
    #[arg(long, global = true, env = "WARDLINE_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
    /// Machine-readable output: one JSON object per line on standard output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enrol with the one-time code from your administrator: sets up your
    /// password and authenticator app, and registers this device.
    #[command(after_help = ENROL_EXAMPLES)]
    Enrol(EnrolArgs),
    /// Start a new session with password and authenticator code (registers
    /// this computer as a new device if it has no keystore yet).
    Login(LoginArgs),
    /// Send an end-to-end encrypted message to a conversation or a person.
    Send(SendArgs),
    /// Receive, verify and show new messages.
    Inbox,
    /// Administration (admin role only).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output::new(cli.json);
    match run(cli, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(out, &err);
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, out: Output) -> anyhow::Result<()> {
    let home = cli
        .home
        .or_else(default_home)
        .context("cannot tell where to keep the keystore; pass --home DIR or set WARDLINE_HOME")?;
    let ctx = Context { home, out };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Enrol(args) => commands::enrol::run(&ctx, args).await,
            Command::Login(args) => commands::login::run(&ctx, args).await,
            Command::Send(args) => commands::send::run(&ctx, args).await,
            Command::Inbox => commands::inbox::run(&ctx).await,
            Command::Admin { command } => commands::admin::run(&ctx, command).await,
        }
    })?;
    Ok(())
}

/// One line on standard error; with `--json`, also an `error` event.
fn report(out: Output, err: &anyhow::Error) {
    let (code, message) = match err.downcast_ref::<wardline_cli::Error>() {
        Some(e) => (e.code(), e.to_string()),
        None => ("failed", format!("{err:#}")),
    };
    let message = sentence_case(&message);
    eprintln!("wardline: {message}");
    if out.is_json() {
        // Standard output may be gone already; the message is on stderr.
        let _ = out.emit(&Event::Error {
            code: code.to_owned(),
            message,
        });
    }
}

fn sentence_case(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
