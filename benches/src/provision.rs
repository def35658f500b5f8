//! Provisioning through the real admin and enrolment flow: the bootstrap
//! admin enrols with its one-time code, creates each user with
//! `admin_user_create`, and each user enrols with its code, a password, and
//! a TOTP code computed from the secret `enrol_start` returned, exactly as a
//! person with an authenticator app would.
//!
//! Each enrolment costs the server one Argon2id hash (tens of ms of CPU)
//! and two fsyncs, so enrolments run a few at a time and their rate is
//! reported on its own, apart from the scenario's figures.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use tokio::sync::Semaphore;
use wardline_protocol::wire::{
    self, AdminUserCreate, AdminUserCreateOk, ConversationCreate, ConversationCreateOk, Devices,
    DevicesOk, EnrolFinish, EnrolStart, EnrolStartOk, Login, LoginDevice, NewDevice, Request,
    Resume, ResumeOk, Role, SessionOk,
};
use wardline_protocol::{
    ConversationId, DeviceId, DeviceSecrets, Recipient, Region, Secret, UserId, Username,
};

use crate::client::{Rpc, Sources};

/// The password every load-test account gets (long enough for the policy).
const PASSWORD: &str = "wardline-load-test-password";

/// How the harness becomes an administrator.
#[derive(Debug, Clone)]
pub enum AdminCreds {
    /// An unused enrolment code of an admin account (the bootstrap code).
    Code(String),
    /// A session token of an admin device.
    Token(String),
    /// Username, password and base32 TOTP secret: logs in as a new device.
    Login {
        /// Username.
        username: String,
        /// Password.
        password: String,
        /// Base32 TOTP secret.
        totp_secret: String,
    },
}

/// A user's device as the harness holds it.
#[derive(Debug)]
pub struct Identity {
    /// The user.
    pub user_id: UserId,
    /// The device.
    pub device_id: DeviceId,
    /// Its session token, resumable on any number of connections.
    pub token: Secret,
    /// Its keys, for sealing and opening.
    pub secrets: DeviceSecrets,
}

/// The current RFC 6238 code for a base32 secret.
pub fn totp_now(secret_b32: &str) -> anyhow::Result<String> {
    let secret =
        totp_rs::Secret::try_from_base32(secret_b32).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let totp = totp_rs::Builder::new()
        .with_secret(secret.as_bytes().to_vec())
        .build()
        .map_err(|e| anyhow::anyhow!("TOTP secret unusable: {e:?}"))?;
    Ok(totp.generate(now).to_string())
}

fn new_device(name: &str, secrets: &DeviceSecrets) -> NewDevice {
    let public = secrets.public();
    NewDevice {
        name: name.to_string(),
        kem_pk: public.kem_pk,
        sig_pk: public.sig_pk,
    }
}

/// Redeems an enrolment code on `rpc`: password, TOTP, first device. The
/// connection is authenticated as the new device afterwards.
pub async fn enrol(rpc: &mut Rpc, code: &str, device_name: &str) -> anyhow::Result<Identity> {
    let started: EnrolStartOk = rpc
        .call(&Request::EnrolStart(EnrolStart {
            code: Secret::new(code),
            password: Secret::new(PASSWORD),
        }))
        .await?;
    let secrets = DeviceSecrets::generate();
    let session: SessionOk = rpc
        .call(&Request::EnrolFinish(EnrolFinish {
            code: Secret::new(code),
            totp: Secret::new(totp_now(started.totp_secret.expose())?),
            device: new_device(device_name, &secrets),
        }))
        .await?;
    Ok(Identity {
        user_id: session.user_id,
        device_id: session.device_id,
        token: session.token,
        secrets,
    })
}

/// An authenticated admin connection.
#[derive(Debug)]
pub struct Admin {
    /// The connection.
    pub rpc: Rpc,
}

impl Admin {
    /// Authenticates as an administrator with `creds`.
    pub async fn connect(url: &str, creds: &AdminCreds, sources: Sources) -> anyhow::Result<Self> {
        let mut rpc = Rpc::connect(url, sources).await?;
        match creds {
            AdminCreds::Code(code) => {
                enrol(&mut rpc, code, "wardline-load admin")
                    .await
                    .context("enrolling the admin with its code")?;
            }
            AdminCreds::Token(token) => {
                let _: ResumeOk = rpc
                    .call(&Request::Resume(Resume {
                        token: Secret::new(token.as_str()),
                    }))
                    .await
                    .context("resuming the admin session")?;
            }
            AdminCreds::Login {
                username,
                password,
                totp_secret,
            } => {
                let secrets = DeviceSecrets::generate();
                let _: SessionOk = rpc
                    .call(&Request::Login(Login {
                        username: username.clone(),
                        password: Secret::new(password.as_str()),
                        totp: Secret::new(totp_now(totp_secret)?),
                        device: LoginDevice::New(new_device("wardline-load admin", &secrets)),
                    }))
                    .await
                    .context("logging in as the admin")?;
            }
        }
        Ok(Self { rpc })
    }

