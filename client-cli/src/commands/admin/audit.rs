//! `wardline admin audit`: the audit log, newest entries by default, and
//! with `--verify` a check of the whole hash chain.
//!
//! The server filters a page after reading it (so a filtered page may be
//! short although later entries match) and says where the next page
//! starts (`next_after_seq`), which is followed until the log ends.
//! Verification needs every entry, so with `--verify` nothing is filtered
//! on the server: the whole log is read, checked from its first kept entry
//! against `chain_start`, the checkpoint of a pruned prefix (if any) is
//! checked against the audit key, and only then are the filters applied to
//! what is shown.

use std::collections::{BTreeSet, VecDeque};

use clap::Args;
use wardline_protocol::audit::{self, AuditEntry, Checkpoint};
use wardline_protocol::wire::{AdminAudit, AdminAuditOk};
use wardline_protocol::{Request, SigPublicKey, UserId, b64};

use super::{refused, resolve_user};
use crate::commands::{Context, Session};
use crate::error::Error;
use crate::output::Event;
use crate::output::governance::AuditRow;
use crate::sync;

/// Entries asked for per request: the server's maximum page.
const PAGE: u32 = 1000;

/// Arguments of `wardline admin audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries of this kind: login, wipe_ordered, user_disabled, ...
    /// (docs/PROTOCOL.md §8.9 lists them).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only entries of what this user did (username).
    #[arg(long, value_name = "USER")]
    pub actor: Option<String>,
    /// How many entries to show: the newest, or the first after --after.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Show the entries after this number, oldest first (to page forward)
    /// instead of the newest.
    #[arg(long, value_name = "SEQ")]
    pub after: Option<u64>,
    /// Fetch the whole log and check its hash chain and the signed
    /// checkpoint of any pruned prefix; fail, naming the first broken
    /// entry, if it does not verify.
    #[arg(long)]
    pub verify: bool,
    /// The server's audit key (base64), as recorded when the deployment was
    /// set up: checkpoints are checked against it rather than against the
    /// key in the server's reply.
    #[arg(long, env = "WARDLINE_AUDIT_KEY", value_name = "BASE64")]
    pub audit_key: Option<String>,
}

/// Checks the arguments before the keystore or the network are touched.
pub(super) fn check(args: &AuditArgs) -> Result<(), Error> {
    if args.verify {
        parse_key(args.audit_key.as_deref())?;
    }
    Ok(())
}

fn parse_key(text: Option<&str>) -> Result<Option<SigPublicKey>, Error> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    b64::decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(SigPublicKey::from_bytes)
        .filter(SigPublicKey::is_valid)
        .map(Some)
        .ok_or_else(|| {
            Error::Usage(
                "--audit-key must be the server's audit key as base64 (32 bytes), as `admin audit --json` shows it in `audit_key`".into(),
            )
        })
}

/// The log as read: its entries and what vouches for where it starts.
struct Log {
    entries: VecDeque<AuditEntry>,
    chain_start: String,
    first_seq: u64,
    checkpoint: Option<Checkpoint>,
    audit_key: SigPublicKey,
}

/// Which entries to read.
struct Reading {
    after: u64,
    kind: Option<String>,
    actor: Option<String>,
    /// Keep only the first this many (paging forward) ...
    first: Option<usize>,
    /// ... or only the last this many (the newest).
    last: Option<usize>,
}

