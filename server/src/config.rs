//! The server's typed configuration, validated before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;

use wardline_protocol::{Policy, Region};

/// Everything the server needs to know to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// Where the store, the data key and the bootstrap code live.
    pub data_dir: PathBuf,
    /// Where this deployment stores data.
    pub region: Region,
    /// Where policy allows data to be stored.
    pub policy: Policy,
    /// Session lifetime (absolute), in milliseconds.
    pub session_ttl_ms: i64,
    /// How long an enrolment code stays valid, in milliseconds.
    pub enrol_code_ttl_ms: i64,
    /// How long the bootstrap admin's code stays valid, in milliseconds.
    pub bootstrap_code_ttl_ms: i64,
}

/// A configuration that must not be run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Plain WebSocket off loopback would expose traffic.
    #[error(
        "listen address {0} is not a loopback address, and TLS is not configured yet: \
         listen on 127.0.0.1 (or ::1) and put a TLS-terminating proxy in front"
    )]
    PlaintextOffLoopback(SocketAddr),
    /// The residency policy forbids the deployment's own region.
    #[error(
        "residency.region {0} is not permitted by the residency policy (rule R6: data is \
         stored in the UK, the EEA, an EC-adequate country, or the US under the Data \
         Privacy Framework)"
    )]
    RegionNotPermitted(Region),
}

impl Config {
    /// Defaults for a data directory: loopback, GB, 7-day sessions.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            data_dir,
            region: Region::GB,
            policy: Policy::trust_default(),
            session_ttl_ms: 7 * 24 * 3600 * 1000,
            enrol_code_ttl_ms: 72 * 3600 * 1000,
            bootstrap_code_ttl_ms: 30 * 24 * 3600 * 1000,
        }
    }

    /// Refuses configurations that would break a rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.ip().is_loopback() {
            return Err(ConfigError::PlaintextOffLoopback(self.listen));
        }
        if !self.policy.permits(self.region) {
            return Err(ConfigError::RegionNotPermitted(self.region));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_plaintext_off_loopback() {
        let c = Config::new("0.0.0.0:7443".parse().expect("addr"), "d".into());
        let msg = c.validate().expect_err("must refuse").to_string();
        assert!(msg.contains("loopback"), "{msg}");
        let c = Config::new("[::1]:7443".parse().expect("addr"), "d".into());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn refuses_a_region_outside_policy() {
        let mut c = Config::new("127.0.0.1:0".parse().expect("addr"), "d".into());
        c.region = Region::parse("CN").expect("code");
        let msg = c.validate().expect_err("must refuse").to_string();
        assert!(msg.contains("R6"), "{msg}");
    }
}
