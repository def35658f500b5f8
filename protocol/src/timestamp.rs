//! Wire times: RFC 3339, UTC, milliseconds, e.g. `2026-11-23T07:31:54.123Z`.
//!
//! The text is kept exactly as received because `sent_at` is part of the
//! signed envelope header: re-formatting a parsed time could change the bytes
//! and break a valid signature.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use thiserror::Error;
use time::{OffsetDateTime, format_description::FormatItem, macros::format_description};

const FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// A time that is not in the wire form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("time must be RFC 3339 UTC with milliseconds, like 2026-11-23T07:31:54.123Z")]
pub struct TimestampError;

/// A point in time in the wire form, with its milliseconds since the Unix epoch.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Timestamp {
    text: String,
    unix_millis: i64,
}

impl Timestamp {
    /// Parses the strict wire form.
    pub fn parse(s: &str) -> Result<Self, TimestampError> {
        // `YYYY-MM-DDTHH:MM:SS.mmmZ` is exactly 24 bytes; the length check
        // rejects extended years and extra precision before parsing.
        if s.len() != 24 {
            return Err(TimestampError);
        }
        let t = time::PrimitiveDateTime::parse(s, FORMAT)
            .map_err(|_| TimestampError)?
            .assume_utc();
        Ok(Self {
            text: s.to_owned(),
            unix_millis: (t.unix_timestamp_nanos() / 1_000_000) as i64,
        })
    }

    /// The time `unix_millis` milliseconds after the epoch.
    pub fn from_unix_millis(unix_millis: i64) -> Result<Self, TimestampError> {
        let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_millis) * 1_000_000)
            .map_err(|_| TimestampError)?;
        let text = t.format(FORMAT).map_err(|_| TimestampError)?;
        if text.len() != 24 {
            return Err(TimestampError);
        }
        Ok(Self { text, unix_millis })
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(&self) -> i64 {
        self.unix_millis
    }

    /// The exact wire text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.text)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_wire_form() {
        let t = Timestamp::parse("2026-11-23T07:31:54.123Z").expect("valid");
        assert_eq!(t.unix_millis(), 1_795_419_114_123);
        let u = Timestamp::from_unix_millis(t.unix_millis()).expect("in range");
        assert_eq!(u, t);
    }

    #[test]
    fn rejects_other_rfc3339_spellings() {
        for bad in [
            "2026-11-23T07:31:54.123Zx",
            "2026-11-23T07:31:54Z",
            "2026-11-23T07:31:54.123+00:00",
            "2026-11-23T07:31:54.1234Z",
            "2026-11-23 07:31:54.123Z",
            "2026-13-23T07:31:54.123Z",
        ] {
            assert_eq!(Timestamp::parse(bad), Err(TimestampError), "{bad}");
        }
    }
}
