//! Which cached messages an export takes: a time window, a kind, and the
//! patient rule (a message about another patient never goes into this
//! patient's record; one that names no patient only with a confirmed link).

use clap::ValueEnum;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, Time, UtcOffset};
use wardline_protocol::BodyKind;

use crate::keystore::StoredMessage;

/// Which kinds of message to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindFilter {
    /// Clinical notes only: decisions and advice meant for the record.
    ClinicalNote,
    /// Every message.
    All,
}

/// A time as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// An exact instant (RFC 3339), in milliseconds since the epoch.
    Instant(i64),
    /// A calendar day in the local time zone (YYYY-MM-DD).
    Day(Date),
}

/// Parses `--since`/`--until`: RFC 3339 (`2026-11-23T07:31:00Z`, any
/// offset) or a day (`2026-11-23`, local time).
pub fn parse_when(text: &str) -> Result<When, String> {
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        let ms = t.unix_timestamp_nanos() / 1_000_000;
        return i64::try_from(ms)
            .map(When::Instant)
            .map_err(|_| "that time is out of range".to_owned());
    }
    Date::parse(text, format_description!("[year]-[month]-[day]"))
        .map(When::Day)
        .map_err(|_| {
            format!(
                "'{text}' is not a time: give a day (2026-11-23) or an RFC 3339 time (2026-11-23T07:31:00Z)"
            )
        })
}

impl When {
    /// The first millisecond it covers (a day: its local midnight).
    fn start(self, offset: UtcOffset) -> i64 {
        match self {
            When::Instant(ms) => ms,
            When::Day(d) => day_start(d, offset),
        }
    }

    /// The last millisecond it covers (a day: the one before the next
    /// local midnight).
    fn end(self, offset: UtcOffset) -> i64 {
        match self {
            When::Instant(ms) => ms,
            When::Day(d) => d
                .next_day()
                .map_or(i64::MAX, |next| day_start(next, offset) - 1),
        }
    }
}

fn day_start(d: Date, offset: UtcOffset) -> i64 {
    let ms = d
        .with_time(Time::MIDNIGHT)
        .assume_offset(offset)
        .unix_timestamp_nanos()
        / 1_000_000;
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// What to take.
#[derive(Debug, Clone)]
pub struct Filter {
    /// Sent at or after.
    pub since: Option<When>,
    /// Sent at or before (a day: through its end).
    pub until: Option<When>,
    /// Which kinds.
    pub kind: KindFilter,
    /// The patient (ten digits) given with `--patient`.
    pub patient: Option<String>,
    /// Whether the user confirmed linking messages that name no patient.
    pub link_confirmed: bool,
    /// The local time zone, for days.
    pub offset: UtcOffset,
}

/// The messages taken, and why others were left out.
#[derive(Debug, Default)]
pub struct Selection<'a> {
    /// In `seq` order.
    pub chosen: Vec<&'a StoredMessage>,
    /// Of the chosen, those that name no patient (linked by the exporter).
    pub linked: usize,
    /// In the window and of the kind, but about another patient.
    pub other_patient: usize,
    /// In the window and of the kind, naming no patient, with no confirmed
    /// `--patient` to link them to.
    pub no_patient: usize,
}

