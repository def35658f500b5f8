//! Refusing writes before the data directory's disk is full.
//!
//! sled does not survive a failed write: after one I/O error it refuses
//! every later write, and a flush can wait forever for data that will never
//! be written, so only a restart brings it back. The store therefore looks
//! at the disk before it writes, like a database's disk watermark. With
//! less than `min_free` bytes available, new messages (the writes that fill
//! a disk) are refused without reaching sled, while the small writes that
//! keep the service safe go on in the room `min_free` keeps: acks, logins,
//! revocations, wipes, disabling accounts, their audit entries, and the
//! retention deletes that free space. On a read-only mount every write is
//! refused. Reads go on throughout, and writes resume by themselves once the
//! disk has room again.
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

    /// Ok if a new message may be stored: the disk has `min_free` to spare
    /// and is writable.
    pub(super) fn allow_growth(&self) -> Result<()> {
        match self.state_now()? {
            ROOM => Ok(()),
            LOW => Err(StoreError::Refused(
                "the data directory's disk is nearly full: new messages are refused",
            )),
            _ => Err(StoreError::Refused("the data directory is read-only")),
        }
    }

    /// Ok if a small write may go ahead: the disk is writable (it may be
    /// below `min_free`, which is kept for these).
    pub(super) fn allow_write(&self) -> Result<()> {
        match self.state_now()? {
            READ_ONLY => Err(StoreError::Refused("the data directory is read-only")),
            _ => Ok(()),
        }
    }

    /// The disk's state, looked at no more than every [`CHECK_EVERY_MS`]
    /// (by whichever writer comes first), or why nothing may be written.
    fn state_now(&self) -> Result<u8> {
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
        Ok(self.state.load(Ordering::Acquire))
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

    /// Which writes are refused right now and why, if any are (looks at
    /// the disk).
    pub(super) fn refusal(&self) -> Option<&'static str> {
        if self.failed.load(Ordering::Acquire) {
            return Some(
                "a write failed: writes are refused until the server is restarted once the disk \
                 is fixed; reads go on",
            );
        }
        self.look();
        match self.state.load(Ordering::Acquire) {
            ROOM => None,
            LOW => Some(
                "the data directory's disk is nearly full: sends are refused; reads, acks and \
                 administration go on",
            ),
            _ => Some("the data directory is read-only: writes are refused; reads go on"),
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
                "the data directory's disk has less free space than limits.min_free_mb: sends are \
                 refused until space is freed; reads, acks and administration go on"
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
    fn new_messages_are_refused_while_free_space_is_below_the_watermark() {
        let dir = tempfile::tempdir().expect("temp dir");
        let roomy = Space::new(dir.path().to_path_buf(), 0);
        assert!(roomy.allow_write().is_ok());
        assert_eq!(roomy.refusal(), None);
        assert!(roomy.allow_growth().is_ok());
        let low = Space::new(dir.path().to_path_buf(), u64::MAX);
        assert!(low.allow_growth().is_err(), "no new messages");
        assert!(low.allow_write().is_ok(), "small writes use the room kept");
        assert!(low.refusal().is_some_and(|r| r.contains("nearly full")));
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