    /// Creates a clinician and returns their enrolment code.
    pub async fn create_clinician(&mut self, username: &str) -> anyhow::Result<Secret> {
        let ok: AdminUserCreateOk = self
            .rpc
            .call(&Request::AdminUserCreate(AdminUserCreate {
                username: Username::parse(username)
                    .map_err(|e| anyhow::anyhow!("{username}: {e}"))?,
                display_name: format!("Load {username}"),
                role: Role::Clinician,
            }))
            .await?;
        Ok(ok.enrol_code)
    }
}

/// One enrolled user, with the connection it enrolled on (authenticated).
#[derive(Debug)]
pub struct Enrolled {
    /// The device.
    pub identity: Identity,
    /// Still authenticated as that device.
    pub rpc: Rpc,
}

/// How long provisioning took.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ProvisionStats {
    /// Users enrolled.
    pub users: usize,
    /// Wall time, seconds.
    pub secs: f64,
    /// Enrolments per second.
    pub per_s: f64,
}

/// Creates `count` clinicians named `{prefix}-{i}` and enrols each with one
/// device, `concurrency` enrolments at a time. Returned in order.
pub async fn enrol_users(
    url: &str,
    admin: &mut Admin,
    prefix: &str,
    count: usize,
    concurrency: usize,
    sources: Sources,
) -> anyhow::Result<(Vec<Enrolled>, ProvisionStats)> {
    let started = Instant::now();
    let mut codes = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("{prefix}-{i}");
        codes.push(
            admin
                .create_clinician(&name)
                .await
                .with_context(|| format!("creating {name}"))?,
        );
    }
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(count);
    for (i, code) in codes.into_iter().enumerate() {
        let gate = gate.clone();
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.context("enrolment gate")?;
            let mut rpc = Rpc::connect(&url, sources).await?;
            let identity = enrol(&mut rpc, code.expose(), &format!("load device {i}"))
                .await
                .with_context(|| format!("enrolling user {i}"))?;
            anyhow::Ok(Enrolled { identity, rpc })
        }));
    }
    let mut out = Vec::with_capacity(count);
    for t in tasks {
        out.push(t.await.context("enrolment task panicked")??);
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((
        out,
        ProvisionStats {
            users: count,
            secs,
            per_s: count as f64 / secs.max(1e-9),
        },
    ))
}

/// A new connection authenticated by resuming `token`.
pub async fn resume(url: &str, token: &Secret, sources: Sources) -> anyhow::Result<Rpc> {
    let mut rpc = Rpc::connect(url, sources).await?;
    let _: ResumeOk = rpc
        .call(&Request::Resume(Resume {
            token: token.clone(),
        }))
        .await
        .context("resuming a session")?;
    Ok(rpc)
}

/// A conversation ready for sealing.
#[derive(Debug, Clone)]
pub struct Conversation {
    /// Its id.
    pub conv_id: ConversationId,
    /// Where its messages are stored (sealed into every header).
    pub residency: Region,
    /// Every active device of every member, the sender's own included.
    pub recipients: Vec<Recipient>,
}

/// Creates a conversation from `creator`'s connection and fetches the
/// members' devices, as a client does before its first send.
pub async fn create_conversation(
    creator: &mut Rpc,
    others: &[UserId],
    members: &[UserId],
    title: &str,
) -> anyhow::Result<Conversation> {
    let ok: ConversationCreateOk = creator
        .call(&Request::ConversationCreate(ConversationCreate {
            members: others.to_vec(),
            title: title.to_string(),
        }))
        .await
        .context("creating a conversation")?;
    let devices: DevicesOk = creator
        .call(&Request::Devices(Devices {
            user_ids: members.to_vec(),
        }))
        .await
        .context("fetching the members' devices")?;
    Ok(Conversation {
        conv_id: ok.conv_id,
        residency: ok.residency,
        recipients: devices
            .devices
            .into_iter()
            .map(|d| Recipient {
                device_id: d.device_id,
                kem_pk: d.kem_pk,
            })
            .collect(),
    })
}

/// The `resume` frame for a token, with request id 0.
pub fn resume_frame(token: &Secret) -> String {
    wire::encode_request(
        0,
        &Request::Resume(Resume {
            token: token.clone(),
        }),
    )
}

/// A short random tag, so names from different runs against one server never clash.
pub fn run_tag() -> String {
    let mut r = [0u8; 4];
    wardline_protocol::rng::fill(&mut r);
    format!("lt{:08x}", u32::from_be_bytes(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_codes_are_six_digits() {
        let code = totp_now("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").expect("valid secret");
        assert_eq!(code.len(), 6);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
    }

    #[test]
    fn run_tags_make_valid_usernames() {
        let name = format!("{}-17", run_tag());
        assert!(Username::parse(name).is_ok());
    }
}
