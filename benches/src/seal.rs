//! Envelopes sealed ahead of time with the real crypto, and the frames the
//! relay baseline sends in their place.
//!
//! Sealing costs one HPKE seal per recipient device and one Ed25519
//! signature per message. Done during the run it would take the harness's
//! share of the two cores away from the server, so throughput runs seal
//! every envelope before the clock starts, on every core, and report what
//! sealing cost per message on its own line.

use std::time::{Duration, Instant};

use serde::Serialize;
use wardline_protocol::wire::{self, Request, Send, SplitEnvelope};
use wardline_protocol::{
    Body, BodyKind, ConversationId, DeviceId, DeviceSecrets, Header, KemPublicKey, MessageId,
    Priority, Recipient, Region, Timestamp, UserId, envelope,
};

use crate::frames::MsgKey;
use crate::provision::Conversation;

/// Who seals: one sending device.
#[derive(Debug)]
pub struct Sealer<'a> {
    /// Sending user.
    pub user_id: &'a UserId,
    /// Sending device.
    pub device_id: &'a DeviceId,
    /// Its keys.
    pub secrets: &'a DeviceSecrets,
}

/// One envelope to seal: by `sealer`, for `conv`, carrying `key`.
#[derive(Debug, Clone, Copy)]
pub struct Item {
    /// Index into the sealers.
    pub sealer: usize,
    /// Index into the conversations.
    pub conv: usize,
    /// Where the frame goes and what it carries.
    pub key: MsgKey,
}

/// What sealing cost.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SealStats {
    /// Envelopes sealed.
    pub envelopes: usize,
    /// Mean recipient devices per envelope.
    pub recipients: f64,
    /// CPU per envelope for `envelope::seal` alone, µs.
    pub seal_us_per_msg: f64,
    /// CPU per envelope for encoding the `send` frame, µs.
    pub encode_us_per_msg: f64,
    /// Wall time of the sealing phase, seconds.
    pub secs: f64,
    /// Threads used.
    pub threads: usize,
    /// Mean `send` frame size, bytes.
    pub send_frame_bytes: f64,
}

