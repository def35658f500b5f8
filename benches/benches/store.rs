//! Store append with group commit: one `append_messages` of a batch and one
//! `sync` (flush and fdatasync), as the server's writer does per batch, at
//! several batch sizes; and the append alone, to separate the fsync.
//!
//! The data directory is a temporary one on the same disk as the target
//! directory (`TMPDIR` moves it), so the fsync cost is that disk's.

mod common;

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wardline_protocol::wire::SplitEnvelope;
use wardline_protocol::{
    Body, BodyKind, ConversationId, DeviceId, DeviceSecrets, Header, MessageId, Priority,
    Recipient, Region, Timestamp, UserId, envelope,
};
use wardline_server::store::{NewMessage, SledStore, Store};

/// Conversations the appends are spread over.
const CONVERSATIONS: u64 = 64;

fn id(n: u64) -> [u8; 10] {
    let mut r = [0u8; 10];
    r[2..10].copy_from_slice(&n.to_be_bytes());
    r
}

fn split_envelope() -> (SplitEnvelope, UserId) {
    let user = UserId::generate_v7(1_795_419_114_000, id(3));
    let header = Header {
        msg_id: MessageId::generate_v7(1_795_419_114_123, id(1)),
        conv_id: ConversationId::generate_v7(1_795_419_114_000, id(2)),
        sender_user: user.clone(),
        sender_device: DeviceId::generate_v7(1_795_419_114_000, id(4)),
        sent_at: Timestamp::parse("2026-11-23T07:31:54.123Z").expect("valid time"),
        priority: Priority::Routine,
        residency: Region::GB,
    };
    let body = Body {
        text: "x".repeat(256),
        kind: BodyKind::Message,
        patient: None,
        reply_to: None,
    };
    let recipients: Vec<Recipient> = (0..2)
        .map(|i| Recipient {
            device_id: DeviceId::generate_v7(1_795_419_114_000, id(100 + i)),
            kem_pk: DeviceSecrets::generate().public().kem_pk,
        })
        .collect();
    let env =
        envelope::seal(header, &body, &DeviceSecrets::generate(), &recipients).expect("seals");
    (SplitEnvelope::new(&env), user)
}

struct Fixture {
    store: SledStore,
    _dir: tempfile::TempDir,
    envelope: SplitEnvelope,
    sender: UserId,
    convs: Vec<ConversationId>,
    next: u64,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let key = zeroize::Zeroizing::new([7u8; 32]);
        let store = SledStore::open(dir.path(), &key, 0).expect("opens the store");
        let (envelope, sender) = split_envelope();
        Self {
            store,
            _dir: dir,
            envelope,
            sender,
            convs: (0..CONVERSATIONS)
                .map(|i| ConversationId::generate_v7(1_795_419_114_000, id(1000 + i)))
                .collect(),
            next: 0,
        }
    }

    /// A batch of fresh messages (new ids, so none is a duplicate).
    fn batch(&mut self, size: usize) -> Vec<NewMessage> {
        (0..size)
            .map(|_| {
                self.next += 1;
                NewMessage {
                    conv_id: self.convs[(self.next % CONVERSATIONS) as usize].clone(),
                    sender_user: self.sender.clone(),
                    msg_id: MessageId::generate_v7(1_795_419_114_123 + self.next, id(self.next)),
                    priority: Priority::Routine,
                    envelope: self.envelope.clone(),
                    urgent_recipients: Vec::new(),
                }
            })
            .collect()
    }
}

fn append(c: &mut Criterion) {
    let mut fx = Fixture::new();
    for (name, fsync) in [
        ("store_append_group_commit", true),
        ("store_append_no_fsync", false),
    ] {
        let mut g = c.benchmark_group(name);
        for size in [1usize, 8, 64, 512] {
            g.throughput(Throughput::Elements(size as u64));
            g.bench_function(BenchmarkId::from_parameter(size), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let batch = fx.batch(size);
                        let t = Instant::now();
                        fx.store
                            .append_messages(&batch, 1_795_419_114_123)
                            .expect("appends");
                        if fsync {
                            fx.store.sync().expect("syncs");
                        }
                        total += t.elapsed();
                    }
                    total
                })
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::short(3);
    targets = append
}
criterion_main!(benches);
