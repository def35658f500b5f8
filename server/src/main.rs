//! `wardline-server`: load the configuration, then serve.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use wardline_server::config::{self, Config, FileConfig};
use wardline_server::{Clock, Server};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Wardline: end-to-end encrypted messaging for clinical staff.
///
/// Settings come from a TOML file (--config), then WARDLINE_* environment
/// variables, then these flags, each overriding the one before.
///
/// Examples:
///   wardline-server --data-dir /var/lib/wardline
///   wardline-server --listen 0.0.0.0:7443 --tls-cert cert.pem --tls-key key.pem
///   wardline-server --config /etc/wardline/server.toml --print-config
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// TOML configuration file.
    #[arg(long, env = "WARDLINE_CONFIG")]
    config: Option<PathBuf>,
    /// Address for clients [default: 127.0.0.1:7443].
    #[arg(long, env = "WARDLINE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address for /healthz and /metrics [default: 127.0.0.1:7444].
    #[arg(long, env = "WARDLINE_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Directory for the store, the data key and the bootstrap code [default: ./wardline-data].
    #[arg(long, env = "WARDLINE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Region (ISO 3166-1 alpha-2) where this deployment stores data [default: GB].
    #[arg(long, env = "WARDLINE_REGION")]
    region: Option<String>,
    /// PEM certificate chain for TLS.
    #[arg(long, env = "WARDLINE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(long, env = "WARDLINE_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Use a self-signed certificate kept in the data directory (trials only).
    #[arg(long, env = "WARDLINE_DEV_TLS")]
    dev_tls: bool,
    /// Requests per second each connection may sustain.
    #[arg(long, env = "WARDLINE_RATE_PER_SEC")]
    rate_per_sec: Option<u32>,
    /// Requests each connection may send in a burst.
    #[arg(long, env = "WARDLINE_RATE_BURST")]
    rate_burst: Option<u32>,
    /// Most simultaneous client connections.
    #[arg(long, env = "WARDLINE_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Refuse writes while the data directory's disk has less than this
    /// many MiB free (limits.min_free_mb).
    #[arg(long, env = "WARDLINE_MIN_FREE_MB")]
    min_free_mb: Option<u64>,
    /// Print the effective configuration (no secrets) and exit.
    #[arg(long)]
    print_config: bool,
    /// Re-seal the stopped server's data directory under a new data key,
    /// replace data.key, and exit.
    #[arg(long)]
    rotate_data_key: bool,
}

fn load(args: &Args) -> anyhow::Result<Config> {
    let mut c = Config::new(
        "127.0.0.1:7443".parse().expect("static address"),
        PathBuf::from("./wardline-data"),
    );
    c.admin_listen = Some("127.0.0.1:7444".parse().expect("static address"));
    if let Some(path) = &args.config {
        FileConfig::load(path)?.apply(&mut c)?;
    }
    if let Some(v) = args.listen {
        c.listen = v;
    }
    if let Some(v) = args.admin_listen {
        c.admin_listen = Some(v);
    }
    if let Some(v) = &args.data_dir {
        c.data_dir = v.clone();
    }
    if let Some(v) = &args.region {
        c.region = config::parse_region("--region", v)?;
    }
    c.tls = config::tls_from(
        args.tls_cert.clone(),
        args.tls_key.clone(),
        args.dev_tls,
        c.tls,
    )?;
    if let Some(v) = args.rate_per_sec {
        c.rate_per_sec = v;
    }
    if let Some(v) = args.rate_burst {
        c.rate_burst = v;
    }
    if let Some(v) = args.max_connections {
        c.max_connections = v;
    }
    if let Some(v) = args.min_free_mb {
        c.min_free_mb = v;
    }
    c.validate()?;
    Ok(c)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let config = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: invalid configuration: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    if args.print_config {
        print!("{}", config.to_toml());
        return std::process::ExitCode::SUCCESS;
    }
    if args.rotate_data_key {
        let env_key = std::env::var("WARDLINE_DATA_KEY").ok();
        return match wardline_server::store::rotate_data_key(&config.data_dir, env_key.as_deref()) {
            Ok(()) => {
                println!(
                    "data key rotated: {} now holds the new key; back it up, and destroy copies of the old one",
                    config.data_dir.join("data.key").display()
                );
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: key rotation failed: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WARDLINE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One readable line for the operator, with every cause.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let data_key = std::env::var("WARDLINE_DATA_KEY").ok();
    let server = Server::open(config.clone(), data_key.as_deref(), Clock::system())
        .context("cannot start the server")?;
    let listener = listen(config.listen)
        .with_context(|| format!("cannot listen on {} (listen)", config.listen))?;
    let ops = match config.admin_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (admin_listen)"))?,
        ),
        None => None,
    };
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
    if let Some(ops) = &ops {
        println!("admin listening on http://{}", ops.local_addr()?);
    }
    match &server.tls {
        Some(t) => {
            println!("tls certificate sha256 fingerprint {}", t.fingerprint);
            println!("listening on wss://{addr}/v1");
        }
        None => println!("listening on ws://{addr}/v1"),
    }
    tracing::info!(%addr, region = %config.region, tls = server.tls.is_some(), "wardline-server started");

    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    server.run(listener, ops, rx).await;
    Ok(())
}

/// Binds with a deep accept queue: `TcpListener::bind` listens with 128, and a
/// reconnect storm of a few hundred clients then overflows it into one-second
/// SYN retransmits (docs/PERFORMANCE.md). The kernel caps it at somaxconn.
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
