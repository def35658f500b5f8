//! In-process test server and a raw WebSocket client that speaks JSON frames.

#![allow(dead_code)] // each test file uses a different part of the support

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wardline_protocol::{
    Body, BodyKind, ConversationId, DeviceId, DeviceSecrets, Envelope, Header, KemPublicKey,
    MessageId, Priority, Recipient, Region, Timestamp, UserId, b64, envelope,
};
use wardline_server::{Clock, Config, Server, State};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(10);

/// A server on 127.0.0.1:0 over a temporary directory, with a clock tests move.
pub struct TestServer {
    pub url: String,
    pub ops_addr: Option<std::net::SocketAddr>,
    pub clock: Clock,
    pub state: std::sync::Arc<State>,
    pub admin_code: String,
    pub dir: tempfile::TempDir,
    stop: tokio::sync::watch::Sender<bool>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server whose configuration `tweak` adjusts first.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in_with(dir, tweak).await
    }

    pub async fn start_in(dir: tempfile::TempDir) -> Self {
        Self::start_in_with(dir, |_| {}).await
    }

    async fn start_in_with(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let ops = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let ops_addr = Some(ops.local_addr().expect("addr"));
        let addr = listener.local_addr().expect("addr");
        let mut config = Config::new(addr, dir.path().to_path_buf());
        tweak(&mut config);
        let clock = Clock::system();
        let server = Server::open(config, None, clock.clone()).expect("server opens");
        let admin_code = std::fs::read_to_string(dir.path().join("bootstrap-admin.code"))
            .expect("bootstrap code file")
            .trim()
            .to_string();
        let state = server.state.clone();
        let (stop, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(server.run(listener, Some(ops), rx));
        Self {
            url: format!("ws://{addr}/v1"),
            ops_addr,
            clock,
            state,
            admin_code,
            dir,
            stop,
        }
    }

    pub async fn connect(&self) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(&self.url)
            .await
            .expect("connect");
        Client { ws, next_id: 1 }
    }

    /// Waits (at most 10 s) until no device is connected: the server has
    /// finished with every closed connection.
    pub async fn all_disconnected(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.state.hub.connected_devices() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "connections did not close"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Moves the server clock to the next TOTP step, so a new code is fresh.
    pub fn next_totp_step(&self) {
        self.clock.advance_ms(30_000);
    }

    pub fn totp_now(&self, secret_b32: &str) -> String {
        totp_code(secret_b32, self.clock.now_secs())
    }

    pub async fn stop(self) -> tempfile::TempDir {
        let _ = self.stop.send(true);
        // Wait until the store is released, so a restart can open it.
        let deadline = tokio::time::Instant::now() + WAIT;
        while std::sync::Arc::strong_count(&self.state) > 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "server did not stop"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let writer_stopped = self.state.writer.stopped();
        drop(self.state);
        tokio::time::timeout(WAIT, writer_stopped)
            .await
            .expect("writer stops");
        self.dir
    }
}

pub fn totp_code(secret_b32: &str, now_secs: u64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret_b32).expect("base32 secret");
    totp_rs::Builder::new()
        .with_secret(secret.as_bytes().to_vec())
        .build()
        .expect("totp")
        .generate(now_secs)
        .to_string()
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Client {
    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws
            .send(Message::text(text.into()))
            .await
            .expect("send");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).await.expect("send");
    }

    /// The next text frame as JSON (waits at most 10 s).
    pub async fn next(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within 10 s")
                .expect("connection open")
                .expect("frame");
            if let Message::Text(t) = msg {
                return serde_json::from_str(t.as_str()).expect("server sends JSON");
            }
        }
    }

    /// Reads frames until one of `kind` arrives (other pushes may come first).
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let f = self.next().await;
            if f["type"] == kind {
                return f;
            }
        }
    }

    /// True if the server closes the connection within 10 s.
    pub async fn closed(&mut self) -> bool {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Sends a request and returns its reply, keeping pushes that come first.
    pub async fn request(&mut self, kind: &str, mut fields: Value) -> (Value, Vec<Value>) {
        let id = self.next_id;
        self.next_id += 1;
        fields["type"] = json!(kind);
        fields["id"] = json!(id);
        self.send_text(fields.to_string()).await;
        let mut pushes = Vec::new();
        loop {
            let f = self.next().await;
            if f["re"] == json!(id) {
                return (f, pushes);
            }
            pushes.push(f);
        }
    }

    /// A request that must succeed; returns the `ok` frame.
    pub async fn ok(&mut self, kind: &str, fields: Value) -> Value {
        let (r, _) = self.request(kind, fields).await;
        assert_eq!(r["type"], "ok", "{kind} failed: {r}");
        r
    }

    /// A request that must fail with `code`.
    pub async fn fails(&mut self, kind: &str, fields: Value, code: &str) -> Value {
        let (r, _) = self.request(kind, fields).await;
        assert_eq!(r["type"], "error", "{kind} should fail with {code}: {r}");
        assert_eq!(r["code"], code, "{kind}: {r}");
        r
    }
}

