//! An export that did not finish: `--post` failed, or the server's audit
//! log could not record it. The client keeps no record of exports of its
//! own (the keystore holds no "exported" mark); what counts as done is the
//! `posted` event and the audit log's entry for the FHIR server, and
//! neither is made unless the post succeeded. These errors say so
//! plainly: whether the file was written and where, that the post is not
//! recorded, which entries the FHIR server named as failed, and the exact
//! command that retries (the command as run, with `--force`, since the
//! file now exists).

use std::path::Path;

use super::post::{PostError, Posted, Reached};
use crate::error::Error;
use crate::output::plural;
use crate::output::record::{FhirStored, Incomplete};

/// Entries named in the message for people; `--json` lists them all.
const ENTRIES_SHOWN: usize = 10;

/// Why re-running is safe.
const IDEMPOTENT: &str =
    "every entry is a conditional create, so the FHIR server stores nothing twice";

/// `--post` failed after the file was written and its export recorded in
/// the audit log.
pub fn post_failed(file: &Path, url: &str, e: PostError, token_set: bool) -> Error {
    let (fhir_stored, stored) = match e.reached {
        Reached::NotSent => (FhirStored::Nothing, "Nothing reached the FHIR server.".to_owned()),
        Reached::Unknown => (
            FhirStored::Unknown,
            "No usable answer came back, so the FHIR server may or may not have stored it."
                .to_owned(),
        ),
        Reached::Refused => (
            FhirStored::Nothing,
            "A FHIR server applies a transaction whole or not at all, so none of it is in the health record.".to_owned(),
        ),
        Reached::PartlyRefused => (
            FhirStored::Some,
            "The FHIR server may have stored the other entries.".to_owned(),
        ),
    };
    let (retry, retry_args) = retry_command(file.exists());
    let mut lines = vec![
        format!("posting to {url} failed: {}.", e.reason),
        format!(
            "The bundle file was written: {} (the audit log records that export to the file).",
            file.display()
        ),
        format!(
            "The post was NOT recorded as done, and the audit log does not show these messages as exported to {url}. {stored}"
        ),
    ];
    if !e.failed_entries.is_empty() {
        let shown: Vec<String> = e
            .failed_entries
            .iter()
            .take(ENTRIES_SHOWN)
            .map(|f| format!("  {}", f.describe()))
            .collect();
        lines.push(format!(
            "The FHIR server named {} as failed:",
            plural(e.failed_entries.len(), "entry", "entries")
        ));
        lines.extend(shown);
        if e.failed_entries.len() > ENTRIES_SHOWN {
            lines.push(format!(
                "  and {} more (--json lists them all)",
                e.failed_entries.len() - ENTRIES_SHOWN
            ));
        }
    }
    lines.push(advice(&e, token_set).to_owned());
    lines.push(format!("To retry ({IDEMPOTENT}), run:"));
    lines.push(format!("  {retry}"));
    Error::Incomplete(Box::new(Incomplete {
        code: "fhir_post_failed",
        message: lines.join("\n"),
        file: file.to_path_buf(),
        file_written: file.exists(),
        audited: vec![file.display().to_string()],
        url: Some(url.to_owned()),
        posted: false,
        fhir_stored: Some(fhir_stored),
        http_status: e.http_status,
        failed_entries: e.failed_entries,
        retry,
        retry_args,
    }))
}

/// The FHIR server took the bundle, but the audit log could not record
/// the post: it is not recorded as done until a retry records it.
pub fn post_not_audited(file: &Path, url: &str, posted: &Posted, why: &Error) -> Error {
    let (retry, retry_args) = retry_command(file.exists());
    let lines = [
        format!(
            "the FHIR server at {url} took the bundle (HTTP {}: {} created, {} already held), but the audit log could not record the post: {why}",
            posted.status, posted.created, posted.existing
        ),
        format!(
            "The bundle file was written: {} (the audit log records that export to the file).",
            file.display()
        ),
        format!(
            "The post is NOT recorded as done: the audit log does not show these messages as exported to {url}."
        ),
        format!("To record it ({IDEMPOTENT}), run:"),
        format!("  {retry}"),
    ];
    Error::Incomplete(Box::new(Incomplete {
        code: "export_not_audited",
        message: lines.join("\n"),
        file: file.to_path_buf(),
        file_written: file.exists(),
        audited: vec![file.display().to_string()],
        url: Some(url.to_owned()),
        posted: false,
        fhir_stored: Some(FhirStored::All),
        http_status: Some(posted.status),
        failed_entries: Vec::new(),
        retry,
        retry_args,
    }))
}

/// The file was written but the audit log could not record it: every
/// export must be attributable (R8), so the file is removed again and
/// nothing counts as exported.
pub fn file_not_audited(file: &Path, url: Option<&str>, why: &Error) -> Error {
    let removed = std::fs::remove_file(file).is_ok() || !file.exists();
    let (retry, retry_args) = retry_command(file.exists());
    let posting = url.map_or_else(String::new, |u| format!(", and nothing was posted to {u}"));
    let fate = if removed {
        format!(
            "Every export must be in the audit log, so the bundle file {} was removed again{posting}: nothing was exported.",
            file.display()
        )
    } else {
        format!(
            "Every export must be in the audit log, but the bundle file {} could not be removed: delete it; it is not recorded as exported{posting}.",
            file.display()
        )
    };
    let lines = [
        format!("the audit log could not record the export: {why}"),
        fate,
        "To retry, run:".to_owned(),
        format!("  {retry}"),
    ];
    Error::Incomplete(Box::new(Incomplete {
        code: "export_not_audited",
        message: lines.join("\n"),
        file: file.to_path_buf(),
        file_written: file.exists(),
        audited: Vec::new(),
        url: url.map(str::to_owned),
        posted: false,
        fhir_stored: url.map(|_| FhirStored::Nothing),
        http_status: None,
        failed_entries: Vec::new(),
        retry,
        retry_args,
    }))
}

