//! The system clock, read in one place.

use std::time::{SystemTime, UNIX_EPOCH};

use wardline_protocol::Timestamp;

/// Milliseconds since the Unix epoch, by the system clock (0 if the clock
/// is set before 1970).
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Now, as a protocol timestamp; `None` when the system clock is set to a
/// time the protocol cannot express.
pub fn now() -> Option<Timestamp> {
    i64::try_from(now_millis())
        .ok()
        .and_then(|ms| Timestamp::from_unix_millis(ms).ok())
}
