//! Frame encode and decode on both sides of the send path: the client
//! encoding `send`, the server decoding it and splitting the envelope, the
//! server rendering each device's `message` push, and a client decoding it.

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wardline_protocol::wire::{self, Request, Send, SplitEnvelope};
use wardline_protocol::{
    Body, BodyKind, ConversationId, DeviceId, DeviceSecrets, Envelope, Header, MessageId, Priority,
    Recipient, Region, Timestamp, UserId, envelope,
};

fn id(n: u64) -> [u8; 10] {
    let mut r = [0u8; 10];
    r[2..10].copy_from_slice(&n.to_be_bytes());
    r
}

/// A real sealed envelope with `n` key entries and a 256-byte text.
fn sealed(n: usize) -> Envelope {
    let header = Header {
        msg_id: MessageId::generate_v7(1_795_419_114_123, id(1)),
        conv_id: ConversationId::generate_v7(1_795_419_114_000, id(2)),
        sender_user: UserId::generate_v7(1_795_419_114_000, id(3)),
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
    let recipients: Vec<Recipient> = (0..n)
        .map(|i| Recipient {
            device_id: DeviceId::generate_v7(1_795_419_114_000, id(100 + i as u64)),
            kem_pk: DeviceSecrets::generate().public().kem_pk,
        })
        .collect();
    envelope::seal(header, &body, &DeviceSecrets::generate(), &recipients).expect("seals")
}

fn frames(c: &mut Criterion) {
    for n in [2usize, 100] {
        let env = sealed(n);
        let request = Request::Send(Send {
            envelope: env.clone(),
        });
        let text = wire::encode_request(42, &request);
        let split = SplitEnvelope::new(&env);
        let device = env.keys[n - 1].device_id.clone();
        let push =
            wire::render_message_push(&env.conv_id, 123_456, &split, split.entry_for(&device));

        let mut g = c.benchmark_group(format!("frames_{n}_recipients"));
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(BenchmarkId::new("encode_send", text.len()), |b| {
            b.iter(|| wire::encode_request(42, &request))
        });
        g.bench_function(BenchmarkId::new("decode_send", text.len()), |b| {
            b.iter(|| wire::decode_request(&text).expect("decodes"))
        });
        g.bench_function("split_envelope", |b| b.iter(|| SplitEnvelope::new(&env)));
        g.throughput(Throughput::Bytes(push.len() as u64));
        g.bench_function(BenchmarkId::new("render_push", push.len()), |b| {
            b.iter(|| {
                wire::render_message_push(&env.conv_id, 123_456, &split, split.entry_for(&device))
            })
        });
        g.bench_function(BenchmarkId::new("decode_push", push.len()), |b| {
            b.iter(|| wire::decode_server_frame(&push).expect("decodes"))
        });
        g.bench_function(BenchmarkId::new("harness_parse_push", push.len()), |b| {
            b.iter(|| wardline_bench::frames::parse(&push).expect("parses"))
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::short(2);
    targets = frames
}
criterion_main!(benches);
