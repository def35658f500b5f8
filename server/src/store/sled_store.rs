//! The embedded store: sled in the data directory, every value sealed.

use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wardline_protocol::{ConversationId, DeviceId, UserId, Username};
use zeroize::Zeroizing;

use super::keys;
use super::model::*;
use super::seal::Sealer;
use super::space::Space;
use super::{Result, Store, StoreError};

const KEY_CHECK: &[u8] = b"wardline data key check v1";

/// sled's page cache.
const CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// Decoded records kept in memory so that the send path (membership and
/// device checks for every member) does not unseal the same records again
/// for every message. Any write of a kind bumps that kind's generation,
/// which invalidates every cached entry of the kind: writes are rare
/// (accounts, devices, membership), reads are per message.
#[derive(Debug, Default)]
struct Cache {
    users_gen: AtomicU64,
    devices_gen: AtomicU64,
    convs_gen: AtomicU64,
    users: DashMap<UserId, (u64, Option<User>)>,
    devices_of: DashMap<UserId, (u64, Vec<Device>)>,
    convs: DashMap<ConversationId, (u64, Option<Conversation>)>,
}

fn cached<K, V>(
    map: &DashMap<K, (u64, V)>,
    g: u64,
    key: &K,
    load: impl FnOnce() -> Result<V>,
) -> Result<V>
where
    K: std::hash::Hash + Eq + Clone,
    V: Clone,
{
    // The caller reads the generation `g` before the store: a write that
    // lands in between bumps it, so the entry stored below is already stale
    // and never used.
    if let Some(e) = map.get(key)
        && e.0 == g
    {
        return Ok(e.1.clone());
    }
    let v = load()?;
    map.insert(key.clone(), (g, v.clone()));
    Ok(v)
}

fn bump(generation: &AtomicU64) {
    generation.fetch_add(1, Ordering::AcqRel);
}

/// The open sled database and its trees.
#[derive(Debug)]
struct Db {
    db: sled::Db,
    /// sled's main file, fdatasync'd after each flush (see [`Store::sync`]).
    data_file: File,
    users: sled::Tree,
    usernames: sled::Tree,
    enrolments: sled::Tree,
    devices: sled::Tree,
    user_devices: sled::Tree,
    sessions: sled::Tree,
    wipes: sled::Tree,
    conversations: sled::Tree,
    user_convs: sled::Tree,
    messages: sled::Tree,
    cursors: sled::Tree,
    reads: sled::Tree,
    audit: sled::Tree,
    meta: sled::Tree,
}

impl Db {
    fn open(dir: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            // sled's own periodic fsync is redundant: `sync` does it per batch.
            .flush_every_ms(None)
            // sled caches up to 1 GiB by default; a server holding thousands
            // of connections needs its memory for them.
            .cache_capacity(CACHE_BYTES)
            .open()?;
        let data_file = File::open(dir.join("db"))?;
        let t = |name: &str| db.open_tree(name);
        Ok(Self {
            users: t("users")?,
            usernames: t("usernames")?,
            enrolments: t("enrolments")?,
            devices: t("devices")?,
            user_devices: t("user_devices")?,
            sessions: t("sessions")?,
            wipes: t("wipes")?,
            conversations: t("conversations")?,
            user_convs: t("user_convs")?,
            messages: t("messages")?,
            cursors: t("cursors")?,
            reads: t("reads")?,
            audit: t("audit")?,
            meta: t("meta")?,
            data_file,
            db,
        })
    }

    /// Makes every write so far durable: on disk, past the drive's cache.
    fn sync(&self) -> Result<()> {
        self.db.flush()?;
        // sled's flush ends in sync_file_range, which flushes neither the
        // drive's write cache nor metadata; fdatasync makes it durable.
        self.data_file.sync_data()?;
        Ok(())
    }
}

/// sled-backed [`Store`].
#[derive(Debug)]
pub struct SledStore {
    cache: Cache,
    sealer: Sealer,
    db: Db,
    space: Space,
}

