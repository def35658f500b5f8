//! `wardline export CONVERSATION --out FILE`: messages this device has
//! opened, as an HL7 FHIR R4 bundle for the health record (rule R8), and
//! `wardline verify-export FILE` ([`check`]) to check one.
//!
//! The mapping is `wardline_protocol::record` (docs/HEALTH-RECORD.md);
//! this module does what only a device that can read the messages can do:
//!
//! * chooses the messages ([`select`]): a time window, clinical notes by
//!   default, and never a message about another patient than `--patient`;
//!   a message that names no patient goes in only when the user has
//!   confirmed linking it to `--patient`, since that asserts a link the
//!   sender did not sign;
//! * opens each again from its envelope (kept in the message cache with
//!   this device's own key entry, or fetched again with `history`), with
//!   the sending device's key as pinned here for that sender, so that the
//!   bundle discloses exactly what was signed and its content key;
//! * names sender and recipients (the conversation's other members) by
//!   username and display name from the directory (`users`);
//! * writes the bundle (pretty JSON, mode 0600, atomically) and says what
//!   was left out and why;
//! * with `--post`, POSTs it to a FHIR server ([`post`]); an export that
//!   does not finish says what was done and the command that retries
//!   ([`retry`]).

mod check;
mod post;
mod retry;
pub mod select;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use clap::Args;
use wardline_protocol::record::{
    self, BundleType, DEFAULT_PRACTITIONER_SYSTEM, ExportOptions, ExportedMessage, Participant,
    RecordError,
};
use wardline_protocol::wire::{History, HistoryOk, UserInfo};
use wardline_protocol::{ConversationId, Envelope, ErrorCode, Request, UserId};

pub use self::check::{VerifyExportArgs, run as verify};
use self::select::{Filter, KindFilter, Selection, When, parse_when};
use super::{Context, Session};
use crate::error::Error;
use crate::keystore::{StoredMessage, write_atomic};
use crate::nhs::NhsNumber;
use crate::outgoing::resolve_conversation;
use crate::output::progress::Progress;
use crate::output::record::ExportSummary;
use crate::output::{Event, plural};
use crate::tls::Trust;
use crate::{prompt, sync};

/// Arguments of `wardline export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The conversation: its id, its title, or the username of the person
    /// in a one-to-one conversation.
    pub conversation: String,
    /// The patient (NHS number). Messages about another patient are left
    /// out; messages that name no patient are linked to this one, once you
    /// confirm (asked, or --yes), and the record shows you made the link.
    #[arg(long, value_name = "NHS_NUMBER")]
    pub patient: Option<String>,
    /// Only messages sent at or after this time: a day (2026-11-23, from
    /// local midnight) or an RFC 3339 time (2026-11-23T07:31:00Z).
    #[arg(long, value_name = "T", value_parser = parse_when)]
    pub since: Option<When>,
    /// Only messages sent at or before this time: a day (through its end,
    /// local time) or an RFC 3339 time.
    #[arg(long, value_name = "T", value_parser = parse_when)]
    pub until: Option<When>,
    /// Which messages: clinical notes, or all.
    #[arg(long, value_enum, default_value_t = KindFilter::ClinicalNote)]
    pub kind: KindFilter,
    /// Make a transaction bundle (to POST to a FHIR server's base URL)
    /// rather than a collection (a file to keep or hand over).
    #[arg(long)]
    pub transaction: bool,
    /// Where to write the bundle (created with mode 0600).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    /// Confirm linking messages that name no patient to --patient, without
    /// being asked (for scripts; otherwise a line `y` is read from standard
    /// input when it is not a terminal).
    #[arg(long)]
    pub yes: bool,
    /// After writing FILE, POST the bundle (as a transaction bundle) to
    /// this FHIR server's base URL. A bearer token, if the server needs
    /// one, is read from WARDLINE_FHIR_TOKEN.
    #[arg(long, value_name = "URL")]
    pub post: Option<String>,
    /// For --post https://: a PEM file with the CA certificate that signed
    /// the FHIR server's certificate (no CA is trusted by default).
    #[arg(
        long,
        env = "WARDLINE_FHIR_CA",
        value_name = "FILE",
        conflicts_with = "fhir_pin"
    )]
    pub fhir_ca: Option<PathBuf>,
    /// For --post https://: the SHA-256 fingerprint of the FHIR server's
    /// certificate.
    #[arg(long, env = "WARDLINE_FHIR_PIN", value_name = "SHA256")]
    pub fhir_pin: Option<String>,
    /// The identifier system of organisational usernames in the trust's
    /// FHIR records (an absolute URI).
    #[arg(
        long,
        env = "WARDLINE_PRACTITIONER_SYSTEM",
        value_name = "URI",
        default_value = DEFAULT_PRACTITIONER_SYSTEM
    )]
    pub practitioner_system: String,
}

