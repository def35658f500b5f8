//! The server's one typed configuration: a TOML file, then `WARDLINE_*`
//! environment variables, then command-line flags, each overriding the one
//! before. Validated at start, with errors that name the key and say why.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wardline_protocol::{Policy, Region};

/// TLS material for the client listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Tls {
    /// Plain WebSocket: only allowed on loopback addresses.
    Off,
    /// A certificate chain and key, PEM files.
    Files {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// A self-signed certificate for the listen address, kept in the data
    /// directory (for trials and tests; clients pin its fingerprint).
    Dev,
}

/// Everything the server needs to know to start.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// Where `/healthz` and `/metrics` are served (keep it private).
    pub admin_listen: Option<SocketAddr>,
    /// Where the store, the data key and the bootstrap code live.
    pub data_dir: PathBuf,
    /// TLS on the client listener.
    pub tls: Tls,
    /// Where this deployment stores data.
    #[serde(serialize_with = "ser_display")]
    pub region: Region,
    /// Where policy allows data to be stored.
    #[serde(serialize_with = "ser_policy")]
    pub policy: Policy,
    /// Session lifetime (absolute), in milliseconds.
    pub session_ttl_ms: i64,
    /// A session unused for this long ends, in milliseconds.
    pub session_idle_ms: i64,
    /// How long an enrolment code stays valid, in milliseconds.
    pub enrol_code_ttl_ms: i64,
    /// How long the bootstrap admin's code stays valid, in milliseconds.
    pub bootstrap_code_ttl_ms: i64,
    /// Most simultaneous client connections.
    pub max_connections: usize,
    /// Frames a connection may fall behind by before it is disconnected.
    pub outbound_queue: usize,
    /// Bytes a connection may fall behind by before it is disconnected.
    pub outbound_queue_bytes: usize,
    /// Writes are refused while the data directory's disk has less than
    /// this many MiB available, before sled could fail on a full disk.
    pub min_free_mb: u64,
    /// Requests per second a connection may sustain.
    pub rate_per_sec: u32,
    /// Requests a connection may send in a burst.
    pub rate_burst: u32,
    /// A connection silent this long (no frame, no pong) is closed, in ms.
    pub idle_timeout_ms: u64,
    /// Stored messages are deleted after this many days (the chat is not the record).
    pub retention_days: u32,
    /// Audit entries are pruned (behind a signed checkpoint) after this many days.
    pub audit_retention_days: u32,
    /// An unread urgent message is pushed again this often, in ms.
    pub urgent_renotify_ms: i64,
    /// After this long unread, the sender is told who has not read it, in ms.
    pub urgent_escalate_ms: i64,
}

fn ser_display<S: serde::Serializer>(r: &Region, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(r)
}

fn ser_policy<S: serde::Serializer>(p: &Policy, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(p.regions().map(|r| r.to_string()))
}

/// A configuration that must not be run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Plain WebSocket off loopback would expose traffic.
    #[error(
        "listen = {0} is not a loopback address and TLS is off: set tls.cert and tls.key \
         (--tls-cert/--tls-key), or tls.dev = true (--dev-tls) for a trial"
    )]
    PlaintextOffLoopback(SocketAddr),
    /// The residency policy forbids the deployment's own region.
    #[error(
        "residency.region = {0} is not permitted by residency.permitted (rule R6: data is \
         stored in the UK, the EEA, an EC-adequate country, or the US under the Data \
         Privacy Framework)"
    )]
    RegionNotPermitted(Region),
    /// The Privacy Shield no longer exists.
    #[error(
        "residency.permitted names the EU-US Privacy Shield, which the Court of Justice \
         invalidated in July 2020 (Schrems II); the EU-US Data Privacy Framework (July \
         2023) replaced it: permit \"US\" for DPF-certified US hosting instead"
    )]
    PrivacyShield,
    /// A value is out of range or unusable.
    #[error("{key}: {why}")]
    Invalid {
        /// The configuration key.
        key: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The file could not be read or parsed.
    #[error("configuration file {path}: {why}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong (names the key for unknown or mistyped keys).
        why: String,
    },
}