impl SledStore {
    /// Opens (or creates) the store in `dir` with the data key. A key that does
    /// not match the data already there is refused with [`StoreError::WrongKey`].
    /// Writes are refused while the disk has less than `min_free` bytes
    /// available (see `space`).
    pub fn open(dir: &Path, data_key: &Zeroizing<[u8; 32]>, min_free: u64) -> Result<Self> {
        let store = Self {
            cache: Cache::default(),
            sealer: Sealer::new(data_key),
            db: Db::open(dir)?,
            space: Space::new(dir.to_path_buf(), min_free),
        };
        store.check_key()?;
        Ok(store)
    }

    /// Runs a read.
    fn read<R>(&self, f: impl FnOnce(&Db) -> Result<R>) -> Result<R> {
        f(&self.db)
    }

    /// Runs a small write, unless the data directory refuses writes (see
    /// `space`).
    fn write<R>(&self, f: impl FnOnce(&Db) -> Result<R>) -> Result<R> {
        self.space.allow_write()?;
        self.space.check(f(&self.db))
    }

    /// Runs a write of new messages, the writes that fill a disk: refused
    /// already when free space is below the watermark.
    fn grow<R>(&self, f: impl FnOnce(&Db) -> Result<R>) -> Result<R> {
        self.space.allow_growth()?;
        self.space.check(f(&self.db))
    }

    /// Runs a write that needs no new room: making what was already
    /// written durable. Refusing it would leave a batch that was let in
    /// half-done, visible to reads but never acknowledged.
    fn finish<R>(&self, f: impl FnOnce(&Db) -> Result<R>) -> Result<R> {
        self.space.allow_finish()?;
        self.space.check(f(&self.db))
    }

    fn check_key(&self) -> Result<()> {
        match self.read(|d| Ok(d.meta.get(b"key_check")?))? {
            Some(v) => match self.sealer.open("meta", b"key_check", &v) {
                Ok(plain) if plain == KEY_CHECK => Ok(()),
                _ => Err(StoreError::WrongKey),
            },
            None => self.write(|d| {
                let sealed = self.sealer.seal("meta", b"key_check", KEY_CHECK);
                d.meta.insert(b"key_check", sealed)?;
                d.sync()
            }),
        }
    }

    fn put<T: Serialize>(&self, tree: &sled::Tree, name: &str, key: &[u8], v: &T) -> Result<()> {
        let plain = Zeroizing::new(serde_json::to_vec(v).expect("records always serialise"));
        tree.insert(key, self.sealer.seal(name, key, &plain))?;
        Ok(())
    }

    fn get<T: DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        name: &str,
        key: &[u8],
    ) -> Result<Option<T>> {
        match tree.get(key)? {
            None => Ok(None),
            Some(v) => self.decode(name, key, &v).map(Some),
        }
    }

    fn decode<T: DeserializeOwned>(&self, name: &str, key: &[u8], v: &[u8]) -> Result<T> {
        let plain = Zeroizing::new(self.sealer.open(name, key, v)?);
        serde_json::from_slice(&plain)
            .map_err(|_| StoreError::Corrupt("a stored record does not parse"))
    }

    fn seq_at(&self, tree: &sled::Tree, name: &str, key: &[u8]) -> Result<u64> {
        match tree.get(key)? {
            None => Ok(0),
            Some(v) => self.decode(name, key, &v),
        }
    }

    /// Raises a sealed sequence number to `seq` (never lowers it).
    fn raise_seq(&self, tree: &sled::Tree, name: &str, key: &[u8], seq: u64) -> Result<u64> {
        loop {
            let old = tree.get(key)?;
            let current: u64 = match &old {
                None => 0,
                Some(v) => self.decode(name, key, v)?,
            };
            if seq <= current {
                return Ok(current);
            }
            let new = self.sealer.seal(name, key, seq.to_string().as_bytes());
            // Compare-and-swap so two connections never move it backwards.
            if tree.compare_and_swap(key, old, Some(new))?.is_ok() {
                return Ok(seq);
            }
        }
    }
}

impl Store for SledStore {
    fn has_users(&self) -> Result<bool> {
        self.read(|d| Ok(!d.users.is_empty()))
    }

