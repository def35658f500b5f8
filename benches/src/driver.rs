//! One simulated device: a connection that authenticates, then sends its
//! messages (keeping a window of sends in flight, or at a fixed rate),
//! receives pushes, acknowledges what it received, and records it all.
//!
//! The same loop drives Wardline and the relay; only the frames differ.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use wardline_protocol::wire::{self, ServerFrame};
use wardline_protocol::{DeviceId, DeviceSecrets, SigPublicKey, envelope};

use crate::client::{self, Sources};
use crate::frames::{self, Incoming, MsgKey};
use crate::metrics::{Completion, Recorder, SendClock};
use crate::relay::{self, RelaySend};

/// Request ids of `ack`s start here, above every [`MsgKey::packed`].
const ACK_ID_BASE: u64 = 1 << 60;
/// Sends in flight in rate mode before the sender holds back (a server
/// that stops answering must not make the harness buffer without end).
const RATE_MODE_MAX_IN_FLIGHT: u64 = 10_000;
/// How long a connection may take to connect and authenticate.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// How sends are paced.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Keep this many sends in flight per connection.
    Window(u64),
    /// Send at this many messages per second per connection.
    Rate(f64),
}

/// What a connection sends.
#[derive(Debug)]
pub enum Outgoing {
    /// Nothing: it only receives.
    Nothing,
    /// Sealed `send` frames; frame `n` carries key (sender, n).
    Sealed(Vec<String>),
    /// Relay frames built per send: message `n` uses template
    /// `(n / per_template) % len` (a sender may feed several conversations).
    Relay {
        /// One template per conversation.
        templates: Vec<RelaySend>,
        /// Consecutive messages per template.
        per_template: u32,
    },
}

/// How a connection acknowledges what it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStyle {
    /// Never.
    Never,
    /// Wardline `ack {conv_id, seq}`.
    Wardline,
    /// The relay's `A` frame, padded to this size.
    Relay(usize),
}

/// Opens every `every`-th received envelope with the real crypto, to show
/// that what arrives is what was sealed.
#[derive(Debug)]
pub struct Verify {
    /// Open one in this many (the first always).
    pub every: u64,
    /// The receiving device.
    pub device_id: DeviceId,
    /// Its keys.
    pub secrets: DeviceSecrets,
    /// Each sender's signing key, by sender index.
    pub senders: Arc<Vec<Option<SigPublicKey>>>,
}

/// One connection's part in a run.
#[derive(Debug)]
pub struct Conn {
    /// Its index: the `sender` of the messages it sends.
    pub index: u32,
    /// The frame that authenticates it (`resume`, or the relay's `H`).
    pub login: String,
    /// What it sends.
    pub outgoing: Outgoing,
    /// Most messages it may send.
    pub cap: u32,
    /// Pushes each of its sends causes.
    pub fanout: u64,
    /// How it acknowledges.
    pub ack: AckStyle,
    /// Crypto check of received envelopes.
    pub verify: Option<Verify>,
    /// A send stays in the window until its `ok` has arrived and every
    /// device it was sent to has received it (see [`Completion`]); when
    /// false, only until its `ok`.
    pub closed_loop: bool,
}

/// What every connection of a run shares.
#[derive(Debug)]
pub struct Shared {
    /// Where to connect.
    pub url: String,
    /// Source addresses.
    pub sources: Sources,
    /// Measurements.
    pub rec: Arc<Recorder>,
    /// Send times.
    pub clock: Arc<SendClock>,
    /// Which sends have reached every recipient.
    pub completion: Arc<Completion>,
    /// Pacing.
    pub pace: Pace,
    /// Acknowledge this often (when the connection acks at all).
    pub ack_every: Duration,
    /// Turns true when traffic starts.
    pub start: watch::Receiver<bool>,
    /// Turns true when sending stops.
    pub stop: watch::Receiver<bool>,
    /// Turns true when the run is over and connections close.
    pub finish: watch::Receiver<bool>,
    /// Connections that are authenticated and waiting for the start.
    pub ready: tokio::sync::mpsc::UnboundedSender<bool>,
    /// Connections that still have messages to send.
    pub active: std::sync::atomic::AtomicUsize,
    /// Connections that reached the traffic loop, and those that have since
    /// seen `stop` (after which they never send again): once the two are
    /// equal, the count of sends is final and the drain can be judged.
    pub started: std::sync::atomic::AtomicUsize,
    /// See `started`.
    pub stopped: std::sync::atomic::AtomicUsize,
    /// A sender running dry closes the window (throughput runs); otherwise
    /// the phase runs until every sender is dry (queueing a backlog).
    pub exhaustion_ends_window: bool,
}