pub(super) async fn run(ctx: &Context, s: &mut Session, args: AuditArgs) -> Result<(), Error> {
    let given_key = parse_key(args.audit_key.as_deref())?;
    let actor: Option<UserId> = match &args.actor {
        Some(name) => Some(resolve_user(s, name).await?.0),
        None => None,
    };
    let limit = usize::try_from(args.limit).unwrap_or(usize::MAX);
    let log = if args.verify {
        read(
            s,
            Reading {
                after: 0,
                kind: None,
                actor: None,
                first: None,
                last: None,
            },
        )
        .await?
    } else {
        read(
            s,
            Reading {
                after: args.after.unwrap_or(0),
                kind: args.kind.clone(),
                actor: actor.as_ref().map(ToString::to_string),
                first: args.after.map(|_| limit),
                last: args.after.is_none().then_some(limit),
            },
        )
        .await?
    };
    let verified = if args.verify {
        let key = given_key.unwrap_or(log.audit_key);
        verify(&log, &key)?;
        Some(Event::AuditVerified {
            entries: log.entries.len(),
            first_seq: log.first_seq,
            last_seq: log.entries.back().map_or(0, |e| e.seq),
            checkpoint: log.checkpoint.is_some(),
            audit_key: b64::encode(key.as_bytes()),
            audit_key_source: if given_key.is_some() {
                "given"
            } else {
                "server"
            },
        })
    } else {
        None
    };
    let shown: Vec<AuditEntry> = {
        let matching = log.entries.into_iter().filter(|e| {
            args.kind.as_ref().is_none_or(|k| e.kind == *k)
                && actor
                    .as_ref()
                    .is_none_or(|a| e.actor.as_deref() == Some(a.as_str()))
                && args.after.is_none_or(|after| e.seq > after)
        });
        if args.after.is_some() {
            matching.take(limit).collect()
        } else {
            let all: Vec<AuditEntry> = matching.collect();
            let skip = all.len().saturating_sub(limit);
            all.into_iter().skip(skip).collect()
        }
    };
    let rows = named_rows(s, shown).await?;
    if rows.is_empty() {
        if !ctx.out.is_json() {
            println!("No audit entries match.");
        }
    } else {
        ctx.out.emit_all(&rows)?;
    }
    if let Some(v) = verified {
        ctx.out.emit(&v)?;
    }
    Ok(())
}

/// Reads pages from `after`, following `next_after_seq` to the end of the
/// log (or until `first` entries are in hand).
async fn read(s: &mut Session, r: Reading) -> Result<Log, Error> {
    let mut after = r.after;
    let mut log: Option<Log> = None;
    loop {
        let page: AdminAuditOk = s
            .conn
            .call(Request::AdminAudit(AdminAudit {
                after_seq: Some(after),
                limit: Some(PAGE),
                kind: r.kind.clone(),
                actor: r.actor.clone(),
            }))
            .await
            .map_err(refused)?;
        let next = page.next_after_seq;
        let l = log.get_or_insert_with(|| Log {
            entries: VecDeque::new(),
            chain_start: page.chain_start.clone(),
            first_seq: page.first_seq,
            checkpoint: page.checkpoint.clone(),
            audit_key: page.audit_key,
        });
        if l.first_seq != page.first_seq || l.chain_start != page.chain_start {
            return Err(Error::Refused(
                "retention pruned the audit log while it was being read; run the command again"
                    .into(),
            ));
        }
        l.entries.extend(page.entries);
        if let Some(n) = r.last {
            while l.entries.len() > n {
                l.entries.pop_front();
            }
        }
        if r.first.is_some_and(|n| l.entries.len() >= n) {
            break;
        }
        // A server that does not move forward would keep the client looping.
        match next {
            Some(n) if n > after => after = n,
            _ => break,
        }
    }
    log.ok_or_else(|| Error::Refused("the server sent no audit page".into()))
}

/// Checks the chain from the first kept entry, and the checkpoint that
/// vouches for a pruned prefix, against `key`.
fn verify(log: &Log, key: &SigPublicKey) -> Result<(), Error> {
    let broken = |message: String| Error::Unverified {
        code: "audit_chain_broken",
        message: format!(
            "the audit log does not verify: {message}. The log may have been altered: keep this output and report it to the trust's information governance lead"
        ),
    };
    let entries: Vec<AuditEntry> = log.entries.iter().cloned().collect();
    if let Some(first) = entries.first()
        && first.seq != log.first_seq
    {
        return Err(broken(format!(
            "entry #{} comes first, but the log says it starts at #{}, so entries are missing",
            first.seq, log.first_seq
        )));
    }
    audit::verify_chain(&entries, &log.chain_start)
        .map_err(|b| broken(format!("entry #{} {}", b.seq, b.why)))?;
    match &log.checkpoint {
        None if log.first_seq == 1 && log.chain_start == audit::genesis() => Ok(()),
        None => Err(broken(format!(
            "the entries before #{} are gone and no signed checkpoint vouches for them",
            log.first_seq
        ))),
        Some(cp) if cp.first_seq != log.first_seq || cp.chain_start != log.chain_start => {
            Err(broken(format!(
                "the checkpoint (at #{}) does not match where the log starts (#{})",
                cp.first_seq, log.first_seq
            )))
        }
        Some(cp) if !audit::verify_checkpoint(cp, key) => Err(broken(format!(
            "the checkpoint of the pruned entries before #{} is not signed by the audit key {}",
            cp.first_seq,
            b64::encode(key.as_bytes())
        ))),
        Some(_) => Ok(()),
    }
}

