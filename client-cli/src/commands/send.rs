//! `wardline send`: seal a message to every device of a conversation's
//! members and hand it to the server.

use std::collections::BTreeSet;

use clap::{Args, ValueEnum};
use wardline_protocol::wire::{
    ConversationCreate, ConversationCreateOk, ConversationInfo, Conversations, ConversationsOk,
    Devices, DevicesOk, Lookup, LookupOk, Send, SendOk,
};
use wardline_protocol::{
    Body, BodyKind, DeviceSecrets, Envelope, ErrorCode, Header, MessageId, Patient, Priority,
    Recipient, Request, Timestamp, UserId, Username, envelope, rng,
};

use super::{Context, now_millis, open_keystore, resume};
use crate::connection::{Connection, ConnectionError};
use crate::error::Error;
use crate::keystore::{Keystore, StoredMessage};
use crate::nhs::NhsNumber;
use crate::output::Event;

/// What kind of message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Ordinary conversation.
    Message,
    /// A clinical decision or advice, meant for the health record.
    ClinicalNote,
}

/// Arguments of `wardline send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// A conversation id, or the username of the person to message (their
    /// one-to-one conversation with you is found or created).
    pub target: String,
    /// The message text.
    pub text: String,
    /// Mark the message urgent.
    #[arg(long)]
    pub urgent: bool,
    /// Message or clinical note.
    #[arg(long, value_enum, default_value_t = Kind::Message)]
    pub kind: Kind,
    /// The NHS number of the patient the message is about (checked before sending).
    #[arg(long, value_name = "NHS_NUMBER")]
    pub patient: Option<String>,
    /// The id of the message this one answers.
    #[arg(long, value_name = "MSG_ID")]
    pub reply_to: Option<MessageId>,
}

/// Sends: validates the arguments before touching the keystore or the
/// network, resolves the target, seals to the members' current devices and
/// sends. If the device list changed meanwhile (`invalid_envelope`), it
/// reseals once to the fresh list under the same message id, so the server
/// can never store the message twice.
pub async fn run(ctx: &Context, args: SendArgs) -> Result<(), Error> {
    let patient = args.patient.as_deref().map(NhsNumber::parse).transpose()?;
    if args.text.trim().is_empty() {
        return Err(Error::Usage("the message text is empty".into()));
    }
    let body = Body {
        text: args.text,
        kind: match args.kind {
            Kind::Message => BodyKind::Message,
            Kind::ClinicalNote => BodyKind::ClinicalNote,
        },
        patient: patient.map(|p| Patient {
            nhs_number: p.as_str().to_owned(),
        }),
        reply_to: args.reply_to,
    };

    let mut keystore = open_keystore(&ctx.home)?;
    let mut conn = resume(&mut keystore).await?;
    let conv = resolve_target(&mut conn, &mut keystore, &args.target).await?;

    let now = now_millis();
    let mut random = [0u8; 10];
    rng::fill(&mut random);
    let sent_at = i64::try_from(now)
        .ok()
        .and_then(|ms| Timestamp::from_unix_millis(ms).ok())
        .ok_or_else(|| Error::Refused("the system clock is not set to a usable time".into()))?;
    let state = keystore.state();
    let header = Header {
        msg_id: MessageId::generate_v7(now, random),
        conv_id: conv.conv_id.clone(),
        sender_user: state.user_id.clone(),
        sender_device: state.device_id.clone(),
        sent_at,
        priority: if args.urgent {
            Priority::Urgent
        } else {
            Priority::Routine
        },
        residency: conv.residency,
    };
    let secrets = state.device_secrets();

    let sent = seal_and_send(
        &mut Live {
            conn: &mut conn,
            keystore: &mut keystore,
            members: &conv.members,
        },
        &header,
        &body,
        &secrets,
    )
    .await?;
    conn.close().await;

    ctx.out.emit(&Event::Sent {
        conv_id: sent.conv_id.clone(),
        msg_id: sent.msg_id,
        seq: sent.seq,
    })?;
    keystore.state_mut().store_message(StoredMessage {
        conv_id: sent.conv_id,
        seq: sent.seq,
        msg_id: header.msg_id,
        sender_user: header.sender_user,
        sender_device: header.sender_device,
        sent_at: header.sent_at,
        priority: header.priority,
        body,
    });
    keystore.save().map_err(|e| {
        Error::Refused(format!(
            "the message was sent, but the local copy could not be saved: {e}"
        ))
    })
}