    fn insert_user(&self, user: &User) -> Result<()> {
        let idx = self.sealer.index_key("username", user.username.as_str());
        let id_sealed = self
            .sealer
            .seal("usernames", &idx, user.id.as_str().as_bytes());
        self.write(|d| {
            // Claim the username atomically: two admins racing for one name
            // get one success and one conflict.
            match d
                .usernames
                .compare_and_swap(&idx, None as Option<&[u8]>, Some(id_sealed))?
            {
                Ok(()) => self.put_user_in(d, user),
                Err(_) => Err(StoreError::Conflict),
            }
        })
    }

    fn put_user(&self, user: &User) -> Result<()> {
        self.write(|d| self.put_user_in(d, user))
    }

    fn user(&self, id: &UserId) -> Result<Option<User>> {
        let g = self.cache.users_gen.load(Ordering::Acquire);
        cached(&self.cache.users, g, id, || {
            self.read(|d| self.get(&d.users, "users", &keys::id(id.as_str())))
        })
    }

    fn user_id_by_username(&self, name: &Username) -> Result<Option<UserId>> {
        let idx = self.sealer.index_key("username", name.as_str());
        let Some(v) = self.read(|d| Ok(d.usernames.get(&idx)?))? else {
            return Ok(None);
        };
        let raw = self.sealer.open("usernames", &idx, &v)?;
        let s = String::from_utf8(raw).map_err(|_| StoreError::Corrupt("user id"))?;
        UserId::parse(s)
            .map(Some)
            .map_err(|_| StoreError::Corrupt("user id"))
    }

    fn put_enrolment(&self, code_hash: &[u8; 32], e: &Enrolment) -> Result<()> {
        self.write(|d| self.put(&d.enrolments, "enrolments", code_hash, e))
    }

    fn enrolment(&self, code_hash: &[u8; 32]) -> Result<Option<Enrolment>> {
        self.read(|d| self.get(&d.enrolments, "enrolments", code_hash))
    }

    fn remove_enrolment(&self, code_hash: &[u8; 32]) -> Result<()> {
        self.write(|d| {
            d.enrolments.remove(code_hash)?;
            Ok(())
        })
    }

    fn put_device(&self, dev: &Device) -> Result<()> {
        self.write(|d| {
            self.put(&d.devices, "devices", &keys::id(dev.id.as_str()), dev)?;
            d.user_devices
                .insert(keys::user_device(&dev.user_id, &dev.id), &[])?;
            bump(&self.cache.devices_gen);
            Ok(())
        })
    }

    fn device(&self, id: &DeviceId) -> Result<Option<Device>> {
        self.read(|d| self.device_in(d, id))
    }

    fn devices_of(&self, user: &UserId) -> Result<Vec<Device>> {
        let g = self.cache.devices_gen.load(Ordering::Acquire);
        cached(&self.cache.devices_of, g, user, || {
            self.read(|d| self.load_devices_of(d, user))
        })
    }

    fn set_last_seen(&self, device: &DeviceId, at_ms: i64) -> Result<()> {
        // Not a change the send path cares about: no cache invalidation.
        let key = keys::id(device.as_str());
        self.write(|d| {
            loop {
                let Some(old) = d.devices.get(&key)? else {
                    return Ok(());
                };
                let mut dev: Device = self.decode("devices", &key, &old)?;
                dev.last_seen = Some(at_ms);
                let plain =
                    Zeroizing::new(serde_json::to_vec(&dev).expect("records always serialise"));
                let new = self.sealer.seal("devices", &key, &plain);
                // Compare-and-swap: a revocation or wipe written since the
                // read is never overwritten with the old state.
                if d.devices
                    .compare_and_swap(&key, Some(old), Some(new))?
                    .is_ok()
                {
                    return Ok(());
                }
            }
        })
    }

    fn put_wipe(&self, w: &WipeOrder) -> Result<()> {
        self.write(|d| self.put(&d.wipes, "wipes", w.wipe_id.as_bytes(), w))
    }