/// What was settled before the keystore was opened.
#[derive(Debug)]
pub struct Prepared {
    /// Where to write, made absolute.
    out: PathBuf,
    /// The patient's ten digits.
    patient: Option<String>,
    /// Whether messages that name no patient may be linked to it.
    link_confirmed: bool,
    /// The FHIR server to post to, checked.
    post: Option<post::Target>,
}

/// Checks the arguments and asks the one question, before the keystore
/// or the network are touched (the documented order of answers).
pub fn prepare(args: &ExportArgs) -> Result<Prepared, Error> {
    let out = std::path::absolute(&args.out)
        .map_err(|e| Error::Usage(format!("cannot use --out {}: {e}", args.out.display())))?;
    if out.is_dir() {
        return Err(Error::Usage(format!(
            "--out {} is a directory; name a file",
            out.display()
        )));
    }
    if out.exists() && !args.force {
        return Err(Error::Usage(format!(
            "{} exists already; choose another --out, or add --force to replace it",
            out.display()
        )));
    }
    if !out.parent().is_some_and(std::path::Path::is_dir) {
        return Err(Error::Usage(format!(
            "the directory of --out {} does not exist",
            out.display()
        )));
    }
    let system = args.practitioner_system.trim();
    if !system.contains(':') || system.chars().any(char::is_whitespace) {
        return Err(Error::Usage(format!(
            "{} (--practitioner-system, WARDLINE_PRACTITIONER_SYSTEM)",
            RecordError::BadPractitionerSystem
        )));
    }
    let post = match &args.post {
        Some(url) => {
            let trust = Trust::from_args(args.fhir_ca.as_deref(), args.fhir_pin.as_deref())?;
            Some(post::Target::new(url, trust)?)
        }
        None => None,
    };
    let patient = args.patient.as_deref().map(NhsNumber::parse).transpose()?;
    let link_confirmed = match &patient {
        None => false,
        Some(_) if args.yes => true,
        Some(p) => prompt::confirm(&format!(
            "Messages that name no patient will be linked to patient {} in the health record. The sender did not sign that link, and the record will show that you made it. Link them?",
            NhsNumber::grouped(p.as_str())
        ))?,
    };
    Ok(Prepared {
        out,
        patient: patient.map(|p| p.as_str().to_owned()),
        link_confirmed,
        post,
    })
}

