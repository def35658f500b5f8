//! Conversations with traffic: `chat` (pairs) and `group` (care teams) are
//! the same shape with different sizes. Each member is one clinician with
//! one device; the first `senders` members of each conversation send, all
//! receive (the sender's own device included, as the protocol requires).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use wardline_protocol::SigPublicKey;

use super::{Env, secs};
use crate::cli::{Common, TrafficArgs};
use crate::driver::{AckStyle, Conn, Outgoing, Pace, Verify};
use crate::frames::MsgKey;
use crate::provision::{self, Conversation, Identity, ProvisionStats};
use crate::relay::{self, RelaySend};
use crate::report::Figures;
use crate::seal::{self, Item, RelayShape, SealStats, Sealer};
use crate::traffic::{self, Opts};

/// Most message slots the relay runs get (8 bytes each in the send clock).
const RELAY_POOL_TOTAL: f64 = 8_000_000.0;

/// The conversations of a run.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Conversations.
    pub groups: usize,
    /// Members (devices) of each.
    pub members: usize,
    /// Members of each who send.
    pub senders: usize,
}

impl Shape {
    fn devices(&self) -> usize {
        self.groups * self.members
    }
    fn senders_total(&self) -> usize {
        self.groups * self.senders
    }
    /// Devices (connections) in the run.
    pub fn devices_count(&self) -> usize {
        self.devices()
    }
    /// Sending connections in the run.
    pub fn senders_count(&self) -> usize {
        self.senders_total()
    }
    fn is_sender(&self, device: usize) -> bool {
        device % self.members < self.senders
    }
    fn group_of(&self, device: usize) -> usize {
        device / self.members
    }
    /// Checks the sizes against what the server allows.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.groups == 0 || self.members < 2 {
            bail!("a conversation needs at least 2 members, and a run at least one");
        }
        if self.members > 250 {
            bail!("the server allows at most 250 members per conversation");
        }
        if self.senders == 0 || self.senders > self.members {
            bail!("--senders must be between 1 and the number of members");
        }
        if self.devices() >= MsgKey::MAX_SENDERS as usize {
            bail!("too many devices for one run");
        }
        Ok(())
    }
}

/// Provisioned users and their conversations on a Wardline server.
#[derive(Debug)]
pub struct World {
    /// The server.
    pub env: Env,
    /// One identity per device, `group * members + member`.
    pub users: Vec<Identity>,
    /// One per group.
    pub convs: Vec<Conversation>,
    /// What provisioning took.
    pub provision: ProvisionStats,
}

/// Enrols every member and creates the conversations, then disconnects
/// them all (the measured phase connects and resumes afresh).
pub async fn build_world(common: &Common, shape: Shape, env: Env) -> anyhow::Result<World> {
    let sources = super::sources(common);
    let mut admin = env.admin(sources).await?;
    let tag = provision::run_tag();
    let (enrolled, provision) = provision::enrol_users(
        &env.url,
        &mut admin,
        &tag,
        shape.devices(),
        common.enrol_concurrency,
        sources,
    )
    .await?;
    admin.rpc.close().await;
    let (mut rpcs, users): (Vec<_>, Vec<_>) =
        enrolled.into_iter().map(|e| (e.rpc, e.identity)).unzip();
    let mut convs = Vec::with_capacity(shape.groups);
    for g in 0..shape.groups {
        let ids: Vec<_> = (0..shape.members)
            .map(|m| users[g * shape.members + m].user_id.clone())
            .collect();
        let conv = provision::create_conversation(
            &mut rpcs[g * shape.members],
            &ids[1..],
            &ids,
            &format!("load {tag} {g}"),
        )
        .await?;
        convs.push(conv);
    }
    for r in rpcs {
        r.close().await;
    }
    Ok(World {
        env,
        users,
        convs,
        provision,
    })
}

/// Envelopes each sender needs for a phase of `total` seconds.
fn pool_per_sender(pace: Pace, expect_rate: f64, total: Duration, senders: usize) -> usize {
    let t = total.as_secs_f64();
    match pace {
        Pace::Window(w) => {
            (expect_rate * t * 1.1 / senders.max(1) as f64).ceil() as usize + w as usize
        }
        Pace::Rate(r) => (r * t * 1.05).ceil() as usize + 4,
    }
}

fn opts(
    common: &Common,
    traffic: &TrafficArgs,
    env: &Env,
    pace: Pace,
    label: &str,
) -> anyhow::Result<Opts> {
    Ok(Opts {
        url: env.url.clone(),
        sources: super::sources(common),
        pace,
        ack_every: Duration::from_millis(traffic.ack_ms.max(1)),
        warmup: secs("warmup", common.warmup)?,
        duration: secs("duration", common.duration)?,
        drain_timeout: Duration::from_secs(10),
        server: env.watched.clone(),
        label: label.to_string(),
        quiet: common.quiet,
        until_sent: false,
        metrics_url: env.admin_url(),
    })
}

/// The pacing the options ask for, per sending connection.
pub fn pace(traffic: &TrafficArgs, shape: Shape) -> Pace {
    match traffic.rate {
        Some(r) => Pace::Rate(r / shape.senders_total() as f64),
        None => Pace::Window(traffic.window.max(1)),
    }
}

