//! What commands print: sentences for people, or with `--json` exactly one
//! JSON object per line on standard output, each with an `event` field.
//!
//! Commands describe what happened as [`Event`]s; this module alone decides
//! how each looks. Text that other people wrote (messages, titles) is
//! cleaned of control characters before it reaches a terminal, so a message
//! cannot rewrite the screen or disguise itself.

use std::io::{self, IsTerminal as _, Write as _};
use std::path::PathBuf;

use serde::Serialize;
use wardline_protocol::{
    BodyKind, ConversationId, DeviceId, MessageId, Priority, Secret, Timestamp, UserId, Username,
};

use crate::nhs::NhsNumber;

/// Something a command reports.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Enrolment: the TOTP secret to add to an authenticator app.
    Totp {
        /// The account.
        user_id: UserId,
        /// Its username.
        username: Username,
        /// Base32 secret; printed on purpose, once.
        totp_secret: Secret,
        /// `otpauth://` URI holding the same secret.
        totp_uri: Secret,
    },
    /// Enrolment finished; the keystore exists.
    Enrolled {
        /// The account.
        user_id: UserId,
        /// The new device.
        device_id: DeviceId,
        /// For people only.
        #[serde(skip)]
        username: Username,
        /// For people only.
        #[serde(skip)]
        keystore: PathBuf,
    },
    /// A new session; the token is saved.
    LoggedIn {
        /// The account.
        user_id: UserId,
        /// The device the session is for.
        device_id: DeviceId,
        /// Whether this login registered the device.
        new_device: bool,
        /// For people only.
        #[serde(skip)]
        username: Username,
    },
    /// A message is stored on the server.
    Sent {
        /// Conversation.
        conv_id: ConversationId,
        /// The message.
        msg_id: MessageId,
        /// Its sequence number.
        seq: u64,
    },
    /// A message received and opened.
    Message(MessageView),
    /// A message that could not be opened.
    Undecryptable {
        /// Conversation, if known.
        conv_id: Option<ConversationId>,
        /// Sequence number, if known.
        seq: Option<u64>,
        /// Message id, if known.
        msg_id: Option<MessageId>,
        /// Claimed sender, if known.
        sender_user: Option<UserId>,
        /// Why.
        reason: String,
    },
    /// An admin created an account.
    UserCreated {
        /// The account.
        user_id: UserId,
        /// Its username.
        username: Username,
        /// One-time enrolment code to hand to the user.
        enrol_code: Secret,
        /// When the code stops working.
        expires_at: Timestamp,
    },
    /// The command failed (JSON mode only; people read standard error).
    Error {
        /// A stable code: a server error code or one of this client's.
        code: String,
        /// What happened and what to do.
        message: String,
    },
}

/// A received message as shown to the user.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    /// Conversation.
    pub conv_id: ConversationId,
    /// Its title, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conv_title: Option<String>,
    /// Sequence number.
    pub seq: u64,
    /// Message id.
    pub msg_id: MessageId,
    /// Sender.
    pub sender_user: UserId,
    /// Sender's username, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_username: Option<Username>,
    /// When sent.
    pub sent_at: Timestamp,
    /// Routine or urgent.
    pub priority: Priority,
    /// Message or clinical note.
    pub kind: BodyKind,
    /// The text.
    pub text: String,
    /// The patient's NHS number, if any.
    pub patient: Option<String>,
    /// The message this answers, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageId>,
}

/// Where events go.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    /// Human output, or JSON lines when `json`.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Whether output is JSON lines.
    pub fn is_json(&self) -> bool {
        self.json
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
        let (mut text, to_stderr) = human(event);
        if let Event::Totp { totp_uri, .. } = event {
            // A code to scan is easier than typing 32 characters, but only
            // useful on a screen.
            if io::stdout().is_terminal()
                && let Some(qr) = qr_code(totp_uri.expose())
            {
                text = format!("{qr}\n{text}");
            }
        }
        if to_stderr {
            let mut err = io::stderr().lock();
            writeln!(err, "{text}")?;
            err.flush()
        } else {
            let mut out = io::stdout().lock();
            writeln!(out, "{text}")?;
            out.flush()
        }
    }

    /// Prints a note for people on standard error (in both modes: standard
    /// output stays machine-readable under `--json`).
    pub fn note(&self, text: &str) {
        eprintln!("{text}");
    }
}

