//! The Wardline messaging server.
//!
//! * [`config`]: the typed, validated configuration.
//! * [`net`]: TCP listener and WebSocket upgrade.
//! * [`session`]: one connection's state machine and request dispatch.
//! * [`auth`]: passwords, TOTP, enrolment, sessions, lockout.
//! * [`admin`]: provisioning, and the bootstrap admin.
//! * [`directory`], [`conversations`], [`messaging`]: the services.
//! * [`hub`]: connected devices and delivery of committed messages.
//! * [`store`]: the `Store` trait, sled, encryption at rest, group commit.
//!
//! [`run`] takes an already-bound listener, so tests start a server on
//! `127.0.0.1:0`.

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod conversations;
pub mod directory;
pub mod error;
pub mod hub;
pub mod messaging;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod ops;
pub mod residency;
pub mod retention;
pub mod session;
pub mod state;
pub mod store;
pub mod tls;
pub mod urgent;
pub mod wipe;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use clock::Clock;
pub use config::Config;
pub use state::State;

use store::{SledStore, Store, Writer};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration breaks a rule.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The data directory or key is unusable.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The bootstrap admin could not be created.
    #[error(transparent)]
    Bootstrap(#[from] admin::BootstrapError),
    /// Other I/O at start.
    #[error("cannot prepare the data directory: {0}")]
    Io(#[from] std::io::Error),
}

/// A server ready to serve: state opened, bootstrap done.
#[derive(Debug)]
pub struct Server {
    /// Shared state.
    pub state: Arc<State>,
    /// The bootstrap admin's code, when this start created it.
    pub bootstrap_code: Option<wardline_protocol::Secret>,
    /// TLS for the client listener, when configured.
    pub tls: Option<tls::Acceptor>,
}

impl Server {
    /// Validates `config`, opens the data directory (creating it and the data
    /// key when new), and creates the bootstrap admin on an empty store.
    pub fn open(
        config: Config,
        data_key_env: Option<&str>,
        clock: Clock,
    ) -> Result<Self, StartError> {
        config.validate()?;
        let tls = tls::acceptor(&config)?;
        let dir = &config.data_dir;
        store::check_no_interrupted_rotation(dir)?;
        let fresh = !dir.join("store").exists();
        std::fs::create_dir_all(dir)?;
        let (key, _) = store::load_or_create_data_key(dir, data_key_env, fresh)?;
        let sled = SledStore::open(
            &dir.join("store"),
            &key,
            config.min_free_mb.saturating_mul(1024 * 1024),
        )?;
        let store: Arc<dyn Store> = Arc::new(sled);
        let store_for_audit = store.clone();
        let metrics = Arc::new(metrics::Metrics::default());
        let hub = Arc::new(hub::Hub::new(metrics.clone(), config.outbound_queue_bytes));
        let deliver = hub.clone();
        let stats = metrics.clone();
        let writer = Writer::start(
            store.clone(),
            clock.clone(),
            Box::new(move |b| deliver.deliver(b)),
            Box::new(move |size, us| {
                stats
                    .sends
                    .fetch_add(size as u64, std::sync::atomic::Ordering::Relaxed);
                stats.record_commit(size, us);
            }),
        );
        let state = Arc::new(State {
            config,
            store,
            writer,
            hub,
            clock,
            auth: auth::Auth::new(),
            audit: audit::Log::open(store_for_audit.as_ref())?,
            metrics,
        });
        let bootstrap_code = admin::bootstrap(&state)?;
        let started = audit::record(
            &state,
            audit::Event::new("server_started", None, None, "ok").reason(&format!(
                "region {}, tls {}, rate {}/s burst {}, max connections {}",
                state.config.region,
                !matches!(state.config.tls, config::Tls::Off),
                state.config.rate_per_sec,
                state.config.rate_burst,
                state.config.max_connections
            )),
        );
        match (started, state.store.write_refusal()) {
            (Ok(()), _) => {}
            // Serve reads anyway: clinicians can still see what they have.
            (Err(e), Some(why)) => tracing::error!(
                error = %e,
                "could not record the start in the audit log, since writes are refused ({why}); \
                 starting for reads"
            ),
            (Err(e), None) => return Err(StartError::Io(std::io::Error::other(e.to_string()))),
        }
        Ok(Self {
            state,
            bootstrap_code,
            tls,
        })
    }

    /// Serves clients on `listener` (and operators on `ops`, if given) until
    /// `shutdown` turns true.
    pub async fn run(
        self,
        listener: TcpListener,
        ops: Option<TcpListener>,
        shutdown: watch::Receiver<bool>,
    ) {
        tokio::spawn(urgent::run(self.state.clone(), shutdown.clone()));
        tokio::spawn(retention::run(self.state.clone(), shutdown.clone()));
        if let Some(ops) = ops {
            tokio::spawn(ops::serve(ops, self.state.clone(), shutdown.clone()));
        }
        net::serve(listener, self.tls, self.state, shutdown).await;
    }
}
