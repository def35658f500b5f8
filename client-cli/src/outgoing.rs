//! Sending: finds the conversation a user named, seals a message to every
//! active device of its members and hands it to the server.
//!
//! Keys are pinned on first sight (see `keystore::contacts`): a device whose
//! keys changed under the same id is never sealed to, and devices that
//! appeared since the contact was first seen are reported as flags so every
//! send can warn about them until the user verifies.

use std::collections::BTreeSet;

use wardline_protocol::wire::{
    ConversationCreate, ConversationCreateOk, ConversationInfo, Devices, DevicesOk, Lookup,
    LookupOk, Send, SendOk, UserInfo,
};
use wardline_protocol::{
    Body, DeviceSecrets, Envelope, ErrorCode, Header, MessageId, Priority, Recipient, Request,
    UserId, Username, envelope, rng,
};

use crate::connection::{Connection, ConnectionError};
use crate::error::Error;
use crate::keystore::{DeviceFlag, Keystore, StoredMessage};

/// What sending needs from the server: the members' current devices, and
/// delivery of a sealed envelope. A seam so the reseal rule in
/// [`seal_and_send`] can be tested without a server.
trait Courier {
    /// Every active device of the conversation's members, keys checked
    /// against the pinned ones.
    async fn recipients(&mut self) -> Result<Vec<Recipient>, Error>;
    /// Hands `envelope` to the server.
    async fn send(&mut self, envelope: &Envelope) -> Result<SendOk, ConnectionError>;
}

/// The courier for a real connection; remembers the flags of the last
/// device list.
struct Live<'a> {
    conn: &'a mut Connection,
    keystore: &'a mut Keystore,
    members: &'a [UserId],
    flags: Vec<DeviceFlag>,
}

impl Courier for Live<'_> {
    async fn recipients(&mut self) -> Result<Vec<Recipient>, Error> {
        let (list, flags) = recipients(self.conn, self.keystore, self.members).await?;
        self.flags = flags;
        Ok(list)
    }

    async fn send(&mut self, envelope: &Envelope) -> Result<SendOk, ConnectionError> {
        self.conn
            .call(Request::Send(Send {
                envelope: envelope.clone(),
            }))
            .await
    }
}

