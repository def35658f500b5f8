//! A raw protocol client for tests that drive the server directly: JSON
//! frames over a WebSocket, with a timeout on every wait.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wardline_protocol::{
    Body, BodyKind, ConversationId, DeviceId, DeviceSecrets, Header, KemPublicKey, MessageId,
    Priority, Recipient, Region, Timestamp, UserId, b64, envelope,
};

const WAIT: Duration = Duration::from_secs(30);

/// One WebSocket connection speaking JSON frames.
#[derive(Debug)]
pub struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl WsClient {
    /// Connects to `url`.
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect within 30 s")
            .expect("connect");
        Self { ws, next_id: 1 }
    }

    /// Sends a request without waiting; returns its id.
    pub async fn send(&mut self, kind: &str, mut fields: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        fields["type"] = json!(kind);
        fields["id"] = json!(id);
        self.ws
            .send(Message::text(fields.to_string()))
            .await
            .expect("send");
        id
    }

    /// The next frame, or `None` if the connection ended.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within 30 s")
            {
                Some(Ok(Message::Text(t))) => {
                    return Some(serde_json::from_str(t.as_str()).expect("JSON frame"));
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Sends a request and returns (reply, pushes that came first).
    pub async fn request(&mut self, kind: &str, fields: Value) -> (Value, Vec<Value>) {
        let id = self.send(kind, fields).await;
        let mut pushes = Vec::new();
        loop {
            let f = self.next().await.expect("connection open");
            if f["re"] == json!(id) {
                return (f, pushes);
            }
            pushes.push(f);
        }
    }

    /// A request that must succeed.
    pub async fn ok(&mut self, kind: &str, fields: Value) -> Value {
        let (r, _) = self.request(kind, fields).await;
        assert_eq!(r["type"], "ok", "{kind} failed: {r}");
        r
    }
}

/// An enrolled user with one device, connected.
#[derive(Debug)]
pub struct WsUser {
    /// User id.
    pub user_id: String,
    /// Device id.
    pub device_id: String,
    /// Device keys.
    pub keys: DeviceSecrets,
    /// Session token.
    pub token: String,
    /// The authenticated connection.
    pub client: WsClient,
}

impl WsUser {
    /// Enrols with an enrolment code.
    pub async fn enrol(url: &str, code: &str) -> Self {
        let mut c = WsClient::connect(url).await;
        let start = c
            .ok(
                "enrol_start",
                json!({"code": code, "password": "a long test password"}),
            )
            .await;
        let keys = DeviceSecrets::generate();
        let pk = keys.public();
        let totp = crate::totp_now(start["totp_secret"].as_str().expect("secret"));
        let fin = c
            .ok(
                "enrol_finish",
                json!({"code": code, "totp": totp, "device": {"name": "test", "kem_pk": b64::encode(pk.kem_pk.as_bytes()), "sig_pk": b64::encode(pk.sig_pk.as_bytes())}}),
            )
            .await;
        Self {
            user_id: fin["user_id"].as_str().expect("id").into(),
            device_id: fin["device_id"].as_str().expect("id").into(),
            keys,
            token: fin["token"].as_str().expect("token").into(),
            client: c,
        }
    }

    /// Has this (admin) user create `username` and enrols them.
    pub async fn create_and_enrol(&mut self, url: &str, username: &str) -> WsUser {
        let r = self
            .client
            .ok(
                "admin_user_create",
                json!({"username": username, "display_name": username, "role": "clinician"}),
            )
            .await;
        WsUser::enrol(url, r["enrol_code"].as_str().expect("code")).await
    }

    /// Seals `text` to the devices in a `devices` reply.
    pub fn seal(&self, conv: &str, devices: &Value, text: &str, msg_id: MessageId) -> Value {
        let recipients: Vec<Recipient> = devices["devices"]
            .as_array()
            .expect("devices")
            .iter()
            .map(|d| Recipient {
                device_id: DeviceId::parse(d["device_id"].as_str().expect("id")).expect("id"),
                kem_pk: KemPublicKey::from_bytes(
                    b64::decode(d["kem_pk"].as_str().expect("pk"))
                        .expect("b64")
                        .try_into()
                        .expect("32 bytes"),
                ),
            })
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64;
        let header = Header {
            msg_id,
            conv_id: ConversationId::parse(conv).expect("id"),
            sender_user: UserId::parse(self.user_id.as_str()).expect("id"),
            sender_device: DeviceId::parse(self.device_id.as_str()).expect("id"),
            sent_at: Timestamp::from_unix_millis(now).expect("time"),
            priority: Priority::Routine,
            residency: Region::GB,
        };
        let body = Body {
            text: text.into(),
            kind: BodyKind::Message,
            patient: None,
            reply_to: None,
        };
        serde_json::to_value(envelope::seal(header, &body, &self.keys, &recipients).expect("seal"))
            .expect("json")
    }
}

/// Two clinicians, alice and bob, in one conversation, enrolled by the
/// bootstrap admin of a fresh server: the start of most end-to-end tests.
#[derive(Debug)]
pub struct Pair {
    /// The bootstrap admin.
    pub admin: WsUser,
    /// The member who sends.
    pub alice: WsUser,
    /// The other member.
    pub bob: WsUser,
    /// Their conversation.
    pub conv: String,
    /// The `devices` reply for both, for sealing.
    pub devices: Value,
}

impl Pair {
    /// Enrols the admin with `bootstrap_code`, then alice and bob, and has
    /// alice open a conversation called `title` with bob.
    pub async fn open(url: &str, bootstrap_code: &str, title: &str) -> Self {
        let mut admin = WsUser::enrol(url, bootstrap_code).await;
        let mut alice = admin.create_and_enrol(url, "alice").await;
        let bob = admin.create_and_enrol(url, "bob").await;
        let conv = alice
            .client
            .ok(
                "conversation_create",
                json!({"members": [bob.user_id], "title": title}),
            )
            .await;
        let conv = conv["conv_id"].as_str().expect("id").to_string();
        let devices = alice
            .client
            .ok("devices", json!({"user_ids": [alice.user_id, bob.user_id]}))
            .await;
        Self {
            admin,
            alice,
            bob,
            conv,
            devices,
        }
    }
}