/// What sending needs from the server: the members' current devices, and
/// delivery of a sealed envelope. A seam so the reseal rule in
/// [`seal_and_send`] can be tested without a server.
trait Courier {
    /// Every active device of the conversation's members, keys checked
    /// against the pinned ones.
    async fn recipients(&mut self) -> Result<Vec<Recipient>, Error>;
    /// Hands `envelope` to the server.
    async fn send(&mut self, envelope: Envelope) -> Result<SendOk, ConnectionError>;
}

/// The courier for a real connection.
struct Live<'a> {
    conn: &'a mut Connection,
    keystore: &'a mut Keystore,
    members: &'a [UserId],
}

impl Courier for Live<'_> {
    async fn recipients(&mut self) -> Result<Vec<Recipient>, Error> {
        recipients(self.conn, self.keystore, self.members).await
    }

    async fn send(&mut self, envelope: Envelope) -> Result<SendOk, ConnectionError> {
        self.conn.call(Request::Send(Send { envelope })).await
    }
}

/// Seals `body` to the members' current devices and sends it. If the
/// device list changed between reading it and sending (`invalid_envelope`),
/// reads it again and reseals once, under the same header and so the same
/// message id: the server can never store the message twice, and a server
/// that keeps refusing cannot keep the client looping.
async fn seal_and_send(
    courier: &mut impl Courier,
    header: &Header,
    body: &Body,
    secrets: &DeviceSecrets,
) -> Result<SendOk, Error> {
    let mut resealed = false;
    loop {
        let recipients = courier.recipients().await?;
        let sealed = envelope::seal(header.clone(), body, secrets, &recipients)
            .map_err(|e| Error::Refused(format!("cannot seal the message: {e}")))?;
        match courier.send(sealed).await {
            Ok(ok) => return Ok(ok),
            Err(ConnectionError::Server(e))
                if e.code == ErrorCode::InvalidEnvelope && !resealed =>
            {
                resealed = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The conversation `target` names: one of the user's conversations by id,
/// else the one-to-one conversation with the user of that name, created if
/// there is none yet.
async fn resolve_target(
    conn: &mut Connection,
    keystore: &mut Keystore,
    target: &str,
) -> Result<ConversationInfo, Error> {
    let convs: ConversationsOk = conn.call(Request::Conversations(Conversations {})).await?;
    if let Some(c) = convs
        .conversations
        .iter()
        .find(|c| c.conv_id.as_str() == target)
    {
        return Ok(c.clone());
    }
    let unknown = || {
        Error::Usage(format!(
            "'{target}' is neither one of your conversations nor a username known to the server"
        ))
    };
    let username = Username::parse(target).map_err(|_| unknown())?;
    let found: LookupOk = conn
        .call(Request::Lookup(Lookup {
            usernames: vec![username.to_string()],
        }))
        .await?;
    let them = found
        .users
        .into_iter()
        .find(|u| u.username == username)
        .ok_or_else(unknown)?;
    let state = keystore.state_mut();
    state.remember_username(&them.user_id, &them.username);

    let pair: BTreeSet<&UserId> = [&state.user_id, &them.user_id].into();
    let existing = convs
        .conversations
        .into_iter()
        .find(|c| c.members.iter().collect::<BTreeSet<_>>() == pair);
    if let Some(c) = existing {
        return Ok(c);
    }
    let title = format!("{} & {}", state.username, them.username);
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

/// Every active device of `members`. Keys are pinned on first sight; if a
/// known device's keys changed, nothing is sent.
async fn recipients(
    conn: &mut Connection,
    keystore: &mut Keystore,
    members: &[UserId],
) -> Result<Vec<Recipient>, Error> {
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
    if let Some(changed) = keystore.state_mut().remember_devices(&devices).first() {
        return Err(Error::Refused(format!(
            "the server published different keys for device {} of user {} than this device saw before, so nothing was sent. Report this to IT: someone may be trying to intercept messages",
            changed.device_id, changed.user_id
        )));
    }
    Ok(devices
        .into_iter()
        .map(|d| Recipient {
            device_id: d.device_id,
            kem_pk: d.kem_pk,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use wardline_protocol::{ConversationId, DeviceId, Region};

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

        async fn send(&mut self, envelope: Envelope) -> Result<SendOk, ConnectionError> {
            self.sent.push(envelope);
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
        let sent = seal_and_send(&mut courier, &header, &body, &secrets).await?;
        assert_eq!(sent.msg_id, header.msg_id);
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
