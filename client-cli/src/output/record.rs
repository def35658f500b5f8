//! What `wardline export` and `wardline verify-export` report, and its
//! human form.

use std::path::PathBuf;

use serde::Serialize;
use wardline_protocol::{ConversationId, DeviceId, MessageId, Timestamp, Username};

use super::human::Style;
use super::time::{Now, datetime};
use super::{clean, plural};

/// What an export wrote and what it left out.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    /// The bundle file.
    pub file: PathBuf,
    /// Messages exported.
    pub messages: usize,
    /// `collection` or `transaction`.
    pub bundle_type: &'static str,
    /// The conversation.
    pub conv_id: ConversationId,
    /// Exported with the patient given by `--patient` (they named none).
    pub linked_by_exporter: usize,
    /// Left out: about another patient than `--patient`.
    pub other_patient: usize,
    /// Left out: no patient tag, and no `--patient` given.
    pub no_patient: usize,
    /// Left out: could not be opened and verified again on this device.
    pub unverifiable: usize,
    /// Exported, signed with a key this device pinned for the sending
    /// device when it was sent and replaced since (`verify --confirm`).
    pub signed_with_replaced_keys: usize,
    /// For people only.
    #[serde(skip)]
    pub conv_title: String,
}

/// An entry of a posted bundle that the FHIR server named as failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedEntry {
    /// Its position in the bundle, from 0 (`Bundle.entry[index]`).
    pub index: usize,
    /// `Communication` or `Provenance`.
    pub resource_type: Option<String>,
    /// The message it carries (a Provenance: the message it attests).
    pub msg_id: Option<String>,
    /// The status the server gave it, in a transaction-response.
    pub status: Option<String>,
    /// What the server said of it.
    pub diagnostics: Option<String>,
}

impl FailedEntry {
    /// `entry 2 (the Communication of message …): 400 Bad Request: why`
    pub fn describe(&self) -> String {
        let what = match (&self.resource_type, &self.msg_id) {
            (Some(t), Some(m)) => format!(" (the {} of message {m})", clean(t)),
            (None, Some(m)) => format!(" (message {m})"),
            (Some(t), None) => format!(" (a {})", clean(t)),
            (None, None) => String::new(),
        };
        let said: Vec<&str> = [&self.status, &self.diagnostics]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let mut line = format!("entry {}{what}", self.index);
        if !said.is_empty() {
            line.push_str(": ");
            line.push_str(&said.join(": "));
        }
        clean(&line)
    }
}

/// What the FHIR server holds of a post that did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FhirStored {
    /// Nothing: it never reached the server, or the server refused the
    /// transaction (applied whole or not at all).
    Nothing,
    /// No usable answer came back: perhaps all, perhaps nothing.
    Unknown,
    /// The server reports some entries as failed; the others may be stored.
    Some,
    /// All of it (the audit log could not record the post).
    All,
}

/// An export that did not finish: what is done, what is not, and the
/// command that finishes it. The `incomplete` field of the `error` event.
#[derive(Debug, Clone, Serialize)]
pub struct Incomplete {
    /// The error code (`fhir_post_failed`, `export_not_audited`).
    #[serde(skip)]
    pub code: &'static str,
    /// The whole explanation, for people (and the event's `message`).
    #[serde(skip)]
    pub message: String,
    /// The bundle file.
    pub file: PathBuf,
    /// Whether the file is there now.
    pub file_written: bool,
    /// What the server's audit log records of this run (its
    /// destinations: the file, once written and recorded).
    pub audited: Vec<String>,
    /// The FHIR server's base URL, with `--post`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Whether the post is recorded as done: never, here. (No `posted`
    /// event, and no export to `url` in the audit log.)
    pub posted: bool,
    /// What the FHIR server holds of it, with `--post`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fhir_stored: Option<FhirStored>,
    /// The FHIR server's HTTP status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// The entries the FHIR server named as failed.
    pub failed_entries: Vec<FailedEntry>,
    /// The command that retries, for a POSIX shell.
    pub retry: String,
    /// The same command, one argument each.
    pub retry_args: Vec<String>,
}

/// How a disclosed signing key compares with what this device knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyCheck {
    /// It is the key this device pinned for the signing device.
    Matches,
    /// It is the key this device pinned for the signing device when the
    /// message was sent, replaced since (`key_pinned_until` says when).
    PinnedUntil,
    /// This device pinned that key for the signing device only until
    /// `key_pinned_until`, before the message says it was sent: not
    /// accepted as that device's signature.
    ReplacedBeforeSent,
    /// This device pinned that key for the signing device until
    /// `key_pinned_until` but the user never verified it in person before
    /// replacing it: most likely a substituted key, so not accepted as
    /// that device's signature.
    ReplacedUnverified,
    /// This device pinned another key for that device: not its signature.
    Differs,
    /// This device has never seen the signing device.
    UnknownDevice,
    /// Not compared: no keystore here, or the entry discloses no key.
    NotChecked,
}

impl KeyCheck {
    /// Whether the signature is not accepted as the device's.
    pub fn is_alarm(self) -> bool {
        matches!(
            self,
            KeyCheck::Differs | KeyCheck::ReplacedBeforeSent | KeyCheck::ReplacedUnverified
        )
    }
}

/// One entry of a checked export.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedEntry {
    /// The Communication's `fullUrl`.
    pub full_url: Option<String>,
    /// The signed message id.
    pub msg_id: Option<MessageId>,
    /// The signing device.
    pub sender_device: Option<DeviceId>,
    /// Its owner, when this device knows the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_username: Option<Username>,
    /// Every check that failed (empty: the entry verifies).
    pub failures: Vec<String>,
    /// The signing key against this device's pinned keys.
    pub key: KeyCheck,
    /// For a key pinned earlier and replaced since: when it was replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_pinned_until: Option<Timestamp>,
    /// No check failed and the key is not someone else's.
    pub ok: bool,
}