/// Applies `f` to `messages` (oldest first).
pub fn select<'a>(messages: &[&'a StoredMessage], f: &Filter) -> Selection<'a> {
    let since = f.since.map(|w| w.start(f.offset));
    let until = f.until.map(|w| w.end(f.offset));
    let mut out = Selection::default();
    for m in messages {
        let at = m.sent_at.unix_millis();
        if since.is_some_and(|s| at < s) || until.is_some_and(|u| at > u) {
            continue;
        }
        if f.kind == KindFilter::ClinicalNote && m.body.kind != BodyKind::ClinicalNote {
            continue;
        }
        match (&m.body.patient, &f.patient) {
            (Some(p), Some(want)) if p.nhs_number != *want => out.other_patient += 1,
            (Some(_), _) => out.chosen.push(m),
            (None, Some(_)) if f.link_confirmed => {
                out.linked += 1;
                out.chosen.push(m);
            }
            (None, _) => out.no_patient += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use wardline_protocol::{
        Body, ConversationId, DeviceId, MessageId, Patient, Priority, Timestamp, UserId,
    };

    use super::*;

    const ADA: &str = "9434765919";
    const BEN: &str = "4010232137";

    fn message(seq: u64, at: &str, kind: BodyKind, patient: Option<&str>) -> StoredMessage {
        StoredMessage {
            conv_id: ConversationId::parse("c-1").expect("valid"),
            seq,
            msg_id: MessageId::generate_v7(1_795_419_114_000 + seq, [seq as u8; 10]),
            sender_user: UserId::parse("u-1").expect("valid"),
            sender_device: DeviceId::parse("d-1").expect("valid"),
            sent_at: Timestamp::parse(at).expect("valid"),
            priority: Priority::Routine,
            body: Body {
                text: format!("m{seq}"),
                kind,
                patient: patient.map(|p| Patient {
                    nhs_number: p.into(),
                }),
                reply_to: None,
            },
            envelope: None,
        }
    }

    fn filter() -> Filter {
        Filter {
            since: None,
            until: None,
            kind: KindFilter::ClinicalNote,
            patient: None,
            link_confirmed: false,
            offset: UtcOffset::UTC,
        }
    }

    fn seqs(s: &Selection<'_>) -> Vec<u64> {
        s.chosen.iter().map(|m| m.seq).collect()
    }

    fn fixture() -> Vec<StoredMessage> {
        use BodyKind::{ClinicalNote, Message};
        vec![
            message(1, "2026-11-22T23:59:59.999Z", ClinicalNote, Some(ADA)),
            message(2, "2026-11-23T00:00:00.000Z", ClinicalNote, Some(ADA)),
            message(3, "2026-11-23T12:00:00.000Z", Message, Some(ADA)),
            message(4, "2026-11-23T13:00:00.000Z", ClinicalNote, Some(BEN)),
            message(5, "2026-11-23T23:59:59.999Z", ClinicalNote, None),
            message(6, "2026-11-24T00:00:00.000Z", ClinicalNote, Some(ADA)),
        ]
    }

    #[test]
    fn clinical_notes_naming_a_patient_are_taken_by_default() {
        let all = fixture();
        let refs: Vec<&StoredMessage> = all.iter().collect();
        let s = select(&refs, &filter());
        assert_eq!(seqs(&s), [1, 2, 4, 6]);
        assert_eq!((s.no_patient, s.other_patient, s.linked), (1, 0, 0));
    }

    #[test]
    fn a_day_covers_midnight_to_midnight_in_the_local_zone() {
        let all = fixture();
        let refs: Vec<&StoredMessage> = all.iter().collect();
        let day = parse_when("2026-11-23").expect("a day");
        let f = Filter {
            since: Some(day),
            until: Some(day),
            ..filter()
        };
        assert_eq!(seqs(&select(&refs, &f)), [2, 4]);
        // An hour east of UTC, that day starts an hour earlier in UTC.
        let east = Filter {
            offset: UtcOffset::from_hms(1, 0, 0).expect("valid"),
            ..f
        };
        assert_eq!(seqs(&select(&refs, &east)), [1, 2, 4]);
    }

    #[test]
    fn exact_times_are_inclusive() {
        let all = fixture();
        let refs: Vec<&StoredMessage> = all.iter().collect();
        let f = Filter {
            since: Some(parse_when("2026-11-23T00:00:00Z").expect("time")),
            until: Some(parse_when("2026-11-23T14:00:00+01:00").expect("time")),
            kind: KindFilter::All,
            ..filter()
        };
        assert_eq!(seqs(&select(&refs, &f)), [2, 3, 4]);
    }

    #[test]
    fn another_patients_messages_are_left_out_and_untagged_ones_need_a_confirmed_link() {
        let all = fixture();
        let refs: Vec<&StoredMessage> = all.iter().collect();
        let unconfirmed = Filter {
            patient: Some(ADA.into()),
            ..filter()
        };
        let s = select(&refs, &unconfirmed);
        assert_eq!(seqs(&s), [1, 2, 6]);
        assert_eq!((s.other_patient, s.no_patient), (1, 1));
        let confirmed = Filter {
            link_confirmed: true,
            ..unconfirmed
        };
        let s = select(&refs, &confirmed);
        assert_eq!(seqs(&s), [1, 2, 5, 6]);
        assert_eq!((s.other_patient, s.no_patient, s.linked), (1, 0, 1));
    }

    #[test]
    fn times_that_are_neither_a_day_nor_rfc_3339_are_refused_with_examples() {
        for bad in ["yesterday", "23/11/2026", "2026-11-31", "2026-11-23 07:31"] {
            let err = parse_when(bad).expect_err(bad);
            assert!(err.contains("2026-11-23T07:31:00Z"), "{err}");
        }
    }
}
