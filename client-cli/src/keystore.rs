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
//! pays for Argon2 again, and destroying the wrapped key destroys everything
//! (crypto-shredding on wipe).
//! The KDF parameters and salt are bound into the wrapped key's associated
//! data, so a change to any byte of the file stops it from opening. They
//! are read before anything is authenticated, so their cost is capped
//! ([`KdfLimits`]) before anything is derived. [`open_bytes`] is the whole
//! path from a file's bytes to its state, shared with [`Keystore::open`]
//! and fuzzed (`fuzz/fuzz_targets/keystore_file.rs`).
//!
//! [`Keystore::change_passphrase`] seals the keystore under a new passphrase
//! with a fresh salt and a fresh data key, so neither an old copy of the
//! file nor a data key the unlock agent still holds opens the new one. A
//! save refuses to replace a file sealed differently from the one it
//! opened, so a command that was running meanwhile (a chat) cannot put the
//! old passphrase back.

mod contacts;
mod files;
mod kdf;
mod state;

use std::fmt;
use std::fs;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead as _, KeyInit as _, Nonce, Payload};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use wardline_protocol::{Secret, b64, rng};
use zeroize::Zeroizing;

pub use contacts::{
    Contact, DeviceFlag, DeviceStanding, DeviceTrust, KeyChange, PinnedMatch, Reading,
    ReplacedKeys, SigningKey,
};
pub(crate) use files::write_atomic;
use files::{create_private_dir, overwrite, remove_leftovers, shred, stage};
use kdf::Kdf;
pub use kdf::{KdfCost, KdfLimits};
pub use state::{ConversationState, Registration, State, StoredMessage};

