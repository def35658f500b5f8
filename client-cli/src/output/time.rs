//! Times as people read them: local clock times for messages ("07:31",
//! "yesterday 07:31"), relative ages in lists ("5 min ago").

use time::{OffsetDateTime, UtcOffset};
use wardline_protocol::Timestamp;

/// The moment output is rendered at, and the local time zone.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Milliseconds since the Unix epoch.
    pub unix_ms: i64,
    /// The local offset from UTC.
    pub offset: UtcOffset,
}

impl Now {
    /// The system clock, with `offset` as the local zone.
    pub fn system(offset: UtcOffset) -> Self {
        Self {
            unix_ms: i64::try_from(crate::clock::now_millis()).unwrap_or(i64::MAX),
            offset,
        }
    }

    fn local(&self, unix_ms: i64) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
            .ok()
            .map(|t| t.to_offset(self.offset))
    }
}

/// The local offset, read once at start: the `time` crate can only read it
/// safely while the process has a single thread.
pub fn local_offset() -> UtcOffset {
    UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC)
}

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// When a message was sent, for a message line: `07:31` today,
/// `yesterday 07:31`, `Mon 07:31` within the week, else `2026-11-23 07:31`.
pub fn clock_time(t: &Timestamp, now: &Now) -> String {
    let (Some(at), Some(today)) = (now.local(t.unix_millis()), now.local(now.unix_ms)) else {
        return t.as_str().to_owned();
    };
    let hm = format!("{:02}:{:02}", at.hour(), at.minute());
    let days = (today.date().to_julian_day() - at.date().to_julian_day()).max(-1);
    match days {
        0 => hm,
        1 => format!("yesterday {hm}"),
        2..=6 => {
            let wd = WEEKDAYS[usize::from(at.weekday().number_days_from_monday())];
            format!("{wd} {hm}")
        }
        _ => format!(
            "{:04}-{:02}-{:02} {hm}",
            at.year(),
            u8::from(at.month()),
            at.day()
        ),
    }
}

/// How long ago `t` was: `just now`, `5 min ago`, `3 h ago`, `2 days ago`,
/// else the date.
pub fn ago(t: &Timestamp, now: &Now) -> String {
    let secs = (now.unix_ms - t.unix_millis()) / 1000;
    match secs {
        s if s < 60 => "just now".into(),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3600),
        s if s < 7 * 86_400 => match s / 86_400 {
            1 => "yesterday".into(),
            d => format!("{d} days ago"),
        },
        _ => date(t, now),
    }
}

/// How long until `t`: `in 5 min`, `in 3 h`, `in 6 days`, or `ended`.
pub fn until(t: &Timestamp, now: &Now) -> String {
    let secs = (t.unix_millis() - now.unix_ms) / 1000;
    match secs {
        s if s <= 0 => "ended".into(),
        s if s < 3600 => format!("in {} min", (s / 60).max(1)),
        s if s < 86_400 => format!("in {} h", s / 3600),
        s => format!("in {} days", s / 86_400),
    }
}

/// `2026-11-23 07:31:54` in the local zone: an exact time, for logs.
pub fn datetime(t: &Timestamp, now: &Now) -> String {
    match now.local(t.unix_millis()) {
        Some(at) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        ),
        None => t.as_str().to_owned(),
    }
}

/// `23 Nov 2026`.
pub fn date(t: &Timestamp, now: &Now) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    match now.local(t.unix_millis()) {
        Some(at) => format!(
            "{} {} {}",
            at.day(),
            MONTHS[usize::from(u8::from(at.month())) - 1],
            at.year()
        ),
        None => t.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).expect("valid")
    }

    fn now(text: &str) -> Now {
        Now {
            unix_ms: at(text).unix_millis(),
            offset: UtcOffset::UTC,
        }
    }

    #[test]
    fn message_times_get_shorter_the_more_recent() {
        let n = now("2026-11-23T12:00:00.000Z");
        assert_eq!(clock_time(&at("2026-11-23T07:31:54.123Z"), &n), "07:31");
        assert_eq!(
            clock_time(&at("2026-11-22T23:05:00.000Z"), &n),
            "yesterday 23:05"
        );
        assert_eq!(clock_time(&at("2026-11-19T08:00:00.000Z"), &n), "Thu 08:00");
        assert_eq!(
            clock_time(&at("2026-10-01T08:00:00.000Z"), &n),
            "2026-10-01 08:00"
        );
    }

    #[test]
    fn local_offset_moves_the_clock_time() {
        let n = Now {
            offset: UtcOffset::from_hms(1, 0, 0).expect("valid"),
            ..now("2026-06-01T12:00:00.000Z")
        };
        assert_eq!(clock_time(&at("2026-06-01T07:31:00.000Z"), &n), "08:31");
    }

    #[test]
    fn ages_read_naturally() {
        let n = now("2026-11-23T12:00:00.000Z");
        assert_eq!(ago(&at("2026-11-23T11:59:30.000Z"), &n), "just now");
        assert_eq!(ago(&at("2026-11-23T11:55:00.000Z"), &n), "5 min ago");
        assert_eq!(ago(&at("2026-11-23T09:00:00.000Z"), &n), "3 h ago");
        assert_eq!(ago(&at("2026-11-22T09:00:00.000Z"), &n), "yesterday");
        assert_eq!(ago(&at("2026-11-20T09:00:00.000Z"), &n), "3 days ago");
        assert_eq!(ago(&at("2026-01-02T09:00:00.000Z"), &n), "2 Jan 2026");
        assert_eq!(until(&at("2026-11-29T12:00:00.000Z"), &n), "in 6 days");
        assert_eq!(until(&at("2026-11-23T11:00:00.000Z"), &n), "ended");
    }

    #[test]
    fn exact_times_are_local_to_the_second() {
        let n = Now {
            offset: UtcOffset::from_hms(1, 0, 0).expect("valid"),
            ..now("2026-06-01T12:00:00.000Z")
        };
        assert_eq!(
            datetime(&at("2026-06-01T07:31:54.123Z"), &n),
            "2026-06-01 08:31:54"
        );
    }
}
