//! The command line: every command, its arguments and its help, with
//! examples. `main` parses it and dispatches; `completions` prints shell
//! completions generated from it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::agent;
use crate::commands::account::PasswordArgs;
use crate::commands::admin::AdminCommand;
use crate::commands::chat::ChatArgs;
use crate::commands::conversations::ConversationCommand;
use crate::commands::enrol::EnrolArgs;
use crate::commands::export::{ExportArgs, VerifyExportArgs};
use crate::commands::login::LoginArgs;
use crate::commands::messages::{HistoryArgs, InboxArgs, ReadArgs};
use crate::commands::register::RegisterArgs;
use crate::commands::send::SendArgs;
use crate::commands::verify::VerifyArgs;
use crate::commands::wipe::WipeArgs;

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

  # Day to day (the keystore remembers the server and its certificate):
  wardline inbox                                  # unread messages, urgent first
  wardline conversations                          # your conversations, unread counts
  wardline send bob \"Bed 4: repeat ECG please\" --urgent --patient \"943 476 5919\"
  wardline chat \"Ward 10 night team\"              # live view; Enter sends
  wardline lock                                   # leaving the workstation

  # A second computer, and safety numbers to compare in person:
  wardline login --username alice --server wss://wardline.trust.nhs.uk/v1 --pin 3A:91:...
  wardline verify bob

  # The health record: clinical notes about a patient, as a FHIR bundle:
  wardline export bob --patient \"943 476 5919\" --out bed4-notes.json
  wardline verify-export bed4-notes.json

  # Administration:
  wardline admin user add carol --display-name \"Dr Carol Jones (Cardiology)\"
  wardline admin audit --verify

  # Scripts: --json everywhere, secrets from the environment:
  WARDLINE_PASSPHRASE=... wardline --json inbox

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
  # A script: passphrase and password from the environment, the TOTP
  # secret read from the first JSON line, the code written to standard input:
  WARDLINE_PASSPHRASE=... WARDLINE_PASSWORD=... wardline --json enrol --code K7QX-2M9P-4TRW
  # A server on this computer, over plain ws://:
  wardline enrol --server ws://127.0.0.1:7443/v1 --code K7QX-2M9P-4TRW";

const LOGIN_EXAMPLES: &str = "\
Examples:
  # A new session on this computer (the keystore knows the server):
  wardline login --username alice
  # A second computer: registers it as a new device of yours:
  wardline login --username alice --server wss://wardline.trust.nhs.uk/v1 --pin 3A:91:...
  # The server's certificate was replaced (confirm the new fingerprint with IT):
  wardline login --username alice --pin 5C:D2:...";

const SEND_EXAMPLES: &str = "\
Examples:
  wardline send bob \"Can you review bed 4?\"
  wardline send \"Ward 10 night team\" \"Bed 4 is deteriorating\" --urgent
  # ... and stay until everyone has read it, or be told whom to phone:
  wardline send \"Ward 10 night team\" \"Bed 4 arrest\" --urgent --wait-read 5m
  wardline send bob \"Start IV co-amoxiclav\" --kind clinical-note --patient \"943 476 5919\"
  wardline send 0193f7c2-6a1e-7c3d-9b2a-3f4e5d6c7b8a \"Agreed\" --reply-to 0193f7c2-...
  # A patient's NHS number belongs in --patient, not the text; the text is
  # checked and you are asked before such a message is sent.";

const CONVERSATION_EXAMPLES: &str = "\
Examples:
  wardline conversation create --title \"Ward 10 night team\" bob carol
  wardline conversation add \"Ward 10 night team\" dave
  wardline conversation remove \"Ward 10 night team\" alice     # leave it";

const READ_EXAMPLES: &str = "\
Examples:
  wardline inbox                     # everything unread, urgent first
  wardline inbox --peek              # without sending read receipts
  wardline read bob                  # your conversation with bob
  wardline read \"Ward 10 night team\"
  wardline history \"Ward 10 night team\" --limit 50
  wardline history bob --before 120  # further back";

const CHAT_EXAMPLES: &str = "\
Examples:
  wardline chat bob
  wardline chat \"Ward 10 night team\" --history 100
In the chat: Enter sends; /urgent TEXT, /note TEXT, /patient NHS_NUMBER TEXT,
/reply N TEXT; PgUp/PgDn scroll; Esc or Ctrl-D leaves. Without a terminal,
each line of standard input is sent and each event printed (with --json, as
JSON lines).";