/// The keystore's file name inside the home directory.
pub const FILE_NAME: &str = "keystore.json";
const FORMAT_VERSION: u32 = 1;
const STATE_AAD: &[u8] = b"wardline/keystore/v1/state";

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
    /// The file asks for a key derivation costlier than this client allows
    /// (see [`KdfLimits`]): it was not made by `wardline`, or was altered to
    /// make opening it take minutes or gigabytes.
    #[error(
        "the keystore at {} asks for a key derivation costlier than this client allows ({} MiB, {t_cost} passes, {p_cost} lanes); it was not made by wardline or has been tampered with, and was not opened",
        path.display(), m_cost_kib / 1024
    )]
    KdfTooCostly {
        /// The file.
        path: PathBuf,
        /// Memory asked for, KiB.
        m_cost_kib: u32,
        /// Passes asked for.
        t_cost: u32,
        /// Lanes asked for.
        p_cost: u32,
    },
    /// Another command replaced the file since this one opened it: sealed
    /// it under a new passphrase (a save would undo that), or saved it
    /// while this one was changing the passphrase. This one's changes were
    /// not saved.
    #[error(
        "the keystore at {} was replaced by another wardline command while this one was using it (its passphrase was changed, or it was saved at the same moment), so this command's changes to it were not saved; try again with no other wardline command (such as a chat) running",
        .0.display()
    )]
    Changed(PathBuf),
    /// The passphrase was changed, but the replaced file could not be
    /// overwritten or a leftover temporary file removed.
    #[error(
        "the keystore at {} is now sealed under the new passphrase, but its old copy could not be destroyed ({source}); what is left of it on the disk still opens with the old passphrase",
        path.display()
    )]
    OldCopyRemains {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
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

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeystoreFile {
    version: u32,
    kdf: Kdf,
    data_key: Sealed,
    state: Sealed,
}

/// What seals a keystore file's data key: enough to tell whether a file was
/// sealed again (under a new passphrase) since it was opened, without
/// decoding its state.
#[derive(Deserialize)]
struct Wrapping {
    kdf: Kdf,
    data_key: Sealed,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
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
        let kdf = Kdf::new(cost);
        let mut data_key = Zeroizing::new([0u8; 32]);
        rng::fill(data_key.as_mut());
        let kek = kdf.derive(passphrase, &path, &KdfLimits::DEFAULT)?;
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
        let (path, bytes) = read_file(home)?;
        let opened = Opened::from_bytes(&path, &bytes, passphrase, &KdfLimits::DEFAULT)?;
        Ok(opened.at(path))
    }

    /// Opens the keystore in `home` with its data key as handed out by the
    /// unlock agent, skipping the passphrase. A key that does not open this
    /// keystore (it was replaced since) is reported as a wrong passphrase,
    /// so the caller falls back to asking.
    pub fn open_with_data_key(
        home: &Path,
        data_key: Zeroizing<[u8; 32]>,
    ) -> Result<Self, KeystoreError> {
        let (path, bytes) = read_file(home)?;
        let file = parse(&path, &bytes)?;
        if file.state.open(&data_key, STATE_AAD).is_none() {
            return Err(KeystoreError::WrongPassphrase(path));
        }
        Ok(Opened::unseal(&path, file, data_key)?.at(path))
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
    /// Refused ([`KeystoreError::Changed`]) when the file was sealed again
    /// since this keystore was opened (`wardline passphrase` in another
    /// terminal): saving would put the old passphrase back.
    pub fn save(&self) -> Result<(), KeystoreError> {
        let bytes = file_bytes(
            &self.kdf,
            &self.wrapped_data_key,
            &self.data_key,
            &self.state,
        );
        let staged = stage(&self.path, &bytes).map_err(|source| self.io("write", source))?;
        // Checked after the slow part, just before the rename.
        self.check_still_sealed_as_opened()?;
        staged.commit().map_err(|source| self.io("write", source))
    }

    /// Seals the keystore under `new_passphrase` instead, with a fresh salt
    /// and the cost from [`KdfCost::from_env`] (as enrolment does), and a
    /// fresh data key. See [`Keystore::change_passphrase_with_cost`].
    pub fn change_passphrase(&mut self, new_passphrase: &Secret) -> Result<(), KeystoreError> {
        self.change_passphrase_with_cost(new_passphrase, KdfCost::from_env())
    }

    /// [`Keystore::change_passphrase`] with an explicit KDF cost.
    ///
    /// The state sealed is the one in the file now (another command may
    /// have saved since this keystore was opened; unsaved changes in memory
    /// are dropped), provided the file is still sealed as when it was
    /// opened. The new file is written beside the old one and synced, then
    /// renamed over it and the directory synced: a crash leaves either the
    /// old keystore or the new one. Only then are the old copies destroyed:
    /// the replaced file's blocks are overwritten through a handle held
    /// open (as a wipe does; on copy-on-write file systems and flash storage
    /// the old blocks may survive), and temporary files of earlier saves
    /// are removed.
    ///
    /// Errors: [`KeystoreError::Changed`] when the file was sealed again
    /// by another command, or another command's save landed just after
    /// this one (the old passphrase then still applies);
    /// [`KeystoreError::OldCopyRemains`] when the new passphrase is in
    /// force but an old copy could not be destroyed.
    pub fn change_passphrase_with_cost(
        &mut self,
        new_passphrase: &Secret,
        cost: KdfCost,
    ) -> Result<(), KeystoreError> {
        // The slow part first, so the file is read as late as possible.
        let kdf = Kdf::new(cost);
        let kek = kdf.derive(new_passphrase, &self.path, &KdfLimits::DEFAULT)?;
        let mut data_key = Zeroizing::new([0u8; 32]);
        rng::fill(data_key.as_mut());
        let wrapped_data_key = Sealed::seal(&kek, data_key.as_ref(), &kdf.aad());
        drop(kek);

        // The file as it is now, held open so that its blocks can be
        // overwritten once it has been replaced.
        let mut old = match fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let home = self.path.parent().unwrap_or(&self.path).to_owned();
                return Err(KeystoreError::NotFound(home));
            }
            Err(source) => return Err(self.io("open", source)),
        };
        let mut old_bytes = Vec::new();
        old.read_to_end(&mut old_bytes)
            .map_err(|source| self.io("read", source))?;
        let file = parse(&self.path, &old_bytes)?;
        if !self.sealed_as(&file.kdf, &file.data_key) {
            return Err(KeystoreError::Changed(self.path.clone()));
        }
        self.state = Opened::unseal(&self.path, file, self.data_key.clone())?.state;

        let new_bytes = file_bytes(&kdf, &wrapped_data_key, &data_key, &self.state);
        let staged = stage(&self.path, &new_bytes).map_err(|source| self.io("write", source))?;
        // Every save renames a new file in: the same bytes mean no save
        // came in between.
        if self.read_now()?.as_deref() != Some(old_bytes.as_slice()) {
            return Err(KeystoreError::Changed(self.path.clone()));
        }
        staged.commit().map_err(|source| self.io("write", source))?;
        // The new passphrase is in force.
        self.kdf = kdf;
        self.wrapped_data_key = wrapped_data_key;
        self.data_key = data_key;

        let destroyed = overwrite(&mut old).and_then(|()| remove_leftovers(&self.path));
        drop(old);
        // A save that checked the file just before the rename and renamed
        // its own just after it would have put the old sealing back. (Its
        // temporary file, if not yet renamed, was removed above, so its
        // rename fails instead.)
        if self.read_now()?.as_deref() != Some(new_bytes.as_slice()) {
            return Err(KeystoreError::Changed(self.path.clone()));
        }
        destroyed.map_err(|source| KeystoreError::OldCopyRemains {
            path: self.path.clone(),
            source,
        })
    }

    /// Whether the data key of this keystore is wrapped as in `kdf` and
    /// `data_key` (as read from a file).
    fn sealed_as(&self, kdf: &Kdf, data_key: &Sealed) -> bool {
        self.kdf == *kdf && self.wrapped_data_key == *data_key
    }

    /// Refuses when the file on disk is a keystore sealed differently from
    /// this one. A missing file (a keystore being created) or one that is
    /// not a keystore at all is replaced, as before.
    fn check_still_sealed_as_opened(&self) -> Result<(), KeystoreError> {
        let Some(bytes) = self.read_now()? else {
            return Ok(());
        };
        match serde_json::from_slice::<Wrapping>(&bytes) {
            Ok(w) if !self.sealed_as(&w.kdf, &w.data_key) => {
                Err(KeystoreError::Changed(self.path.clone()))
            }
            _ => Ok(()),
        }
    }

    /// The file's bytes now, or `None` if there is no file.
    fn read_now(&self) -> Result<Option<Vec<u8>>, KeystoreError> {
        match fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(self.io("read", source)),
        }
    }

    fn io(&self, action: &'static str, source: io::Error) -> KeystoreError {
        KeystoreError::Io {
            action,
            path: self.path.clone(),
            source,
        }
    }
}

