//! The human form of each event: sentences, message lines and aligned
//! tables, with colour only when asked for.

use wardline_protocol::wire::{DeviceStatus, ReceiptKind, WipeState};
use wardline_protocol::{BodyKind, Priority};

use super::events::{ConversationRow, DeviceRow, Event, MessageView, SafetyRow, WhoamiView};
use super::time::{Now, ago, clock_time, datetime, until};
use super::{clean, describe_secs, governance, record};
use crate::keystore::DeviceStanding;
use crate::nhs::NhsNumber;

/// ANSI styling, or none.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// Whether to emit colour codes.
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    /// Bold.
    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
    /// Dim, for times and ids.
    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
    /// Bold red on the terminal's background: urgent things.
    pub fn alarm(self, text: &str) -> String {
        self.paint("1;31", text)
    }
    /// Yellow: warnings.
    pub fn warn(self, text: &str) -> String {
        self.paint("33", text)
    }
    /// Cyan: clinical notes.
    pub fn note(self, text: &str) -> String {
        self.paint("36", text)
    }
    /// Green: good news.
    pub fn good(self, text: &str) -> String {
        self.paint("32", text)
    }
}

/// Where a rendered event goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Results.
    Stdout,
    /// Warnings and problems.
    Stderr,
}

/// The human form of `event`.
pub fn render(event: &Event, style: Style, now: &Now) -> (String, Stream) {
    use Stream::{Stderr, Stdout};
    match event {
        Event::Totp {
            username,
            totp_secret,
            totp_uri,
            ..
        } => (
            format!(
                "Add your Wardline account to your authenticator app now: scan the code above, or enter the secret, or open the link:\n  account: {username}\n  secret:  {}\n  link:    {}\nThe app will then show a 6-digit code.",
                totp_secret.expose(),
                totp_uri.expose()
            ),
            Stdout,
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
            Stdout,
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
            Stdout,
        ),
        Event::LoggedOut { username, .. } => (
            format!(
                "Logged out: this device's session has ended. Its keys stay here, sealed; `wardline login --username {username}` starts a new session."
            ),
            Stdout,
        ),
        Event::Whoami(w) => (whoami(w, style, now), Stdout),
        Event::Device(d) => (device_table(&[d], style, now), Stdout),
        Event::Conversation(c) => (conversation_table(&[c], style, now), Stdout),
        Event::ConversationCreated {
            conv_id,
            title,
            members,
        } => (
            format!(
                "Created conversation {} with {} ({}).",
                style.bold(&clean(title)),
                members.join(", "),
                style.dim(conv_id.as_str())
            ),
            Stdout,
        ),
        Event::MembersChanged {
            title,
            members,
            added,
            removed,
            ..
        } => {
            let mut parts = Vec::new();
            if !added.is_empty() {
                parts.push(format!("added {}", added.join(", ")));
            }
            if !removed.is_empty() {
                parts.push(format!("removed {}", removed.join(", ")));
            }
            let what = if parts.is_empty() {
                "no change".to_owned()
            } else {
                parts.join("; ")
            };
            (
                format!(
                    "{}: {what}. Members now: {}.",
                    style.bold(&clean(title)),
                    members.join(", ")
                ),
                Stdout,
            )
        }
        Event::Sent { conv_id, seq, .. } => (
            format!("Sent (conversation {conv_id}, message #{seq})."),
            Stdout,
        ),
        Event::Message(m) => (message_line(m, style, now), Stdout),
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
            Stderr,
        ),
        Event::MarkedRead { .. } => (String::new(), Stdout),
        Event::Receipt {
            seq,
            user_id,
            username,
            kind,
            ..
        } => {
            let who = username
                .as_ref()
                .map_or_else(|| user_id.to_string(), ToString::to_string);
            let what = match kind {
                ReceiptKind::Delivered => "delivered to",
                ReceiptKind::Read => "read by",
            };
            (style.dim(&format!("  #{seq} {what} {who}")), Stdout)
        }
        Event::UnreadUrgent {
            conv_id,
            conv_title,
            seq,
            unread,
            ..
        } => (
            style.alarm(&format!(
                "\u{7}URGENT message #{seq} in {} is still unread by {}: phone them.",
                conv_title.as_deref().map_or_else(|| conv_id.to_string(), clean),
                unread.join(", ")
            )),
            Stderr,
        ),
        Event::Connection { state, detail } => (
            style.dim(&match detail {
                Some(d) => format!("[{state}: {d}]"),
                None => format!("[{state}]"),
            }),
            Stderr,
        ),
        Event::Warning { message, .. } => (
            style.warn(&format!("wardline: warning: {message}")),
            Stderr,
        ),
        Event::SafetyNumber(s) => (safety_block(s, style, now), Stdout),
        Event::Verified {
            username, devices, ..
        } => (
            style.good(&format!(
                "Marked {devices} device(s) of {username} as verified. Sends to {username} are no longer flagged, until their keys change."
            )),
            Stdout,
        ),
        Event::UserCreated {
            username,
            user_id,
            enrol_code,
            expires_at,
        } => (
            format!(
                "Created user {username} ({user_id}).\nGive {username} this one-time enrolment code in person or by another secure route; it works until {} (UTC):\n\n    {}\n\n{username} then runs: wardline enrol --code <code>",
                short_utc(expires_at.as_str()),
                enrol_code.expose()
            ),
            Stdout,
        ),
        Event::Unlocked { idle_timeout_secs } => (
            format!(
                "Unlocked. Commands will not ask for the passphrase until {} pass without use, or until `wardline lock`.",
                describe_secs(*idle_timeout_secs)
            ),
            Stdout,
        ),
        Event::Locked { was_unlocked } => (
            if *was_unlocked {
                "Locked: the unlocked key is forgotten; the next command asks for the passphrase."
                    .to_owned()
            } else {
                "Already locked.".to_owned()
            },
            Stdout,
        ),
        Event::PasswordChanged { username } => (
            format!(
                "Password changed for {username}: use the new one the next time you log in. This device's session goes on."
            ),
            Stdout,
        ),
        Event::PassphraseChanged {
            was_unlocked,
            keystore,
        } => (
            format!(
                "Passphrase changed: the keystore ({}) is sealed under the new passphrase, and the old one no longer opens it.{}",
                keystore.display(),
                if *was_unlocked {
                    " The keystore was unlocked and is locked now; `wardline unlock` keeps it unlocked with the new passphrase."
                } else {
                    ""
                }
            ),
            Stdout,
        ),
        Event::WipeOrdered { wipe_id, device_id } => (
            format!(
                "Wipe ordered for device {device_id} (order {wipe_id}). It can no longer sign in or receive messages; it destroys its keys and messages the next time it connects."
            ),
            Stdout,
        ),
        Event::WipeStatus { wipe_id, state } => (
            match state {
                WipeState::Pending => format!(
                    "Wipe {wipe_id}: pending (the device has not connected since the order)."
                ),
                WipeState::Confirmed => {
                    format!("Wipe {wipe_id}: confirmed by the device's signature.")
                }
            },
            Stdout,
        ),
        Event::Wiped {
            reason, confirmed, ..
        } => (
            style.alarm(&format!(
                "This device was wiped by order of your organisation (reason: {}). Its Wardline keys and messages have been destroyed{}. Contact IT before using Wardline on it again.",
                clean(reason),
                if *confirmed {
                    " and the server has been told"
                } else {
                    "; the server could not be told, and will be told by IT"
                }
            )),
            Stderr,
        ),
        Event::Account(a) => (governance::account_table(&[a], style), Stdout),
        Event::AccountChanged {
            username, change, ..
        } => (governance::account_changed(username, *change), Stdout),
        Event::UserReset {
            username,
            enrol_code,
            expires_at,
            ..
        } => (
            governance::user_reset(username, enrol_code, &short_utc(expires_at.as_str())),
            Stdout,
        ),
        Event::DeviceRevoked { device_id } => (governance::device_revoked(device_id), Stdout),
        Event::AuditEntry(e) => (governance::audit_table(&[e], style, now), Stdout),
        Event::AuditVerified {
            entries,
            first_seq,
            last_seq,
            checkpoint,
            audit_key,
            audit_key_source,
        } => (
            style.good(&governance::audit_verified(
                *entries,
                (*first_seq, *last_seq),
                checkpoint.then_some((audit_key.as_str(), *audit_key_source)),
            )),
            Stdout,
        ),
        Event::Residency(r) => (governance::residency(r, style), Stdout),
        Event::IncidentMode { enabled } => (governance::incident_mode(*enabled, style), Stdout),
        Event::LegalHold { hold, subject, .. } => (governance::legal_hold(*hold, subject), Stdout),
        Event::Registered {
            username,
            enrol_code,
            expires_at,
            enrol_hint,
            ..
        } => (
            governance::registered(
                username,
                enrol_code,
                &short_utc(expires_at.as_str()),
                enrol_hint,
            ),
            Stdout,
        ),
        Event::RetentionSet { days, title, .. } => (
            governance::retention_set(*days, &style.bold(&clean(title))),
            Stdout,
        ),
        Event::Exported(e) => (record::exported(e, style), Stdout),
        Event::Posted {
            url,
            http_status,
            created,
            already_present,
        } => (
            record::posted(url, *http_status, *created, *already_present),
            Stdout,
        ),
        Event::ExportEntry(e) => (record::verified_entry(e, style, now), Stdout),
        Event::ExportChecked {
            entries,
            failed,
            keys_unknown,
            ..
        } => (record::checked(*entries, *failed, *keys_unknown, style), Stdout),
        Event::Error { message, .. } => (format!("wardline: {message}"), Stderr),
    }
}