impl Config {
    /// Defaults for a data directory: loopback, GB, 7-day sessions.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            admin_listen: None,
            data_dir,
            tls: Tls::Off,
            region: Region::GB,
            policy: Policy::trust_default(),
            session_ttl_ms: 7 * 24 * 3600 * 1000,
            session_idle_ms: 12 * 3600 * 1000,
            enrol_code_ttl_ms: 72 * 3600 * 1000,
            bootstrap_code_ttl_ms: 30 * 24 * 3600 * 1000,
            max_connections: 20_000,
            outbound_queue: 1024,
            outbound_queue_bytes: 4 * 1024 * 1024,
            min_free_mb: 256,
            rate_per_sec: 100,
            rate_burst: 400,
            idle_timeout_ms: 90_000,
            retention_days: 30,
            audit_retention_days: 8 * 366,
            urgent_renotify_ms: 2 * 60 * 1000,
            urgent_escalate_ms: 20 * 60 * 1000,
        }
    }

    /// Refuses configurations that would break a rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tls == Tls::Off && !self.listen.ip().is_loopback() {
            return Err(ConfigError::PlaintextOffLoopback(self.listen));
        }
        if !self.policy.permits(self.region) {
            return Err(ConfigError::RegionNotPermitted(self.region));
        }
        let positive = [
            ("sessions.ttl_secs", self.session_ttl_ms),
            ("sessions.idle_secs", self.session_idle_ms),
            ("enrolment.code_ttl_secs", self.enrol_code_ttl_ms),
            ("urgent.renotify_secs", self.urgent_renotify_ms),
            ("urgent.escalate_secs", self.urgent_escalate_ms),
        ];
        for (key, v) in positive {
            if v <= 0 {
                return Err(ConfigError::Invalid {
                    key,
                    why: "must be greater than 0".into(),
                });
            }
        }
        if self.audit_retention_days < 365 {
            return Err(ConfigError::Invalid {
                key: "retention.audit_days",
                why: "keep the audit log at least a year".into(),
            });
        }
        if self.retention_days == 0 || self.retention_days > 3650 {
            return Err(ConfigError::Invalid {
                key: "retention.days",
                why: "must be between 1 and 3650".into(),
            });
        }
        if self.outbound_queue_bytes < 512 * 1024 {
            return Err(ConfigError::Invalid {
                key: "limits.outbound_queue_bytes",
                why: "must be at least 524288, or a single large message would disconnect clients"
                    .into(),
            });
        }
        if self.outbound_queue < 16 {
            return Err(ConfigError::Invalid {
                key: "limits.outbound_queue",
                why: "must be at least 16, or catching up would disconnect clients".into(),
            });
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid {
                key: "limits.max_connections",
                why: "must be at least 1".into(),
            });
        }
        if self.rate_per_sec == 0 || self.rate_burst == 0 {
            return Err(ConfigError::Invalid {
                key: "limits.rate_per_sec",
                why: "rate_per_sec and rate_burst must be at least 1".into(),
            });
        }
        if self.idle_timeout_ms < 10_000 {
            return Err(ConfigError::Invalid {
                key: "limits.idle_timeout_secs",
                why: "must be at least 10 seconds, or clients on slow links are cut off".into(),
            });
        }
        Ok(())
    }

    /// The effective configuration as TOML, without secrets (there are none
    /// in it: the data key lives in its own file or the environment).
    pub fn to_toml(&self) -> String {
        let f = FileConfig::from_config(self);
        toml::to_string_pretty(&f).expect("configuration always serialises")
    }
}

/// The TOML file's shape. Every key is optional; unknown keys are errors,
/// so a typo is reported rather than silently ignored.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `listen`
    pub listen: Option<SocketAddr>,
    /// `admin_listen`
    pub admin_listen: Option<SocketAddr>,
    /// `data_dir`
    pub data_dir: Option<PathBuf>,
    /// `[tls]`
    #[serde(default)]
    pub tls: TlsSection,
    /// `[residency]`
    #[serde(default)]
    pub residency: ResidencySection,
    /// `[sessions]`
    #[serde(default)]
    pub sessions: SessionsSection,
    /// `[enrolment]`
    #[serde(default)]
    pub enrolment: EnrolmentSection,
    /// `[limits]`
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[urgent]`
    #[serde(default)]
    pub urgent: UrgentSection,
    /// `[retention]`
    #[serde(default)]
    pub retention: RetentionSection,
}

/// `[retention]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// Days messages are kept.
    pub days: Option<u32>,
    /// Days audit entries are kept.
    pub audit_days: Option<u32>,
}

/// `[tls]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// Self-signed certificate in the data directory.
    pub dev: Option<bool>,
}

/// `[residency]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResidencySection {
    /// Where this deployment stores data.
    pub region: Option<String>,
    /// Regions policy permits (default: UK, EEA, EC-adequate, US-DPF).
    pub permitted: Option<Vec<String>>,
}

/// `[sessions]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsSection {
    /// Absolute lifetime.
    pub ttl_secs: Option<i64>,
    /// Idle lifetime.
    pub idle_secs: Option<i64>,
}