/// The entries as rows, with the usernames of actors and targets that are
/// users the directory knows.
async fn named_rows(s: &mut Session, entries: Vec<AuditEntry>) -> Result<Vec<Event>, Error> {
    let ids: BTreeSet<UserId> = entries
        .iter()
        .flat_map(|e| [e.actor.as_deref(), e.target.as_deref()])
        .flatten()
        .filter_map(|id| UserId::parse(id).ok())
        .collect();
    if !ids.is_empty() {
        sync::learn_names(&mut s.conn, &mut s.keystore, &ids).await?;
    }
    let state = s.keystore.state();
    let name = |id: &Option<String>| {
        id.as_deref()
            .and_then(|i| UserId::parse(i).ok())
            .and_then(|u| state.username_of(&u).cloned())
    };
    Ok(entries
        .into_iter()
        .map(|e| {
            Event::AuditEntry(AuditRow {
                actor_username: name(&e.actor),
                target_username: name(&e.target),
                seq: e.seq,
                time: e.time,
                kind: e.kind,
                actor: e.actor,
                device: e.device,
                target: e.target,
                outcome: e.outcome,
                reason: e.reason,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use wardline_protocol::{DeviceSecrets, Timestamp};

    use super::*;

    fn log(n: u64) -> (Log, DeviceSecrets) {
        let key = DeviceSecrets::generate();
        let mut prev = audit::genesis();
        let entries = (1..=n)
            .map(|seq| {
                let mut e = AuditEntry {
                    seq,
                    time: Timestamp::from_unix_millis(1_795_419_114_000 + seq as i64)
                        .expect("time"),
                    kind: "login".into(),
                    actor: Some("u-1".into()),
                    device: None,
                    target: None,
                    outcome: "ok".into(),
                    reason: None,
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                e.hash = audit::entry_hash(&e);
                prev = e.hash.clone();
                e
            })
            .collect();
        let l = Log {
            entries,
            chain_start: audit::genesis(),
            first_seq: 1,
            checkpoint: None,
            audit_key: key.public().sig_pk,
        };
        (l, key)
    }

    fn message(r: Result<(), Error>) -> String {
        r.expect_err("broken").to_string()
    }

    #[test]
    fn an_intact_log_verifies() {
        let (l, _) = log(5);
        assert!(verify(&l, &l.audit_key).is_ok());
    }

    #[test]
    fn a_changed_entry_is_named() {
        let (mut l, _) = log(5);
        l.entries[2].reason = Some("covered up".into());
        let m = message(verify(&l, &l.audit_key));
        assert!(m.contains("entry #3"), "{m}");
    }

    #[test]
    fn a_pruned_prefix_needs_a_checkpoint_signed_by_the_audit_key() {
        let (mut l, key) = log(5);
        let start = l.entries[1].hash.clone();
        l.entries.drain(..2);
        l.first_seq = 3;
        l.chain_start = start.clone();
        assert!(message(verify(&l, &l.audit_key)).contains("no signed checkpoint"));

        let time = Timestamp::from_unix_millis(1_795_419_200_000).expect("time");
        let sig = key.sign(&audit::checkpoint_input(3, &start, &time));
        l.checkpoint = Some(Checkpoint {
            first_seq: 3,
            chain_start: start,
            time,
            sig: b64::encode(sig),
        });
        assert!(verify(&l, &l.audit_key).is_ok());
        let other = DeviceSecrets::generate().public().sig_pk;
        assert!(message(verify(&l, &other)).contains("not signed by the audit key"));
    }

    #[test]
    fn missing_first_entries_are_caught() {
        let (mut l, _) = log(5);
        l.entries.pop_front();
        assert!(message(verify(&l, &l.audit_key)).contains("entries are missing"));
    }

    #[test]
    fn a_bad_audit_key_is_a_usage_error() {
        assert!(parse_key(Some("not base64!")).is_err());
        assert!(parse_key(Some(&b64::encode([1u8; 16]))).is_err());
        assert!(matches!(parse_key(None), Ok(None)));
    }
}