/// `[URGENT] 07:31 alice → Ward 10: text (patient 943 476 5919)`
pub fn message_line(m: &MessageView, style: Style, now: &Now) -> String {
    let mut line = String::new();
    if m.priority == Priority::Urgent {
        line.push_str(&style.alarm("[URGENT]"));
        line.push(' ');
    }
    if m.kind == BodyKind::ClinicalNote {
        line.push_str(&style.note("[CLINICAL NOTE]"));
        line.push(' ');
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
        "{} {} → {conv}: {}",
        style.dim(&clock_time(&m.sent_at, now)),
        style.bold(&sender),
        clean(&m.text).replace('\n', "\n    ")
    ));
    if let Some(p) = &m.patient {
        line.push_str(&format!(" (patient {})", NhsNumber::grouped(&clean(p))));
    }
    if let Some(r) = &m.reply_to {
        line.push_str(&style.dim(&format!(" [reply to {r}]")));
    }
    line
}

fn whoami(w: &WhoamiView, style: Style, now: &Now) -> String {
    let mut rows = vec![(
        "user",
        format!("{} ({})", style.bold(w.username.as_str()), w.user_id),
    )];
    if let Some(n) = &w.display_name {
        rows.push(("name", clean(n)));
    }
    if let Some(r) = &w.role {
        rows.push(("role", format!("{r:?}").to_lowercase()));
    }
    rows.push((
        "device",
        format!("{} ({})", clean(&w.device_name), w.device_id),
    ));
    rows.push(("fingerprint", w.fingerprint.clone()));
    rows.push(("server", w.server.clone()));
    if let Some(t) = &w.trust {
        rows.push(("trust", t.clone()));
    }
    rows.push((
        "session",
        format!("ends {}", until(&w.session_expires_at, now)),
    ));
    rows.push((
        "keystore",
        match w.unlocked_for_secs {
            Some(s) => format!("unlocked (locks in {} unless used)", describe_secs(s)),
            None => "locked".to_owned(),
        },
    ));
    rows.iter()
        .map(|(k, v)| format!("{:<12} {v}", format!("{k}:")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An aligned table: a header row, then the rows; widths by characters.
pub fn table(headers: &[&str], rows: &[Vec<String>], style: Style) -> String {
    let visible = |s: &str| strip_ansi(s).chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(visible(cell));
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.clone()
                } else {
                    let pad = widths[i].saturating_sub(visible(c));
                    format!("{c}{}", " ".repeat(pad))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(headers.iter().map(|h| style.bold(h)).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

/// `wardline conversations` as a table.
pub fn conversation_table(rows: &[&ConversationRow], style: Style, now: &Now) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|c| {
            let unread = match (c.unread, c.unread_urgent) {
                (0, _) => style.dim("-"),
                (n, 0) => style.bold(&n.to_string()),
                (n, u) => style.alarm(&format!("{n} ({u} urgent)")),
            };
            let mut members = c.members.join(", ");
            if members.chars().count() > 40 {
                members = format!("{}…", members.chars().take(39).collect::<String>());
            }
            vec![
                unread,
                clean(&c.title),
                members,
                c.last_message_at
                    .as_ref()
                    .map_or_else(|| style.dim("-"), |t| ago(t, now)),
                style.dim(c.conv_id.as_str()),
            ]
        })
        .collect();
    table(
        &["UNREAD", "TITLE", "MEMBERS", "LAST MESSAGE", "ID"],
        &cells,
        style,
    )
}

/// `wardline devices` as a table; this device is starred.
pub fn device_table(rows: &[&DeviceRow], style: Style, now: &Now) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|d| {
            let state = match d.state {
                DeviceStatus::Active => style.good("active"),
                DeviceStatus::Revoked => style.dim("revoked"),
                DeviceStatus::WipePending => style.warn("wipe pending"),
                DeviceStatus::Wiped => style.dim("wiped"),
            };
            vec![
                format!("{}{}", d.device_id, if d.this_device { " *" } else { "" }),
                clean(&d.name),
                state,
                d.last_seen
                    .as_ref()
                    .map_or_else(|| style.dim("never"), |t| clock_time(t, now)),
                datetime(&d.created_at, now),
            ]
        })
        .collect();
    let mut out = table(
        &["DEVICE", "NAME", "STATE", "LAST SEEN", "ADDED"],
        &cells,
        style,
    );
    if rows.iter().any(|d| d.this_device) {
        out.push_str("\n* this device");
    }
    out
}

/// One device's safety number, as two rows of six groups.
pub fn safety_block(s: &SafetyRow, style: Style, now: &Now) -> String {
    let standing = match s.standing {
        DeviceStanding::Verified => style.good("verified"),
        DeviceStanding::Unverified => "not verified yet".to_owned(),
        DeviceStanding::New => style.warn("NEW since you first saw them, not verified"),
        DeviceStanding::KeysChanged => {
            style.alarm("KEYS CHANGED: nothing is sent to it until verified")
        }
        DeviceStanding::ThisDevice => "this device".to_owned(),
    };
    let seen = s
        .first_seen
        .as_ref()
        .map(|t| format!(", first seen {}", ago(t, now)))
        .unwrap_or_default();
    let groups: Vec<&str> = s.safety_number.split(' ').collect();
    let (top, bottom) = groups.split_at(groups.len().min(6));
    format!(
        "{} device {}{seen}: {standing}\n    {}\n    {}",
        style.bold(s.username.as_str()),
        s.device_id,
        top.join(" "),
        bottom.join(" ")
    )
}

/// `2026-11-23 07:31` from the wire form.
pub(super) fn short_utc(s: &str) -> String {
    format!("{} {}", &s[..10], &s[11..16])
}
