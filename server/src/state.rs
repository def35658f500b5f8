//! What every connection shares: a cheap `Arc<State>` handle, never a global.

use std::sync::Arc;

use crate::auth::Auth;
use crate::clock::Clock;
use crate::config::Config;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::store::{Store, Writer};

/// Shared server state.
#[derive(Debug)]
pub struct State {
    /// Validated configuration.
    pub config: Config,
    /// Persistence.
    pub store: Arc<dyn Store>,
    /// The group-commit writer for messages.
    pub writer: Writer,
    /// Connected devices.
    pub hub: Arc<Hub>,
    /// Time.
    pub clock: Clock,
    /// Credential checking.
    pub auth: Auth,
    /// The tamper-evident audit log's tail.
    pub audit: crate::audit::Log,
    /// Counters for operators.
    pub metrics: Arc<Metrics>,
}
