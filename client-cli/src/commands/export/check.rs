//! `wardline verify-export FILE`: checks every entry of an exported bundle
//! (`record::verify_bundle`: signature, decryption with the disclosed key,
//! and that the Communication says exactly what was signed), then compares
//! each entry's signing key with the key this device pinned for the
//! signing device when the message was sent (the current pin, or one
//! replaced since by `verify --confirm`), since the bundle alone cannot
//! prove whose key it is.

use std::path::PathBuf;

use clap::Args;
use wardline_protocol::Timestamp;
use wardline_protocol::record::{self, Bundle, ENVELOPE_EXTENSION_URL, EntryVerdict, Resource};

use crate::commands::{Context, open_keystore};
use crate::error::Error;
use crate::keystore::{Keystore, PinnedMatch, State};
use crate::output::record::{KeyCheck, VerifiedEntry};
use crate::output::{Event, plural};

/// The largest file read: some 50,000 messages, far beyond one export.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Arguments of `wardline verify-export`.
#[derive(Debug, Args)]
pub struct VerifyExportArgs {
    /// The bundle, as `wardline export` wrote it (or as a FHIR server
    /// returned it).
    pub file: PathBuf,
    /// Do not open this device's keystore (no passphrase is asked): the
    /// signing keys are then not compared with the ones pinned here.
    #[arg(long)]
    pub no_keystore: bool,
}

/// Checks the file; fails, naming the entries, if any does not verify.
pub fn run(ctx: &Context, args: &VerifyExportArgs) -> Result<(), Error> {
    let name = args.file.display().to_string();
    let unreadable = |why: String| Error::Usage(format!("cannot read {name}: {why}"));
    let size = std::fs::metadata(&args.file)
        .map_err(|e| unreadable(e.to_string()))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(unreadable(format!(
            "it is {size} bytes, more than any export; is it the right file?"
        )));
    }
    let text = std::fs::read_to_string(&args.file).map_err(|e| unreadable(e.to_string()))?;
    let verdicts = record::verify_bundle(&text).map_err(|e| Error::Unverified {
        code: "export_invalid",
        message: format!("{name} is not an export that can be checked: {e}"),
    })?;
    let keystore: Option<Keystore> = if args.no_keystore {
        None
    } else if Keystore::exists(&ctx.home) {
        Some(open_keystore(ctx)?)
    } else {
        ctx.out.note(&format!(
            "wardline: note: there is no keystore in {}, so the signing keys are not compared with pinned ones",
            ctx.home.display()
        ));
        None
    };
    let sent = send_times(&text);
    let entries: Vec<VerifiedEntry> = verdicts
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let sent_at = sent.get(i).and_then(Option::as_ref);
            entry(v, keystore.as_ref().map(Keystore::state), sent_at)
        })
        .collect();
    let failed: Vec<&VerifiedEntry> = entries.iter().filter(|e| !e.ok).collect();
    let keys_unknown = entries
        .iter()
        .filter(|e| e.ok && matches!(e.key, KeyCheck::UnknownDevice | KeyCheck::NotChecked))
        .count();
    let summary = Event::ExportChecked {
        file: args.file.clone(),
        entries: entries.len(),
        failed: failed.len(),
        keys_unknown,
    };
    let names: Vec<String> = failed.iter().map(|e| entry_name(e)).collect();
    let events: Vec<Event> = entries.into_iter().map(Event::ExportEntry).collect();
    ctx.out.emit_all(&events)?;
    ctx.out.emit(&summary)?;
    if names.is_empty() {
        return Ok(());
    }
    Err(Error::Unverified {
        code: "export_invalid",
        message: format!(
            "{} of {name} {} not verify: {}",
            plural(names.len(), "entry", "entries"),
            if names.len() == 1 { "does" } else { "do" },
            names.join(", ")
        ),
    })
}

fn entry_name(e: &VerifiedEntry) -> String {
    match (&e.msg_id, &e.full_url) {
        (Some(m), _) => format!("message {m}"),
        (None, Some(u)) => format!("entry {u}"),
        (None, None) => "an entry without an id".into(),
    }
}

/// One verdict, with its signing key compared with the one pinned for its
/// device when the message was sent.
fn entry(v: &EntryVerdict, state: Option<&State>, sent_at: Option<&Timestamp>) -> VerifiedEntry {
    let (owner, found) = match (state, &v.sender_device, &v.sender_sig_pk) {
        (Some(st), Some(device), Some(disclosed)) => {
            let (owner, found) = st.pinned_match(device, disclosed, sent_at);
            (owner.and_then(|u| st.username_of(u)).cloned(), Some(found))
        }
        _ => (None, None),
    };
    let (key, key_pinned_until) = match found {
        None => (KeyCheck::NotChecked, None),
        Some(PinnedMatch::Current) => (KeyCheck::Matches, None),
        Some(PinnedMatch::PinnedUntil(t)) => (KeyCheck::PinnedUntil, Some(t)),
        Some(PinnedMatch::ReplacedBefore(t)) => (KeyCheck::ReplacedBeforeSent, Some(t)),
        Some(PinnedMatch::ReplacedUnverified(t)) => (KeyCheck::ReplacedUnverified, Some(t)),
        Some(PinnedMatch::Differs) => (KeyCheck::Differs, None),
        Some(PinnedMatch::UnknownDevice) => (KeyCheck::UnknownDevice, None),
    };
    let failures: Vec<String> = v.failures.iter().map(ToString::to_string).collect();
    VerifiedEntry {
        full_url: v.full_url.clone(),
        msg_id: v.msg_id,
        sender_device: v.sender_device.clone(),
        sender_username: owner,
        ok: failures.is_empty() && !key.is_alarm(),
        failures,
        key,
        key_pinned_until,
    }
}

/// The signed send time of the envelope behind each verdict of
/// `record::verify` (one per Communication in bundle order), taken from
/// the one Provenance that targets that Communication: the same envelope
/// the verdict checked, so the signature covers it when the entry
/// verifies. Never looked up by message id, which a bundle may repeat.
/// `None` where the verdict checked no envelope.
fn send_times(bundle: &str) -> Vec<Option<Timestamp>> {
    let Ok(bundle) = serde_json::from_str::<Bundle>(bundle) else {
        return Vec::new();
    };
    let provenances: Vec<_> = bundle
        .entry
        .iter()
        .filter_map(|e| match &e.resource {
            Some(Resource::Provenance(p)) => Some(p),
            _ => None,
        })
        .collect();
    let sent_at = |p: &record::Provenance| {
        let ext = p
            .extension
            .iter()
            .find(|e| e.url == ENVELOPE_EXTENSION_URL)?;
        let at = ext
            .extension
            .iter()
            .find(|e| e.url == "sent_at")?
            .value_string
            .as_deref()?;
        Timestamp::parse(at).ok()
    };
    bundle
        .entry
        .iter()
        .filter(|e| matches!(e.resource, Some(Resource::Communication(_))))
        .map(|e| {
            let url = e.full_url.as_deref().filter(|u| !u.is_empty())?;
            let mut mine = provenances
                .iter()
                .filter(|p| p.target.iter().any(|t| t.reference.as_deref() == Some(url)));
            match (mine.next(), mine.next()) {
                (Some(p), None) => sent_at(p),
                _ => None,
            }
        })
        .collect()
}
