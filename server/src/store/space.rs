//! Refusing writes before the data directory's disk is full.
//!
//! sled does not survive a failed write: after one I/O error it refuses
//! every later write, and a flush can wait forever for data that will never
//! be written, so only a restart brings it back. The store therefore looks
//! at the disk before it writes, like a database's disk watermark: with
//! less than `min_free` bytes available, or on a read-only mount, writes are
//! refused without reaching sled, reads go on, and writes resume by
//! themselves once the disk has room again.
//!
//! Should a write fail anyway (the disk filled faster than the checks, or
//! failed outright), writes stay refused until the server is restarted,
//! which is then the only safe way back.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

use rustix::fs::StatVfsMountFlags;

use super::{Result, StoreError};

/// How often writers look at the disk, in milliseconds. At a few hundred
/// MB/s of writes this is well inside any sensible `min_free`.
const CHECK_EVERY_MS: u64 = 100;

const ROOM: u8 = 0;
const LOW: u8 = 1;
const READ_ONLY: u8 = 2;

/// The disk under the data directory, as the store's writes see it.
#[derive(Debug)]
pub(super) struct Space {
    dir: PathBuf,
    min_free: u64,
    started: Instant,
    /// When (ms after `started`) the disk is next looked at.
    next_check_ms: AtomicU64,
    state: AtomicU8,
    /// A write failed: refuse the rest until a restart.
    failed: AtomicBool,
}

impl Space {
    /// Watches the disk holding `dir`; writes need `min_free` bytes free.
    pub(super) fn new(dir: PathBuf, min_free: u64) -> Self {
        let space = Self {
            dir,
            min_free,
            started: Instant::now(),
            next_check_ms: AtomicU64::new(0),
            state: AtomicU8::new(ROOM),
            failed: AtomicBool::new(false),
        };
        space.look();
        space
    }

    /// Ok unless an earlier write failed: making data already written
    /// durable needs no room beyond what `min_free` keeps for it.
    pub(super) fn allow_finish(&self) -> Result<()> {
        if self.failed.load(Ordering::Acquire) {
            return Err(StoreError::Refused(
                "a write to the data directory failed; restart the server once the disk is fixed",
            ));
        }
        Ok(())
    }

    /// Ok if a write may go ahead. Cheap: the disk is looked at no more
    /// than every [`CHECK_EVERY_MS`], by whichever writer comes first.
    pub(super) fn allow_write(&self) -> Result<()> {
        self.allow_finish()?;
        let now = self.started.elapsed().as_millis() as u64;
        let due = self.next_check_ms.load(Ordering::Acquire);
        if now >= due
            && self
                .next_check_ms
                .compare_exchange(
                    due,
                    now + CHECK_EVERY_MS,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            self.look();
        }
        match self.state.load(Ordering::Acquire) {
            ROOM => Ok(()),
            LOW => Err(StoreError::Refused(
                "the data directory's disk is nearly full",
            )),
            _ => Err(StoreError::Refused("the data directory is read-only")),
        }
    }

    /// Passes a write's result through; an I/O failure refuses every later
    /// write (see the module comment).
    pub(super) fn check<R>(&self, result: Result<R>) -> Result<R> {
        if let Err(StoreError::Io(e)) = &result
            && !self.failed.swap(true, Ordering::AcqRel)
        {
            tracing::error!(
                error = %e,
                "a write to the data directory failed: writes are refused until the server is \
                 restarted (is the disk full, read-only or failing?); nothing acknowledged is lost"
            );
        }
        result
    }

    /// Why writes are refused right now, if they are (looks at the disk).
    pub(super) fn refusal(&self) -> Option<&'static str> {
        if self.failed.load(Ordering::Acquire) {
            return Some("a write failed; restart the server once the disk is fixed");
        }
        self.look();
        match self.state.load(Ordering::Acquire) {
            ROOM => None,
            LOW => Some("the disk is nearly full"),
            _ => Some("the data directory is read-only"),
        }
    }

    fn look(&self) {
        let state = match rustix::fs::statvfs(&self.dir) {
            Ok(s) if s.f_flag.contains(StatVfsMountFlags::RDONLY) => READ_ONLY,
            Ok(s) if s.f_bavail.saturating_mul(s.f_frsize) < self.min_free => LOW,
            Ok(_) => ROOM,
            Err(e) => {
                // Cannot tell: let writes try, and fail on their own merits.
                tracing::warn!(error = %e, "cannot read the data directory's free space");
                ROOM
            }
        };
        let before = self.state.swap(state, Ordering::AcqRel);
        match (before, state) {
            (a, b) if a == b => {}
            (_, ROOM) => tracing::info!("the data directory has room again: writes resume"),
            (_, LOW) => tracing::error!(
                min_free_bytes = self.min_free,
                "the data directory's disk has less free space than limits.min_free_mb: sends and \
                 other writes are refused until space is freed; reads go on"
            ),
            _ => tracing::error!(
                "the data directory is mounted read-only: writes are refused until it is \
                 writable; reads go on"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_refused_while_free_space_is_below_the_watermark() {
        let dir = tempfile::tempdir().expect("temp dir");
        let roomy = Space::new(dir.path().to_path_buf(), 0);
        assert!(roomy.allow_write().is_ok());
        assert_eq!(roomy.refusal(), None);
        let low = Space::new(dir.path().to_path_buf(), u64::MAX);
        assert!(low.allow_write().is_err());
        assert_eq!(low.refusal(), Some("the disk is nearly full"));
    }

    #[test]
    fn a_failed_write_refuses_the_rest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let space = Space::new(dir.path().to_path_buf(), 0);
        assert!(space.check::<()>(Err(StoreError::Conflict)).is_err());
        assert!(
            space.allow_write().is_ok(),
            "a conflict is not a disk failure"
        );
        assert!(
            space
                .check::<()>(Err(StoreError::Io("disk full".into())))
                .is_err()
        );
        assert!(space.allow_write().is_err());
        assert!(space.refusal().is_some());
    }
}
