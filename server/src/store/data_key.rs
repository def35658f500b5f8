//! The server data key: 32 random bytes in `<data-dir>/data.key` (mode 0600),
//! or base64 in the `WARDLINE_DATA_KEY` environment variable.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use zeroize::Zeroizing;

use super::StoreError;

/// Where the data key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKeySource {
    /// Created now, in the data directory.
    Created,
    /// Read from `data.key`.
    File,
    /// Given in the environment.
    Environment,
}

/// Loads the data key from `env_value` (base64) if given, else from
/// `<dir>/data.key`, creating it when `may_create` (a new data directory).
pub fn load_or_create_data_key(
    dir: &Path,
    env_value: Option<&str>,
    may_create: bool,
) -> Result<(Zeroizing<[u8; 32]>, DataKeySource), StoreError> {
    if let Some(text) = env_value {
        let bytes = Zeroizing::new(
            wardline_protocol::b64::decode(text.trim())
                .map_err(|_| StoreError::Io("WARDLINE_DATA_KEY is not base64".into()))?,
        );
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            StoreError::Io("WARDLINE_DATA_KEY must be 32 bytes, base64-encoded".into())
        })?;
        return Ok((Zeroizing::new(key), DataKeySource::Environment));
    }
    let path = dir.join("data.key");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let bytes = Zeroizing::new(bytes);
            let mode = std::fs::metadata(&path)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(StoreError::Io(format!(
                    "{} is readable by other users (mode {:o}); run `chmod 600` on it",
                    path.display(),
                    mode & 0o777
                )));
            }
            let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                StoreError::Io(format!("{} must hold exactly 32 bytes", path.display()))
            })?;
            Ok((Zeroizing::new(key), DataKeySource::File))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && may_create => {
            let mut key = Zeroizing::new([0u8; 32]);
            wardline_protocol::rng::fill(key.as_mut());
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(key.as_ref())?;
            f.sync_all()?;
            std::fs::File::open(dir)?.sync_all()?;
            Ok((key, DataKeySource::Created))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::Io(format!(
            "{} is missing but the data directory holds data: restore the key from backup \
             or set WARDLINE_DATA_KEY",
            path.display()
        ))),
        Err(e) => Err(StoreError::Io(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}
