//! `wardline`: parses the command line and runs the command on a
//! single-threaded runtime (a client does one thing at a time).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser as _};
use wardline_cli::cli::{Cli, Command};
use wardline_cli::commands::{self, Context, Session, with_session};
use wardline_cli::keystore::default_home;
use wardline_cli::output::{Event, Output};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any thread exists: reading the local time zone needs that.
    let out = Output::new(cli.json);
    match run(cli, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = err
                .downcast_ref::<wardline_cli::Error>()
                .map_or(1, wardline_cli::Error::exit_code);
            report(out, &err);
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli, out: Output) -> anyhow::Result<()> {
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "wardline",
            &mut std::io::stdout(),
        );
        return Ok(());
    }
    let home = cli
        .home
        .or_else(default_home)
        .context("cannot tell where to keep the keystore; pass --home DIR or set WARDLINE_HOME")?;
    let ctx = Context {
        home,
        out,
        idle_timeout: cli.idle_timeout,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(dispatch(&ctx, cli.command));
    // Without waiting for blocking tasks: a read of standard input (the
    // chat's line mode) cannot be cancelled and would keep the process
    // alive after the command ended (after a wipe, say). Everything that
    // matters (the keystore) was written synchronously already.
    runtime.shutdown_background();
    result?;
    Ok(())
}

async fn dispatch(ctx: &Context, command: Command) -> Result<(), wardline_cli::Error> {
    use commands::{
        account, admin, chat, conversations, enrol, export, lock, login, messages, passphrase,
        register, send, verify, wipe,
    };
    match command {
        Command::Enrol(args) => enrol::run(ctx, args).await,
        Command::Register(args) => register::run(ctx, args).await,
        Command::VerifyExport(args) => export::verify(ctx, &args),
        Command::Export(args) => {
            // The patient link is confirmed before the passphrase is asked.
            let prepared = export::prepare(&args)?;
            with_session(ctx, async |s: &mut Session| {
                export::run(ctx, s, args, prepared).await
            })
            .await
        }
        Command::Login(args) => login::run(ctx, args).await,
        Command::Whoami => account::whoami(ctx).await,
        Command::Unlock => lock::unlock(ctx),
        Command::Lock => lock::lock(ctx),
        Command::Passphrase => passphrase::run(ctx),
        Command::Agent => lock::agent(ctx).await,
        Command::Completions { .. } => Ok(()),
        Command::Send(args) => {
            // Arguments are checked (and an NHS number in the text
            // questioned) before the passphrase is asked for.
            let body = send::prepare(ctx, &args)?;
            with_session(ctx, async |s: &mut Session| {
                send::run(ctx, s, args, body).await
            })
            .await
        }
        Command::Admin { command } => {
            admin::check(&command)?;
            with_session(ctx, async |s: &mut Session| {
                admin::run(ctx, s, command).await
            })
            .await
        }
        Command::Logout => {
            with_session(ctx, async |s: &mut Session| account::logout(ctx, s).await).await
        }
        Command::Devices => {
            with_session(ctx, async |s: &mut Session| account::devices(ctx, s).await).await
        }
        Command::Password(args) => {
            with_session(ctx, async |s: &mut Session| {
                account::change_password(ctx, s, args).await
            })
            .await
        }
        Command::Inbox(args) => {
            with_session(ctx, async |s: &mut Session| {
                messages::inbox(ctx, s, args).await
            })
            .await
        }
        Command::Read(args) => {
            with_session(ctx, async |s: &mut Session| {
                messages::read(ctx, s, args).await
            })
            .await
        }
        Command::History(args) => {
            with_session(ctx, async |s: &mut Session| {
                messages::history(ctx, s, args).await
            })
            .await
        }
        Command::Conversations => {
            with_session(ctx, async |s: &mut Session| {
                conversations::list(ctx, s).await
            })
            .await
        }
        Command::Conversation { command } => {
            with_session(ctx, async |s: &mut Session| {
                conversations::run(ctx, s, command).await
            })
            .await
        }
        Command::Chat(args) => {
            with_session(ctx, async |s: &mut Session| chat::run(ctx, s, args).await).await
        }
        Command::Verify(args) => {
            with_session(ctx, async |s: &mut Session| verify::run(ctx, s, args).await).await
        }
        Command::Wipe(args) => {
            with_session(ctx, async |s: &mut Session| wipe::run(ctx, s, args).await).await
        }
    }
}

/// One line on standard error; with `--json`, also an `error` event. A
/// wipe was reported as it happened, so it is not reported again.
fn report(out: Output, err: &anyhow::Error) {
    let (code, message, incomplete) = match err.downcast_ref::<wardline_cli::Error>() {
        Some(wardline_cli::Error::Wiped { .. }) => return,
        Some(e) => (
            e.code(),
            e.to_string(),
            e.incomplete().cloned().map(Box::new),
        ),
        None => ("failed", format!("{err:#}"), None),
    };
    let message = sentence_case(&message);
    eprintln!("wardline: {message}");
    if out.is_json() {
        // Standard output may be gone already; the message is on stderr.
        let _ = out.emit(&Event::Error {
            code: code.to_owned(),
            message,
            incomplete,
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
