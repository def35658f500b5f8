//! Data-key rotation: every sealed value is re-sealed under a new key into a
//! fresh store beside the old one, then the two are swapped. The server must
//! be stopped (sled's lock enforces it). An interrupted rotation leaves
//! marker paths that make the server refuse to start until an operator
//! finishes or undoes it (see docs/OPERATIONS.md).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use wardline_protocol::{UserId, Username};
use zeroize::Zeroizing;

use super::seal::Sealer;
use super::{Result, StoreError, load_or_create_data_key};

/// Paths an interrupted rotation leaves behind.
const LEFTOVERS: [&str; 4] = ["store.rekey", "store.old", "data.key.new", "data.key.old"];

/// Refuses to go on if a rotation was interrupted.
pub fn check_no_interrupted_rotation(dir: &Path) -> Result<()> {
    for name in LEFTOVERS {
        if dir.join(name).exists() {
            return Err(StoreError::Io(format!(
                "{} exists: a data-key rotation was interrupted; see docs/OPERATIONS.md, \
                 'Rotating the data key', to finish or undo it",
                dir.join(name).display()
            )));
        }
    }
    Ok(())
}

/// Sealed values are at least a nonce and a tag long; the few raw values
/// (counters, flags, empty index values) are shorter.
const MIN_SEALED: usize = 12 + 16;

/// Re-seals the store in `dir` under a fresh random key; returns nothing but
/// leaves `data.key` holding the new key. The old key comes from
/// `env_key` (base64) or `data.key`.
pub fn rotate(dir: &Path, env_key: Option<&str>) -> Result<()> {
    check_no_interrupted_rotation(dir)?;
    if env_key.is_some() {
        return Err(StoreError::Io(
            "rotation writes the new key to data.key; with WARDLINE_DATA_KEY set, put the \
             current key in data.key (mode 0600), unset the variable, rotate, then move the \
             new key into your secret store"
                .into(),
        ));
    }
    let (old_key, _) = load_or_create_data_key(dir, None, false)?;
    let mut new_key = Zeroizing::new([0u8; 32]);
    wardline_protocol::rng::fill(new_key.as_mut());
    let old = Sealer::new(&old_key);
    let new = Sealer::new(&new_key);

    let src = sled::open(dir.join("store"))?;
    let check = src.open_tree("meta")?.get(b"key_check")?;
    if check.is_none_or(|v| old.open("meta", b"key_check", &v).is_err()) {
        return Err(StoreError::WrongKey);
    }
    let dst = sled::open(dir.join("store.rekey"))?;
    let users = src.open_tree("users")?;
    for name in src.tree_names() {
        let tree_name = String::from_utf8_lossy(&name).to_string();
        let from = src.open_tree(&name)?;
        let to = dst.open_tree(&name)?;
        for kv in from.iter() {
            let (k, v) = kv?;
            if tree_name == "usernames" {
                // The key is a keyed hash under the old key: recompute it.
                let id = old.open("usernames", &k, &v)?;
                let id = String::from_utf8(id).map_err(|_| StoreError::Corrupt("user id"))?;
                let uid = UserId::parse(id.clone()).map_err(|_| StoreError::Corrupt("user id"))?;
                let record = users
                    .get(uid.as_str())?
                    .ok_or(StoreError::Corrupt("username index names a missing user"))?;
                let plain = old.open("users", uid.as_str().as_bytes(), &record)?;
                let user: serde_json::Value = serde_json::from_slice(&plain)
                    .map_err(|_| StoreError::Corrupt("user record"))?;
                let username = user["username"]
                    .as_str()
                    .and_then(|u| Username::parse(u).ok())
                    .ok_or(StoreError::Corrupt("user record"))?;
                let idx = new.index_key("username", username.as_str());
                to.insert(&idx, new.seal("usernames", &idx, id.as_bytes()))?;
            } else if tree_name == "meta" && k.as_ref() == b"audit_checkpoint" {
                // The audit key derives from the data key: re-sign the
                // checkpoint so it verifies under the new audit key.
                let plain = Zeroizing::new(old.open("meta", &k, &v)?);
                let mut cp: wardline_protocol::audit::Checkpoint =
                    serde_json::from_slice(&plain)
                        .map_err(|_| StoreError::Corrupt("audit checkpoint"))?;
                let input = wardline_protocol::audit::checkpoint_input(
                    cp.first_seq,
                    &cp.chain_start,
                    &cp.time,
                );
                cp.sig = wardline_protocol::b64::encode(new.audit_signing_key().sign(&input));
                let plain = serde_json::to_vec(&cp).expect("checkpoints serialise");
                to.insert(&k, new.seal("meta", &k, &plain))?;
            } else if v.len() < MIN_SEALED {
                to.insert(k, v)?;
            } else {
                let plain = Zeroizing::new(old.open(&tree_name, &k, &v)?);
                to.insert(&k, new.seal(&tree_name, &k, &plain))?;
            }
        }
    }
    dst.flush()?;
    std::fs::File::open(dir.join("store.rekey").join("db"))?.sync_all()?;
    drop(dst);
    drop(src);

    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join("data.key.new"))?;
    f.write_all(new_key.as_ref())?;
    f.sync_all()?;
    let sync_dir = || std::fs::File::open(dir).and_then(|d| d.sync_all());
    sync_dir()?;
    // Each step is one atomic rename; a crash between steps leaves a marker
    // that stops the server from starting on a half-rotated directory.
    std::fs::rename(dir.join("data.key"), dir.join("data.key.old"))?;
    std::fs::rename(dir.join("data.key.new"), dir.join("data.key"))?;
    std::fs::rename(dir.join("store"), dir.join("store.old"))?;
    std::fs::rename(dir.join("store.rekey"), dir.join("store"))?;
    sync_dir()?;
    std::fs::remove_dir_all(dir.join("store.old"))?;
    std::fs::remove_file(dir.join("data.key.old"))?;
    sync_dir()?;
    Ok(())
}