/// One measured phase against Wardline: seal the pool, connect every
/// device with `resume`, run the window.
pub async fn wardline_phase(
    world: &World,
    common: &Common,
    traffic: &TrafficArgs,
    shape: Shape,
    pace: Pace,
    label: &str,
) -> anyhow::Result<(Figures, SealStats)> {
    let o = opts(common, traffic, &world.env, pace, label)?;
    let expect = traffic.expect_rate.unwrap_or(if shape.members == 2 {
        25_000.0
    } else {
        // A group of 100 commits about 2,000 sends/s on the reference
        // machine; sealing for 100 recipients takes ~7 ms per envelope.
        (200_000 / shape.members).max(50) as f64
    });
    let per_sender = pool_per_sender(pace, expect, o.warmup + o.duration, shape.senders_total());
    let per_sender = u32::try_from(per_sender).context("envelope pool too large")?;
    let sealers: Vec<Sealer<'_>> = world
        .users
        .iter()
        .map(|u| Sealer {
            user_id: &u.user_id,
            device_id: &u.device_id,
            secrets: &u.secrets,
        })
        .collect();
    let mut items = Vec::new();
    for d in (0..shape.devices()).filter(|d| shape.is_sender(*d)) {
        for n in 0..per_sender {
            items.push(Item {
                sealer: d,
                conv: shape.group_of(d),
                key: MsgKey {
                    sender: d as u32,
                    n,
                },
            });
        }
    }
    if !common.quiet {
        eprintln!(
            "[{label}] sealing {} envelopes ({} recipient devices each) ahead of time",
            items.len(),
            shape.members
        );
    }
    let (frames, stats) = seal::seal_all(
        &sealers,
        &world.convs,
        &items,
        common.body_bytes,
        super::seal_threads(common),
    )?;
    let sig_keys: Arc<Vec<Option<SigPublicKey>>> = Arc::new(
        world
            .users
            .iter()
            .enumerate()
            .map(|(d, u)| shape.is_sender(d).then(|| u.secrets.public().sig_pk))
            .collect(),
    );
    let mut frames = frames.into_iter();
    let mut conns = Vec::with_capacity(shape.devices());
    let mut counts = Vec::with_capacity(shape.devices());
    for (d, u) in world.users.iter().enumerate() {
        let sender = shape.is_sender(d);
        let outgoing = if sender {
            Outgoing::Sealed(frames.by_ref().take(per_sender as usize).collect())
        } else {
            Outgoing::Nothing
        };
        counts.push(if sender { per_sender as usize } else { 0 });
        conns.push(Conn {
            index: d as u32,
            login: provision::resume_frame(&u.token),
            outgoing,
            cap: if sender { per_sender } else { 0 },
            fanout: world.convs[shape.group_of(d)].recipients.len() as u64,
            ack: if traffic.ack_ms > 0 {
                AckStyle::Wardline
            } else {
                AckStyle::Never
            },
            verify: Some(Verify {
                every: common.verify_every,
                device_id: u.device_id.clone(),
                secrets: wardline_protocol::DeviceSecrets::from_bytes(
                    u.secrets.kem_secret_bytes(),
                    &u.secrets.sig_secret_bytes(),
                ),
                senders: sig_keys.clone(),
            }),
            closed_loop: true,
        });
    }
    let outcome = traffic::run(conns, &counts, &o).await;
    if outcome.exhausted {
        eprintln!(
            "[{label}] warning: the senders ran out of sealed envelopes before the end, so the \
             figures cover a shorter window; raise --expect-rate (sealed for {expect:.0} sends/s)"
        );
    }
    Ok((Figures::from_traffic("wardline", &outcome), stats))
}

/// The same phase against the relay: frames of the same sizes, device
/// indices instead of accounts.
pub async fn relay_phase(
    env: &Env,
    common: &Common,
    traffic: &TrafficArgs,
    shape: Shape,
    pace: Pace,
    label: &str,
) -> anyhow::Result<Figures> {
    let o = opts(common, traffic, env, pace, label)?;
    let total = o.warmup + o.duration;
    let per_sender = match pace {
        Pace::Window(_) => (RELAY_POOL_TOTAL / shape.senders_total() as f64) as usize,
        Pace::Rate(_) => pool_per_sender(pace, 0.0, total, shape.senders_total()),
    };
    let per_sender = u32::try_from(per_sender).context("relay pool too large")?;
    let shape_frames = Arc::new(RelayShape::measure(shape.members, common.body_bytes)?);
    let ack_len = r#"{"type":"ack","id":1152921504606846976,"conv_id":"0193f7c2-6a1e-7c3d-9b2a-3f4e5d6c7b8a","seq":123456}"#.len();
    let mut conns = Vec::with_capacity(shape.devices());
    let mut counts = Vec::with_capacity(shape.devices());
    for d in 0..shape.devices() {
        let g = shape.group_of(d);
        let sender = shape.is_sender(d);
        let devices: Vec<String> = (0..shape.members)
            .map(|m| (g * shape.members + m).to_string())
            .collect();
        counts.push(if sender { per_sender as usize } else { 0 });
        conns.push(Conn {
            index: d as u32,
            login: relay::hello_frame(d as u32),
            outgoing: if sender {
                Outgoing::Relay {
                    templates: vec![RelaySend {
                        shape: shape_frames.clone(),
                        devices: devices.join(","),
                    }],
                    per_template: u32::MAX,
                }
            } else {
                Outgoing::Nothing
            },
            cap: if sender { per_sender } else { 0 },
            fanout: shape.members as u64,
            ack: if traffic.ack_ms > 0 {
                AckStyle::Relay(ack_len)
            } else {
                AckStyle::Never
            },
            verify: None,
            closed_loop: true,
        });
    }
    let outcome = traffic::run(conns, &counts, &o).await;
    Ok(Figures::from_traffic("relay", &outcome))
}
