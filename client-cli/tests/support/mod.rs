//! A small in-memory stand-in for the Wardline server, speaking the real
//! wire protocol on a loopback port, so the `wardline` binary can be tested
//! end to end without the real server. It checks what the real one checks
//! about envelopes (sender, membership, key entries naming exactly the
//! members' active devices) but accepts any well-formed TOTP code.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use wardline_protocol::wire::{
    self, AdminUserCreateOk, ConversationCreateOk, ConversationInfo, ConversationsOk, DeviceInfo,
    DevicesOk, EnrolStartOk, ErrorFrame, LoginDevice, LookupOk, NewDevice, ResumeOk, SendOk,
    SessionOk, SplitEnvelope, UserInfo,
};
use wardline_protocol::{
    ConversationId, DeviceId, Envelope, ErrorCode, Region, Request, Role, Secret, Timestamp,
    UserId, Username,
};

/// The base32 TOTP secret every account gets.
pub const TOTP_SECRET: &str = "JBSWY3DPEHPK3PXP";

struct User {
    info: UserInfo,
    password: Option<String>,
    enrol_code: Option<String>,
}

struct Device {
    info: DeviceInfo,
    token: String,
}

struct Conv {
    info: ConversationInfo,
    log: Vec<Envelope>,
}

/// What the fake server holds.
#[derive(Default)]
pub struct World {
    users: Vec<User>,
    devices: Vec<Device>,
    convs: Vec<Conv>,
    cursors: HashMap<(DeviceId, ConversationId), u64>,
    next: u64,
    /// When set, the next `devices` answer leaves out the newest device,
    /// as if it registered just after the list was read.
    pub stale_devices_once: bool,
    /// How many `send` requests were refused with `invalid_envelope`.
    pub invalid_envelopes: u32,
}

impl World {
    fn fresh(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}-{}", self.next)
    }

    /// Adds an account with a one-time enrolment code.
    pub fn add_user(&mut self, username: &str, role: Role, code: &str) -> UserId {
        let user_id = UserId::parse(self.fresh("u")).expect("valid id");
        self.users.push(User {
            info: UserInfo {
                user_id: user_id.clone(),
                username: Username::parse(username).expect("valid username"),
                display_name: username.to_owned(),
                role,
            },
            password: None,
            enrol_code: Some(code.to_owned()),
        });
        user_id
    }

    /// Flips a bit of the newest stored message's ciphertext, as a
    /// malicious or faulty server might.
    pub fn tamper_with_newest(&mut self) {
        let conv = self
            .convs
            .iter_mut()
            .filter(|c| !c.log.is_empty())
            .last()
            .expect("a stored message");
        let env = conv.log.last_mut().expect("non-empty");
        env.ciphertext[0] ^= 1;
    }

    /// Ends every session, as expiry would.
    pub fn end_sessions(&mut self) {
        for d in &mut self.devices {
            d.token = format!("dead-{}", d.info.device_id);
        }
    }

    /// Every envelope stored in every conversation.
    pub fn stored(&self) -> Vec<Envelope> {
        self.convs.iter().flat_map(|c| c.log.clone()).collect()
    }

    fn add_device(&mut self, user_id: &UserId, d: &NewDevice) -> SessionOk {
        let device_id = DeviceId::parse(self.fresh("d")).expect("valid id");
        let token = self.fresh("token");
        self.devices.push(Device {
            info: DeviceInfo {
                user_id: user_id.clone(),
                device_id: device_id.clone(),
                kem_pk: d.kem_pk,
                sig_pk: d.sig_pk,
            },
            token: token.clone(),
        });
        SessionOk {
            user_id: user_id.clone(),
            device_id,
            token: Secret::new(token),
            expires_at: Timestamp::parse("2099-01-01T00:00:00.000Z").expect("valid"),
        }
    }

    fn devices_of(&self, users: &[UserId]) -> Vec<DeviceInfo> {
        self.devices
            .iter()
            .filter(|d| users.contains(&d.info.user_id))
            .map(|d| d.info.clone())
            .collect()
    }
}

/// The running fake server.
pub struct FakeServer {
    /// Shared state, for seeding and inspection.
    pub world: Arc<Mutex<World>>,
    /// `ws://127.0.0.1:PORT/v1`.
    pub url: String,
    _runtime: tokio::runtime::Runtime,
}

impl FakeServer {
    /// Starts on an ephemeral loopback port.
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let world = Arc::new(Mutex::new(World::default()));
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind loopback");
        let addr: SocketAddr = listener.local_addr().expect("address");
        let w = world.clone();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, w.clone()));
            }
        });
        Self {
            world,
            url: format!("ws://{addr}/v1"),
            _runtime: runtime,
        }
    }
}