/// Exports (see the module docs).
pub async fn run(
    ctx: &Context,
    s: &mut Session,
    args: ExportArgs,
    prepared: Prepared,
) -> Result<(), Error> {
    let (convs, _) = sync::catch_up(&mut s.conn, &mut s.keystore).await?;
    let conv = resolve_conversation(
        &mut s.conn,
        &mut s.keystore,
        &convs,
        &args.conversation,
        false,
    )
    .await?;
    let filter = Filter {
        since: args.since,
        until: args.until,
        kind: args.kind,
        patient: prepared.patient.clone(),
        link_confirmed: prepared.link_confirmed,
        offset: ctx.out.now().offset,
    };
    let state = s.keystore.state();
    let cached = state.messages_in(&conv.conv_id);
    let selection: Selection<'_> = select::select(&cached, &filter);
    if selection.chosen.is_empty() {
        return Err(nothing_to_export(&conv.title, &args, &selection));
    }
    let (other_patient, no_patient) = (selection.other_patient, selection.no_patient);
    let chosen: Vec<StoredMessage> = selection.chosen.into_iter().cloned().collect();

    let missing: BTreeSet<u64> = chosen
        .iter()
        .filter(|m| m.envelope.is_none())
        .map(|m| m.seq)
        .collect();
    let fetched = fetch_envelopes(s, &conv.conv_id, &missing).await?;
    let mut people: BTreeSet<UserId> = conv.members.iter().cloned().collect();
    people.extend(chosen.iter().map(|m| m.sender_user.clone()));
    people.insert(s.keystore.state().user_id.clone());
    let directory: HashMap<UserId, UserInfo> =
        sync::directory(&mut s.conn, &mut s.keystore, &people)
            .await?
            .into_iter()
            .map(|u| (u.user_id.clone(), u))
            .collect();

    let state = s.keystore.state();
    let participant = |id: &UserId| -> Option<Participant> {
        match directory.get(id) {
            Some(u) => Some(Participant {
                username: u.username.clone(),
                display: Some(u.display_name.clone()),
            }),
            None => state.username_of(id).map(|n| Participant {
                username: n.clone(),
                display: None,
            }),
        }
    };
    let me = participant(&state.user_id).ok_or_else(|| {
        Error::Refused("the directory does not know your own account; nothing was exported".into())
    })?;
    let secrets = state.device_secrets();
    let mut exported = Vec::with_capacity(chosen.len());
    let mut unverifiable = Vec::new();
    // For messages signed with a key pinned then and replaced since: until when.
    let mut replaced_keys = Vec::new();
    let mut progress = Progress::new("opening messages", chosen.len());
    for m in &chosen {
        progress.step();
        let envelope = m.envelope.as_ref().or_else(|| fetched.get(&m.seq));
        let opened = envelope
            .ok_or_else(|| {
                "this device kept no copy of it, and the server no longer holds it (retention)"
                    .to_owned()
            })
            .and_then(|e| {
                let sender = participant(&m.sender_user)
                    .ok_or_else(|| "the directory does not know its sender".to_owned())?;
                let recipients: Vec<Participant> = conv
                    .members
                    .iter()
                    .filter(|u| **u != m.sender_user)
                    .filter_map(&participant)
                    .collect();
                open_again(state, m, e, sender, recipients, &secrets)
            });
        match opened {
            Ok((x, until)) => {
                replaced_keys.extend(until);
                exported.push(x);
            }
            Err(why) => unverifiable.push((m.seq, m.msg_id, why)),
        }
    }
    progress.finish();
    for (seq, msg_id, why) in &unverifiable {
        ctx.out.warn(
            "export_unverifiable",
            format!("message #{seq} ({msg_id}) was left out of the export: {why}"),
        )?;
    }
    // Only a transaction bundle can be POSTed to a server's base URL.
    let bundle_type = if args.transaction || prepared.post.is_some() {
        BundleType::Transaction
    } else {
        BundleType::Collection
    };
    let options = ExportOptions {
        bundle_type,
        practitioner_system: args.practitioner_system.trim().to_owned(),
        patient_override: match (&prepared.patient, prepared.link_confirmed) {
            (Some(p), true) => Some(record::NhsNumber::parse(p).map_err(|e| {
                Error::Usage(format!("the patient's NHS number cannot be used: {e}"))
            })?),
            _ => None,
        },
        exported_by: me,
        generated_at: crate::clock::now()
            .ok_or_else(|| Error::Refused("the system clock is not set to a usable time".into()))?,
    };
    let linked = exported.iter().filter(|m| m.body.patient.is_none()).count();
    let bundle = record::build_bundle(&exported, &options).map_err(refused)?;
    let mut bytes = serde_json::to_vec_pretty(&bundle)
        .map_err(|e| Error::Refused(format!("the bundle could not be written out: {e}")))?;
    bytes.push(b'\n');
    write_atomic(&prepared.out, &bytes).map_err(|e| {
        Error::Refused(format!(
            "cannot write {}: {e}; nothing was exported",
            prepared.out.display()
        ))
    })?;
    let msg_ids: Vec<_> = exported.iter().map(|m| m.envelope.msg_id).collect();
    let file = prepared.out.display().to_string();
    if let Err(e) = record_in_audit(s, &msg_ids, &file).await {
        let url = prepared.post.as_ref().map(post::Target::url);
        return Err(retry::file_not_audited(&prepared.out, url, &e));
    }
    ctx.out.emit(&Event::Exported(ExportSummary {
        file: prepared.out.clone(),
        messages: exported.len(),
        bundle_type: bundle_type.as_str(),
        conv_id: conv.conv_id,
        linked_by_exporter: linked,
        other_patient,
        no_patient,
        unverifiable: unverifiable.len(),
        signed_with_replaced_keys: replaced_keys.len(),
        conv_title: conv.title,
    }))?;
    if let Some(target) = &prepared.post {
        let token = std::env::var(post::TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty());
        // Nothing counts as posted (no `posted` event, no audit entry for
        // the FHIR server) unless the server took every entry.
        let posted = post::post(target, &bytes, token.as_deref())
            .await
            .map_err(|e| retry::post_failed(&prepared.out, target.url(), e, token.is_some()))?;
        if let Err(e) = record_in_audit(s, &msg_ids, target.url()).await {
            return Err(retry::post_not_audited(
                &prepared.out,
                target.url(),
                &posted,
                &e,
            ));
        }
        ctx.out.emit(&Event::Posted {
            url: target.url().to_owned(),
            http_status: posted.status,
            created: posted.created,
            already_present: posted.existing,
        })?;
    }
    Ok(())
}

/// Tells the server which messages went where, for its audit log (rule R8:
/// every transcription to the record is attributable). Content never leaves.
async fn record_in_audit(
    s: &mut Session,
    msg_ids: &[wardline_protocol::MessageId],
    destination: &str,
) -> Result<(), Error> {
    let req = wardline_protocol::Request::ExportRecord(wardline_protocol::wire::ExportRecord {
        msg_ids: msg_ids.to_vec(),
        destination: destination.to_owned(),
    });
    s.conn
        .call::<wardline_protocol::wire::Empty>(req)
        .await
        .map_err(Error::from)?;
    Ok(())
}