const VERIFY_EXAMPLES: &str = "\
Examples:
  wardline verify bob              # show the numbers; bob runs `wardline verify alice`
  wardline verify bob --confirm    # after comparing them in person
  wardline verify alice            # your own other devices";

const LOCK_EXAMPLES: &str = "\
Examples:
  wardline unlock                        # passphrase once, for the next few commands
  wardline --idle-timeout 15m unlock
  wardline lock                          # before leaving the workstation";

const PASSPHRASE_EXAMPLES: &str = "\
Examples:
  wardline passphrase        # current passphrase, then the new one twice
  # A script: both from the environment (or one line each on standard
  # input, current first):
  WARDLINE_PASSPHRASE=... WARDLINE_NEW_PASSPHRASE=... wardline --json passphrase";

const PASSWORD_EXAMPLES: &str = "\
Examples:
  wardline password          # current password, the new one twice, then the code
  # A script: both passwords from the environment, the code as an option:
  WARDLINE_PASSWORD=... WARDLINE_NEW_PASSWORD=... wardline --json password --totp 123456";

const WIPE_EXAMPLES: &str = "\
Examples:
  wardline devices                              # find the lost device's id
  wardline wipe 0193f7c2-... --reason \"laptop stolen from ward 10\"";

const ADMIN_EXAMPLES: &str = "\
Examples:
  wardline admin user list
  wardline admin user add carol --display-name \"Dr Carol Jones (Cardiology)\"
  wardline admin user add dave --display-name \"Dave Smith\" --role records-officer
  wardline admin user disable carol --reason \"left the trust\"
  wardline admin user reset carol --reason \"lost phone with authenticator\"
  wardline admin devices carol
  wardline admin device revoke 0193f7c2-... --reason \"workstation replaced\"
  wardline admin wipe 0193f7c2-... --reason \"redeployed to another ward\"
  wardline admin wipe-status w-0193f7d0-...
  wardline admin audit --verify
  wardline admin residency
  wardline admin incident-mode on --reason \"major incident: M6 pile-up\"
  wardline admin user approve rahmed
  wardline admin legal-hold --user bnowak on --reason \"subject access request 2026/118\"";

const REGISTER_EXAMPLES: &str = "\
Examples:
  # Only while the trust has opened self-registration for a major incident:
  wardline register --server wss://wardline.trust.nhs.uk/v1 --pin 3A:91:... \\
      --username rahmed --display-name \"Dr Rana Ahmed (locum, A&E)\"
  # then enrol with the code it prints, and ask an administrator to approve you.";

const EXPORT_EXAMPLES: &str = "\
Examples:
  # Clinical notes of a conversation (each names its patient):
  wardline export bob --out notes.json
  # About one patient, since Monday; notes that name no patient are linked
  # to this one after you confirm:
  wardline export \"Ward 10 night team\" --patient \"943 476 5919\" --since 2026-11-23 --out bed4.json
  # Every message, as a transaction bundle for a FHIR server:
  wardline export bob --kind all --patient 9434765919 --yes --transaction --out bed4-tx.json
  # Check a file (from anyone) before it goes into the record:
  wardline verify-export bed4.json";