fn ok<T: Serialize>(re: u64, body: &T) -> Vec<String> {
    vec![wire::encode_ok(re, body)]
}

fn err(re: u64, code: ErrorCode) -> Vec<String> {
    vec![wire::encode_error(&ErrorFrame::new(
        Some(re),
        code,
        "fake server says no",
    ))]
}

async fn serve(stream: TcpStream, world: Arc<Mutex<World>>) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let mut session: Option<(UserId, DeviceId)> = None;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let replies = match wire::decode_request(text.as_str()) {
            Ok(frame) => {
                let mut w = world.lock().expect("world lock");
                handle(&mut w, &mut session, frame.id, frame.request)
            }
            Err(e) => vec![wire::encode_error(&ErrorFrame::from(e))],
        };
        for r in replies {
            if ws.send(Message::text(r)).await.is_err() {
                return;
            }
        }
    }
}

fn handle(
    w: &mut World,
    session: &mut Option<(UserId, DeviceId)>,
    id: u64,
    request: Request,
) -> Vec<String> {
    match request {
        Request::EnrolStart(r) => {
            let Some(u) = w
                .users
                .iter_mut()
                .find(|u| u.enrol_code.as_deref() == Some(r.code.expose()))
            else {
                return err(id, ErrorCode::AuthFailed);
            };
            u.password = Some(r.password.expose().to_owned());
            ok(
                id,
                &EnrolStartOk {
                    user_id: u.info.user_id.clone(),
                    username: u.info.username.clone(),
                    totp_secret: Secret::new(TOTP_SECRET),
                    totp_uri: Secret::new(format!(
                        "otpauth://totp/Wardline:{}?secret={TOTP_SECRET}&issuer=Wardline",
                        u.info.username
                    )),
                },
            )
        }
        Request::EnrolFinish(r) => {
            let Some(u) = w
                .users
                .iter_mut()
                .find(|u| u.enrol_code.as_deref() == Some(r.code.expose()))
            else {
                return err(id, ErrorCode::AuthFailed);
            };
            u.enrol_code = None;
            let user_id = u.info.user_id.clone();
            let s = w.add_device(&user_id, &r.device);
            *session = Some((s.user_id.clone(), s.device_id.clone()));
            ok(id, &s)
        }
        Request::Login(r) => {
            let Some(u) = w.users.iter().find(|u| {
                u.info.username.as_str() == r.username
                    && u.password.as_deref() == Some(r.password.expose())
            }) else {
                return err(id, ErrorCode::AuthFailed);
            };
            let user_id = u.info.user_id.clone();
            let s = match r.device {
                LoginDevice::New(d) => w.add_device(&user_id, &d),
                LoginDevice::Existing { device_id } => {
                    let Some(d) = w.devices.iter_mut().find(|d| d.info.device_id == device_id)
                    else {
                        return err(id, ErrorCode::AuthFailed);
                    };
                    d.token = format!("token-relogin-{}", d.info.device_id);
                    SessionOk {
                        user_id,
                        device_id,
                        token: Secret::new(d.token.clone()),
                        expires_at: Timestamp::parse("2099-01-01T00:00:00.000Z").expect("ok"),
                    }
                }
            };
            *session = Some((s.user_id.clone(), s.device_id.clone()));
            ok(id, &s)
        }
        Request::Resume(r) => {
            let Some(d) = w.devices.iter().find(|d| d.token == r.token.expose()) else {
                return err(id, ErrorCode::Unauthenticated);
            };
            let (user, device) = (d.info.user_id.clone(), d.info.device_id.clone());
            *session = Some((user.clone(), device.clone()));
            let mut out = ok(
                id,
                &ResumeOk {
                    user_id: user.clone(),
                    device_id: device.clone(),
                    expires_at: Timestamp::parse("2099-01-01T00:00:00.000Z").expect("ok"),
                },
            );
            for c in w.convs.iter().filter(|c| c.info.members.contains(&user)) {
                let cursor = w
                    .cursors
                    .get(&(device.clone(), c.info.conv_id.clone()))
                    .copied()
                    .unwrap_or(0);
                for (i, env) in c.log.iter().enumerate() {
                    let seq = i as u64 + 1;
                    // Never back to the device that sent it.
                    if seq > cursor && env.sender_device != device {
                        let split = SplitEnvelope::new(env);
                        out.push(wire::render_message_push(
                            &c.info.conv_id,
                            seq,
                            &split,
                            split.entry_for(&device),
                        ));
                    }
                }
            }
            out
        }
        _ if session.is_none() => err(id, ErrorCode::Unauthenticated),
        request => authenticated(w, session.clone().expect("checked above"), id, request),
    }
}

