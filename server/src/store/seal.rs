//! Encryption at rest: every stored value is sealed with AES-256-GCM under
//! the server's data key, bound to the tree and key it is stored under, so a
//! value cannot be moved to another key unnoticed.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead as _, KeyInit as _, Nonce, Payload};
use ring::hmac;
use zeroize::Zeroizing;

use super::StoreError;

/// The server's data key and the keys derived from it.
pub struct Sealer {
    cipher: Aes256Gcm,
    index: hmac::Key,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

impl Sealer {
    /// Builds the sealer from the 32-byte data key.
    pub fn new(data_key: &Zeroizing<[u8; 32]>) -> Self {
        // Separate keys for sealing and for the lookup index, so that neither
        // use can leak anything about the other.
        let root = hmac::Key::new(hmac::HMAC_SHA256, data_key.as_ref());
        let seal_key = Zeroizing::new(hmac::sign(&root, b"wardline/store/seal").as_ref().to_vec());
        let index_key =
            Zeroizing::new(hmac::sign(&root, b"wardline/store/index").as_ref().to_vec());
        Self {
            cipher: Aes256Gcm::new_from_slice(&seal_key).expect("HMAC-SHA256 output is 32 bytes"),
            index: hmac::Key::new(hmac::HMAC_SHA256, &index_key),
        }
    }

    /// Seals `plain` for storage under (`tree`, `key`): nonce ‖ ciphertext.
    pub fn seal(&self, tree: &str, key: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        wardline_protocol::rng::fill(&mut nonce);
        let aad = aad(tree, key);
        let ct = self
            .cipher
            .encrypt(
                &Nonce::<Aes256Gcm>::from(nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .expect("AES-GCM sealing of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens a value sealed by [`Sealer::seal`] under the same tree and key.
    pub fn open(&self, tree: &str, key: &[u8], sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        if sealed.len() < 12 + 16 {
            return Err(StoreError::Corrupt("sealed value too short"));
        }
        let (nonce, ct) = sealed.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().expect("split at 12");
        let aad = aad(tree, key);
        self.cipher
            .decrypt(
                &Nonce::<Aes256Gcm>::from(nonce),
                Payload { msg: ct, aad: &aad },
            )
            .map_err(|_| StoreError::Corrupt("a stored value does not decrypt under the data key"))
    }

    /// The server's audit signing key, derived from the data key so that
    /// it needs no storage of its own.
    pub fn audit_signing_key(&self) -> wardline_protocol::DeviceSecrets {
        let k = Zeroizing::new(
            hmac::sign(&self.index, b"wardline/audit-signing")
                .as_ref()
                .to_vec(),
        );
        let bytes: [u8; 32] = k
            .as_slice()
            .try_into()
            .expect("HMAC-SHA256 output is 32 bytes");
        wardline_protocol::DeviceSecrets::from_bytes(&bytes, &bytes)
    }

    /// A keyed hash for looking values up without storing them (usernames).
    pub fn index_key(&self, label: &str, value: &str) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.index);
        ctx.update(label.as_bytes());
        ctx.update(&[0]);
        ctx.update(value.as_bytes());
        ctx.sign().as_ref().to_vec()
    }
}

fn aad(tree: &str, key: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(tree.len() + key.len() + 1);
    a.extend_from_slice(tree.as_bytes());
    a.push(0);
    a.extend_from_slice(key);
    a
}