/// `[enrolment]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolmentSection {
    /// Validity of enrolment codes.
    pub code_ttl_secs: Option<i64>,
}

/// `[limits]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Most simultaneous connections.
    pub max_connections: Option<usize>,
    /// Frames a slow reader may fall behind by.
    pub outbound_queue: Option<usize>,
    /// Bytes a slow reader may fall behind by.
    pub outbound_queue_bytes: Option<usize>,
    /// Free disk space (MiB) below which writes are refused.
    pub min_free_mb: Option<u64>,
    /// Sustained requests per second per connection.
    pub rate_per_sec: Option<u32>,
    /// Burst of requests per connection.
    pub rate_burst: Option<u32>,
    /// Silence before a connection is closed.
    pub idle_timeout_secs: Option<u64>,
}

/// `[urgent]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UrgentSection {
    /// Re-notification interval.
    pub renotify_secs: Option<i64>,
    /// When the sender is told who has not read.
    pub escalate_secs: Option<i64>,
}

impl FileConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            why: e.message().to_string()
                + &e.span()
                    .map(|s| format!(" (at byte {})", s.start))
                    .unwrap_or_default(),
        })
    }

    fn from_config(c: &Config) -> Self {
        let (cert, key, dev) = match &c.tls {
            Tls::Off => (None, None, Some(false)),
            Tls::Files { cert, key } => (Some(cert.clone()), Some(key.clone()), Some(false)),
            Tls::Dev => (None, None, Some(true)),
        };
        FileConfig {
            listen: Some(c.listen),
            admin_listen: c.admin_listen,
            data_dir: Some(c.data_dir.clone()),
            tls: TlsSection { cert, key, dev },
            residency: ResidencySection {
                region: Some(c.region.to_string()),
                permitted: Some(c.policy.regions().map(|r| r.to_string()).collect()),
            },
            sessions: SessionsSection {
                ttl_secs: Some(c.session_ttl_ms / 1000),
                idle_secs: Some(c.session_idle_ms / 1000),
            },
            enrolment: EnrolmentSection {
                code_ttl_secs: Some(c.enrol_code_ttl_ms / 1000),
            },
            limits: LimitsSection {
                max_connections: Some(c.max_connections),
                outbound_queue: Some(c.outbound_queue),
                outbound_queue_bytes: Some(c.outbound_queue_bytes),
                min_free_mb: Some(c.min_free_mb),
                rate_per_sec: Some(c.rate_per_sec),
                rate_burst: Some(c.rate_burst),
                idle_timeout_secs: Some(c.idle_timeout_ms / 1000),
            },
            urgent: UrgentSection {
                renotify_secs: Some(c.urgent_renotify_ms / 1000),
                escalate_secs: Some(c.urgent_escalate_ms / 1000),
            },
            retention: RetentionSection {
                days: Some(c.retention_days),
                audit_days: Some(c.audit_retention_days),
            },
        }
    }

    /// Applies this file over `c`.
    pub fn apply(self, c: &mut Config) -> Result<(), ConfigError> {
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if self.admin_listen.is_some() {
            c.admin_listen = self.admin_listen;
        }
        if let Some(v) = self.data_dir {
            c.data_dir = v;
        }
        c.tls = tls_from(
            self.tls.cert,
            self.tls.key,
            self.tls.dev.unwrap_or(false),
            c.tls.clone(),
        )?;
        if let Some(r) = self.residency.region {
            c.region = parse_region("residency.region", &r)?;
        }
        if let Some(list) = self.residency.permitted {
            c.policy = parse_policy(&list)?;
        }
        let secs = |v: Option<i64>, into: &mut i64| {
            if let Some(s) = v {
                *into = s.saturating_mul(1000);
            }
        };
        secs(self.sessions.ttl_secs, &mut c.session_ttl_ms);
        secs(self.sessions.idle_secs, &mut c.session_idle_ms);
        secs(self.enrolment.code_ttl_secs, &mut c.enrol_code_ttl_ms);
        secs(self.urgent.renotify_secs, &mut c.urgent_renotify_ms);
        secs(self.urgent.escalate_secs, &mut c.urgent_escalate_ms);
        if let Some(v) = self.retention.days {
            c.retention_days = v;
        }
        if let Some(v) = self.retention.audit_days {
            c.audit_retention_days = v;
        }
        if let Some(v) = self.limits.max_connections {
            c.max_connections = v;
        }
        if let Some(v) = self.limits.outbound_queue {
            c.outbound_queue = v;
        }
        if let Some(v) = self.limits.outbound_queue_bytes {
            c.outbound_queue_bytes = v;
        }
        if let Some(v) = self.limits.min_free_mb {
            c.min_free_mb = v;
        }
        if let Some(v) = self.limits.rate_per_sec {
            c.rate_per_sec = v;
        }
        if let Some(v) = self.limits.rate_burst {
            c.rate_burst = v;
        }
        if let Some(v) = self.limits.idle_timeout_secs {
            c.idle_timeout_ms = v.saturating_mul(1000);
        }
        Ok(())
    }
}