/// The human form of `event`, and whether it belongs on standard error.
fn human(event: &Event) -> (String, bool) {
    match event {
        Event::Totp {
            username,
            totp_secret,
            totp_uri,
            ..
        } => (
            format!(
                "Add your Wardline account to your authenticator app now (enter the secret, or open the link):\n  account: {username}\n  secret:  {}\n  link:    {}\nThe app will then show a 6-digit code.",
                totp_secret.expose(),
                totp_uri.expose()
            ),
            false,
        ),
        Event::Enrolled {
            username,
            device_id,
            keystore,
            ..
        } => (
            format!(
                "Enrolled {username}. This device is registered as {device_id}; its keys are sealed in {}.",
                keystore.display()
            ),
            false,
        ),
        Event::LoggedIn {
            username,
            device_id,
            new_device,
            ..
        } => (
            if *new_device {
                format!(
                    "Logged in as {username}; this computer is registered as new device {device_id}."
                )
            } else {
                format!("Logged in as {username} on device {device_id}.")
            },
            false,
        ),
        Event::Sent { conv_id, seq, .. } => (
            format!("Sent (conversation {conv_id}, message #{seq})."),
            false,
        ),
        Event::Message(m) => (message_line(m), false),
        Event::Undecryptable {
            conv_id,
            seq,
            reason,
            ..
        } => (
            format!(
                "wardline: a message in conversation {} (#{}) could not be opened: {reason}",
                conv_id.as_ref().map_or("?".to_owned(), |c| c.to_string()),
                seq.map_or("?".to_owned(), |s| s.to_string()),
            ),
            true,
        ),
        Event::UserCreated {
            username,
            user_id,
            enrol_code,
            expires_at,
        } => (
            format!(
                "Created user {username} ({user_id}).\nGive {username} this one-time enrolment code in person or by another secure route; it works until {}:\n\n    {}\n\n{username} then runs: wardline enrol --code <code>",
                short_time(expires_at),
                enrol_code.expose()
            ),
            false,
        ),
        Event::Error { message, .. } => (format!("wardline: {message}"), true),
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

/// `[URGENT] 2026-11-23 07:31 alice → Ward 10: text (patient 943 476 5919)`
fn message_line(m: &MessageView) -> String {
    let mut line = String::new();
    if m.priority == Priority::Urgent {
        line.push_str("[URGENT] ");
    }
    if m.kind == BodyKind::ClinicalNote {
        line.push_str("[CLINICAL NOTE] ");
    }
    let sender = m
        .sender_username
        .as_ref()
        .map_or_else(|| m.sender_user.to_string(), |u| u.to_string());
    let conv = m
        .conv_title
        .as_deref()
        .map_or_else(|| m.conv_id.to_string(), clean);
    line.push_str(&format!(
        "{} {sender} → {conv}: {}",
        short_time(&m.sent_at),
        clean(&m.text).replace('\n', "\n    ")
    ));
    if let Some(p) = &m.patient {
        line.push_str(&format!(" (patient {})", NhsNumber::grouped(&clean(p))));
    }
    line
}

/// `2026-11-23 07:31` from the wire form (UTC).
fn short_time(t: &Timestamp) -> String {
    let s = t.as_str();
    format!("{} {}", &s[..10], &s[11..16])
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

    #[test]
    fn human_message_line_matches_the_house_format() {
        assert_eq!(
            message_line(&view()),
            "[URGENT] 2026-11-23 07:31 alice → Ward 10: Bed 4 needs review (patient 943 476 5919)"
        );
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