/// Seals `body` to the members' current devices and sends it. If the
/// device list changed between reading it and sending (`invalid_envelope`),
/// reads it again and reseals once, under the same header and so the same
/// message id: the server can never store the message twice, and a server
/// that keeps refusing cannot keep the client looping. Returns the
/// server's answer and the envelope it accepted.
async fn seal_and_send(
    courier: &mut impl Courier,
    header: &Header,
    body: &Body,
    secrets: &DeviceSecrets,
) -> Result<(SendOk, Envelope), Error> {
    let mut resealed = false;
    loop {
        let recipients = courier.recipients().await?;
        let sealed = envelope::seal(header.clone(), body, secrets, &recipients)
            .map_err(|e| Error::Refused(format!("cannot seal the message: {e}")))?;
        match courier.send(&sealed).await {
            Ok(ok) => return Ok((ok, sealed)),
            Err(ConnectionError::Server(e))
                if e.code == ErrorCode::InvalidEnvelope && !resealed =>
            {
                resealed = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The conversation `target` names, among the user's conversations
/// `convs`: its id; else its title, if exactly one conversation has it
/// (ignoring case); else, when `target` is a username, the one-to-one
/// conversation with that user, created when `create` and there is none.
pub async fn resolve_conversation(
    conn: &mut Connection,
    keystore: &mut Keystore,
    convs: &[ConversationInfo],
    target: &str,
    create: bool,
) -> Result<ConversationInfo, Error> {
    if let Some(c) = convs.iter().find(|c| c.conv_id.as_str() == target) {
        return Ok(c.clone());
    }
    let titled: Vec<&ConversationInfo> = convs
        .iter()
        .filter(|c| c.title.trim().eq_ignore_ascii_case(target.trim()))
        .collect();
    match titled.as_slice() {
        [one] => return Ok((*one).clone()),
        [] => {}
        many => {
            return Err(Error::Usage(format!(
                "{} conversations are called '{target}'; name one by its id: {}",
                many.len(),
                many.iter()
                    .map(|c| c.conv_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let unknown = || {
        Error::Usage(format!(
            "'{target}' is neither one of your conversations (by id or title) nor a username known to the server; `wardline conversations` lists yours"
        ))
    };
    let Ok(username) = Username::parse(target) else {
        return Err(unknown());
    };
    let them = lookup_users(conn, keystore, &[username.to_string()])
        .await
        .map_err(|e| match e {
            Error::Usage(_) => unknown(),
            other => other,
        })?
        .remove(0);
    let state = keystore.state();
    let pair: BTreeSet<&UserId> = [&state.user_id, &them.user_id].into();
    let existing = convs
        .iter()
        .find(|c| c.members.iter().collect::<BTreeSet<_>>() == pair);
    if let Some(c) = existing {
        return Ok(c.clone());
    }
    if !create {
        return Err(Error::Usage(format!(
            "you have no conversation with {username} yet; `wardline send {username} TEXT` starts one"
        )));
    }
    let title = if them.user_id == state.user_id {
        format!("{} (notes to self)", state.username)
    } else {
        format!("{} & {}", state.username, them.username)
    };
    let created: ConversationCreateOk = conn
        .call(Request::ConversationCreate(ConversationCreate {
            members: vec![them.user_id.clone()],
            title: title.clone(),
        }))
        .await?;
    Ok(ConversationInfo {
        conv_id: created.conv_id,
        title,
        members: pair.into_iter().cloned().collect(),
        residency: created.residency,
        last_seq: 0,
    })
}

/// Looks up `usernames` in the directory and remembers their ids; every
/// name must exist, else the error names the unknown ones.
pub async fn lookup_users(
    conn: &mut Connection,
    keystore: &mut Keystore,
    usernames: &[String],
) -> Result<Vec<UserInfo>, Error> {
    let invalid: Vec<&String> = usernames
        .iter()
        .filter(|n| Username::parse(n.as_str()).is_err())
        .collect();
    if !invalid.is_empty() {
        return Err(Error::Usage(format!(
            "not a username: {} (usernames are lower case: a-z, 0-9, '.', '-', '_')",
            invalid
                .iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let found: LookupOk = conn
        .call(Request::Lookup(Lookup {
            usernames: usernames.to_vec(),
        }))
        .await?;
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for name in usernames {
        match found.users.iter().find(|u| u.username.as_str() == name) {
            Some(u) => {
                keystore
                    .state_mut()
                    .remember_username(&u.user_id, &u.username);
                out.push(u.clone());
            }
            None => missing.push(format!("'{name}'")),
        }
    }
    if !missing.is_empty() {
        return Err(Error::Usage(format!(
            "no user called {} on this server; check the spelling",
            missing.join(", ")
        )));
    }
    Ok(out)
}

/// A fresh header for a message from this device to `conv`.
pub fn new_header(
    keystore: &Keystore,
    conv: &ConversationInfo,
    priority: Priority,
) -> Result<Header, Error> {
    let now = crate::clock::now_millis();
    let sent_at = crate::clock::now()
        .ok_or_else(|| Error::Refused("the system clock is not set to a usable time".into()))?;
    let mut random = [0u8; 10];
    rng::fill(&mut random);
    let state = keystore.state();
    Ok(Header {
        msg_id: MessageId::generate_v7(now, random),
        conv_id: conv.conv_id.clone(),
        sender_user: state.user_id.clone(),
        sender_device: state.device_id.clone(),
        sent_at,
        priority,
        residency: conv.residency,
    })
}

/// What a send did.
#[derive(Debug)]
pub struct Delivered {
    /// The server's acknowledgement: the message is durable.
    pub ok: SendOk,
    /// Recipient devices that appeared since their owner was first seen
    /// and are not verified.
    pub flags: Vec<DeviceFlag>,
}

/// Seals `body` under `header` to the current devices of `members`, sends
/// it, and keeps a copy in the keystore's cache (the caller saves). Sending
/// the same header again (after a lost connection) cannot store the
/// message twice: the server recognises the `msg_id`.
pub async fn deliver(
    conn: &mut Connection,
    keystore: &mut Keystore,
    members: &[UserId],
    header: &Header,
    body: &Body,
) -> Result<Delivered, Error> {
    let secrets = keystore.state().device_secrets();
    let mut live = Live {
        conn,
        keystore,
        members,
        flags: Vec::new(),
    };
    let (ok, sealed) = seal_and_send(&mut live, header, body, &secrets).await?;
    let flags = std::mem::take(&mut live.flags);
    let envelope = StoredMessage::cached_envelope(&sealed, &header.sender_device);
    keystore.state_mut().store_message(StoredMessage {
        conv_id: ok.conv_id.clone(),
        seq: ok.seq,
        msg_id: header.msg_id,
        sender_user: header.sender_user.clone(),
        sender_device: header.sender_device.clone(),
        sent_at: header.sent_at.clone(),
        priority: header.priority,
        body: body.clone(),
        envelope: Some(envelope),
    });
    Ok(Delivered { ok, flags })
}

/// Every active device of `members`, and the flags for them. Keys are
/// pinned on first sight; if a known device's keys changed, nothing is sent.
async fn recipients(
    conn: &mut Connection,
    keystore: &mut Keystore,
    members: &[UserId],
) -> Result<(Vec<Recipient>, Vec<DeviceFlag>), Error> {
    let listed: DevicesOk = conn
        .call(Request::Devices(Devices {
            user_ids: members.to_vec(),
        }))
        .await?;
    // Sealing to a device outside the conversation would leak the message.
    let devices: Vec<_> = listed
        .devices
        .into_iter()
        .filter(|d| members.contains(&d.user_id))
        .collect();
    let state = keystore.state_mut();
    if let Some(changed) = state.remember_devices(&devices).first() {
        let who = state.display_name(&changed.user_id);
        return Err(Error::Refused(format!(
            "the server published different keys for device {} of {who} than this device saw before, so nothing was sent. Compare safety numbers with {who} in person (`wardline verify {who}`) and, only if they match, accept the new keys with `wardline verify {who} --confirm`. Otherwise report it to IT: someone may be trying to intercept messages",
            changed.device_id
        )));
    }
    let flags = state.flags(&devices);
    Ok((
        devices
            .into_iter()
            .map(|d| Recipient {
                device_id: d.device_id,
                kem_pk: d.kem_pk,
            })
            .collect(),
        flags,
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use wardline_protocol::{BodyKind, ConversationId, DeviceId, Region, Timestamp};

    use super::*;
    use crate::connection::ServerError;

    /// Answers `send` from a script, and hands out device lists in turn.
    struct Scripted {
        device_lists: VecDeque<Vec<Recipient>>,
        answers: VecDeque<Result<SendOk, ConnectionError>>,
        sent: Vec<Envelope>,
    }

    impl Courier for Scripted {
        async fn recipients(&mut self) -> Result<Vec<Recipient>, Error> {
            Ok(self
                .device_lists
                .pop_front()
                .expect("a device list per attempt"))
        }

        async fn send(&mut self, envelope: &Envelope) -> Result<SendOk, ConnectionError> {
            self.sent.push(envelope.clone());
            self.answers.pop_front().expect("an answer per send")
        }
    }

    fn device(id: &str) -> Recipient {
        Recipient {
            device_id: DeviceId::parse(id).expect("valid id"),
            kem_pk: DeviceSecrets::generate().public().kem_pk,
        }
    }

    fn refused(code: ErrorCode, missing: &[&Recipient]) -> Result<SendOk, ConnectionError> {
        Err(ConnectionError::Server(ServerError {
            code,
            message: String::new(),
            missing_devices: missing.iter().map(|r| r.device_id.clone()).collect(),
            extra_devices: Vec::new(),
        }))
    }

    fn fixture() -> (Header, Body, DeviceSecrets, SendOk) {
        let header = Header {
            msg_id: MessageId::generate_v7(1_700_000_000_000, [7; 10]),
            conv_id: ConversationId::parse("c-ward-10").expect("valid id"),
            sender_user: UserId::parse("u-alice").expect("valid id"),
            sender_device: DeviceId::parse("d-alice-1").expect("valid id"),
            sent_at: Timestamp::from_unix_millis(1_700_000_000_000).expect("valid time"),
            priority: Priority::Routine,
            residency: Region::GB,
        };
        let body = Body {
            text: "Obs due at 14:00".into(),
            kind: BodyKind::Message,
            patient: None,
            reply_to: None,
        };
        let ok = SendOk {
            conv_id: header.conv_id.clone(),
            msg_id: header.msg_id,
            seq: 1,
        };
        (header, body, DeviceSecrets::generate(), ok)
    }

    fn key_ids(e: &Envelope) -> Vec<&str> {
        e.keys.iter().map(|k| k.device_id.as_str()).collect()
    }

    #[tokio::test]
    async fn a_stale_device_list_is_resealed_once_under_the_same_id() -> Result<(), Error> {
        let (header, body, secrets, ok) = fixture();
        let (alice, bob, bob_laptop) = (device("d-alice-1"), device("d-bob-1"), device("d-bob-2"));
        let mut courier = Scripted {
            device_lists: [
                vec![alice.clone(), bob.clone()],
                vec![alice.clone(), bob.clone(), bob_laptop.clone()],
            ]
            .into(),
            answers: [refused(ErrorCode::InvalidEnvelope, &[&bob_laptop]), Ok(ok)].into(),
            sent: Vec::new(),
        };
        let (sent, accepted) = seal_and_send(&mut courier, &header, &body, &secrets).await?;
        assert_eq!(sent.msg_id, header.msg_id);
        assert_eq!(key_ids(&accepted), ["d-alice-1", "d-bob-1", "d-bob-2"]);
        let [first, second] = courier.sent.as_slice() else {
            panic!("expected two attempts, got {}", courier.sent.len());
        };
        assert_eq!(first.msg_id, header.msg_id);
        assert_eq!(
            second.msg_id, header.msg_id,
            "the reseal keeps the message id"
        );
        assert_eq!(key_ids(first), ["d-alice-1", "d-bob-1"]);
        assert_eq!(key_ids(second), ["d-alice-1", "d-bob-1", "d-bob-2"]);
        Ok(())
    }

    #[tokio::test]
    async fn a_second_invalid_envelope_is_reported_not_retried() {
        let (header, body, secrets, _) = fixture();
        let list = vec![device("d-alice-1")];
        let mut courier = Scripted {
            device_lists: [list.clone(), list].into(),
            answers: [
                refused(ErrorCode::InvalidEnvelope, &[]),
                refused(ErrorCode::InvalidEnvelope, &[]),
            ]
            .into(),
            sent: Vec::new(),
        };
        let err = seal_and_send(&mut courier, &header, &body, &secrets)
            .await
            .expect_err("refused twice");
        assert_eq!(err.code(), "invalid_envelope");
        assert_eq!(courier.sent.len(), 2);
    }

    #[tokio::test]
    async fn other_refusals_are_not_resealed() {
        let (header, body, secrets, _) = fixture();
        let mut courier = Scripted {
            device_lists: [vec![device("d-alice-1")]].into(),
            answers: [refused(ErrorCode::NotMember, &[])].into(),
            sent: Vec::new(),
        };
        let err = seal_and_send(&mut courier, &header, &body, &secrets)
            .await
            .expect_err("not a member");
        assert_eq!(err.code(), "not_member");
        assert_eq!(courier.sent.len(), 1);
    }
}
