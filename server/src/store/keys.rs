//! Storage key layout: the one place keys are built.
//!
//! Ids are restricted to `[A-Za-z0-9._-]` (see `wardline_protocol::ids`), so
//! a 0 byte separates the parts of a composite key unambiguously.

use wardline_protocol::{ConversationId, DeviceId, MessageId, UserId};

pub fn id(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

pub fn pair(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + 1 + b.len());
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

pub fn prefix(a: &str) -> Vec<u8> {
    let mut k = a.as_bytes().to_vec();
    k.push(0);
    k
}

/// The part of a pair key after the separator.
pub fn second(key: &[u8]) -> Option<&str> {
    let i = key.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&key[i + 1..]).ok()
}

pub fn user_device(u: &UserId, d: &DeviceId) -> Vec<u8> {
    pair(u.as_str(), d.as_str())
}

pub fn user_conv(u: &UserId, c: &ConversationId) -> Vec<u8> {
    pair(u.as_str(), c.as_str())
}

pub fn cursor(d: &DeviceId, c: &ConversationId) -> Vec<u8> {
    pair(d.as_str(), c.as_str())
}

/// Messages of a conversation sort by `seq` (big-endian) under `m conv 0`.
pub fn message_prefix(c: &ConversationId) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + c.as_str().len() + 8);
    k.push(b'm');
    k.extend_from_slice(c.as_str().as_bytes());
    k.push(0);
    k
}

pub fn message(c: &ConversationId, seq: u64) -> Vec<u8> {
    let mut k = message_prefix(c);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn seq_of_message_key(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// An urgent message being watched, under `u conv 0 seq`.
pub fn urgent(c: &ConversationId, seq: u64) -> Vec<u8> {
    let mut k = message(c, seq);
    k[0] = b'u';
    k
}

/// Who sent a message, under `s conv 0 seq`: receipts need only that, not
/// the whole stored envelope.
pub fn sender(c: &ConversationId, seq: u64) -> Vec<u8> {
    let mut k = message(c, seq);
    k[0] = b's';
    k
}

/// Prefix of every urgent watch.
pub const URGENT_PREFIX: &[u8] = b"u";

/// The highest `seq` ever given in a conversation, kept apart from the
/// messages so that deleting old messages never lets a `seq` be reused.
pub fn high_water(c: &ConversationId) -> Vec<u8> {
    let mut k = message_prefix(c);
    k[0] = b'h';
    k
}

/// Which conversation and `seq` hold a `msg_id` (for de-duplication).
pub fn msg_id_index(m: &MessageId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(b'i');
    k.extend_from_slice(m.as_bytes());
    k
}
