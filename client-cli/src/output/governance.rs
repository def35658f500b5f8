//! What the administration commands report, and its human form: account
//! and audit tables, the residency report, and one sentence per change.

use serde::Serialize;
use wardline_protocol::wire::{AccountInfo, AccountState, AdminResidencyOk};
use wardline_protocol::{DeviceId, Role, Secret, Timestamp, Username};

use super::clean;
use super::human::{Style, table};
use super::time::{Now, datetime};

/// One audit log entry as shown (`wardline admin audit`).
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    /// Position in the log.
    pub seq: u64,
    /// When.
    pub time: Timestamp,
    /// What happened.
    pub kind: String,
    /// Who did it (user id).
    pub actor: Option<String>,
    /// Their username, when the directory knows the id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_username: Option<Username>,
    /// From which device.
    pub device: Option<String>,
    /// What it was done to.
    pub target: Option<String>,
    /// The target's username, when it is a user the directory knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_username: Option<Username>,
    /// `ok`, `refused`, `failed`, ...
    pub outcome: String,
    /// Why, or further detail.
    pub reason: Option<String>,
}

/// A change to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountChange {
    /// Disabled: signed out everywhere, cannot sign in.
    Disabled,
    /// Enabled again.
    Enabled,
    /// A pending self-registration approved.
    Approved,
}

/// `wardline admin user list` as a table.
pub fn account_table(rows: &[&AccountInfo], style: Style) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|a| {
            vec![
                style.bold(a.username.as_str()),
                clean(&a.display_name),
                role_name(a.role).to_owned(),
                account_state(a.state, style),
                a.region.to_string(),
                if a.legal_hold {
                    style.warn("yes")
                } else {
                    style.dim("-")
                },
                style.dim(a.user_id.as_str()),
            ]
        })
        .collect();
    table(
        &[
            "USERNAME",
            "NAME",
            "ROLE",
            "STATE",
            "REGION",
            "LEGAL HOLD",
            "ID",
        ],
        &cells,
        style,
    )
}

/// A role as people write it.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Clinician => "clinician",
        Role::Admin => "admin",
        Role::RecordsOfficer => "records officer",
    }
}

fn account_state(state: AccountState, style: Style) -> String {
    match state {
        AccountState::Enrolling => "enrolling".to_owned(),
        AccountState::PendingApproval => style.warn("awaiting approval"),
        AccountState::Active => style.good("active"),
        AccountState::Disabled => style.dim("disabled"),
    }
}

/// `wardline admin audit` as a table.
pub fn audit_table(rows: &[&AuditRow], style: Style, now: &Now) -> String {
    let dash = || style.dim("-");
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|e| {
            let outcome = match e.outcome.as_str() {
                "ok" => e.outcome.clone(),
                "pending" => style.warn(&e.outcome),
                other => style.alarm(other),
            };
            let named = |id: &Option<String>, name: &Option<Username>| match (id, name) {
                (_, Some(n)) => n.to_string(),
                (Some(id), None) => clean(id),
                (None, None) => dash(),
            };
            vec![
                style.dim(&e.seq.to_string()),
                datetime(&e.time, now),
                e.kind.clone(),
                named(&e.actor, &e.actor_username),
                e.device.as_deref().map_or_else(dash, clean),
                named(&e.target, &e.target_username),
                outcome,
                e.reason.as_deref().map_or_else(dash, clean),
            ]
        })
        .collect();
    table(
        &[
            "#", "TIME", "KIND", "ACTOR", "DEVICE", "TARGET", "OUTCOME", "REASON",
        ],
        &cells,
        style,
    )
}

/// The residency report: where data is held, flagged where the policy
/// does not permit it.
pub fn residency(r: &AdminResidencyOk, style: Style) -> String {
    let permitted = |region| r.permitted.contains(region);
    let mut out = vec![format!(
        "Deployment region: {}{}",
        style.bold(r.deployment_region.as_str()),
        if permitted(&r.deployment_region) {
            String::new()
        } else {
            style.alarm(" (NOT PERMITTED by the residency policy)")
        }
    )];
    if r.regions.is_empty() {
        out.push("Nothing is stored yet.".to_owned());
    } else {
        let cells: Vec<Vec<String>> = r
            .regions
            .iter()
            .map(|h| {
                vec![
                    style.bold(h.region.as_str()),
                    h.users.to_string(),
                    h.conversations.to_string(),
                    h.messages.to_string(),
                    bytes(h.message_bytes),
                    if permitted(&h.region) {
                        style.good("yes")
                    } else {
                        style.alarm("NO")
                    },
                ]
            })
            .collect();
        out.push(table(
            &[
                "REGION",
                "USERS",
                "CONVERSATIONS",
                "MESSAGES",
                "STORED",
                "PERMITTED",
            ],
            &cells,
            style,
        ));
    }
    let outside: Vec<&str> = r
        .regions
        .iter()
        .filter(|h| !permitted(&h.region))
        .map(|h| h.region.as_str())
        .collect();
    if !outside.is_empty() {
        out.push(style.alarm(&format!(
            "Data is held in {}, which the residency policy does not permit (rule R6): tell the trust's information governance lead.",
            outside.join(", ")
        )));
    }
    let list: Vec<&str> = r.permitted.iter().map(|p| p.as_str()).collect();
    out.push(format!(
        "Permitted regions ({}): {}",
        list.len(),
        list.join(", ")
    ));
    out.push(format!(
        "Source of the permitted list: {}",
        clean(&r.policy_source)
    ));
    out.join("\n")
}