    fn wipe(&self, wipe_id: &str) -> Result<Option<WipeOrder>> {
        self.read(|d| self.get(&d.wipes, "wipes", wipe_id.as_bytes()))
    }

    fn purge_device_entries(
        &self,
        device: &DeviceId,
        conv: &ConversationId,
        after: u64,
    ) -> Result<usize> {
        let start = keys::message(conv, after.saturating_add(1));
        let end = keys::message(conv, u64::MAX);
        self.write(|d| {
            let mut purged = 0;
            for kv in d.messages.range(start..=end) {
                let (k, v) = kv?;
                let mut m: StoredMessage = self.decode("messages", &k, &v)?;
                let before = m.envelope.entries.len();
                m.envelope.entries.retain(|(dev, _)| dev != device);
                if m.envelope.entries.len() != before {
                    self.put(&d.messages, "messages", &k, &m)?;
                    purged += 1;
                }
            }
            Ok(purged)
        })
    }

    fn put_session(&self, token_hash: &[u8; 32], s: &Session) -> Result<()> {
        self.write(|d| self.put(&d.sessions, "sessions", token_hash, s))
    }

    fn session(&self, token_hash: &[u8; 32]) -> Result<Option<Session>> {
        self.read(|d| self.get(&d.sessions, "sessions", token_hash))
    }

    fn remove_session(&self, token_hash: &[u8; 32]) -> Result<()> {
        self.write(|d| {
            d.sessions.remove(token_hash)?;
            Ok(())
        })
    }

    fn insert_conversation(&self, c: &Conversation) -> Result<()> {
        self.write(|d| self.insert_conversation_in(d, c))
    }

    fn update_conversation(&self, c: &Conversation, removed: &[UserId]) -> Result<()> {
        self.write(|d| {
            self.insert_conversation_in(d, c)?;
            for m in removed {
                d.user_convs.remove(keys::user_conv(m, &c.id))?;
                bump(&self.cache.convs_gen);
            }
            Ok(())
        })
    }

    fn conversation(&self, id: &ConversationId) -> Result<Option<Conversation>> {
        let g = self.cache.convs_gen.load(Ordering::Acquire);
        cached(&self.cache.convs, g, id, || {
            self.read(|d| self.get(&d.conversations, "conversations", &keys::id(id.as_str())))
        })
    }

    fn conversations_of(&self, user: &UserId) -> Result<Vec<ConversationId>> {
        self.read(|d| {
            d.user_convs
                .scan_prefix(keys::prefix(user.as_str()))
                .map(|kv| {
                    let (k, _) = kv?;
                    keys::second(&k)
                        .and_then(|s| ConversationId::parse(s).ok())
                        .ok_or(StoreError::Corrupt("conversation index key"))
                })
                .collect()
        })
    }

    fn append_messages(&self, batch: &[NewMessage], now_ms: i64) -> Result<Vec<Appended>> {
        self.grow(|d| self.append_messages_in(d, batch, now_ms))
    }

    fn find_message(
        &self,
        id: &wardline_protocol::MessageId,
    ) -> Result<Option<(ConversationId, u64)>> {
        self.read(|d| self.stored_msg_id(d, &keys::msg_id_index(id)))
    }

    fn urgent_watches(&self) -> Result<Vec<UrgentWatch>> {
        self.read(|d| {
            d.messages
                .scan_prefix(keys::URGENT_PREFIX)
                .map(|kv| {
                    let (k, v) = kv?;
                    self.decode("messages", &k, &v)
                })
                .collect()
        })
    }

    fn put_urgent_watch(&self, w: &UrgentWatch) -> Result<()> {
        self.write(|d| self.put(&d.messages, "messages", &keys::urgent(&w.conv_id, w.seq), w))
    }

    fn remove_urgent_watch(&self, conv: &ConversationId, seq: u64) -> Result<()> {
        self.write(|d| {
            d.messages.remove(keys::urgent(conv, seq))?;
            Ok(())
        })
    }

    fn last_seq(&self, conv: &ConversationId) -> Result<u64> {
        self.read(|d| last_seq_in(d, conv))
    }