/// What to do before retrying, where the failure says.
fn advice(e: &PostError, token_set: bool) -> &'static str {
    match (e.reached, e.http_status) {
        (Reached::NotSent, _) => {
            "Check that the FHIR server is up and reachable at that URL (and, for https://, --fhir-ca or --fhir-pin)."
        }
        (Reached::Unknown, _) => {
            "If this happens again, ask the FHIR server's administrators whether the bundle arrived."
        }
        (_, Some(401)) if token_set => {
            "The FHIR server did not accept the bearer token in WARDLINE_FHIR_TOKEN (wrong or expired): set a valid one."
        }
        (_, Some(401)) => {
            "WARDLINE_FHIR_TOKEN is not set: set it to a bearer token the FHIR server accepts."
        }
        (_, Some(403)) => {
            "The token in WARDLINE_FHIR_TOKEN does not allow this: ask the FHIR server's administrators."
        }
        (_, Some(404 | 405)) => "Check the URL: give the FHIR server's base URL.",
        (_, Some(408 | 429 | 500..=599)) => "The FHIR server is busy or failing: retry in a while.",
        (Reached::Refused | Reached::PartlyRefused, _) => {
            "The FHIR server found fault with what was sent; unchanged, a retry will fail again: give its reasons above to the FHIR server's administrators."
        }
    }
}

/// The command as this process was run, with `--force` added (before any
/// `--`) when `force` and it is not there yet: quoted for a POSIX shell,
/// and as arguments.
fn retry_command(force: bool) -> (String, Vec<String>) {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let args = with_force(args, force);
    let line = args
        .iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    (line, args)
}

fn with_force(mut args: Vec<String>, force: bool) -> Vec<String> {
    let end = args.iter().position(|a| a == "--").unwrap_or(args.len());
    if force && !args[..end].iter().any(|a| a == "--force") {
        args.insert(end, "--force".to_owned());
    }
    args
}

/// `arg` as one word for a POSIX shell.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn force_is_added_once_and_before_a_double_dash() {
        let plain = strings(&["wardline", "export", "alice", "--out", "x.json"]);
        assert_eq!(
            with_force(plain.clone(), true),
            strings(&["wardline", "export", "alice", "--out", "x.json", "--force"])
        );
        assert_eq!(with_force(plain.clone(), false), plain);
        let forced = strings(&["wardline", "export", "--force", "alice", "--out", "x"]);
        assert_eq!(with_force(forced.clone(), true), forced);
        let dashed = strings(&["wardline", "export", "--out", "x", "--", "--odd title"]);
        assert_eq!(
            with_force(dashed, true),
            strings(&[
                "wardline",
                "export",
                "--out",
                "x",
                "--force",
                "--",
                "--odd title"
            ])
        );
    }

    #[test]
    fn a_file_the_audit_log_could_not_record_is_removed_and_the_retry_needs_no_force()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("bundle.json");
        std::fs::write(&file, "{}")?;
        let why = Error::Refused("the connection to the server was lost".into());
        let err = file_not_audited(&file, Some("http://127.0.0.1:9/fhir"), &why);
        assert!(!file.exists(), "an unaudited export does not stay");
        let i = err.incomplete().ok_or("an incomplete export")?;
        assert_eq!(err.code(), "export_not_audited");
        assert!(!i.file_written && !i.posted && i.audited.is_empty());
        assert_eq!(i.fhir_stored, Some(FhirStored::Nothing));
        assert!(!i.retry_args.iter().any(|a| a == "--force"));
        for needle in [
            "the connection to the server was lost",
            "was removed again, and nothing was posted to http://127.0.0.1:9/fhir: nothing was exported",
            "To retry, run:",
        ] {
            assert!(i.message.contains(needle), "{needle:?} in {}", i.message);
        }
        Ok(())
    }

    #[test]
    fn a_post_the_audit_log_could_not_record_is_not_done_and_says_how_to_record_it()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("bundle.json");
        std::fs::write(&file, "{}")?;
        let posted = Posted {
            status: 200,
            created: 4,
            existing: 0,
        };
        let why = Error::Refused("the connection to the server was lost".into());
        let err = post_not_audited(&file, "http://127.0.0.1:9/fhir", &posted, &why);
        let i = err.incomplete().ok_or("an incomplete export")?;
        assert!(file.exists() && i.file_written && !i.posted);
        assert_eq!(i.fhir_stored, Some(FhirStored::All));
        assert_eq!(i.retry_args.last().map(String::as_str), Some("--force"));
        assert!(
            i.message
                .contains("The post is NOT recorded as done: the audit log does not show"),
            "{}",
            i.message
        );
        assert!(
            i.message.ends_with(&format!("  {}", i.retry)),
            "{}",
            i.message
        );
        Ok(())
    }

    #[test]
    fn arguments_are_quoted_for_a_shell_only_when_needed() {
        assert_eq!(shell_quote("--out"), "--out");
        assert_eq!(
            shell_quote("http://127.0.0.1:8080/fhir"),
            "http://127.0.0.1:8080/fhir"
        );
        assert_eq!(shell_quote("Ward 10"), "'Ward 10'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }
}