/// A keystore file: `state` sealed with a fresh nonce under `data_key`,
/// which `wrapped_data_key` holds sealed under the key `kdf` derives.
fn file_bytes(kdf: &Kdf, wrapped_data_key: &Sealed, data_key: &[u8; 32], state: &State) -> Vec<u8> {
    let plaintext = to_json_zeroizing(state);
    let file = KeystoreFile {
        version: FORMAT_VERSION,
        kdf: kdf.clone(),
        data_key: wrapped_data_key.clone(),
        state: Sealed::seal(data_key, &plaintext, STATE_AAD),
    };
    let mut bytes = serde_json::to_vec(&file).expect("keystore files always serialise");
    bytes.push(b'\n');
    bytes
}

fn corrupt(path: &Path, why: &'static str) -> KeystoreError {
    KeystoreError::Corrupt {
        path: path.to_owned(),
        why,
    }
}

/// Reads the keystore file of `home`.
fn read_file(home: &Path) -> Result<(PathBuf, Vec<u8>), KeystoreError> {
    let path = Keystore::path_in(home);
    match fs::read(&path) {
        Ok(bytes) => Ok((path, bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(KeystoreError::NotFound(home.to_owned()))
        }
        Err(source) => Err(KeystoreError::Io {
            action: "read",
            path,
            source,
        }),
    }
}

/// Parses a keystore file without opening anything; `path` only names it
/// in errors.
fn parse(path: &Path, bytes: &[u8]) -> Result<KeystoreFile, KeystoreError> {
    let file: KeystoreFile =
        serde_json::from_slice(bytes).map_err(|_| corrupt(path, "not a keystore file"))?;
    if file.version != FORMAT_VERSION {
        return Err(corrupt(path, "unknown format version"));
    }
    Ok(file)
}

/// A keystore file opened in memory, not yet tied to where it is saved.
struct Opened {
    kdf: Kdf,
    wrapped_data_key: Sealed,
    data_key: Zeroizing<[u8; 32]>,
    state: State,
}

impl Opened {
    /// Parses `bytes` as a keystore file and opens it with `passphrase`:
    /// the whole path from untrusted bytes to a state, shared by
    /// [`Keystore::open`] and [`open_bytes`] (and so by the fuzz target).
    fn from_bytes(
        path: &Path,
        bytes: &[u8],
        passphrase: &Secret,
        limits: &KdfLimits,
    ) -> Result<Self, KeystoreError> {
        let file = parse(path, bytes)?;
        let kek = file.kdf.derive(passphrase, path, limits)?;
        let data_key_bytes = file
            .data_key
            .open(&kek, &file.kdf.aad())
            .ok_or_else(|| KeystoreError::WrongPassphrase(path.to_owned()))?;
        let mut data_key = Zeroizing::new([0u8; 32]);
        if data_key_bytes.len() != data_key.len() {
            return Err(corrupt(path, "data key has the wrong length"));
        }
        data_key.copy_from_slice(&data_key_bytes);
        Self::unseal(path, file, data_key)
    }

    fn unseal(
        path: &Path,
        file: KeystoreFile,
        data_key: Zeroizing<[u8; 32]>,
    ) -> Result<Self, KeystoreError> {
        let plaintext = file
            .state
            .open(&data_key, STATE_AAD)
            .ok_or_else(|| corrupt(path, "state does not decrypt"))?;
        let state: State =
            serde_json::from_slice(&plaintext).map_err(|_| corrupt(path, "state is not valid"))?;
        Ok(Self {
            kdf: file.kdf,
            wrapped_data_key: file.data_key,
            data_key,
            state,
        })
    }

    fn at(self, path: PathBuf) -> Keystore {
        Keystore {
            path,
            kdf: self.kdf,
            wrapped_data_key: self.wrapped_data_key,
            data_key: self.data_key,
            state: self.state,
        }
    }
}

/// Opens the bytes of a keystore file with `passphrase`, refusing key
/// derivations costlier than `limits`, and returns what it protects. The
/// same code as [`Keystore::open`], without a file: for checking a file
/// from elsewhere, and for fuzzing the parser.
pub fn open_bytes(
    bytes: &[u8],
    passphrase: &Secret,
    limits: &KdfLimits,
) -> Result<State, KeystoreError> {
    Opened::from_bytes(Path::new(FILE_NAME), bytes, passphrase, limits).map(|o| o.state)
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