/// `4.0 KiB` for a byte count.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    // Precision beyond a decimal place means nothing in a report.
    #[allow(clippy::cast_precision_loss)]
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// One sentence for a change to an account.
pub fn account_changed(username: &Username, change: AccountChange) -> String {
    match change {
        AccountChange::Disabled => format!(
            "Disabled {username}: signed out on every device, and cannot sign in until enabled again (`wardline admin user enable {username} --reason ...`)."
        ),
        AccountChange::Enabled => format!("Enabled {username}: they can sign in again."),
        AccountChange::Approved => format!(
            "Approved {username}: the account is active, and their devices can now use Wardline."
        ),
    }
}

/// Who or what a legal hold names, for a sentence.
pub fn hold_subject(username: Option<&Username>, title: Option<&str>, id: &str) -> String {
    match (username, title) {
        (Some(u), _) => format!("user {u}"),
        (None, Some(t)) => format!("conversation {}", clean(t)),
        (None, None) => format!("conversation {id}"),
    }
}

/// After `admin user reset`: the new code, and what happens next.
pub fn user_reset(username: &Username, code: &Secret, until: &str) -> String {
    format!(
        "Reset {username}: their password and authenticator are erased and every session is closed; their devices stay registered.\nGive {username} this one-time enrolment code in person or by another secure route; it works until {until} (UTC):\n\n    {}\n\n{username} enrols again with it (`wardline enrol --code <code>`, which registers a new device), then logs in on their other devices with the new password (`wardline login`).",
        code.expose()
    )
}

/// After `admin device revoke`.
pub fn device_revoked(device: &DeviceId) -> String {
    format!(
        "Revoked device {device}: it is signed out and can no longer sign in or receive messages. Its keys stay on it; to have them destroyed, order a wipe (`wardline admin wipe {device} --reason ...`)."
    )
}

/// After `admin audit --verify` succeeded; `checkpoint` is the audit key a
/// checkpoint was checked against, and where it came from.
pub fn audit_verified(
    entries: usize,
    (first, last): (u64, u64),
    checkpoint: Option<(&str, &str)>,
) -> String {
    let pruned = match checkpoint {
        None => String::new(),
        Some((key, "given")) => format!(
            ", after a pruned prefix vouched for by a checkpoint signed with the audit key you gave ({key})"
        ),
        Some((key, _)) => format!(
            ", after a pruned prefix vouched for by a checkpoint signed with the server's audit key {key}; compare it with the key recorded when the deployment was set up, or pass that as --audit-key"
        ),
    };
    format!(
        "The audit log verifies: {entries} entries (#{first} to #{last}) form an unbroken hash chain{pruned}."
    )
}

/// After `admin incident-mode on|off`.
pub fn incident_mode(enabled: bool, style: Style) -> String {
    if enabled {
        style.warn(
            "Incident mode is ON: anyone who can reach the server can register an account with `wardline register`. Each such account can do nothing until an administrator approves it: review them with `wardline admin user list --state pending-approval`, then `wardline admin user approve USER`. Turn incident mode off when the incident is over.",
        )
    } else {
        "Incident mode is off: self-registration is closed. Accounts registered during the incident keep their state; review any still awaiting approval with `wardline admin user list --state pending-approval`.".to_owned()
    }
}

/// After `admin legal-hold ... on|off`.
pub fn legal_hold(hold: bool, subject: &str) -> String {
    if hold {
        format!(
            "Legal hold placed on {subject}: retention deletes nothing of it until the hold is lifted."
        )
    } else {
        format!("Legal hold lifted from {subject}: retention applies to it again.")
    }
}

/// After `wardline register`.
pub fn registered(username: &Username, code: &Secret, until: &str, enrol: &str) -> String {
    format!(
        "Registered {username}. Your one-time enrolment code works until {until} (UTC):\n\n    {}\n\nEnrol this device now:\n    {enrol}\nAn administrator must approve your account before you can send or read messages; tell them your username ({username}).",
        code.expose()
    )
}

/// After `conversation retention`; `title` is ready to print.
pub fn retention_set(days: u32, title: &str) -> String {
    format!(
        "Messages in {title} are now deleted from the server {days} day(s) after it stored them (or sooner, if the deployment's own period is shorter). Transcribe clinical decisions to the health record (`wardline export`) before then."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_sizes_read_in_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(4127), "4.0 KiB");
        assert_eq!(bytes(5 * 1024 * 1024 + 1), "5.0 MiB");
    }
}