    fn messages_after(
        &self,
        conv: &ConversationId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>> {
        let start = keys::message(conv, after.saturating_add(1));
        let end = keys::message(conv, u64::MAX);
        self.read(|d| {
            d.messages
                .range(start..=end)
                .take(limit)
                .map(|kv| {
                    let (k, v) = kv?;
                    self.decode("messages", &k, &v)
                })
                .collect()
        })
    }

    fn senders_between(
        &self,
        conv: &ConversationId,
        after: u64,
        to: u64,
    ) -> Result<Vec<(u64, UserId)>> {
        if to <= after {
            return Ok(Vec::new());
        }
        let start = keys::sender(conv, after.saturating_add(1));
        let end = keys::sender(conv, to);
        let indexed: Vec<(u64, UserId)> = self.read(|d| {
            d.messages
                .range(start..=end)
                .map(|kv| {
                    let (k, v) = kv?;
                    let seq = keys::seq_of_message_key(&k)
                        .ok_or(StoreError::Corrupt("sender index key"))?;
                    let raw = self.sealer.open("messages", &k, &v)?;
                    let user = String::from_utf8(raw)
                        .ok()
                        .and_then(|s| UserId::parse(s).ok())
                        .ok_or(StoreError::Corrupt("sender index"))?;
                    Ok((seq, user))
                })
                .collect::<Result<_>>()
        })?;
        if indexed.len() as u64 == to - after {
            return Ok(indexed);
        }
        // Gaps: messages stored before the index existed (or deleted by
        // retention). Read the messages themselves.
        let count = usize::try_from(to - after).unwrap_or(usize::MAX);
        Ok(self
            .messages_after(conv, after, count)?
            .into_iter()
            .take_while(|m| m.seq <= to)
            .map(|m| (m.seq, m.sender_user))
            .collect())
    }

    fn cursor(&self, device: &DeviceId, conv: &ConversationId) -> Result<u64> {
        self.read(|d| self.seq_at(&d.cursors, "cursors", &keys::cursor(device, conv)))
    }

    fn advance_cursor(&self, device: &DeviceId, conv: &ConversationId, seq: u64) -> Result<u64> {
        self.write(|d| self.raise_seq(&d.cursors, "cursors", &keys::cursor(device, conv), seq))
    }

    fn read_cursor(&self, user: &UserId, conv: &ConversationId) -> Result<u64> {
        self.read(|d| self.seq_at(&d.reads, "reads", &keys::user_conv(user, conv)))
    }

    fn advance_read(&self, user: &UserId, conv: &ConversationId, seq: u64) -> Result<u64> {
        self.write(|d| self.raise_seq(&d.reads, "reads", &keys::user_conv(user, conv), seq))
    }

    fn put_audit(&self, e: &wardline_protocol::audit::AuditEntry) -> Result<()> {
        self.write(|d| self.put(&d.audit, "audit", &e.seq.to_be_bytes(), e))
    }

    fn audit_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<wardline_protocol::audit::AuditEntry>> {
        self.read(|d| {
            d.audit
                .range(after.saturating_add(1).to_be_bytes()..)
                .take(limit)
                .map(|kv| {
                    let (k, v) = kv?;
                    self.decode("audit", &k, &v)
                })
                .collect()
        })
    }

    fn prune_audit(
        &self,
        first_kept: u64,
        checkpoint: &wardline_protocol::audit::Checkpoint,
    ) -> Result<()> {
        self.write(|d| {
            // Checkpoint first and durable: a crash between the two steps
            // leaves a checkpoint and some entries it already covers, which
            // verifies.
            self.put(&d.meta, "meta", b"audit_checkpoint", checkpoint)?;
            d.sync()?;
            let mut batch = sled::Batch::default();
            for kv in d.audit.range(..first_kept.to_be_bytes()) {
                let (k, _) = kv?;
                batch.remove(k);
            }
            d.audit.apply_batch(batch)?;
            Ok(())
        })
    }

    fn audit_checkpoint(&self) -> Result<Option<wardline_protocol::audit::Checkpoint>> {
        self.read(|d| self.get(&d.meta, "meta", b"audit_checkpoint"))
    }

    fn audit_last(&self) -> Result<Option<wardline_protocol::audit::AuditEntry>> {
        self.read(|d| match d.audit.last()? {
            None => Ok(None),
            Some((k, v)) => self.decode("audit", &k, &v).map(Some),
        })
    }

    fn all_users(&self) -> Result<Vec<User>> {
        self.read(|d| {
            d.users
                .iter()
                .map(|kv| {
                    let (k, v) = kv?;
                    self.decode("users", &k, &v)
                })
                .collect()
        })
    }

    fn all_conversations(&self) -> Result<Vec<Conversation>> {
        self.read(|d| {
            d.conversations
                .iter()
                .map(|kv| {
                    let (k, v) = kv?;
                    self.decode("conversations", &k, &v)
                })
                .collect()
        })
    }

    fn message_stats(&self, conv: &ConversationId) -> Result<(u64, u64)> {
        self.read(|d| {
            let mut count = 0;
            let mut bytes = 0;
            for kv in d.messages.scan_prefix(keys::message_prefix(conv)) {
                let (_, v) = kv?;
                count += 1;
                bytes += v.len() as u64;
            }
            Ok((count, bytes))
        })
    }

    fn delete_messages_before(&self, conv: &ConversationId, before_ms: i64) -> Result<u64> {
        self.write(|d| {
            let mut batch = sled::Batch::default();
            let mut deleted = 0;
            for kv in d.messages.scan_prefix(keys::message_prefix(conv)) {
                let (k, v) = kv?;
                let m: StoredMessage = self.decode("messages", &k, &v)?;
                // Messages are in `seq` order, which is storage-time order.
                if m.stored_at >= before_ms {
                    break;
                }
                batch.remove(k);
                batch.remove(keys::msg_id_index(&m.msg_id));
                batch.remove(keys::urgent(conv, m.seq));
                batch.remove(keys::sender(conv, m.seq));
                deleted += 1;
            }
            if deleted > 0 {
                d.messages.apply_batch(batch)?;
            }
            Ok(deleted)
        })
    }

    fn flag(&self, name: &str) -> Result<bool> {
        self.read(|d| {
            Ok(d.meta
                .get(format!("flag/{name}"))?
                .is_some_and(|v| v.as_ref() == [1]))
        })
    }

    fn set_flag(&self, name: &str, on: bool) -> Result<()> {
        self.write(|d| {
            d.meta.insert(format!("flag/{name}"), &[u8::from(on)])?;
            Ok(())
        })
    }

    fn audit_signing_key(&self) -> wardline_protocol::DeviceSecrets {
        self.sealer.audit_signing_key()
    }

    fn sync(&self) -> Result<()> {
        self.finish(Db::sync)
    }

    fn write_refusal(&self) -> Option<&'static str> {
        self.space.refusal()
    }
}

