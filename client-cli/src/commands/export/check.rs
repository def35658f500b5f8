//! `wardline verify-export FILE`: checks every entry of an exported bundle
//! (`record::verify_bundle`: signature, decryption with the disclosed key,
//! and that the Communication says exactly what was signed), then compares
//! each entry's signing key with the key this device pinned for the
//! signing device, since the bundle alone cannot prove whose key it is.

use std::path::PathBuf;

use clap::Args;
use wardline_protocol::record::{self, EntryVerdict};
use wardline_protocol::{DeviceId, SigPublicKey, Username};

use crate::commands::{Context, open_keystore};
use crate::error::Error;
use crate::keystore::{Keystore, State};
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
    let entries: Vec<VerifiedEntry> = verdicts
        .iter()
        .map(|v| entry(v, keystore.as_ref().map(Keystore::state)))
        .collect();
    let failed: Vec<&VerifiedEntry> = entries.iter().filter(|e| !e.ok).collect();
    let keys_unknown = entries
        .iter()
        .filter(|e| e.ok && e.key != KeyCheck::Matches)
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

/// One verdict, with its signing key compared with the pinned one.
fn entry(v: &EntryVerdict, state: Option<&State>) -> VerifiedEntry {
    let pinned = match (&v.sender_device, state) {
        (Some(d), Some(st)) => pinned_key(st, d),
        _ => None,
    };
    let key = match (state, &v.sender_device, &v.sender_sig_pk, &pinned) {
        (Some(_), Some(_), Some(disclosed), Some((_, pinned))) if disclosed == pinned => {
            KeyCheck::Matches
        }
        (Some(_), Some(_), Some(_), Some(_)) => KeyCheck::Differs,
        (Some(_), Some(_), Some(_), None) => KeyCheck::UnknownDevice,
        _ => KeyCheck::NotChecked,
    };
    let failures: Vec<String> = v.failures.iter().map(ToString::to_string).collect();
    VerifiedEntry {
        full_url: v.full_url.clone(),
        msg_id: v.msg_id,
        sender_device: v.sender_device.clone(),
        sender_username: pinned.and_then(|(owner, _)| owner),
        ok: failures.is_empty() && key != KeyCheck::Differs,
        failures,
        key,
    }
}

/// The key this device pinned for `device`, and its owner's username.
fn pinned_key(state: &State, device: &DeviceId) -> Option<(Option<Username>, SigPublicKey)> {
    if *device == state.device_id {
        let own = state.device_secrets().public().sig_pk;
        return Some((Some(state.username.clone()), own));
    }
    state.contacts.iter().find_map(|(user, c)| {
        c.devices
            .get(device)
            .map(|keys| (state.username_of(user).cloned(), keys.sig_pk))
    })
}
