//! What commands print: sentences, message lines and aligned tables for
//! people, or with `--json` exactly one JSON object per line on standard
//! output, each with an `event` field.
//!
//! Commands describe what happened as [`Event`]s; this module alone decides
//! how each looks. Colour is used only when standard output is a terminal
//! and `NO_COLOR` is not set. Text that other people wrote (messages,
//! titles, names) is cleaned of control characters before it reaches a
//! terminal, so a message cannot rewrite the screen or disguise itself.

mod events;
pub mod governance;
pub mod human;
pub mod progress;
pub mod record;
pub mod time;

use std::io::{self, IsTerminal as _, Write as _};

pub use events::{ConversationRow, DeviceRow, Event, MessageView, SafetyRow, WhoamiView};
use human::{Stream, Style};
use time::Now;

/// Where events go, and how they look.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
    style: Style,
    offset: ::time::UtcOffset,
}

impl Output {
    /// Human output, or JSON lines when `json`. Reads the local time zone,
    /// so call it before any thread starts.
    pub fn new(json: bool) -> Self {
        let color = !json
            && io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && std::env::var("TERM").map_or(true, |t| t != "dumb");
        Self {
            json,
            style: Style { color },
            offset: time::local_offset(),
        }
    }

    /// Whether output is JSON lines.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// The styling in use (none unless on a terminal).
    pub fn style(&self) -> Style {
        self.style
    }

    /// The time to render relative times against, in the local zone.
    pub fn now(&self) -> Now {
        Now::system(self.offset)
    }

    /// Prints `event` and flushes, so a script reading the output sees it
    /// at once (enrolment depends on that).
    pub fn emit(&self, event: &Event) -> io::Result<()> {
        if self.json {
            let mut out = io::stdout().lock();
            serde_json::to_writer(&mut out, event)?;
            out.write_all(b"\n")?;
            return out.flush();
        }
        let (mut text, stream) = human::render(event, self.style, &self.now());
        if text.is_empty() {
            return Ok(());
        }
        if let Event::Totp { totp_uri, .. } = event
            && let Some(qr) = qr_code(totp_uri.expose())
        {
            // Scanning is easier than typing 32 characters. Printed in
            // human output even when piped: whoever reads it is a person.
            text = format!("{qr}\n{text}");
        }
        self.print(&text, stream)
    }

    /// Prints a list: with `--json` one event per line; for people, rows of
    /// one kind (conversations, devices) as one aligned table, safety
    /// numbers as blocks, anything else line by line.
    pub fn emit_all(&self, events: &[Event]) -> io::Result<()> {
        if self.json || events.is_empty() {
            return events.iter().try_for_each(|e| self.emit(e));
        }
        let now = self.now();
        let conversations: Vec<&ConversationRow> = events
            .iter()
            .filter_map(|e| match e {
                Event::Conversation(c) => Some(c),
                _ => None,
            })
            .collect();
        if conversations.len() == events.len() {
            return self.print(
                &human::conversation_table(&conversations, self.style, &now),
                Stream::Stdout,
            );
        }
        let devices: Vec<&DeviceRow> = events
            .iter()
            .filter_map(|e| match e {
                Event::Device(d) => Some(d),
                _ => None,
            })
            .collect();
        if devices.len() == events.len() {
            return self.print(
                &human::device_table(&devices, self.style, &now),
                Stream::Stdout,
            );
        }
        let accounts: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::Account(a) => Some(a),
                _ => None,
            })
            .collect();
        if accounts.len() == events.len() {
            return self.print(
                &governance::account_table(&accounts, self.style),
                Stream::Stdout,
            );
        }
        let audit: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::AuditEntry(a) => Some(a),
                _ => None,
            })
            .collect();
        if audit.len() == events.len() {
            return self.print(
                &governance::audit_table(&audit, self.style, &now),
                Stream::Stdout,
            );
        }
        if matches!(events.first(), Some(Event::SafetyNumber(_))) {
            let blocks: Vec<String> = events
                .iter()
                .map(|e| human::render(e, self.style, &now).0)
                .collect();
            return self.print(&blocks.join("\n\n"), Stream::Stdout);
        }
        events.iter().try_for_each(|e| self.emit(e))
    }

    fn print(&self, text: &str, stream: Stream) -> io::Result<()> {
        match stream {
            Stream::Stderr => {
                let mut err = io::stderr().lock();
                writeln!(err, "{text}")?;
                err.flush()
            }
            Stream::Stdout => {
                let mut out = io::stdout().lock();
                writeln!(out, "{text}")?;
                out.flush()
            }
        }
    }

    /// Prints a note for people on standard error (in both modes: standard
    /// output stays machine-readable under `--json`).
    pub fn note(&self, text: &str) {
        eprintln!("{text}");
    }

    /// A warning: with `--json` a `warning` event on standard output (so a
    /// script sees it in order with the rest) and the sentence on standard
    /// error; for people, the sentence on standard error.
    pub fn warn(&self, code: &'static str, message: String) -> io::Result<()> {
        if self.json {
            self.note(&format!("wardline: warning: {message}"));
        }
        self.emit(&Event::Warning { code, message })
    }
}