/// Opens `m` again from `envelope`, with the key pinned here for its
/// sending device, and checks it is the message the cache holds. With it,
/// when that key has been replaced since: until when it was pinned.
fn open_again(
    state: &crate::keystore::State,
    m: &StoredMessage,
    envelope: &Envelope,
    sender: Participant,
    recipients: Vec<Participant>,
    secrets: &wardline_protocol::DeviceSecrets,
) -> Result<(ExportedMessage, Option<wardline_protocol::Timestamp>), String> {
    if envelope.msg_id != m.msg_id
        || envelope.conv_id != m.conv_id
        || envelope.sender_user != m.sender_user
        || envelope.sender_device != m.sender_device
    {
        return Err("the server's copy is not the message this device received".into());
    }
    // The sender-device check: the key is the one pinned for this device
    // of this sender when it sent the message (the current pin, or one
    // verified in person and replaced since), never one the envelope or
    // the server offers.
    let key = state
        .signing_key(envelope, crate::keystore::Reading::Again)
        .map_err(|e| format!("it no longer opens with the keys this device knows ({e})"))?;
    let opened = ExportedMessage::open(
        envelope.clone(),
        &state.device_id,
        secrets,
        key.keys().sig_pk,
        sender,
        recipients,
    )
    .map_err(|e| format!("it no longer opens with the keys this device knows ({e})"))?;
    if opened.body != m.body {
        return Err("it does not match the copy this device kept".into());
    }
    Ok((opened, key.pinned_until().cloned()))
}

/// Envelopes of the messages `seqs` that the cache lacks (messages cached
/// before exports existed), from `history`, paging back from the newest
/// wanted. What the server no longer holds (retention) stays missing.
async fn fetch_envelopes(
    s: &mut Session,
    conv: &ConversationId,
    seqs: &BTreeSet<u64>,
) -> Result<BTreeMap<u64, Envelope>, Error> {
    const PAGE: u64 = 500;
    let mut found = BTreeMap::new();
    let (Some(&lowest), Some(&highest)) = (seqs.first(), seqs.last()) else {
        return Ok(found);
    };
    let mut before = highest + 1;
    loop {
        let page: HistoryOk = match s
            .conn
            .call(Request::History(History {
                conv_id: conv.clone(),
                before_seq: Some(before),
                limit: Some(u32::try_from(PAGE).unwrap_or(u32::MAX)),
            }))
            .await
        {
            Ok(p) => p,
            // No longer a member: nothing to fetch; the caller says so per message.
            Err(e) if matches!(e.code(), Some(ErrorCode::NotMember | ErrorCode::NotFound)) => {
                return Ok(found);
            }
            Err(e) => return Err(e.into()),
        };
        let me = s.keystore.state().device_id.clone();
        for h in page.messages.into_iter().filter(|h| seqs.contains(&h.seq)) {
            let copy = StoredMessage::cached_envelope(&h.envelope, &me);
            if let Some(m) = s
                .keystore
                .state_mut()
                .messages
                .iter_mut()
                .find(|m| m.conv_id == *conv && m.seq == h.seq && m.msg_id == h.envelope.msg_id)
            {
                // Kept, so the next export needs no fetch.
                m.envelope = Some(copy.clone());
            }
            found.insert(h.seq, copy);
        }
        let window_start = before.saturating_sub(PAGE).max(1);
        if window_start <= lowest {
            return Ok(found);
        }
        before = window_start;
    }
}

/// Why nothing was chosen, and what to change.
fn nothing_to_export(title: &str, args: &ExportArgs, s: &Selection<'_>) -> Error {
    let title = crate::output::clean(title);
    let what = match args.kind {
        KindFilter::ClinicalNote => "clinical notes",
        KindFilter::All => "messages",
    };
    let mut why = Vec::new();
    if s.no_patient > 0 {
        why.push(format!(
            "{} no patient (give --patient NHS_NUMBER and confirm, to link {})",
            plural(s.no_patient, "names", "name"),
            if s.no_patient == 1 { "it" } else { "them" }
        ));
    }
    if s.other_patient > 0 {
        why.push(format!(
            "{} about another patient",
            plural(s.other_patient, "is", "are")
        ));
    }
    let mut message = format!("nothing to export: this device holds no {what} of {title}");
    if args.since.is_some() || args.until.is_some() {
        message.push_str(" in that time window");
    }
    if why.is_empty() {
        if args.kind == KindFilter::ClinicalNote {
            message.push_str(" (add --kind all to export ordinary messages too)");
        }
    } else {
        message = format!("nothing to export from {title}: {}", why.join("; "));
    }
    Error::Usage(message)
}

/// A bundle that could not be built: nothing was written.
fn refused(e: RecordError) -> Error {
    Error::Refused(format!("the export was not written: {e}"))
}