/// Combines TLS settings; `current` is kept when nothing is given.
pub fn tls_from(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    dev: bool,
    current: Tls,
) -> Result<Tls, ConfigError> {
    match (cert, key, dev) {
        (Some(_), _, true) | (_, Some(_), true) => Err(ConfigError::Invalid {
            key: "tls.dev",
            why: "use either a certificate (tls.cert and tls.key) or tls.dev, not both".into(),
        }),
        (Some(cert), Some(key), false) => Ok(Tls::Files { cert, key }),
        (Some(_), None, _) => Err(ConfigError::Invalid {
            key: "tls.key",
            why: "tls.cert is set but tls.key is not".into(),
        }),
        (None, Some(_), _) => Err(ConfigError::Invalid {
            key: "tls.cert",
            why: "tls.key is set but tls.cert is not".into(),
        }),
        (None, None, true) => Ok(Tls::Dev),
        (None, None, false) => Ok(current),
    }
}

/// Parses a region for `key`.
pub fn parse_region(key: &'static str, s: &str) -> Result<Region, ConfigError> {
    Region::parse(s.trim()).map_err(|e| ConfigError::Invalid {
        key,
        why: format!("{s:?}: {e}"),
    })
}

/// Parses `residency.permitted`, refusing the defunct Privacy Shield.
pub fn parse_policy(list: &[String]) -> Result<Policy, ConfigError> {
    let mut regions = Vec::new();
    for entry in list {
        let norm: String = entry
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if norm.contains("privacyshield") {
            return Err(ConfigError::PrivacyShield);
        }
        regions.push(parse_region("residency.permitted", entry)?);
    }
    Ok(Policy::only(regions))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Config {
        Config::new("127.0.0.1:0".parse().expect("addr"), "d".into())
    }

    #[test]
    fn refuses_plaintext_off_loopback() {
        let mut c = base();
        c.listen = "0.0.0.0:7443".parse().expect("addr");
        let msg = c.validate().expect_err("must refuse").to_string();
        assert!(msg.contains("loopback") && msg.contains("tls"), "{msg}");
        c.tls = Tls::Dev;
        assert!(c.validate().is_ok());
        c.listen = "[::1]:7443".parse().expect("addr");
        c.tls = Tls::Off;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn refuses_a_region_outside_policy() {
        let mut c = base();
        c.region = Region::parse("CN").expect("code");
        let msg = c.validate().expect_err("must refuse").to_string();
        assert!(
            msg.contains("R6") && msg.contains("residency.region"),
            "{msg}"
        );
    }

    #[test]
    fn privacy_shield_is_refused_with_an_explanation() {
        let err = parse_policy(&["GB".into(), "Privacy Shield".into()]).expect_err("refused");
        let msg = err.to_string();
        assert!(
            msg.contains("2020") && msg.contains("Data Privacy Framework"),
            "{msg}"
        );
    }

    #[test]
    fn file_values_apply_and_unknown_keys_are_named() {
        let f: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:9000\"\n[limits]\nrate_per_sec = 7\n[residency]\nregion = \"IE\"\n",
        )
        .expect("parses");
        let mut c = base();
        f.apply(&mut c).expect("applies");
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.rate_per_sec, 7);
        assert_eq!(c.region.as_str(), "IE");

        let err =
            toml::from_str::<FileConfig>("[limits]\nrate_per_second = 7\n").expect_err("typo");
        assert!(err.to_string().contains("rate_per_second"), "{err}");
    }

    #[test]
    fn printed_config_parses_back_to_the_same_settings() {
        let mut c = base();
        c.rate_burst = 55;
        c.tls = Tls::Dev;
        let text = c.to_toml();
        let mut d = base();
        toml::from_str::<FileConfig>(&text)
            .expect("parses")
            .apply(&mut d)
            .expect("applies");
        assert_eq!(d.rate_burst, 55);
        assert_eq!(d.tls, Tls::Dev);
        assert_eq!(d.policy, c.policy);
    }

    #[test]
    fn tls_needs_both_files() {
        assert!(tls_from(Some("c".into()), None, false, Tls::Off).is_err());
        assert!(tls_from(Some("c".into()), Some("k".into()), true, Tls::Off).is_err());
    }
}