/// Wardline: end-to-end encrypted messaging for clinical staff.
///
/// Everything this device keeps lives in its keystore (--home), sealed under
/// your passphrase. After you type the passphrase at the terminal, the
/// keystore stays unlocked until --idle-timeout passes without use, or
/// until `wardline lock`.
///
/// Every question can be answered without a terminal: secrets from the
/// environment (WARDLINE_PASSPHRASE for the keystore, WARDLINE_PASSWORD for
/// the account; WARDLINE_NEW_PASSPHRASE and WARDLINE_NEW_PASSWORD when
/// changing them) or flags (--totp), else one line each from standard input,
/// in the order: confirmation (y/n), passphrase, password, new secret, TOTP
/// code.
///
/// A server elsewhere is reached over TLS (wss://) only, trusting either the
/// certificate fingerprint the server prints at start (--pin, WARDLINE_PIN)
/// or a CA certificate file (--ca, WARDLINE_CA); `enrol` and `login` save
/// the server and that choice in the keystore for the other commands.
///
/// Exit status: 0 on success, 1 on failure, 3 when this device was wiped by
/// order of the organisation.
#[derive(Debug, Parser)]
#[command(name = "wardline", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Directory holding this device's keystore
    /// [default: $XDG_DATA_HOME/wardline or ~/.local/share/wardline].
    #[arg(long, global = true, env = "WARDLINE_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Machine-readable output: one JSON object per line on standard output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Lock the keystore (and close the chat) after this long without use:
    /// 90s, 5m, 1h; 0 never keeps it unlocked.
    #[arg(
        long,
        global = true,
        env = "WARDLINE_IDLE_TIMEOUT",
        value_name = "DURATION",
        default_value = "5m",
        value_parser = agent::parse_duration
    )]
    pub idle_timeout: Duration,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enrol with the one-time code from your administrator: sets up your
    /// password and authenticator app, and registers this device.
    #[command(after_help = ENROL_EXAMPLES)]
    Enrol(EnrolArgs),
    /// Start a new session with password and authenticator code (registers
    /// this computer as a new device if it has no keystore yet).
    #[command(after_help = LOGIN_EXAMPLES)]
    Login(LoginArgs),
    /// End this device's session (its keys stay, sealed).
    Logout,
    /// Show the account, device and server of this keystore.
    Whoami,
    /// List your devices and their state.
    #[command(after_help = WIPE_EXAMPLES)]
    Devices,
    /// Unread messages from every conversation, urgent ones first.
    #[command(after_help = READ_EXAMPLES)]
    Inbox(InboxArgs),
    /// List your conversations with unread counts.
    #[command(after_help = CONVERSATION_EXAMPLES)]
    Conversations,
    /// Create a conversation, or add or remove members.
    #[command(after_help = CONVERSATION_EXAMPLES)]
    Conversation {
        /// What to do.
        #[command(subcommand)]
        command: ConversationCommand,
    },
    /// Send an end-to-end encrypted message to a conversation or a person.
    #[command(after_help = SEND_EXAMPLES)]
    Send(SendArgs),
    /// Show a conversation's unread messages and mark them read.
    #[command(after_help = READ_EXAMPLES)]
    Read(ReadArgs),
    /// Show earlier messages of a conversation.
    #[command(after_help = READ_EXAMPLES)]
    History(HistoryArgs),
    /// A live view of a conversation: messages as they arrive, receipts,
    /// and a line to type into.
    #[command(after_help = CHAT_EXAMPLES)]
    Chat(ChatArgs),
    /// Safety numbers to compare in person with a colleague's device.
    #[command(after_help = VERIFY_EXAMPLES)]
    Verify(VerifyArgs),
    /// Keep the keystore unlocked until the idle timeout.
    #[command(after_help = LOCK_EXAMPLES)]
    Unlock,
    /// Forget the unlocked keystore key now.
    #[command(after_help = LOCK_EXAMPLES)]
    Lock,
    /// Change the passphrase that seals this device's keystore.
    ///
    /// Asks for the current passphrase, then the new one (twice at a
    /// terminal); scripts set WARDLINE_PASSPHRASE and
    /// WARDLINE_NEW_PASSPHRASE. The keystore is sealed again with a fresh
    /// salt and data key, its old copy is destroyed, and an unlocked
    /// keystore is locked.
    #[command(after_help = PASSPHRASE_EXAMPLES)]
    Passphrase,
    /// Change your Wardline account password (the one you log in with).
    ///
    /// Asks for the current password, the new one (twice at a terminal)
    /// and your authenticator code; scripts set WARDLINE_PASSWORD and
    /// WARDLINE_NEW_PASSWORD. Failed attempts count towards the lockout,
    /// as failed logins do.
    #[command(after_help = PASSWORD_EXAMPLES)]
    Password(PasswordArgs),
    /// Export messages about a patient to the health record, as an HL7 FHIR
    /// R4 bundle each of whose entries can be verified against its
    /// sender's signature.
    #[command(after_help = EXPORT_EXAMPLES)]
    Export(ExportArgs),
    /// Check an exported bundle: every text exactly as its sender's device
    /// signed it, and the signing keys as this device knows them.
    #[command(after_help = EXPORT_EXAMPLES)]
    VerifyExport(VerifyExportArgs),
    /// Register an account yourself, when the trust has opened
    /// registration for a major incident; an administrator must approve it.
    #[command(after_help = REGISTER_EXAMPLES)]
    Register(RegisterArgs),
    /// Wipe one of your own devices that was lost or stolen.
    #[command(after_help = WIPE_EXAMPLES)]
    Wipe(WipeArgs),
    /// Administration (admin role only).
    #[command(after_help = ADMIN_EXAMPLES)]
    Admin {
        /// What to do.
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Print shell completions: wardline completions bash > /etc/bash_completion.d/wardline
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// The background keystore agent (started by `unlock`; not for people).
    #[command(hide = true)]
    Agent,
}