/// The plaintext body of every message: `text` of `bytes` characters.
pub fn body(bytes: usize) -> Body {
    // Printable, varied text: a run of one byte would compress in any
    // layer that compresses, flattering it.
    let text: String = (0..bytes)
        .map(|i| char::from(b'a' + ((i * 7 + i / 26) % 26) as u8))
        .collect();
    Body {
        text,
        kind: BodyKind::Message,
        patient: None,
        reply_to: None,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seals one envelope and encodes its `send` frame (request id = the
/// packed key, so the `ok` names the message).
pub fn seal_one(
    sealer: &Sealer<'_>,
    conv: &Conversation,
    key: MsgKey,
    body: &Body,
    salt: u16,
) -> anyhow::Result<(String, Duration, Duration)> {
    let t0 = Instant::now();
    let now = now_ms();
    let header = Header {
        msg_id: MessageId::generate_v7(now, key.uuid_random(salt)),
        conv_id: conv.conv_id.clone(),
        sender_user: sealer.user_id.clone(),
        sender_device: sealer.device_id.clone(),
        sent_at: Timestamp::from_unix_millis(now as i64)
            .map_err(|e| anyhow::anyhow!("clock out of range: {e}"))?,
        priority: Priority::Routine,
        residency: conv.residency,
    };
    let env = envelope::seal(header, body, sealer.secrets, &conv.recipients)
        .map_err(|e| anyhow::anyhow!("sealing failed: {e}"))?;
    let t1 = Instant::now();
    let frame = wire::encode_request(key.packed(), &Request::Send(Send { envelope: env }));
    Ok((frame, t1 - t0, t1.elapsed()))
}

/// Seals every item on `threads` threads. Returns the frames in item order.
pub fn seal_all(
    sealers: &[Sealer<'_>],
    convs: &[Conversation],
    items: &[Item],
    body_bytes: usize,
    threads: usize,
) -> anyhow::Result<(Vec<String>, SealStats)> {
    let threads = threads.clamp(1, 64);
    let body = body(body_bytes);
    let mut salt = [0u8; 2];
    wardline_protocol::rng::fill(&mut salt);
    let salt = u16::from_be_bytes(salt);
    let started = Instant::now();
    let chunk = items.len().div_ceil(threads).max(1);
    let results: Vec<anyhow::Result<(Vec<String>, Duration, Duration)>> =
        std::thread::scope(|scope| {
            let handles: Vec<_> = items
                .chunks(chunk)
                .map(|part| {
                    let body = &body;
                    scope.spawn(move || {
                        let mut frames = Vec::with_capacity(part.len());
                        let (mut seal_t, mut enc_t) = (Duration::ZERO, Duration::ZERO);
                        for it in part {
                            let (f, s, e) =
                                seal_one(&sealers[it.sealer], &convs[it.conv], it.key, body, salt)?;
                            frames.push(f);
                            seal_t += s;
                            enc_t += e;
                        }
                        Ok((frames, seal_t, enc_t))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a sealing thread panicked")))
                })
                .collect()
        });
    let mut frames = Vec::with_capacity(items.len());
    let (mut seal_t, mut enc_t) = (Duration::ZERO, Duration::ZERO);
    for r in results {
        let (f, s, e) = r?;
        frames.extend(f);
        seal_t += s;
        enc_t += e;
    }
    let n = items.len().max(1) as f64;
    let recipients: usize = items.iter().map(|i| convs[i.conv].recipients.len()).sum();
    let bytes: usize = frames.iter().map(String::len).sum();
    Ok((
        frames,
        SealStats {
            envelopes: items.len(),
            recipients: recipients as f64 / n,
            seal_us_per_msg: seal_t.as_secs_f64() * 1e6 / n,
            encode_us_per_msg: enc_t.as_secs_f64() * 1e6 / n,
            secs: started.elapsed().as_secs_f64(),
            threads,
            send_frame_bytes: bytes as f64 / n,
        },
    ))
}

/// The relay's stand-in for a send: the sizes Wardline's frames would have
/// for a conversation of `recipients` devices, measured from a real sealed
/// envelope with ids of the same shape.
#[derive(Debug, Clone)]
pub struct RelayShape {
    /// A `message` push for one device, its msg_id patched per send.
    pub push: String,
    /// Byte offset of the msg_id text inside `push`.
    pub msg_id_at: usize,
    /// Size of the `send` frame it stands for.
    pub send_len: usize,
    /// Size of the `ok` a send gets.
    pub ok_len: usize,
}

impl RelayShape {
    /// Measures the frames of a `recipients`-device conversation.
    pub fn measure(recipients: usize, body_bytes: usize) -> anyhow::Result<Self> {
        let id = |i: u64| {
            let mut r = [0u8; 10];
            wardline_protocol::rng::fill(&mut r);
            (now_ms() + i, r)
        };
        let (t, r) = id(0);
        let conv_id = ConversationId::generate_v7(t, r);
        let (t, r) = id(1);
        let user = UserId::generate_v7(t, r);
        let sender = DeviceSecrets::generate();
        let mut devices = Vec::with_capacity(recipients);
        for i in 0..recipients.max(1) {
            let (t, r) = id(i as u64);
            let keys = DeviceSecrets::generate().public();
            devices.push(Recipient {
                device_id: DeviceId::generate_v7(t, r),
                kem_pk: KemPublicKey::from_bytes(*keys.kem_pk.as_bytes()),
            });
        }
        let device = devices[0].device_id.clone();
        let conv = Conversation {
            conv_id: conv_id.clone(),
            residency: Region::GB,
            recipients: devices,
        };
        let sealer = Sealer {
            user_id: &user,
            device_id: &device,
            secrets: &sender,
        };
        let key = MsgKey { sender: 0, n: 0 };
        let (send, _, _) = seal_one(&sealer, &conv, key, &body(body_bytes), 0)?;
        let frame = wire::decode_request(&send).map_err(|e| anyhow::anyhow!("{e}"))?;
        let Request::Send(s) = frame.request else {
            anyhow::bail!("sealed frame is not a send");
        };
        let split = SplitEnvelope::new(&s.envelope);
        // A six-digit seq: a busy conversation's, so the size is not flattered.
        let seq = 123_456;
        let push = wire::render_message_push(&conv_id, seq, &split, split.entry_for(&device));
        let needle = format!("\"msg_id\":\"{}\"", s.envelope.msg_id);
        let msg_id_at = push
            .find(&needle)
            .map(|i| i + "\"msg_id\":\"".len())
            .ok_or_else(|| anyhow::anyhow!("msg_id not found in the rendered push"))?;
        let ok = wire::encode_ok(
            key.packed(),
            &wire::SendOk {
                conv_id,
                msg_id: s.envelope.msg_id,
                seq,
            },
        );
        Ok(Self {
            push,
            msg_id_at,
            send_len: send.len(),
            ok_len: ok.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{Incoming, parse};

    #[test]
    fn relay_shape_carries_a_patchable_msg_id() {
        let shape = RelayShape::measure(3, 256).expect("measures");
        assert!(
            shape.send_len > shape.push.len(),
            "a send holds every key entry"
        );
        let mut push = shape.push.clone().into_bytes();
        let key = MsgKey { sender: 9, n: 77 };
        key.patch_msg_id(&mut push[shape.msg_id_at..shape.msg_id_at + 36]);
        let push = String::from_utf8(push).expect("ascii patch");
        match parse(&push) {
            Some(Incoming::Message { key: Some(k), .. }) => assert_eq!(k, key),
            other => panic!("not a message push: {other:?}"),
        }
    }

    #[test]
    fn sealed_frames_open_for_each_recipient() {
        let sender = DeviceSecrets::generate();
        let bob = DeviceSecrets::generate();
        let mk = |n: u64| {
            let mut r = [0u8; 10];
            wardline_protocol::rng::fill(&mut r);
            (n, r)
        };
        let (t, r) = mk(1);
        let user = UserId::generate_v7(t, r);
        let (t, r) = mk(2);
        let me = DeviceId::generate_v7(t, r);
        let (t, r) = mk(3);
        let bob_dev = DeviceId::generate_v7(t, r);
        let (t, r) = mk(4);
        let conv = Conversation {
            conv_id: ConversationId::generate_v7(t, r),
            residency: Region::GB,
            recipients: vec![
                Recipient {
                    device_id: me.clone(),
                    kem_pk: sender.public().kem_pk,
                },
                Recipient {
                    device_id: bob_dev.clone(),
                    kem_pk: bob.public().kem_pk,
                },
            ],
        };
        let sealers = [Sealer {
            user_id: &user,
            device_id: &me,
            secrets: &sender,
        }];
        let items = [Item {
            sealer: 0,
            conv: 0,
            key: MsgKey { sender: 1, n: 2 },
        }];
        let (frames, stats) =
            seal_all(&sealers, std::slice::from_ref(&conv), &items, 64, 2).expect("seals");
        assert_eq!(stats.envelopes, 1);
        let frame = wire::decode_request(&frames[0]).expect("decodes");
        assert_eq!(frame.id, MsgKey { sender: 1, n: 2 }.packed());
        let Request::Send(s) = frame.request else {
            panic!("not a send")
        };
        let opened = envelope::open(&s.envelope, &bob_dev, &bob, &sender.public().sig_pk)
            .expect("bob opens it");
        assert_eq!(opened.text.len(), 64);
    }
}