/// A user with an enrolled device, connected.
pub struct TestUser {
    pub user_id: String,
    pub username: String,
    pub password: String,
    pub totp_secret: String,
    pub device_id: String,
    pub keys: DeviceSecrets,
    pub token: String,
    pub client: Client,
}

pub fn device_json(name: &str, keys: &DeviceSecrets) -> Value {
    let pk = keys.public();
    json!({"name": name, "kem_pk": b64::encode(pk.kem_pk.as_bytes()), "sig_pk": b64::encode(pk.sig_pk.as_bytes())})
}

impl TestUser {
    /// Enrols with `code` on a new connection.
    pub async fn enrol(server: &TestServer, code: &str, password: &str) -> TestUser {
        let mut c = server.connect().await;
        let start = c
            .ok("enrol_start", json!({"code": code, "password": password}))
            .await;
        let secret = start["totp_secret"].as_str().expect("secret").to_string();
        let keys = DeviceSecrets::generate();
        let fin = c
            .ok(
                "enrol_finish",
                json!({"code": code, "totp": server.totp_now(&secret), "device": device_json("test device", &keys)}),
            )
            .await;
        TestUser {
            user_id: fin["user_id"].as_str().expect("id").into(),
            username: start["username"].as_str().expect("name").into(),
            password: password.into(),
            totp_secret: secret,
            device_id: fin["device_id"].as_str().expect("id").into(),
            keys,
            token: fin["token"].as_str().expect("token").into(),
            client: c,
        }
    }

    pub async fn admin(server: &TestServer) -> TestUser {
        Self::enrol(server, &server.admin_code, "correct horse battery").await
    }

    /// Has `admin` create `username` and enrols them.
    pub async fn clinician(server: &TestServer, admin: &mut TestUser, username: &str) -> TestUser {
        let r = admin
            .client
            .ok(
                "admin_user_create",
                json!({"username": username, "display_name": username, "role": "clinician"}),
            )
            .await;
        let code = r["enrol_code"].as_str().expect("code").to_string();
        Self::enrol(server, &code, &format!("{username} password 1")).await
    }
}

/// Seals `text` from `from` to the given devices (`devices` reply entries).
pub fn seal(from: &TestUser, conv: &str, devices: &Value, text: &str, msg_id: MessageId) -> Value {
    seal_with(from, conv, devices, text, msg_id, Region::GB)
}

pub fn seal_with(
    from: &TestUser,
    conv: &str,
    devices: &Value,
    text: &str,
    msg_id: MessageId,
    residency: Region,
) -> Value {
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
                    .expect("32"),
            ),
        })
        .collect();
    let header = Header {
        msg_id,
        conv_id: ConversationId::parse(conv).expect("id"),
        sender_user: UserId::parse(from.user_id.as_str()).expect("id"),
        sender_device: DeviceId::parse(from.device_id.as_str()).expect("id"),
        sent_at: Timestamp::parse("2026-11-23T07:31:54.123Z").expect("time"),
        priority: Priority::Urgent,
        residency,
    };
    let body = Body {
        text: text.into(),
        kind: BodyKind::Message,
        patient: None,
        reply_to: None,
    };
    serde_json::to_value(envelope::seal(header, &body, &from.keys, &recipients).expect("seal"))
        .expect("json")
}

pub fn new_msg_id(n: u8) -> MessageId {
    MessageId::generate_v7(1_795_419_114_123 + u64::from(n), [n; 10])
}

pub fn open_text(to: &TestUser, from: &TestUser, push: &Value) -> String {
    let env: Envelope = serde_json::from_value(push["envelope"].clone()).expect("envelope");
    let me = DeviceId::parse(to.device_id.as_str()).expect("id");
    envelope::open(&env, &me, &to.keys, &from.keys.public().sig_pk)
        .expect("opens")
        .text
}

pub struct Ward {
    pub server: TestServer,
    pub admin: TestUser,
    pub alice: TestUser,
    pub bob: TestUser,
    pub conv: String,
    pub devices: Value,
}

pub async fn ward() -> Ward {
    ward_with(|_| {}).await
}

/// [`ward`] on a server whose configuration `tweak` adjusts.
pub async fn ward_with(tweak: impl FnOnce(&mut Config)) -> Ward {
    let server = TestServer::start_with(tweak).await;
    let mut admin = TestUser::admin(&server).await;
    let mut alice = TestUser::clinician(&server, &mut admin, "alice").await;
    let bob = TestUser::clinician(&server, &mut admin, "bob").await;
    let r = alice
        .client
        .ok(
            "conversation_create",
            json!({"members": [bob.user_id], "title": "Ward 10 nights"}),
        )
        .await;
    assert_eq!(r["residency"], "GB");
    let conv = r["conv_id"].as_str().expect("id").to_string();
    let devices = alice
        .client
        .ok("devices", json!({"user_ids": [alice.user_id, bob.user_id]}))
        .await;
    Ward {
        server,
        admin,
        alice,
        bob,
        conv,
        devices,
    }
}
