//! The passphrase key derivation: Argon2id with cost parameters stored in
//! the keystore file, and ceilings on what a file may ask for.
//!
//! The parameters are read from the file before anything is authenticated,
//! so they are attacker-controlled for anyone who can write the file (or
//! hand someone a keystore). Argon2's memory and time scale with them;
//! without a ceiling a hostile file could make the client allocate
//! gigabytes or spin for minutes before failing. [`KdfLimits`] refuses such
//! a file with a typed error before deriving anything.

use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use wardline_protocol::{Secret, b64};
use zeroize::Zeroizing;

use super::{FORMAT_VERSION, KeystoreError, corrupt};

pub(super) const ALGORITHM: &str = "argon2id";
const DATA_KEY_AAD: &str = "wardline/keystore/v1/data-key";

/// Argon2id cost parameters for deriving the passphrase key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfCost {
    pub(super) m_cost_kib: u32,
    pub(super) t_cost: u32,
    pub(super) p_cost: u32,
}

impl KdfCost {
    /// For a workstation: 64 MiB, 3 passes, 1 lane (under a second).
    pub const WORKSTATION: KdfCost = KdfCost {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };

    /// TEST ONLY: 8 MiB, 1 pass. Selected by `WARDLINE_KDF_FAST=1` so that
    /// end-to-end tests, which create many keystores, finish quickly. Never
    /// set it for real use: it makes guessing the passphrase of a stolen
    /// keystore file much cheaper.
    pub const FAST_TEST_ONLY: KdfCost = KdfCost {
        m_cost_kib: 8 * 1024,
        t_cost: 1,
        p_cost: 1,
    };

    /// Any cost, for tests and fuzzing seeds (a keystore that opens in
    /// microseconds). Argon2 itself refuses nonsense (fewer than 8 KiB per
    /// lane, no passes) when the keystore is created.
    pub const fn custom(m_cost_kib: u32, t_cost: u32, p_cost: u32) -> Self {
        Self {
            m_cost_kib,
            t_cost,
            p_cost,
        }
    }

    /// [`KdfCost::WORKSTATION`], or [`KdfCost::FAST_TEST_ONLY`] when the
    /// environment has `WARDLINE_KDF_FAST=1`.
    pub fn from_env() -> Self {
        match std::env::var("WARDLINE_KDF_FAST").as_deref() {
            Ok("1") => Self::FAST_TEST_ONLY,
            _ => Self::WORKSTATION,
        }
    }
}

/// The costliest key derivation a keystore file may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfLimits {
    max_m_cost_kib: u32,
    max_t_cost: u32,
    max_p_cost: u32,
    /// Memory times passes, in KiB: what the time taken is proportional to.
    max_work_kib: u64,
}

impl KdfLimits {
    /// What `wardline` accepts: up to 512 MiB, 8 passes, 4 lanes, and at
    /// most 1 GiB of memory-passes in all (a couple of seconds on a
    /// workstation), which leaves room for costs 8 times today's default.
    pub const DEFAULT: KdfLimits = KdfLimits {
        max_m_cost_kib: 512 * 1024,
        max_t_cost: 8,
        max_p_cost: 4,
        max_work_kib: 1024 * 1024,
    };

    /// Ceilings of `max_m_cost_kib` KiB, `max_t_cost` passes and
    /// `max_p_cost` lanes (their product bounds the work). A fuzz target
    /// uses tiny ones, so that no input can make a run slow.
    pub const fn new(max_m_cost_kib: u32, max_t_cost: u32, max_p_cost: u32) -> Self {
        Self {
            max_m_cost_kib,
            max_t_cost,
            max_p_cost,
            max_work_kib: max_m_cost_kib as u64 * max_t_cost as u64,
        }
    }

    fn allows(&self, m_cost_kib: u32, t_cost: u32, p_cost: u32) -> bool {
        m_cost_kib <= self.max_m_cost_kib
            && t_cost <= self.max_t_cost
            && p_cost <= self.max_p_cost
            && u64::from(m_cost_kib) * u64::from(t_cost) <= self.max_work_kib
    }
}

/// The `kdf` object of a keystore file.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Kdf {
    pub(super) algorithm: String,
    pub(super) m_cost_kib: u32,
    pub(super) t_cost: u32,
    pub(super) p_cost: u32,
    #[serde(with = "b64")]
    pub(super) salt: [u8; 16],
}

impl Kdf {
    /// Fresh parameters with a random salt.
    pub(super) fn new(cost: KdfCost) -> Self {
        let mut salt = [0u8; 16];
        wardline_protocol::rng::fill(&mut salt);
        Self {
            algorithm: ALGORITHM.to_owned(),
            m_cost_kib: cost.m_cost_kib,
            t_cost: cost.t_cost,
            p_cost: cost.p_cost,
            salt,
        }
    }

    /// The wrapped data key's associated data: every KDF input but the passphrase.
    pub(super) fn aad(&self) -> Vec<u8> {
        let mut aad = format!(
            "{DATA_KEY_AAD}\0{FORMAT_VERSION}\0{}\0{}\0{}\0{}\0",
            self.algorithm, self.m_cost_kib, self.t_cost, self.p_cost
        )
        .into_bytes();
        aad.extend_from_slice(&self.salt);
        aad
    }

    /// Derives the key that wraps the data key, after checking the
    /// parameters against `limits` (before any memory is allocated).
    pub(super) fn derive(
        &self,
        passphrase: &Secret,
        path: &Path,
        limits: &KdfLimits,
    ) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
        if self.algorithm != ALGORITHM {
            return Err(corrupt(path, "unknown key derivation"));
        }
        if !limits.allows(self.m_cost_kib, self.t_cost, self.p_cost) {
            return Err(KeystoreError::KdfTooCostly {
                path: path.to_owned(),
                m_cost_kib: self.m_cost_kib,
                t_cost: self.t_cost,
                p_cost: self.p_cost,
            });
        }
        let params = Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|_| corrupt(path, "invalid key derivation parameters"))?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase.expose().as_bytes(), &self.salt, key.as_mut())
            .map_err(|_| corrupt(path, "key derivation failed"))?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limits_allow_every_cost_this_client_creates() {
        for c in [KdfCost::WORKSTATION, KdfCost::FAST_TEST_ONLY] {
            assert!(KdfLimits::DEFAULT.allows(c.m_cost_kib, c.t_cost, c.p_cost));
        }
    }

    #[test]
    fn limits_bound_memory_passes_lanes_and_their_product() {
        let l = KdfLimits::DEFAULT;
        assert!(!l.allows(u32::MAX, 1, 1));
        assert!(!l.allows(8, u32::MAX, 1));
        assert!(!l.allows(8, 1, u32::MAX));
        // Each within its own ceiling, but together minutes of work.
        assert!(!l.allows(512 * 1024, 8, 1));
        let tiny = KdfLimits::new(64, 1, 1);
        assert!(tiny.allows(64, 1, 1));
        assert!(!tiny.allows(65, 1, 1));
    }
}