/// [`StoredMessage`] by reference, so appending does not copy envelopes.
#[derive(Serialize)]
struct StoredMessageRef<'a> {
    seq: u64,
    sender_user: &'a UserId,
    msg_id: &'a wardline_protocol::MessageId,
    priority: wardline_protocol::Priority,
    stored_at: i64,
    envelope: &'a wardline_protocol::wire::SplitEnvelope,
}

/// Operations on one open [`Db`], shared by the [`Store`] methods above: a
/// method that reads and writes runs them all on the handle it was given.
impl SledStore {
    fn put_user_in(&self, d: &Db, user: &User) -> Result<()> {
        self.put(&d.users, "users", &keys::id(user.id.as_str()), user)?;
        bump(&self.cache.users_gen);
        Ok(())
    }

    fn device_in(&self, d: &Db, id: &DeviceId) -> Result<Option<Device>> {
        self.get(&d.devices, "devices", &keys::id(id.as_str()))
    }

    fn load_devices_of(&self, d: &Db, user: &UserId) -> Result<Vec<Device>> {
        let mut out = Vec::new();
        for kv in d.user_devices.scan_prefix(keys::prefix(user.as_str())) {
            let (k, _) = kv?;
            let id = keys::second(&k)
                .and_then(|s| DeviceId::parse(s).ok())
                .ok_or(StoreError::Corrupt("device index key"))?;
            if let Some(dev) = self.device_in(d, &id)? {
                out.push(dev);
            }
        }
        Ok(out)
    }

