//! `wardline-server`: parse the configuration and serve.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use wardline_protocol::Region;
use wardline_server::{Clock, Config, Server};

/// Wardline: end-to-end encrypted messaging for clinical staff.
///
/// Example: wardline-server --listen 127.0.0.1:7443 --data-dir /var/lib/wardline
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (loopback only until TLS is configured).
    #[arg(long, env = "WARDLINE_LISTEN", default_value = "127.0.0.1:7443")]
    listen: SocketAddr,
    /// Directory for the store, the data key and the bootstrap code.
    #[arg(long, env = "WARDLINE_DATA_DIR", default_value = "./wardline-data")]
    data_dir: PathBuf,
    /// Region (ISO 3166-1 alpha-2) where this deployment stores data.
    #[arg(long, env = "WARDLINE_REGION", default_value = "GB")]
    region: Region,
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One readable line for the operator, with every cause.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WARDLINE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut config = Config::new(args.listen, args.data_dir);
    config.region = args.region;
    let data_key = std::env::var("WARDLINE_DATA_KEY").ok();
    let server = Server::open(config.clone(), data_key.as_deref(), Clock::system())
        .context("cannot start the server")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    if let Some(code) = &server.bootstrap_code {
        // Printed once, on the start that created it; also in the data directory.
        println!(
            "bootstrap admin created: enrol as 'admin' with code {} (also in {})",
            code.expose(),
            config
                .data_dir
                .join(wardline_server::admin::BOOTSTRAP_CODE_FILE)
                .display()
        );
    }
    println!("listening on ws://{addr}/v1");
    tracing::info!(%addr, region = %config.region, "wardline-server started");

    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    server.run(listener, rx).await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