fn authenticated(
    w: &mut World,
    (user, device): (UserId, DeviceId),
    id: u64,
    request: Request,
) -> Vec<String> {
    match request {
        Request::AdminUserCreate(r) => {
            let is_admin = w
                .users
                .iter()
                .any(|u| u.info.user_id == user && u.info.role == Role::Admin);
            if !is_admin {
                return err(id, ErrorCode::Forbidden);
            }
            if w.users.iter().any(|u| u.info.username == r.username) {
                return err(id, ErrorCode::Conflict);
            }
            let code = w.fresh("CODE");
            let user_id = w.add_user(r.username.as_str(), r.role, &code);
            ok(
                id,
                &AdminUserCreateOk {
                    user_id,
                    enrol_code: Secret::new(code),
                    expires_at: Timestamp::parse("2099-01-01T00:00:00.000Z").expect("ok"),
                },
            )
        }
        Request::Lookup(r) => {
            let users = w
                .users
                .iter()
                .filter(|u| r.usernames.iter().any(|n| n == u.info.username.as_str()))
                .map(|u| u.info.clone())
                .collect();
            ok(id, &LookupOk { users })
        }
        Request::Devices(r) => {
            let mut devices = w.devices_of(&r.user_ids);
            if std::mem::take(&mut w.stale_devices_once) {
                devices.pop();
            }
            ok(id, &DevicesOk { devices })
        }
        Request::ConversationCreate(r) => {
            let conv_id = ConversationId::parse(w.fresh("c")).expect("valid id");
            let mut members = vec![user.clone()];
            members.extend(r.members.into_iter().filter(|m| *m != user));
            w.convs.push(Conv {
                info: ConversationInfo {
                    conv_id: conv_id.clone(),
                    title: r.title,
                    members,
                    residency: Region::GB,
                    last_seq: 0,
                },
                log: Vec::new(),
            });
            ok(
                id,
                &ConversationCreateOk {
                    conv_id,
                    residency: Region::GB,
                },
            )
        }
        Request::Conversations(_) => {
            let conversations = w
                .convs
                .iter()
                .filter(|c| c.info.members.contains(&user))
                .map(|c| ConversationInfo {
                    last_seq: c.log.len() as u64,
                    ..c.info.clone()
                })
                .collect();
            ok(id, &ConversationsOk { conversations })
        }
        Request::Send(r) => {
            let e = r.envelope;
            if e.sender_user != user || e.sender_device != device {
                return err(id, ErrorCode::InvalidEnvelope);
            }
            let Some(ci) = w.convs.iter().position(|c| c.info.conv_id == e.conv_id) else {
                return err(id, ErrorCode::NotFound);
            };
            if !w.convs[ci].info.members.contains(&user) {
                return err(id, ErrorCode::NotMember);
            }
            if let Some(i) = w.convs[ci].log.iter().position(|m| m.msg_id == e.msg_id) {
                let seq = i as u64 + 1;
                return ok(
                    id,
                    &SendOk {
                        conv_id: e.conv_id,
                        msg_id: e.msg_id,
                        seq,
                    },
                );
            }
            let active: Vec<DeviceId> = w
                .devices_of(&w.convs[ci].info.members)
                .into_iter()
                .map(|d| d.device_id)
                .collect();
            let named: Vec<DeviceId> = e.keys.iter().map(|k| k.device_id.clone()).collect();
            let missing: Vec<DeviceId> = active
                .iter()
                .filter(|d| !named.contains(d))
                .cloned()
                .collect();
            let extra: Vec<DeviceId> = named
                .iter()
                .filter(|d| !active.contains(d))
                .cloned()
                .collect();
            if !missing.is_empty() || !extra.is_empty() || named.len() != active.len() {
                w.invalid_envelopes += 1;
                let mut frame = ErrorFrame::new(
                    Some(id),
                    ErrorCode::InvalidEnvelope,
                    "key entries do not match the members' devices",
                );
                frame.missing_devices = Some(missing);
                frame.extra_devices = Some(extra);
                return vec![wire::encode_error(&frame)];
            }
            let conv = &mut w.convs[ci];
            conv.log.push(e.clone());
            let seq = conv.log.len() as u64;
            ok(
                id,
                &SendOk {
                    conv_id: e.conv_id,
                    msg_id: e.msg_id,
                    seq,
                },
            )
        }
        Request::Ack(r) => {
            w.cursors.insert((device, r.conv_id), r.seq);
            ok(id, &wire::Empty {})
        }
        _ => err(id, ErrorCode::BadRequest),
    }
}
