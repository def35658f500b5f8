//! Device key pairs: X25519 for HPKE key wrapping, Ed25519 for signatures.
//!
//! Secrets are zeroized when dropped and never printed; public keys compare
//! in constant time.

use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::b64;

/// Why a public key or signature could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The bytes are not a valid Ed25519 public key.
    #[error("not a valid Ed25519 public key")]
    InvalidSigningKey,
    /// The signature does not verify under the key.
    #[error("signature does not verify")]
    BadSignature,
}

macro_rules! public_key {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(#[serde(with = "b64")] [u8; 32]);

        impl $name {
            /// Wraps 32 raw bytes.
            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.ct_eq(&other.0).into()
            }
        }
        impl Eq for $name {}

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), b64::encode(self.0))
            }
        }
    };
}

public_key!(
    /// A device's X25519 public key, to which content keys are wrapped.
    KemPublicKey
);
public_key!(
    /// A device's Ed25519 public key, which verifies what the device signs.
    SigPublicKey
);

impl SigPublicKey {
    /// True if the bytes are a valid Ed25519 public key (a curve point).
    pub fn is_valid(&self) -> bool {
        VerifyingKey::from_bytes(&self.0).is_ok()
    }

    /// Verifies an Ed25519 signature strictly (RFC 8032, no malleable forms).
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> Result<(), KeyError> {
        let vk = VerifyingKey::from_bytes(&self.0).map_err(|_| KeyError::InvalidSigningKey)?;
        let sig = ed25519_dalek::Signature::from_bytes(sig);
        vk.verify_strict(msg, &sig)
            .map_err(|_| KeyError::BadSignature)
    }
}

/// The public half of a device: what the directory publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePublicKeys {
    /// X25519 key for HPKE.
    pub kem_pk: KemPublicKey,
    /// Ed25519 key for signatures.
    pub sig_pk: SigPublicKey,
}

impl DevicePublicKeys {
    /// A short, stable fingerprint of both keys, for people to compare:
    /// SHA-256 over a label and the two keys, as 16 groups of 4 hex digits.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"wardline/v1/fingerprint");
        h.update(self.kem_pk.as_bytes());
        h.update(self.sig_pk.as_bytes());
        let digest = h.finalize();
        digest
            .chunks(2)
            .map(|c| format!("{:02x}{:02x}", c[0], c[1]))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A device's secret keys. Zeroized on drop; `Debug` shows only the public keys.
pub struct DeviceSecrets {
    kem_sk: Zeroizing<[u8; 32]>,
    sig_sk: SigningKey,
}

impl DeviceSecrets {
    /// Fresh key pairs from the operating system's generator.
    pub fn generate() -> Self {
        Self::generate_with_rng(&mut crate::rng::system())
    }

    /// Fresh key pairs from `rng` (deterministic in tests).
    pub fn generate_with_rng(rng: &mut impl CryptoRng) -> Self {
        let mut kem = Zeroizing::new([0u8; 32]);
        let mut sig = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(kem.as_mut());
        rng.fill_bytes(sig.as_mut());
        Self::from_bytes(&kem, &sig)
    }

    /// Rebuilds the secrets from their raw 32-byte forms (from a keystore).
    pub fn from_bytes(kem_sk: &[u8; 32], sig_sk: &[u8; 32]) -> Self {
        Self {
            kem_sk: Zeroizing::new(*kem_sk),
            sig_sk: SigningKey::from_bytes(sig_sk),
        }
    }

    /// The raw X25519 secret, for sealing into a keystore.
    pub fn kem_secret_bytes(&self) -> &[u8; 32] {
        &self.kem_sk
    }

    /// The raw Ed25519 secret, for sealing into a keystore.
    pub fn sig_secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.sig_sk.to_bytes())
    }

    /// The matching public keys.
    pub fn public(&self) -> DevicePublicKeys {
        let kem_pk = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*self.kem_sk));
        DevicePublicKeys {
            kem_pk: KemPublicKey(kem_pk.to_bytes()),
            sig_pk: SigPublicKey(self.sig_sk.verifying_key().to_bytes()),
        }
    }

    /// Signs `msg` with the device's Ed25519 key.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.sig_sk.sign(msg).to_bytes()
    }
}

impl fmt::Debug for DeviceSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceSecrets")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secret_bytes() {
        let s = DeviceSecrets::from_bytes(&[7; 32], &[9; 32]);
        let dbg = format!("{s:?}");
        assert!(!dbg.contains(&b64::encode([7u8; 32])));
        assert!(!dbg.contains(&b64::encode([9u8; 32])));
    }

    #[test]
    fn signatures_verify_only_under_the_signer() {
        let a = DeviceSecrets::generate();
        let b = DeviceSecrets::generate();
        let sig = a.sign(b"hello");
        assert!(a.public().sig_pk.verify(b"hello", &sig).is_ok());
        assert_eq!(
            b.public().sig_pk.verify(b"hello", &sig),
            Err(KeyError::BadSignature)
        );
        assert!(a.public().sig_pk.verify(b"hellp", &sig).is_err());
    }

    #[test]
    fn fingerprint_is_stable_and_key_dependent() {
        let a = DeviceSecrets::from_bytes(&[1; 32], &[2; 32]).public();
        let b = DeviceSecrets::from_bytes(&[1; 32], &[3; 32]).public();
        assert_eq!(a.fingerprint(), a.fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 16 * 4 + 15);
    }
}