    fn insert_conversation_in(&self, d: &Db, c: &Conversation) -> Result<()> {
        self.put(
            &d.conversations,
            "conversations",
            &keys::id(c.id.as_str()),
            c,
        )?;
        for m in &c.members {
            d.user_convs.insert(keys::user_conv(m, &c.id), &[])?;
        }
        // After the write: see `cached`.
        bump(&self.cache.convs_gen);
        Ok(())
    }

    fn append_messages_in(
        &self,
        d: &Db,
        batch: &[NewMessage],
        now_ms: i64,
    ) -> Result<Vec<Appended>> {
        let mut out = Vec::with_capacity(batch.len());
        let mut writes = sled::Batch::default();
        // Sequence numbers handed out in this batch but not yet applied.
        let mut next: std::collections::HashMap<&ConversationId, u64> = Default::default();
        let mut seen: std::collections::HashMap<[u8; 16], (&ConversationId, u64)> =
            Default::default();
        for m in batch {
            let idx = keys::msg_id_index(&m.msg_id);
            let earlier = match seen.get(m.msg_id.as_bytes()) {
                Some((c, s)) => Some(((*c).clone(), *s)),
                None => self.stored_msg_id(d, &idx)?,
            };
            if let Some((conv, seq)) = earlier {
                out.push(if conv == m.conv_id {
                    Appended::Duplicate(seq)
                } else {
                    Appended::IdClash
                });
                continue;
            }
            let seq = match next.get(&m.conv_id) {
                Some(s) => *s,
                None => last_seq_in(d, &m.conv_id)? + 1,
            };
            next.insert(&m.conv_id, seq + 1);
            seen.insert(*m.msg_id.as_bytes(), (&m.conv_id, seq));
            let key = keys::message(&m.conv_id, seq);
            let record = StoredMessageRef {
                seq,
                sender_user: &m.sender_user,
                msg_id: &m.msg_id,
                priority: m.priority,
                stored_at: now_ms,
                envelope: &m.envelope,
            };
            let plain = serde_json::to_vec(&record).expect("records always serialise");
            writes.insert(key.clone(), self.sealer.seal("messages", &key, &plain));
            writes.insert(idx.clone(), self.sealer.seal("messages", &idx, &key));
            let skey = keys::sender(&m.conv_id, seq);
            let sealed = self
                .sealer
                .seal("messages", &skey, m.sender_user.as_str().as_bytes());
            writes.insert(skey, sealed);
            if !m.urgent_recipients.is_empty() {
                let ukey = keys::urgent(&m.conv_id, seq);
                let watch = UrgentWatch {
                    conv_id: m.conv_id.clone(),
                    seq,
                    msg_id: m.msg_id,
                    sender_user: m.sender_user.clone(),
                    recipients: m.urgent_recipients.clone(),
                    stored_at: now_ms,
                    last_notified: now_ms,
                };
                let plain = serde_json::to_vec(&watch).expect("records always serialise");
                writes.insert(ukey.clone(), self.sealer.seal("messages", &ukey, &plain));
            }
            out.push(Appended::Stored(seq));
        }
        for (conv, next_seq) in &next {
            writes.insert(keys::high_water(conv), &(next_seq - 1).to_be_bytes());
        }
        // One atomic batch: a message, its de-duplication entry and the
        // conversation's high-water mark land together.
        d.messages.apply_batch(writes)?;
        Ok(out)
    }

