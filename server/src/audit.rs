//! The tamper-evident audit log of security events (rule R9): enrolment,
//! logins, lockouts, device changes, wipes, account changes. Each entry is
//! chained to the one before (see `wardline_protocol::audit`); entries hold
//! ids, outcomes and reasons, never message content or secrets. Readable
//! only by admins.

use std::sync::Mutex;

use wardline_protocol::audit::{self, AuditEntry};
use wardline_protocol::wire::{AdminAudit, AdminAuditOk};
use wardline_protocol::{Timestamp, UserId};

use crate::auth::Authed;
use crate::error::ApiError;
use crate::state::State;
use crate::store::{Store, StoreError};

/// An event to record.
#[derive(Debug, Clone)]
pub struct Event {
    kind: &'static str,
    actor: Option<String>,
    device: Option<String>,
    target: Option<String>,
    outcome: &'static str,
    reason: Option<String>,
}

impl Event {
    /// `kind` by `actor` on `target`, with an outcome.
    pub fn new(
        kind: &'static str,
        actor: Option<&UserId>,
        target: Option<&str>,
        outcome: &'static str,
    ) -> Self {
        Self {
            kind,
            actor: actor.map(|a| a.to_string()),
            device: None,
            target: target.map(str::to_string),
            outcome,
            reason: None,
        }
    }

    /// The device the actor used.
    pub fn device(mut self, device: &wardline_protocol::DeviceId) -> Self {
        self.device = Some(device.to_string());
        self
    }

    /// Why, or detail. Callers pass no secrets and no message content.
    pub fn reason(mut self, reason: &str) -> Self {
        self.reason = Some(reason.chars().take(200).collect());
        self
    }

    /// A long detail (such as the ids of exported messages), kept whole.
    pub fn detail(mut self, detail: String) -> Self {
        self.reason = Some(detail);
        self
    }
}

/// The end of the chain, kept in memory so appending is one write.
#[derive(Debug)]
pub struct Log {
    pub(crate) tail: Mutex<(u64, String)>,
}

impl Log {
    /// Picks up the chain where the store left it.
    pub fn open(store: &dyn Store) -> Result<Self, StoreError> {
        let tail = match store.audit_last()? {
            Some(e) => (e.seq, e.hash),
            None => (0, audit::genesis()),
        };
        Ok(Self {
            tail: Mutex::new(tail),
        })
    }
}

/// Appends an event to the chain. Audit writes are rare and small, so a
/// plain mutex (never held across an await) keeps the chain linear.
pub fn record(state: &State, event: Event) -> Result<(), ApiError> {
    let mut tail = state
        .audit
        .tail
        .lock()
        .expect("audit lock is never poisoned: no panics under it");
    let (last_seq, last_hash) = &*tail;
    let mut e = AuditEntry {
        seq: last_seq + 1,
        time: Timestamp::from_unix_millis(state.clock.now_ms()).expect("server times are in range"),
        kind: event.kind.to_string(),
        actor: event.actor,
        device: event.device,
        target: event.target,
        outcome: event.outcome.to_string(),
        reason: event.reason,
        prev_hash: last_hash.clone(),
        hash: String::new(),
    };
    e.hash = audit::entry_hash(&e);
    state.store.put_audit(&e)?;
    *tail = (e.seq, e.hash);
    Ok(())
}

/// `export_record`: records which messages a device exported to the health
/// record, and where (rule R8); any signed-in user, for their own exports.
pub fn export(
    state: &State,
    authed: &Authed,
    req: wardline_protocol::wire::ExportRecord,
) -> Result<(), ApiError> {
    if req.msg_ids.is_empty() || req.msg_ids.len() > 10_000 {
        return Err(ApiError::bad_request("name 1 to 10000 exported messages"));
    }
    let dest = req.destination.trim();
    if dest.is_empty() || dest.chars().count() > 500 {
        return Err(ApiError::bad_request(
            "destination must be 1 to 500 characters",
        ));
    }
    let ids: Vec<String> = req.msg_ids.iter().map(|m| m.to_text()).collect();
    record(
        state,
        Event::new("record_export", Some(&authed.user.id), Some(dest), "ok")
            .device(&authed.device_id)
            .detail(format!("{} messages: {}", ids.len(), ids.join(","))),
    )
}

/// Most entries in one `admin_audit` page.
pub const MAX_PAGE: u32 = 1000;

/// `admin_audit`: a page of entries, optionally filtered. Filtering happens
/// after paging by `seq`, so a client can always continue after the last
/// `seq` it saw.
pub fn query(state: &State, authed: &Authed, req: AdminAudit) -> Result<AdminAuditOk, ApiError> {
    crate::admin::require_admin(state, authed, "admin_audit")?;
    let limit = req.limit.unwrap_or(100).clamp(1, MAX_PAGE) as usize;
    let mut entries = state.store.audit_after(req.after_seq.unwrap_or(0), limit)?;
    let next_after_seq = if entries.len() == limit {
        entries.last().map(|e| e.seq)
    } else {
        None
    };
    entries.retain(|e| {
        req.kind.as_ref().is_none_or(|k| &e.kind == k)
            && req
                .actor
                .as_ref()
                .is_none_or(|a| e.actor.as_ref() == Some(a))
    });
    let checkpoint = state.store.audit_checkpoint()?;
    Ok(AdminAuditOk {
        entries,
        chain_start: checkpoint
            .as_ref()
            .map_or_else(audit::genesis, |c| c.chain_start.clone()),
        first_seq: checkpoint.as_ref().map_or(1, |c| c.first_seq),
        checkpoint,
        audit_key: state.store.audit_signing_key().public().sig_pk,
        next_after_seq,
    })
}

/// Deletes entries older than `before_ms`, keeping the chain verifiable with
/// a signed checkpoint. Returns how many were pruned.
pub fn prune(state: &State, before_ms: i64) -> Result<u64, ApiError> {
    // Hold the tail lock so no entry is appended while the prefix moves.
    let _tail = state
        .audit
        .tail
        .lock()
        .expect("audit lock is never poisoned: no panics under it");
    let mut first_kept = None;
    let mut last_pruned_hash = None;
    let mut after = 0;
    'scan: loop {
        let page = state.store.audit_after(after, 1000)?;
        if page.is_empty() {
            break;
        }
        for e in &page {
            if e.time.unix_millis() >= before_ms {
                first_kept = Some(e.seq);
                break 'scan;
            }
            last_pruned_hash = Some(e.hash.clone());
            after = e.seq;
        }
    }
    // Never prune the newest entry: the chain's tail must stay visible.
    let (Some(first_kept), Some(chain_start)) = (first_kept, last_pruned_hash) else {
        return Ok(0);
    };
    let time =
        Timestamp::from_unix_millis(state.clock.now_ms()).expect("server times are in range");
    let key = state.store.audit_signing_key();
    let sig = key.sign(&audit::checkpoint_input(first_kept, &chain_start, &time));
    let cp = audit::Checkpoint {
        first_seq: first_kept,
        chain_start,
        time,
        sig: wardline_protocol::b64::encode(sig),
    };
    let pruned = first_kept - state.store.audit_checkpoint()?.map_or(1, |c| c.first_seq);
    state.store.prune_audit(first_kept, &cp)?;
    Ok(pruned)
}
