//! What the harness reads from the wire, parsed only as far as it needs.
//!
//! A full decode of every push (base64 of the ciphertext and every key
//! entry) would spend the harness's share of the two cores on work that is
//! not the server's; serde skips the fields this head does not name, so a
//! `message` push costs one scan of its text.
//!
//! Every message the harness sends carries its [`MsgKey`] in the random bits
//! of its UUIDv7 `msg_id`, so a receiving device knows which sender sent it
//! and when, without decrypting and without a shared map.

use std::borrow::Cow;

use serde::Deserialize;

/// Which sender sent a message, and which of its messages it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgKey {
    /// The sending connection's index in the run (24 bits).
    pub sender: u32,
    /// The message's index among that sender's messages (32 bits).
    pub n: u32,
}

impl MsgKey {
    /// Most senders one run can have.
    pub const MAX_SENDERS: u32 = 1 << 24;

    /// Packed into 56 bits: also used as the `send` request's `id`, so the
    /// `ok` names the message it acknowledges.
    pub fn packed(self) -> u64 {
        (u64::from(self.sender) << 32) | u64::from(self.n)
    }

    /// The inverse of [`MsgKey::packed`].
    pub fn unpack(v: u64) -> Option<Self> {
        if v >> 56 != 0 {
            return None;
        }
        Some(Self {
            sender: (v >> 32) as u32,
            n: v as u32,
        })
    }

    /// The 10 "random" bytes of a UUIDv7 carrying this key. The `uuid`
    /// builder overwrites the high nibble of byte 0 (version) and the top two
    /// bits of byte 2 (variant), so the key lives in bytes 3..10.
    pub fn uuid_random(self, salt: u16) -> [u8; 10] {
        let mut r = [0u8; 10];
        r[0..2].copy_from_slice(&salt.to_be_bytes());
        r[3..10].copy_from_slice(&self.packed().to_be_bytes()[1..8]);
        r
    }

    /// Reads the key back from a hyphenated UUID text (`8-4-4-4-12`): UUID
    /// bytes 9..16 are hex digits 21..23 and 24..36.
    pub fn from_msg_id(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() != 36 {
            return None;
        }
        let mut v: u64 = 0;
        for &c in b[21..23].iter().chain(&b[24..36]) {
            v = (v << 4) | u64::from((c as char).to_digit(16)?);
        }
        Self::unpack(v)
    }

    /// Writes the key into an existing msg_id text in place (relay frames,
    /// which are templates patched per send).
    pub fn patch_msg_id(self, text: &mut [u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bytes = self.packed().to_be_bytes();
        // UUID byte 9 → hex 21..23; bytes 10..16 → hex 24..36.
        let mut digits = [0u8; 14];
        for (i, byte) in bytes[1..8].iter().enumerate() {
            digits[2 * i] = HEX[usize::from(byte >> 4)];
            digits[2 * i + 1] = HEX[usize::from(byte & 0xf)];
        }
        text[21..23].copy_from_slice(&digits[0..2]);
        text[24..36].copy_from_slice(&digits[2..14]);
    }
}

/// The envelope fields the harness reads.
#[derive(Debug, Deserialize)]
struct EnvelopeHead<'a> {
    #[serde(borrow)]
    msg_id: Cow<'a, str>,
}

/// The fields of any server frame the harness reads.
#[derive(Debug, Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    re: Option<u64>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default, borrow)]
    conv_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    code: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    envelope: Option<EnvelopeHead<'a>>,
}

/// A server (or relay) frame, as far as the harness cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// `ok` to request `re`.
    Ok {
        /// The request answered.
        re: u64,
    },
    /// `error`; `re` is `None` for errors about the connection.
    Error {
        /// The request answered, if any.
        re: Option<u64>,
        /// The stable error code.
        code: Cow<'a, str>,
    },
    /// A `message` push.
    Message {
        /// Conversation.
        conv_id: Cow<'a, str>,
        /// Sequence number.
        seq: u64,
        /// Who sent it, when the harness did.
        key: Option<MsgKey>,
    },
    /// A `receipt` push.
    Receipt,
    /// Any other push.
    Other,
}

/// Parses a frame's head; `None` when it is not a JSON object with a `type`.
pub fn parse(text: &str) -> Option<Incoming<'_>> {
    let h: Head<'_> = serde_json::from_str(text).ok()?;
    Some(match h.kind.as_ref() {
        "ok" => Incoming::Ok { re: h.re? },
        "error" => Incoming::Error {
            re: h.re,
            code: h.code.unwrap_or(Cow::Borrowed("unknown")),
        },
        "message" => Incoming::Message {
            conv_id: h.conv_id?,
            seq: h.seq?,
            key: h.envelope.and_then(|e| MsgKey::from_msg_id(&e.msg_id)),
        },
        "receipt" => Incoming::Receipt,
        _ => Incoming::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardline_protocol::MessageId;

    #[test]
    fn msg_keys_survive_a_uuid_v7() {
        for key in [
            MsgKey { sender: 0, n: 0 },
            MsgKey {
                sender: 7,
                n: 123_456,
            },
            MsgKey {
                sender: MsgKey::MAX_SENDERS - 1,
                n: u32::MAX,
            },
        ] {
            let id = MessageId::generate_v7(1_795_419_114_123, key.uuid_random(0xbeef));
            let text = id.to_text();
            assert!(MessageId::parse(&text).is_ok(), "still a valid v7: {text}");
            assert_eq!(MsgKey::from_msg_id(&text), Some(key));
            let mut patched = MessageId::generate_v7(5, [0; 10]).to_text().into_bytes();
            key.patch_msg_id(&mut patched);
            let patched = String::from_utf8(patched).expect("hex is ascii");
            assert_eq!(MsgKey::from_msg_id(&patched), Some(key));
            assert!(MessageId::parse(&patched).is_ok(), "{patched}");
        }
    }

    #[test]
    fn parses_the_frames_it_needs() {
        assert_eq!(
            parse(r#"{"type":"ok","re":9,"seq":3}"#),
            Some(Incoming::Ok { re: 9 })
        );
        assert_eq!(
            parse(r#"{"type":"error","re":null,"code":"rate_limited","message":"x"}"#),
            Some(Incoming::Error {
                re: None,
                code: Cow::Borrowed("rate_limited")
            })
        );
        let id = MessageId::generate_v7(1, MsgKey { sender: 3, n: 4 }.uuid_random(1)).to_text();
        let push = format!(
            r#"{{"type":"message","conv_id":"c1","seq":5,"envelope":{{"v":1,"msg_id":"{id}","ciphertext":"AAAA","keys":[]}}}}"#
        );
        assert_eq!(
            parse(&push),
            Some(Incoming::Message {
                conv_id: Cow::Borrowed("c1"),
                seq: 5,
                key: Some(MsgKey { sender: 3, n: 4 })
            })
        );
        assert_eq!(parse("not json"), None);
    }
}