    fn stored_msg_id(&self, d: &Db, idx: &[u8]) -> Result<Option<(ConversationId, u64)>> {
        let Some(v) = d.messages.get(idx)? else {
            return Ok(None);
        };
        let key = self.sealer.open("messages", idx, &v)?;
        let seq = keys::seq_of_message_key(&key).ok_or(StoreError::Corrupt("message key"))?;
        let conv = key
            .get(1..key.len().saturating_sub(9))
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| ConversationId::parse(s).ok())
            .ok_or(StoreError::Corrupt("message key"))?;
        Ok(Some((conv, seq)))
    }
}

fn last_seq_in(d: &Db, conv: &ConversationId) -> Result<u64> {
    if let Some(v) = d.messages.get(keys::high_water(conv))? {
        let b: [u8; 8] = v
            .as_ref()
            .try_into()
            .map_err(|_| StoreError::Corrupt("high-water mark"))?;
        return Ok(u64::from_be_bytes(b));
    }
    match d
        .messages
        .scan_prefix(keys::message_prefix(conv))
        .next_back()
    {
        None => Ok(0),
        Some(kv) => {
            let (k, _) = kv?;
            keys::seq_of_message_key(&k).ok_or(StoreError::Corrupt("message key"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardline_protocol::envelope::{Envelope, Version};
    use wardline_protocol::{MessageId, Priority, Region, Timestamp};

    fn message(conv: &ConversationId, sender: &UserId, n: u64) -> NewMessage {
        let envelope = Envelope {
            v: Version,
            msg_id: MessageId::generate_v7(1_800_000_000_000 + n, [n as u8; 10]),
            conv_id: conv.clone(),
            sender_user: sender.clone(),
            sender_device: DeviceId::generate_v7(1_800_000_000_000, [1; 10]),
            sent_at: Timestamp::parse("2026-11-23T12:00:00.000Z").expect("timestamp"),
            priority: Priority::Routine,
            residency: Region::GB,
            nonce: [0; 12],
            ciphertext: vec![0; 32],
            sig: [0; 64],
            keys: Vec::new(),
        };
        NewMessage {
            conv_id: conv.clone(),
            sender_user: sender.clone(),
            msg_id: envelope.msg_id,
            priority: Priority::Routine,
            envelope: wardline_protocol::wire::SplitEnvelope::new(&envelope),
            urgent_recipients: Vec::new(),
        }
    }

    #[test]
    fn senders_come_from_the_index_and_from_messages_stored_without_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(dir.path(), &Zeroizing::new([7; 32]), 0).expect("open");
        let conv = ConversationId::generate_v7(1_800_000_000_000, [2; 10]);
        let a = UserId::generate_v7(1_800_000_000_000, [3; 10]);
        let b = UserId::generate_v7(1_800_000_000_000, [4; 10]);
        let batch = [
            message(&conv, &a, 1),
            message(&conv, &b, 2),
            message(&conv, &a, 3),
        ];
        store.append_messages(&batch, 0).expect("append");
        let want = vec![(2, b.clone()), (3, a.clone())];
        assert_eq!(store.senders_between(&conv, 1, 3).expect("senders"), want);
        assert_eq!(store.senders_between(&conv, 3, 3).expect("none"), vec![]);
        // A message stored before the index existed: found all the same.
        store
            .db
            .messages
            .remove(keys::sender(&conv, 2))
            .expect("remove");
        assert_eq!(store.senders_between(&conv, 1, 3).expect("senders"), want);
    }

    #[test]
    fn retention_deletes_a_message_with_its_sender_entry() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(dir.path(), &Zeroizing::new([7; 32]), 0).expect("open");
        let conv = ConversationId::generate_v7(1_800_000_000_000, [2; 10]);
        let a = UserId::generate_v7(1_800_000_000_000, [3; 10]);
        store
            .append_messages(&[message(&conv, &a, 1), message(&conv, &a, 2)], 0)
            .expect("append");
        assert_eq!(store.delete_messages_before(&conv, 1).expect("delete"), 2);
        let left = store.db.messages.scan_prefix(b"s").count();
        assert_eq!(left, 0, "sender entries outlived their messages");
        assert_eq!(store.senders_between(&conv, 0, 2).expect("senders"), vec![]);
    }
}