/// `text` as a QR code drawn with Unicode half blocks, light on dark so it
/// scans from a terminal.
fn qr_code(text: &str) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

/// `1 entry`, `2 entries`.
pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `5 min` for a number of seconds.
pub(crate) fn describe_secs(secs: u64) -> String {
    crate::agent::describe_duration(std::time::Duration::from_secs(secs))
}

/// Replaces characters that could drive or mislead a terminal: control
/// characters other than newline, and bidirectional overrides.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' => '\n',
            '\t' => ' ',
            c if c.is_control() => '\u{fffd}',
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                '\u{fffd}'
            }
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use wardline_protocol::{
        BodyKind, ConversationId, DeviceId, MessageId, Priority, Timestamp, UserId, Username,
    };

    use super::human::{Style, message_line, table};
    use super::*;

    fn view() -> MessageView {
        MessageView {
            conv_id: ConversationId::parse("c-1").expect("valid"),
            conv_title: Some("Ward 10".into()),
            seq: 3,
            msg_id: MessageId::generate_v7(1_795_419_114_123, [1; 10]),
            sender_user: UserId::parse("u-alice").expect("valid"),
            sender_username: Some(Username::parse("alice").expect("valid")),
            sent_at: Timestamp::parse("2026-11-23T07:31:54.123Z").expect("valid"),
            priority: Priority::Urgent,
            kind: BodyKind::Message,
            text: "Bed 4 needs review".into(),
            patient: Some("9434765919".into()),
            reply_to: None,
        }
    }

    /// A fortnight after the message, in UTC: old enough for a full date.
    fn later() -> Now {
        Now {
            unix_ms: Timestamp::parse("2026-12-07T07:31:54.123Z")
                .expect("valid")
                .unix_millis(),
            offset: ::time::UtcOffset::UTC,
        }
    }

    const PLAIN: Style = Style { color: false };

    #[test]
    fn human_message_line_matches_the_house_format() {
        assert_eq!(
            message_line(&view(), PLAIN, &later()),
            "[URGENT] 2026-11-23 07:31 alice → Ward 10: Bed 4 needs review (patient 943 476 5919)"
        );
    }

    #[test]
    fn todays_messages_show_only_the_clock_time() {
        let same_day = Now {
            unix_ms: view().sent_at.unix_millis() + 3_600_000,
            ..later()
        };
        assert!(
            message_line(&view(), PLAIN, &same_day).starts_with("[URGENT] 07:31 alice"),
            "{}",
            message_line(&view(), PLAIN, &same_day)
        );
    }

    #[test]
    fn colour_marks_urgent_messages_only_when_asked() {
        let coloured = message_line(&view(), Style { color: true }, &later());
        assert!(coloured.contains("\x1b[1;31m[URGENT]"), "{coloured}");
        assert!(!message_line(&view(), PLAIN, &later()).contains('\x1b'));
    }

    #[test]
    fn tables_align_columns_by_visible_width() {
        let t = table(
            &["A", "LONGER"],
            &[
                vec!["x".into(), "1".into()],
                vec![Style { color: true }.bold("wide"), "2".into()],
            ],
            PLAIN,
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "A     LONGER");
        assert_eq!(lines[1], "x     1");
        assert!(lines[2].ends_with("wide\x1b[0m  2"), "{t}");
    }

    #[test]
    fn json_message_event_has_the_documented_fields() {
        let v = serde_json::to_value(Event::Message(view())).expect("serialises");
        assert_eq!(v["event"], "message");
        for field in [
            "conv_id",
            "seq",
            "msg_id",
            "sender_user",
            "sender_username",
            "sent_at",
            "priority",
            "kind",
            "text",
            "patient",
        ] {
            assert!(v.get(field).is_some(), "{field}");
        }
        assert_eq!(v["priority"], "urgent");
        assert_eq!(v["kind"], "message");
    }

    #[test]
    fn totp_uri_renders_as_a_qr_code() {
        let qr = qr_code("otpauth://totp/Wardline:alice?secret=JBSWY3DPEHPK3PXP").expect("fits");
        assert!(qr.lines().count() > 10);
    }

    #[test]
    fn terminal_escapes_in_messages_are_neutralised() {
        let cleaned = clean("ok\u{1b}[2J\r\u{202e}gnp.exe");
        assert!(!cleaned.contains('\u{1b}'));
        assert!(!cleaned.contains('\r'));
        assert!(!cleaned.contains('\u{202e}'));
    }

    #[test]
    fn enrolled_event_keeps_people_only_fields_out_of_json() {
        let v = serde_json::to_value(Event::Enrolled {
            user_id: UserId::parse("u-1").expect("valid"),
            device_id: DeviceId::parse("d-1").expect("valid"),
            username: Username::parse("bob").expect("valid"),
            keystore: PathBuf::from("/tmp/x"),
        })
        .expect("serialises");
        assert_eq!(
            v,
            serde_json::json!({"event": "enrolled", "user_id": "u-1", "device_id": "d-1"})
        );
    }
}
