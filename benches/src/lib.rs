//! Wardline's benchmarks and load generator.
//!
//! * `wardline-load` (src/main.rs): provisions users through the real admin
//!   and enrolment flow, then runs one scenario against a spawned or running
//!   server, optionally against a baseline relay too, and reports.
//!   - [`scenarios`]: `chat`, `group` (via [`scenarios::talk`]), `idle`, `storm`.
//!   - [`provision`]: admin bootstrap, user creation, enrolment with TOTP.
//!   - [`seal`]: envelopes sealed ahead of time with the real crypto.
//!   - [`driver`], [`traffic`]: one simulated device; a measured window of many.
//!   - [`hold`]: many idle connections, in this or helper processes.
//!   - [`relay`]: the baseline relay (no auth, storage or crypto).
//!   - [`metrics`], [`report`], [`plot`], [`progress`]: measuring and telling.
//!   - [`client`], [`frames`]: connections and the wire, as far as the harness needs.
//!   - [`server_proc`], [`procstat`]: the processes under test and their CPU and memory.
//! * Criterion benches (benches/): envelope seal and open, frame encode and
//!   decode, store append with group commit.
//!
//! docs/PERFORMANCE.md has the results and how to reproduce them.

pub mod cli;
pub mod client;
pub mod driver;
pub mod frames;
pub mod hold;
pub mod metrics;
pub mod plot;
pub mod procstat;
pub mod progress;
pub mod provision;
pub mod relay;
pub mod report;
pub mod scenarios;
pub mod seal;
pub mod server_metrics;
pub mod server_proc;
pub mod traffic;
