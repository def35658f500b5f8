//! The device keystore: this device's secrets, session and message cache,
//! sealed at rest under the user's passphrase.
//!
//! One file, `<home>/keystore.json`:
//!
//! ```text
//! { "version": 1,
//!   "kdf":      { "algorithm": "argon2id", "m_cost_kib", "t_cost", "p_cost", "salt" },
//!   "data_key": { "nonce", "ciphertext" },   // random 32-byte key, AES-256-GCM under Argon2id(passphrase)
//!   "state":    { "nonce", "ciphertext" } }  // State as JSON, AES-256-GCM under the data key
//! ```
//!
//! The passphrase-derived key only wraps a random data key, so a save never
//! pays for Argon2 again, a passphrase change rewraps 32 bytes, and
//! destroying the wrapped key destroys everything (crypto-shredding on wipe).
//! The KDF parameters and salt are bound into the wrapped key's associated
//! data, so a change to any byte of the file stops it from opening.

mod contacts;
mod files;
mod state;

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead as _, KeyInit as _, Nonce, Payload};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use wardline_protocol::{Secret, b64, rng};
use zeroize::Zeroizing;

pub use contacts::{Contact, DeviceFlag, DeviceStanding, DeviceTrust, KeyChange};
use files::{create_private_dir, shred, write_atomic};
pub use state::{ConversationState, Registration, State, StoredMessage};

/// The keystore's file name inside the home directory.
pub const FILE_NAME: &str = "keystore.json";
const FORMAT_VERSION: u32 = 1;
const ALGORITHM: &str = "argon2id";
const DATA_KEY_AAD: &str = "wardline/keystore/v1/data-key";
const STATE_AAD: &[u8] = b"wardline/keystore/v1/state";

// Ceilings on parameters read from a file, so a damaged or hostile file
// cannot make the client allocate terabytes or spin for hours.
const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
const MAX_T_COST: u32 = 64;
const MAX_P_COST: u32 = 16;