/// What ended a connection early, if anything.
#[derive(Debug, Default)]
pub struct Outcome {
    /// It ran out of envelopes before `stop`.
    pub exhausted: bool,
}

/// Connects and authenticates: returns the socket, or records why not.
pub async fn login(url: &str, sources: Sources, frame: &str, rec: &Recorder) -> Option<client::Ws> {
    let t0 = Instant::now();
    let result = tokio::time::timeout(LOGIN_TIMEOUT, async {
        let mut ws = client::connect(url, sources, 0)
            .await
            .map_err(|_| "connect_failed")?;
        ws.send(Message::text(frame.to_string()))
            .await
            .map_err(|_| "connection_closed")?;
        while let Some(m) = ws.next().await {
            let Ok(Message::Text(t)) = m else {
                if m.is_err() {
                    return Err("connection_closed");
                }
                continue;
            };
            match frames::parse(t.as_str()) {
                Some(Incoming::Ok { re: 0 }) => return Ok(ws),
                Some(Incoming::Error { code, .. }) => {
                    rec.error(&code);
                    return Err("login_refused");
                }
                _ => continue,
            }
        }
        Err("connection_closed")
    })
    .await;
    match result {
        Ok(Ok(ws)) => {
            rec.on_connected(t0.elapsed().as_micros() as u64);
            Some(ws)
        }
        Ok(Err(code)) => {
            rec.error(code);
            None
        }
        Err(_) => {
            rec.error("login_timeout");
            None
        }
    }
}

struct State {
    next: u32,
    /// Sends written, answered (ok or error), and refused.
    sent: u64,
    answered: u64,
    refused: u64,
    sending: bool,
    /// Per conversation: newest seq received, and whether it is acked.
    convs: HashMap<String, (u64, bool)>,
    next_ack_id: u64,
    received: u64,
    stop_seen: bool,
    outcome: Outcome,
}

