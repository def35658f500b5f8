//! The audit log's hash chain: each entry carries the hash of the one before,
//! so changing, removing or reordering any entry breaks every hash after it.
//! Pure functions, so that a client can verify what a server returns.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::timestamp::Timestamp;

const LABEL: &[u8] = b"wardline/v1/audit";

/// One security event. Never message content or secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When it happened.
    pub time: Timestamp,
    /// What happened (`login`, `wipe_ordered`, ...).
    pub kind: String,
    /// Who did it (user id), if known.
    #[serde(default)]
    pub actor: Option<String>,
    /// From which device, if any.
    #[serde(default)]
    pub device: Option<String>,
    /// What it was done to (user, device, conversation id...), if any.
    #[serde(default)]
    pub target: Option<String>,
    /// `ok`, `failed`, `refused`, ...
    pub outcome: String,
    /// Why, or further detail (never secret).
    #[serde(default)]
    pub reason: Option<String>,
    /// Hash of the previous entry (hex); all zeros for the first.
    pub prev_hash: String,
    /// This entry's hash (hex).
    pub hash: String,
}

/// The hash an entry must carry, given its fields and the previous hash:
/// SHA-256 over a label, the previous hash, and each field as a 4-byte
/// big-endian length and its bytes (absent fields as length 0xFFFFFFFF).
pub fn entry_hash(e: &AuditEntry) -> String {
    let mut h = Sha256::new();
    h.update(LABEL);
    h.update(e.prev_hash.as_bytes());
    h.update(e.seq.to_be_bytes());
    let fields: [Option<&str>; 7] = [
        Some(e.time.as_str()),
        Some(&e.kind),
        e.actor.as_deref(),
        e.device.as_deref(),
        e.target.as_deref(),
        Some(&e.outcome),
        e.reason.as_deref(),
    ];
    for f in fields {
        match f {
            Some(s) => {
                h.update((s.len() as u32).to_be_bytes());
                h.update(s.as_bytes());
            }
            None => h.update(u32::MAX.to_be_bytes()),
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A signed record of a pruned prefix of the log: the entries before
/// `first_seq` were deleted by retention, and the entry at `first_seq`
/// follows `chain_start`. Signed by the server's audit key, so pruning
/// cannot be used to hide a rewritten history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The first entry still kept.
    pub first_seq: u64,
    /// The hash of the last pruned entry: the kept chain starts from it.
    pub chain_start: String,
    /// When the prefix was pruned.
    pub time: Timestamp,
    /// Ed25519 signature over [`checkpoint_input`], base64.
    pub sig: String,
}

/// The bytes a checkpoint's signature covers.
pub fn checkpoint_input(first_seq: u64, chain_start: &str, time: &Timestamp) -> Vec<u8> {
    let mut out = b"wardline/v1/audit-checkpoint".to_vec();
    out.extend_from_slice(&first_seq.to_be_bytes());
    out.extend_from_slice(chain_start.as_bytes());
    out.extend_from_slice(time.as_str().as_bytes());
    out
}

/// Checks a checkpoint's signature with the server's audit key.
pub fn verify_checkpoint(cp: &Checkpoint, key: &crate::keys::SigPublicKey) -> bool {
    let Ok(sig) = crate::b64::decode(&cp.sig) else {
        return false;
    };
    let Ok(sig) = <[u8; 64]>::try_from(sig) else {
        return false;
    };
    key.verify(
        &checkpoint_input(cp.first_seq, &cp.chain_start, &cp.time),
        &sig,
    )
    .is_ok()
}

/// The previous-hash of the very first entry.
pub fn genesis() -> String {
    "0".repeat(64)
}

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at entry {seq}: {why}")]
pub struct ChainBroken {
    /// The first entry that does not verify.
    pub seq: u64,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Verifies consecutive entries, the first of which must follow `prev_hash`
/// (the genesis, or the hash at a signed checkpoint).
pub fn verify_chain(entries: &[AuditEntry], prev_hash: &str) -> Result<(), ChainBroken> {
    let mut prev = prev_hash.to_string();
    let first = entries.first().map_or(1, |e| e.seq);
    for (expected_seq, e) in (first..).zip(entries) {
        if e.seq != expected_seq {
            return Err(ChainBroken {
                seq: e.seq,
                why: "entries are missing or out of order",
            });
        }
        if e.prev_hash != prev {
            return Err(ChainBroken {
                seq: e.seq,
                why: "does not follow the entry before it",
            });
        }
        if entry_hash(e) != e.hash {
            return Err(ChainBroken {
                seq: e.seq,
                why: "its content was changed",
            });
        }
        prev = e.hash.clone();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut prev = genesis();
        (1..=n)
            .map(|seq| {
                let mut e = AuditEntry {
                    seq,
                    time: Timestamp::from_unix_millis(1_795_419_114_123 + seq as i64)
                        .expect("time"),
                    kind: "login".into(),
                    actor: Some(format!("u-{seq}")),
                    device: None,
                    target: None,
                    outcome: "ok".into(),
                    reason: None,
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                e.hash = entry_hash(&e);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify_chain(&chain(5), &genesis()), Ok(()));
    }

    #[test]
    fn a_changed_entry_is_named() {
        let mut c = chain(5);
        c[2].outcome = "failed".into();
        assert_eq!(verify_chain(&c, &genesis()).map_err(|e| e.seq), Err(3));
    }

    #[test]
    fn a_removed_entry_is_found() {
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify_chain(&c, &genesis()).map_err(|e| e.seq), Err(3));
    }

    #[test]
    fn an_absent_field_differs_from_an_empty_one() {
        let mut c = chain(1);
        c[0].reason = Some(String::new());
        assert!(verify_chain(&c, &genesis()).is_err());
    }
}
