//! Envelope seal and open for conversations of 1, 10 and 100 recipient
//! devices: the sender's cost per message, and each receiver's.

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wardline_protocol::{
    Body, BodyKind, ConversationId, DeviceId, DeviceSecrets, Header, MessageId, Priority,
    Recipient, Region, Timestamp, UserId, envelope,
};

fn id(n: u64) -> [u8; 10] {
    let mut r = [0u8; 10];
    r[2..10].copy_from_slice(&n.to_be_bytes());
    r
}

fn header() -> Header {
    Header {
        msg_id: MessageId::generate_v7(1_795_419_114_123, id(1)),
        conv_id: ConversationId::generate_v7(1_795_419_114_000, id(2)),
        sender_user: UserId::generate_v7(1_795_419_114_000, id(3)),
        sender_device: DeviceId::generate_v7(1_795_419_114_000, id(4)),
        sent_at: Timestamp::parse("2026-11-23T07:31:54.123Z").expect("valid time"),
        priority: Priority::Routine,
        residency: Region::GB,
    }
}

fn body() -> Body {
    Body {
        text: "K+ 6.8 on the repeat sample; ECG shows peaked T waves. ".repeat(5)[..256]
            .to_string(),
        kind: BodyKind::ClinicalNote,
        patient: None,
        reply_to: None,
    }
}

fn recipients(n: usize) -> (Vec<Recipient>, Vec<(DeviceId, DeviceSecrets)>) {
    let devices: Vec<(DeviceId, DeviceSecrets)> = (0..n)
        .map(|i| {
            (
                DeviceId::generate_v7(1_795_419_114_000, id(100 + i as u64)),
                DeviceSecrets::generate(),
            )
        })
        .collect();
    let r = devices
        .iter()
        .map(|(d, s)| Recipient {
            device_id: d.clone(),
            kem_pk: s.public().kem_pk,
        })
        .collect();
    (r, devices)
}

fn seal_and_open(c: &mut Criterion) {
    let sender = DeviceSecrets::generate();
    let body = body();
    let mut seal = c.benchmark_group("envelope_seal");
    for n in [1usize, 10, 100] {
        let (rcpt, _) = recipients(n);
        seal.throughput(Throughput::Elements(1));
        seal.bench_with_input(BenchmarkId::from_parameter(n), &rcpt, |b, rcpt| {
            b.iter(|| envelope::seal(header(), &body, &sender, rcpt).expect("seals"));
        });
    }
    seal.finish();

    let mut open = c.benchmark_group("envelope_open");
    for n in [1usize, 10, 100] {
        let (rcpt, devices) = recipients(n);
        let sealed = envelope::seal(header(), &body, &sender, &rcpt).expect("seals");
        // The last device: its entry is found after scanning all the others.
        let (me, keys) = devices.last().expect("at least one recipient");
        let sig = sender.public().sig_pk;
        open.bench_with_input(BenchmarkId::from_parameter(n), &sealed, |b, sealed| {
            b.iter(|| envelope::open(sealed, me, keys, &sig).expect("opens"));
        });
    }
    open.finish();
}

criterion_group! {
    name = benches;
    config = common::short(3);
    targets = seal_and_open
}
criterion_main!(benches);