/// The summary line of an export.
pub fn exported(s: &ExportSummary, style: Style) -> String {
    let mut lines = vec![style.good(&format!(
        "Exported {} of {} to {} (FHIR R4 {} bundle).",
        plural(s.messages, "message", "messages"),
        clean(&s.conv_title),
        s.file.display(),
        s.bundle_type
    ))];
    if s.linked_by_exporter > 0 {
        lines.push(format!(
            "{} no patient and {} linked to the patient you gave; the record shows you made that link.",
            plural(s.linked_by_exporter, "of them names", "of them name"),
            if s.linked_by_exporter == 1 { "is" } else { "are" }
        ));
    }
    if s.signed_with_replaced_keys > 0 {
        lines.push(format!(
            "{} signed with a key this device pinned for the sending device at the time and has replaced since (after `wardline verify --confirm`); `wardline verify-export` shows until when.",
            plural(
                s.signed_with_replaced_keys,
                "of them was",
                "of them were"
            )
        ));
    }
    let mut left = Vec::new();
    if s.other_patient > 0 {
        left.push(format!("{} about another patient", s.other_patient));
    }
    if s.no_patient > 0 {
        left.push(format!(
            "{} naming no patient (give --patient NHS_NUMBER to link them)",
            s.no_patient
        ));
    }
    if s.unverifiable > 0 {
        left.push(format!(
            "{} that could not be verified again (see the warnings above)",
            s.unverifiable
        ));
    }
    if !left.is_empty() {
        lines.push(format!("Left out: {}.", left.join("; ")));
    }
    lines.push(format!(
        "The file holds patient information: keep it safe, and delete it once it is in the record. Check it with `wardline verify-export {}`.",
        s.file.display()
    ));
    lines.join("\n")
}

/// After `export --post`.
pub fn posted(url: &str, status: u16, created: usize, existing: usize) -> String {
    let mut line = format!("Posted to {url} (HTTP {status})");
    if created + existing > 0 {
        line.push_str(&format!(
            ": the FHIR server created {} and already held {} (each message is a Communication and its Provenance).",
            plural(created, "resource", "resources"),
            existing
        ));
    } else {
        line.push('.');
    }
    line
}

/// One line per checked entry.
pub fn verified_entry(e: &VerifiedEntry, style: Style, now: &Now) -> String {
    let id = e
        .msg_id
        .map(|m| m.to_string())
        .or_else(|| e.full_url.clone())
        .unwrap_or_else(|| "(entry without an id)".into());
    let signer = match (&e.sender_username, &e.sender_device) {
        (Some(u), Some(d)) => format!("device {d} of {u}"),
        (None, Some(d)) => format!("device {d}"),
        _ => "an unnamed device".into(),
    };
    let key = match e.key {
        KeyCheck::Matches => "its key matches the one pinned on this device".to_owned(),
        KeyCheck::PinnedUntil => format!(
            "signed with the key pinned until {} (the key this device pinned for it when the message was sent; replaced since, after `wardline verify --confirm`)",
            pinned_until(e, now)
        ),
        KeyCheck::ReplacedBeforeSent => style.alarm(&format!(
            "its key was pinned for that device only until {}, BEFORE the message says it was sent: not accepted as that device's signature",
            pinned_until(e, now)
        )),
        KeyCheck::ReplacedUnverified => style.alarm(&format!(
            "its key was pinned for that device until {} but NEVER verified in person before it was replaced (most likely a substituted key): not accepted as that device's signature",
            pinned_until(e, now)
        )),
        KeyCheck::Differs => style.alarm(
            "its key is NOT the one this device pinned for that device: the signature is not that device's",
        ),
        KeyCheck::UnknownDevice => style.warn(
            "its key could not be checked: this device has never seen that device (compare it with the trust's directory)",
        ),
        KeyCheck::NotChecked => style.warn("its key was not checked against a pinned key"),
    };
    if e.ok {
        format!("{}  {id}: signed by {signer}; {key}", style.good("ok    "))
    } else {
        let mut why = e.failures.clone();
        if e.key.is_alarm() {
            why.push(key);
        } else if e.sender_device.is_some() {
            why.push(format!("signed by {signer}"));
        }
        format!("{}  {id}: {}", style.alarm("FAILED"), why.join("; "))
    }
}

fn pinned_until(e: &VerifiedEntry, now: &Now) -> String {
    e.key_pinned_until
        .as_ref()
        .map_or_else(|| "an unknown time".to_owned(), |t| datetime(t, now))
}

/// The closing line of `verify-export`.
pub fn checked(entries: usize, failed: usize, keys_unknown: usize, style: Style) -> String {
    let mut line = match (failed, entries) {
        (0, 1) => style.good(
            "The entry verifies: its text is exactly what its sender's device signed.",
        ),
        (0, n) => style.good(&format!(
            "All {n} entries verify: each text is exactly what its sender's device signed."
        )),
        (f, n) => style.alarm(&format!(
            "{f} of {} FAILED: do not rely on {}; the file was changed after export, or was not made by Wardline.",
            plural(n, "entry", "entries"),
            if f == 1 { "it" } else { "them" }
        )),
    };
    if keys_unknown > 0 {
        line.push_str(&format!(
            "\n{} signed by a key this device could not compare with a pinned key.",
            plural(keys_unknown, "entry is", "entries are")
        ));
    }
    line
}
