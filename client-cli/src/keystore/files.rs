//! Private, atomic, durable file writes.

use std::fs;
use std::io::{self, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use wardline_protocol::rng;

/// Replaces `path` with `bytes`: a temporary file (mode 0600) in the same
/// directory, fsync, rename over `path`, fsync the directory. A crash leaves
/// either the old file or the new one, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    stage(path, bytes)?.commit()
}

/// The new contents of a file, written and synced beside it, not yet in
/// its place: [`Staged::commit`] renames it over the file; dropping it
/// uncommitted removes it. Between the two, the caller can check that
/// replacing the file is still right.
pub(crate) struct Staged {
    tmp: PathBuf,
    target: PathBuf,
    committed: bool,
}

/// Writes `bytes` to a new temporary file (mode 0600) beside `path` and
/// syncs it, to replace `path` with [`Staged::commit`].
pub(crate) fn stage(path: &Path, bytes: &[u8]) -> io::Result<Staged> {
    let dir = parent(path);
    let mut tag = [0u8; 6];
    rng::fill(&mut tag);
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!("{}{tag}.tmp", temp_prefix(path)));
    let staged = Staged {
        tmp,
        target: path.to_owned(),
        committed: false,
    };
    let mut f = create_private_file(&staged.tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(staged)
}

impl Staged {
    /// Renames the new contents over the file and syncs the directory, so
    /// the replacement itself is durable.
    pub(crate) fn commit(mut self) -> io::Result<()> {
        fs::rename(&self.tmp, &self.target)?;
        self.committed = true;
        sync_dir(parent(&self.target))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: the temporary file holds only sealed data.
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Temporary files of `path` are named `.<name>.<random>.tmp`.
fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(super::FILE_NAME);
    format!(".{name}.")
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
            overwrite(&mut f)?;
            drop(f);
            fs::remove_file(path)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    remove_leftovers(path)
}

/// Overwrites the whole of `f` in place with random bytes and syncs it.
/// Through an open handle this reaches the file's blocks even after its
/// name was renamed over or removed.
pub(super) fn overwrite(f: &mut fs::File) -> io::Result<()> {
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(0))?;
    let mut remaining = usize::try_from(len).unwrap_or(usize::MAX);
    let mut noise = [0u8; 4096];
    while remaining > 0 {
        let n = remaining.min(noise.len());
        rng::fill(&mut noise[..n]);
        f.write_all(&noise[..n])?;
        remaining -= n;
    }
    f.sync_all()
}

/// Removes the temporary files beside `path` (left by saves that crashed,
/// or in flight in another process, which then fails to rename it) and
/// syncs the directory.
pub(super) fn remove_leftovers(path: &Path) -> io::Result<()> {
    let dir = parent(path);
    let prefix = temp_prefix(path);
    for entry in fs::read_dir(dir)?.flatten() {
        let leftover = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".tmp"));
        if leftover {
            // Sealed data only, but nothing of the keystore is left behind.
            let _ = fs::remove_file(entry.path());
        }
    }
    sync_dir(dir)
}