/// Runs one connection until `finish`.
pub async fn drive(mut conn: Conn, sh: Arc<Shared>) -> Outcome {
    let Some(mut ws) = login(&sh.url, sh.sources, &conn.login, &sh.rec).await else {
        let _ = sh.ready.send(false);
        return Outcome::default();
    };
    let _ = sh.ready.send(true);
    let (mut start, mut stop, mut finish) = (sh.start.clone(), sh.stop.clone(), sh.finish.clone());
    // Counted before waiting for the start, so the drain knows every
    // connection that may send.
    sh.started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    // Sending waits for `start`; receiving does not (another connection may
    // see the start first, and its pushes must be counted here).
    let mut go = *start.borrow();
    let mut st = State {
        next: 0,
        sent: 0,
        answered: 0,
        refused: 0,
        sending: false,
        convs: HashMap::new(),
        next_ack_id: ACK_ID_BASE,
        received: 0,
        stop_seen: false,
        outcome: Outcome::default(),
    };
    let period = match sh.pace {
        Pace::Rate(r) if r > 0.0 => Duration::from_secs_f64(1.0 / r),
        _ => Duration::from_secs(3600),
    };
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    // Each device acknowledges on its own phase: real devices are not
    // synchronised, and a run where all ack in the same millisecond would
    // measure a thundering herd the harness made up.
    let ack_period = sh.ack_every.max(Duration::from_millis(1));
    let mut phase = [0u8; 4];
    wardline_protocol::rng::fill(&mut phase);
    let offset = ack_period.mul_f64(f64::from(u32::from_be_bytes(phase)) / f64::from(u32::MAX));
    let mut acker = tokio::time::interval_at(tokio::time::Instant::now() + offset, ack_period);
    acker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let can_send = !matches!(conn.outgoing, Outgoing::Nothing) && conn.cap > 0;
    if go {
        st.sending = can_send;
        fill_window(&mut ws, &mut conn, &sh, &mut st).await;
    }
    loop {
        tokio::select! {
            m = ws.next() => {
                let Some(Ok(m)) = m else {
                    if !*finish.borrow() {
                        sh.rec.error("connection_closed");
                    }
                    break;
                };
                let Message::Text(t) = m else { continue };
                if !on_frame(&mut ws, &mut conn, &sh, &mut st, t.as_str()).await {
                    break;
                }
            }
            t = ticker.tick(), if st.sending && matches!(sh.pace, Pace::Rate(_)) => {
                if st.in_flight(&conn, &sh.completion) < RATE_MODE_MAX_IN_FLIGHT {
                    let at = sh.rec.ns_of(t.into_std());
                    send_next(&mut ws, &mut conn, &sh, &mut st, Some(at)).await;
                }
            }
            _ = start.changed(), if !go => {
                go = true;
                // Rate mode counts from the start, not from connecting.
                ticker.reset();
                st.sending = can_send && !st.stop_seen;
                fill_window(&mut ws, &mut conn, &sh, &mut st).await;
            }
            _ = sh.completion.completed(conn.index), if st.sending && conn.closed_loop => {
                fill_window(&mut ws, &mut conn, &sh, &mut st).await;
            }
            _ = acker.tick(), if conn.ack != AckStyle::Never => {
                if !send_acks(&mut ws, &conn, &mut st).await {
                    break;
                }
            }
            _ = stop.changed(), if !st.stop_seen => {
                st.sending = false;
                st.stop_seen = true;
                sh.stopped.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            _ = finish.changed() => break,
        }
    }
    if !st.stop_seen {
        // Ended early (the connection closed): it sends no more either.
        sh.stopped.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    let _ = ws.close(None).await;
    st.outcome
}

/// Sends the connection's next message; false when it has no more.
async fn send_next(
    ws: &mut client::Ws,
    conn: &mut Conn,
    sh: &Shared,
    st: &mut State,
    scheduled_ns: Option<u64>,
) -> bool {
    if !st.sending || *sh.stop.borrow() {
        return false;
    }
    if st.next >= conn.cap {
        // Out of envelopes before the end: the window ends here, so the
        // rates are not diluted by a tail with fewer senders.
        st.sending = false;
        st.outcome.exhausted = true;
        sh.active.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if sh.exhaustion_ends_window {
            sh.rec.end_window_at(sh.rec.now_ns());
        }
        return false;
    }
    let key = MsgKey {
        sender: conn.index,
        n: st.next,
    };
    let frame = match &mut conn.outgoing {
        Outgoing::Nothing => return false,
        Outgoing::Sealed(frames) => match frames.get_mut(st.next as usize) {
            Some(f) => std::mem::take(f),
            None => return false,
        },
        Outgoing::Relay {
            templates,
            per_template,
        } => {
            let i = (st.next / (*per_template).max(1)) as usize % templates.len().max(1);
            match templates.get(i) {
                Some(t) => t.frame(key),
                None => return false,
            }
        }
    };
    st.next += 1;
    let now = sh.rec.now_ns();
    let at = scheduled_ns.unwrap_or(now);
    sh.clock.sent(key, at);
    if ws.send(Message::text(frame)).await.is_err() {
        sh.rec.error("connection_closed");
        st.sending = false;
        return false;
    }
    sh.rec.on_sent(at);
    st.sent += 1;
    true
}

impl State {
    /// Sends still occupying the window.
    fn in_flight(&self, conn: &Conn, completion: &Completion) -> u64 {
        let done = if conn.closed_loop {
            self.answered
                .min(completion.done(conn.index) + self.refused)
        } else {
            self.answered
        };
        self.sent.saturating_sub(done)
    }
}

/// In window mode, sends until the window is full or the pool is empty.
async fn fill_window(ws: &mut client::Ws, conn: &mut Conn, sh: &Shared, st: &mut State) {
    if let Pace::Window(w) = sh.pace {
        while st.sending && st.in_flight(conn, &sh.completion) < w {
            if !send_next(ws, conn, sh, st, None).await {
                break;
            }
        }
    }
}

/// Handles one frame; false when the connection must end.
async fn on_frame(
    ws: &mut client::Ws,
    conn: &mut Conn,
    sh: &Shared,
    st: &mut State,
    text: &str,
) -> bool {
    match frames::parse(text) {
        Some(Incoming::Ok { re }) => {
            if let Some(key) = MsgKey::unpack(re)
                && key.sender == conn.index
            {
                st.answered += 1;
                let sent = sh.clock.when(key).unwrap_or(0);
                sh.rec.on_acked(sent, conn.fanout);
                fill_window(ws, conn, sh, st).await;
            }
        }
        Some(Incoming::Error { re, code }) => {
            sh.rec.error(&code);
            if let Some(key) = re.and_then(MsgKey::unpack)
                && key.sender == conn.index
            {
                st.answered += 1;
                st.refused += 1;
                sh.rec.on_refused();
                fill_window(ws, conn, sh, st).await;
            }
        }
        Some(Incoming::Message { conv_id, seq, key }) => {
            let sent = key.and_then(|k| sh.clock.when(k));
            let own = key.is_some_and(|k| k.sender == conn.index);
            sh.rec.on_delivered(sent, own);
            if let Some(k) = key {
                sh.completion.delivered(k);
            }
            let e = st.convs.entry(conv_id.into_owned()).or_insert((0, true));
            *e = (e.0.max(seq), false);
            st.received += 1;
            if let Some(v) = &conn.verify
                && (st.received == 1 || st.received.is_multiple_of(v.every.max(1)))
                && !own
            {
                check_open(text, v, sh);
            }
        }
        Some(Incoming::Receipt) => {
            sh.rec
                .receipts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Some(Incoming::Other) => {}
        None => sh.rec.error("unparsable_frame"),
    }
    true
}

/// Opens a received envelope with the receiving device's keys.
fn check_open(text: &str, v: &Verify, sh: &Shared) {
    let ok = match wire::decode_server_frame(text) {
        Ok(ServerFrame::Message(m)) => {
            let key = MsgKey::from_msg_id(&m.envelope.msg_id.to_text());
            let sig = key.and_then(|k| v.senders.get(k.sender as usize).copied().flatten());
            match sig {
                Some(sig) => envelope::open(&m.envelope, &v.device_id, &v.secrets, &sig).is_ok(),
                None => false,
            }
        }
        _ => false,
    };
    if ok {
        sh.rec
            .opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    } else {
        sh.rec.error("open_failed");
    }
}

/// Acknowledges the newest message of every conversation that received
/// something since the last tick; false when the connection is gone.
async fn send_acks(ws: &mut client::Ws, conn: &Conn, st: &mut State) -> bool {
    let mut frames = Vec::new();
    for (conv, (seq, acked)) in st.convs.iter_mut() {
        if *acked {
            continue;
        }
        *acked = true;
        let id = st.next_ack_id;
        st.next_ack_id += 1;
        frames.push(match conn.ack {
            AckStyle::Wardline => {
                format!(r#"{{"type":"ack","id":{id},"conv_id":"{conv}","seq":{seq}}}"#)
            }
            AckStyle::Relay(len) => relay::ack_frame(id, len),
            AckStyle::Never => continue,
        });
    }
    for f in frames {
        if ws.feed(Message::text(f)).await.is_err() {
            return false;
        }
    }
    ws.flush().await.is_ok()
}