/// Why the keystore could not be created, opened or saved.
#[derive(Debug, Error)]
pub enum KeystoreError {
    /// No keystore in this home directory.
    #[error(
        "there is no keystore in {}: enrol this device with `wardline enrol --code CODE` using the code from your administrator, or run `wardline login` if you already have an account",
        .0.display()
    )]
    NotFound(PathBuf),
    /// A keystore exists where a new one was to be created.
    #[error(
        "a keystore already exists at {}; use another --home, or move that file away if you mean to replace this device",
        .0.display()
    )]
    AlreadyExists(PathBuf),
    /// The passphrase does not open the keystore.
    #[error("wrong passphrase for the keystore at {}; nothing was changed", .0.display())]
    WrongPassphrase(PathBuf),
    /// The file is not a keystore this client can trust.
    #[error("the keystore at {} is damaged or has been tampered with ({why}); it cannot be used", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Which check failed.
        why: &'static str,
    },
    /// Reading or writing failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// Argon2id cost parameters for deriving the passphrase key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfCost {
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
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

    /// [`KdfCost::WORKSTATION`], or [`KdfCost::FAST_TEST_ONLY`] when the
    /// environment has `WARDLINE_KDF_FAST=1`.
    pub fn from_env() -> Self {
        match std::env::var("WARDLINE_KDF_FAST").as_deref() {
            Ok("1") => Self::FAST_TEST_ONLY,
            _ => Self::WORKSTATION,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeystoreFile {
    version: u32,
    kdf: Kdf,
    data_key: Sealed,
    state: Sealed,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kdf {
    algorithm: String,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    #[serde(with = "b64")]
    salt: [u8; 16],
}

impl Kdf {
    /// The wrapped data key's associated data: every KDF input but the passphrase.
    fn aad(&self) -> Vec<u8> {
        let mut aad = format!(
            "{DATA_KEY_AAD}\0{FORMAT_VERSION}\0{}\0{}\0{}\0{}\0",
            self.algorithm, self.m_cost_kib, self.t_cost, self.p_cost
        )
        .into_bytes();
        aad.extend_from_slice(&self.salt);
        aad
    }

    fn derive(
        &self,
        passphrase: &Secret,
        path: &Path,
    ) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
        let corrupt = |why| KeystoreError::Corrupt {
            path: path.to_owned(),
            why,
        };
        if self.algorithm != ALGORITHM {
            return Err(corrupt("unknown key derivation"));
        }
        if self.m_cost_kib > MAX_M_COST_KIB || self.t_cost > MAX_T_COST || self.p_cost > MAX_P_COST
        {
            return Err(corrupt("key derivation cost out of range"));
        }
        let params = Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|_| corrupt("invalid key derivation parameters"))?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase.expose().as_bytes(), &self.salt, key.as_mut())
            .map_err(|_| corrupt("key derivation failed"))?;
        Ok(key)
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    #[serde(with = "b64")]
    nonce: [u8; 12],
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

impl Sealed {
    fn seal(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Self {
        let mut nonce = [0u8; 12];
        rng::fill(&mut nonce);
        let ciphertext = Aes256Gcm::new_from_slice(key)
            .expect("a 32-byte key suits AES-256")
            .encrypt(
                &Nonce::<Aes256Gcm>::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM encrypts any in-memory buffer of this size");
        Self { nonce, ciphertext }
    }

    fn open(&self, key: &[u8; 32], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        Aes256Gcm::new_from_slice(key)
            .ok()?
            .decrypt(
                &Nonce::<Aes256Gcm>::from(self.nonce),
                Payload {
                    msg: &self.ciphertext,
                    aad,
                },
            )
            .ok()
            .map(Zeroizing::new)
    }
}

/// An open keystore: the decrypted state and the key to seal it again.
pub struct Keystore {
    path: PathBuf,
    kdf: Kdf,
    wrapped_data_key: Sealed,
    data_key: Zeroizing<[u8; 32]>,
    state: State,
}

impl fmt::Debug for Keystore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keystore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Keystore {
    /// Where the keystore of `home` lives.
    pub fn path_in(home: &Path) -> PathBuf {
        home.join(FILE_NAME)
    }

    /// Whether `home` holds a keystore.
    pub fn exists(home: &Path) -> bool {
        Self::path_in(home).exists()
    }

    /// Creates the home directory (mode 0700) if needed and checks that no
    /// keystore is there yet. Call before registering a device, so a device
    /// is never registered that could not be saved.
    pub fn prepare_home(home: &Path) -> Result<(), KeystoreError> {
        create_private_dir(home).map_err(|source| KeystoreError::Io {
            action: "create the directory",
            path: home.to_owned(),
            source,
        })?;
        let path = Self::path_in(home);
        if path.exists() {
            return Err(KeystoreError::AlreadyExists(path));
        }
        Ok(())
    }

    /// Creates a new keystore in `home` holding `state`, sealed under
    /// `passphrase` with the cost from [`KdfCost::from_env`].
    pub fn create(home: &Path, passphrase: &Secret, state: State) -> Result<Self, KeystoreError> {
        Self::create_with_cost(home, passphrase, state, KdfCost::from_env())
    }

    /// [`Keystore::create`] with an explicit KDF cost.
    pub fn create_with_cost(
        home: &Path,
        passphrase: &Secret,
        state: State,
        cost: KdfCost,
    ) -> Result<Self, KeystoreError> {
        Self::prepare_home(home)?;
        let path = Self::path_in(home);
        let mut kdf = Kdf {
            algorithm: ALGORITHM.to_owned(),
            m_cost_kib: cost.m_cost_kib,
            t_cost: cost.t_cost,
            p_cost: cost.p_cost,
            salt: [0; 16],
        };
        rng::fill(&mut kdf.salt);
        let mut data_key = Zeroizing::new([0u8; 32]);
        rng::fill(data_key.as_mut());
        let kek = kdf.derive(passphrase, &path)?;
        let wrapped_data_key = Sealed::seal(&kek, data_key.as_ref(), &kdf.aad());
        let keystore = Self {
            path,
            kdf,
            wrapped_data_key,
            data_key,
            state,
        };
        keystore.save()?;
        Ok(keystore)
    }

    /// Opens the keystore in `home`. Reads only: a failure changes nothing.
    pub fn open(home: &Path, passphrase: &Secret) -> Result<Self, KeystoreError> {
        let (path, file) = read_file(home)?;
        let kek = file.kdf.derive(passphrase, &path)?;
        let data_key_bytes = file
            .data_key
            .open(&kek, &file.kdf.aad())
            .ok_or_else(|| KeystoreError::WrongPassphrase(path.clone()))?;
        let mut data_key = Zeroizing::new([0u8; 32]);
        if data_key_bytes.len() != data_key.len() {
            return Err(corrupt(&path, "data key has the wrong length"));
        }
        data_key.copy_from_slice(&data_key_bytes);
        Self::unseal(path, file, data_key)
    }

    /// Opens the keystore in `home` with its data key as handed out by the
    /// unlock agent, skipping the passphrase. A key that does not open this
    /// keystore (it was replaced since) is reported as a wrong passphrase,
    /// so the caller falls back to asking.
    pub fn open_with_data_key(
        home: &Path,
        data_key: Zeroizing<[u8; 32]>,
    ) -> Result<Self, KeystoreError> {
        let (path, file) = read_file(home)?;
        if file.state.open(&data_key, STATE_AAD).is_none() {
            return Err(KeystoreError::WrongPassphrase(path));
        }
        Self::unseal(path, file, data_key)
    }

    fn unseal(
        path: PathBuf,
        file: KeystoreFile,
        data_key: Zeroizing<[u8; 32]>,
    ) -> Result<Self, KeystoreError> {
        let plaintext = file
            .state
            .open(&data_key, STATE_AAD)
            .ok_or_else(|| corrupt(&path, "state does not decrypt"))?;
        let state: State =
            serde_json::from_slice(&plaintext).map_err(|_| corrupt(&path, "state is not valid"))?;
        Ok(Self {
            path,
            kdf: file.kdf,
            wrapped_data_key: file.data_key,
            data_key,
            state,
        })
    }

    /// The data key, to hand to the unlock agent.
    pub(crate) fn data_key(&self) -> &Zeroizing<[u8; 32]> {
        &self.data_key
    }

    /// Destroys the keystore for a remote wipe (crypto-shredding): the file
    /// is overwritten in place with random bytes and synced, so the wrapped
    /// data key goes first and whatever of the file survives elsewhere on
    /// the disk is sealed under a key that no longer exists; then it and any
    /// leftover temporary files are removed. The keys in memory are zeroized
    /// as `self` is dropped.
    ///
    /// (On copy-on-write file systems and flash storage an overwrite may land
    /// on new blocks; the old ones then still hold only ciphertext sealed
    /// under the passphrase-derived key.)
    pub fn destroy(self) -> Result<(), KeystoreError> {
        let path = self.path.clone();
        drop(self);
        shred(&path).map_err(|source| KeystoreError::Io {
            action: "destroy",
            path: path.clone(),
            source,
        })
    }

    /// The file this keystore is stored in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The protected state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The protected state, for changes; [`Keystore::save`] makes them durable.
    pub fn state_mut(&mut self) -> &mut State {
        &mut self.state
    }

    /// Seals the state with a fresh nonce and replaces the file atomically.
    pub fn save(&self) -> Result<(), KeystoreError> {
        let plaintext = to_json_zeroizing(&self.state);
        let file = KeystoreFile {
            version: FORMAT_VERSION,
            kdf: self.kdf.clone(),
            data_key: self.wrapped_data_key.clone(),
            state: Sealed::seal(&self.data_key, &plaintext, STATE_AAD),
        };
        let mut bytes = serde_json::to_vec(&file).expect("keystore files always serialise");
        bytes.push(b'\n');
        write_atomic(&self.path, &bytes).map_err(|source| KeystoreError::Io {
            action: "write",
            path: self.path.clone(),
            source,
        })
    }
}

fn corrupt(path: &Path, why: &'static str) -> KeystoreError {
    KeystoreError::Corrupt {
        path: path.to_owned(),
        why,
    }
}

/// Reads and parses the keystore file of `home`, without opening anything.
fn read_file(home: &Path) -> Result<(PathBuf, KeystoreFile), KeystoreError> {
    let path = Keystore::path_in(home);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(KeystoreError::NotFound(home.to_owned()));
        }
        Err(source) => {
            return Err(KeystoreError::Io {
                action: "read",
                path,
                source,
            });
        }
    };
    let file: KeystoreFile =
        serde_json::from_slice(&bytes).map_err(|_| corrupt(&path, "not a keystore file"))?;
    if file.version != FORMAT_VERSION {
        return Err(corrupt(&path, "unknown format version"));
    }
    Ok((path, file))
}

/// Serialises into a buffer sized exactly in advance: a growing `Vec`
/// would leave unzeroized copies of the secrets in freed memory.
fn to_json_zeroizing<T: Serialize>(value: &T) -> Zeroizing<Vec<u8>> {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).expect("keystore state always serialises");
    let mut out = Zeroizing::new(Vec::with_capacity(count.0));
    serde_json::to_writer(&mut *out, value).expect("keystore state always serialises");
    out
}

/// The default home directory: `$XDG_DATA_HOME/wardline`, else
/// `$HOME/.local/share/wardline`.
pub fn default_home() -> Option<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(xdg).join("wardline"));
    }
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty())?;
    Some(PathBuf::from(home).join(".local/share/wardline"))
}

#[cfg(test)]
mod tests;
