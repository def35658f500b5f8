//! Private, atomic, durable file writes.

use std::fs;
use std::io::{self, Write as _};
use std::path::Path;

use wardline_protocol::rng;

/// Replaces `path` with `bytes`: a temporary file (mode 0600) in the same
/// directory, fsync, rename over `path`, fsync the directory. A crash leaves
/// either the old file or the new one, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut tag = [0u8; 6];
    rng::fill(&mut tag);
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(super::FILE_NAME);
    let tmp = dir.join(format!(".{name}.{tag}.tmp"));
    let result = (|| {
        let mut f = create_private_file(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        // Best effort: the temporary file holds only sealed data.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` and its parents, mode 0700.
#[cfg(unix)]
pub(super) fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
pub(super) fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    // Makes the rename itself durable, not only the file's contents.
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Overwrites `path` in place with random bytes of the same length, syncs,
/// removes it, removes temporary files a crashed save may have left beside
/// it, and syncs the directory. A missing file is not an error.
pub(super) fn shred(path: &Path) -> io::Result<()> {
    match fs::OpenOptions::new().write(true).open(path) {
        Ok(mut f) => {
            let len = f.metadata()?.len();
            let mut remaining = usize::try_from(len).unwrap_or(usize::MAX);
            let mut noise = [0u8; 4096];
            while remaining > 0 {
                let n = remaining.min(noise.len());
                rng::fill(&mut noise[..n]);
                f.write_all(&noise[..n])?;
                remaining -= n;
            }
            f.sync_all()?;
            drop(f);
            fs::remove_file(path)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(super::FILE_NAME);
    let prefix = format!(".{name}.");
    for entry in fs::read_dir(dir)?.flatten() {
        let leftover = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".tmp"));
        if leftover {
            // Sealed data only, but the wipe leaves nothing of the keystore.
            let _ = fs::remove_file(entry.path());
        }
    }
    sync_dir(dir)
}
