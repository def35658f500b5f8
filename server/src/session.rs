//! One connection's life: unauthenticated → authenticated(device) → closed.
//!
//! Each connection is one `select!` loop over inbound frames, its bounded
//! outbound queue from the hub, sends waiting for their commit, and
//! shutdown. Requests that need a session take an [`Authed`], which only a
//! successful `enrol_finish`, `login` or `resume` produces.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{self, Message};
use wardline_protocol::ConversationId;
use wardline_protocol::wire::{self, Empty, ErrorCode, ErrorFrame, Request, RequestFrame};

use crate::auth::{self, Authed};
use crate::error::ApiError;
use crate::hub::{Outbound, Registration};
use crate::state::State;
use crate::wipe::{self, Wiping};
use crate::{accounts, admin, audit, conversations, directory, messaging, residency, retention};

/// A connection that has not authenticated by then is closed.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// A token bucket: `rate` requests a second sustained, `burst` at once.
struct RateLimit {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: tokio::time::Instant,
}

impl RateLimit {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            last: tokio::time::Instant::now(),
        }
    }

    fn allow(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

type Pending = Pin<Box<dyn Future<Output = (u64, Result<String, ApiError>)> + Send>>;

/// What a connection is at the moment.
#[derive(Default)]
struct Conn {
    /// Authenticated, receiving pushes.
    live: Option<Live>,
    /// Ordered to wipe: may only send `wipe_done`.
    wiping: Option<Wiping>,
    /// Close once the frames of this turn are written.
    close_after_write: bool,
}

/// Where catching a device up has got to.
struct Backlog {
    convs: Vec<ConversationId>,
    next: usize,
    after: Option<u64>,
}

struct Live {
    authed: Authed,
    reg: Registration,
    /// Stored messages still to send before anything else (see `begin`).
    backlog: Option<Backlog>,
    /// Highest `seq` written to this connection per conversation, so a push
    /// that races the backlog is never sent twice.
    delivered: HashMap<ConversationId, u64>,
}

/// Serves one upgraded WebSocket until it closes or the server shuts down.
pub async fn serve<S>(state: Arc<State>, ws: S, mut shutdown: watch::Receiver<bool>)
where
    S: Stream<Item = Result<Message, tungstenite::Error>>
        + Sink<Message, Error = tungstenite::Error>
        + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let mut conn = Conn::default();
    let mut pending: FuturesUnordered<Pending> = FuturesUnordered::new();
    let auth_deadline = tokio::time::sleep(AUTH_TIMEOUT);
    tokio::pin!(auth_deadline);
    let mut limit = RateLimit::new(state.config.rate_per_sec, state.config.rate_burst);
    let idle = Duration::from_millis(state.config.idle_timeout_ms);
    let mut heartbeat = tokio::time::interval(idle / 3);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = tokio::time::Instant::now();

    loop {
        let catching_up = conn.live.as_ref().is_some_and(|l| l.backlog.is_some());
        let out: Vec<Message> = tokio::select! {
            () = std::future::ready(()), if catching_up => {
                let l = conn.live.as_mut().expect("catching up implies live");
                match next_backlog_page(&state, l) {
                    Ok(Some(frames)) => texts(frames),
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(code = ?e.code(), "catch-up failed; closing so the device resumes");
                        break;
                    }
                }
            }
            frame = stream.next(), if !catching_up => {
                last_heard = tokio::time::Instant::now();
                match frame {
                Some(Ok(Message::Text(text))) => {
                    if limit.allow() {
                        let was_live = conn.live.is_some();
                        // Boxed: the largest request's future (a login) would
                        // otherwise size every idle connection's task.
                        let frames = Box::pin(handle_text(&state, &mut conn, &mut pending, text.as_str())).await;
                        if was_live && conn.live.is_none() && conn.wiping.is_none() {
                            // Logged out or expired: a fresh chance to authenticate.
                            auth_deadline.as_mut().reset(tokio::time::Instant::now() + AUTH_TIMEOUT);
                        }
                        texts(frames)
                    } else {
                        state.metrics.rate_limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let re = wire::decode_request(text.as_str()).ok().map(|f| f.id);
                        texts(vec![wire::encode_error(&ErrorFrame::new(
                            re,
                            ErrorCode::RateLimited,
                            "too many requests; slow down and retry shortly",
                        ))])
                    }
                }
                Some(Ok(Message::Binary(_))) => texts(vec![wire::encode_error(&ErrorFrame::new(
                    None,
                    ErrorCode::BadFrame,
                    "binary frames are not accepted; send JSON in text frames",
                ))]),
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => continue, // ping/pong: tungstenite answers pings itself
                Some(Err(tungstenite::Error::Capacity(_))) => {
                    // Far beyond the frame limit: the stream cannot be resynchronised.
                    let _ = sink
                        .send(Message::text(wire::encode_error(&ErrorFrame::new(
                            None,
                            ErrorCode::TooLarge,
                            "frame far exceeds the 256 KiB limit; closing",
                        ))))
                        .await;
                    break;
                }
                Some(Err(_)) => break,
                }
            },
            Some((re, result)) = pending.next(), if !pending.is_empty() => {
                texts(vec![match result {
                    Ok(frame) => frame,
                    Err(e) => wire::encode_error(&e.into_frame(Some(re))),
                }])
            }
            pushed = next_push(&mut conn.live), if !catching_up => match pushed {
                Push::Frame(frame) => vec![Message::text(frame)],
                Push::Wipe(wiping, frame) => {
                    // The hub has already forgotten this connection.
                    conn.live = None;
                    conn.wiping = Some(wiping);
                    vec![Message::text(frame)]
                }
                Push::Duplicate => continue,
                Push::Kicked => {
                    tracing::info!("closing a connection that fell too far behind");
                    break;
                }
            },
            _ = &mut auth_deadline, if conn.live.is_none() && conn.wiping.is_none() => {
                tracing::debug!("closing a connection that did not authenticate in time");
                break;
            }
            _ = heartbeat.tick() => {
                let silent = last_heard.elapsed();
                if silent >= idle {
                    tracing::debug!("closing a silent connection");
                    break;
                }
                if silent >= idle / 3 {
                    vec![Message::Ping(Vec::new().into())]
                } else {
                    continue;
                }
            }
            _ = shutdown.changed() => break,
        };
        // A peer that stops reading must not hold this task forever: give
        // the writes as long as the idle timeout, then drop the connection.
        let write = async {
            for frame in out {
                sink.feed(frame).await?;
            }
            sink.flush().await
        };
        match tokio::time::timeout(idle, write).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                tracing::info!("closing a connection that stopped reading");
                break;
            }
        }
        if conn.close_after_write {
            break;
        }
    }
    if let Some(l) = conn.live {
        let _ = auth::touch(&state, &l.authed);
        state.hub.unregister(&l.authed.device_id, l.reg.id);
    }
    // A peer that stopped reading must not keep this task (and its slot
    // under the connection cap) alive through the close handshake either.
    let _ = tokio::time::timeout(Duration::from_secs(5), sink.close()).await;
}

fn texts(frames: Vec<String>) -> Vec<Message> {
    frames.into_iter().map(Message::text).collect()
}

enum Push {
    Frame(String),
    Wipe(Wiping, String),
    Duplicate,
    Kicked,
}

/// The next frame the hub queued for this connection, or the order to close
/// because the queue overflowed. Never resolves before authentication.
async fn next_push(live: &mut Option<Live>) -> Push {
    let Some(l) = live.as_mut() else {
        return std::future::pending().await;
    };
    tokio::select! {
        biased;
        _ = l.reg.kick.notified() => Push::Kicked,
        out = l.reg.rx.recv() => {
            if let Some(o) = &out {
                l.reg.queued.fetch_sub(o.len(), std::sync::atomic::Ordering::Relaxed);
            }
            match out {
            Some(Outbound::Message { conv_id, seq, frame }) => {
                let last = l.delivered.entry(conv_id).or_insert(0);
                if seq <= *last {
                    return Push::Duplicate;
                }
                *last = seq;
                Push::Frame(frame)
            }
            Some(Outbound::Frame(frame)) => Push::Frame(frame),
            Some(Outbound::Wipe(w)) => {
                let (wiping, frame) = *w;
                Push::Wipe(wiping, frame)
            }
            None => std::future::pending().await,
            }
        },
    }
}

async fn handle_text(
    state: &Arc<State>,
    conn: &mut Conn,
    pending: &mut FuturesUnordered<Pending>,
    text: &str,
) -> Vec<String> {
    let frame = match wire::decode_request(text) {
        Ok(f) => f,
        Err(e) => return vec![wire::encode_error(&ErrorFrame::from(e))],
    };
    let re = frame.id;
    match dispatch(state, conn, pending, frame).await {
        Ok(frames) => frames,
        Err(e) => {
            if e.code() == ErrorCode::AuthFailed {
                state
                    .metrics
                    .auth_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            vec![wire::encode_error(&e.into_frame(Some(re)))]
        }
    }
}

async fn dispatch(
    state: &Arc<State>,
    conn: &mut Conn,
    pending: &mut FuturesUnordered<Pending>,
    frame: RequestFrame,
) -> Result<Vec<String>, ApiError> {
    let re = frame.id;
    let ok = |body: &dyn erased::Body| Ok(vec![body.encode(re)]);
    if let Some(w) = &conn.wiping {
        return match frame.request {
            Request::WipeDone(r) => {
                wipe::done(state, w, r)?;
                conn.wiping = None;
                conn.close_after_write = true;
                ok(&Empty {})
            }
            _ => Err(ApiError::new(
                ErrorCode::WipePending,
                "this device has been ordered to wipe itself; only wipe_done is accepted",
            )),
        };
    }
    let live = &mut conn.live;
    match frame.request {
        Request::EnrolStart(r) => ok(&auth::enrol_start(state, r).await?),
        Request::Register(r) => ok(&accounts::register(state, r)?),
        Request::EnrolFinish(r) => {
            refuse_if_authenticated(live)?;
            let (reply, authed) = auth::enrol_finish(state, r).await?;
            begin(state, live, authed, wire::encode_ok(re, &reply))
        }
        Request::Login(r) => {
            refuse_if_authenticated(live)?;
            let (reply, authed) = auth::login(state, r).await?;
            begin(state, live, authed, wire::encode_ok(re, &reply))
        }
        Request::Resume(r) => {
            refuse_if_authenticated(live)?;
            match auth::resume(state, r).await? {
                auth::Resumed::Session(reply, authed) => {
                    begin(state, live, *authed, wire::encode_ok(re, &reply))
                }
                auth::Resumed::WipePending(device) => {
                    // Answer wipe_pending, then tell the device to wipe itself.
                    let Some((wiping, push)) = wipe::pending_push(state, &device)? else {
                        return Err(ApiError::new(
                            ErrorCode::Unauthenticated,
                            "this session has ended; log in again",
                        ));
                    };
                    conn.wiping = Some(wiping);
                    let err = ApiError::new(
                        ErrorCode::WipePending,
                        "this device has been ordered to wipe itself",
                    );
                    Ok(vec![wire::encode_error(&err.into_frame(Some(re))), push])
                }
            }
        }
        other => {
            let Some(l) = live.as_mut() else {
                return Err(ApiError::new(
                    ErrorCode::Unauthenticated,
                    "log in, enrol or resume a session first",
                ));
            };
            if l.authed.expires_at <= state.clock.now_ms() {
                // Stop live delivery too: an expired session receives nothing.
                state.hub.unregister(&l.authed.device_id, l.reg.id);
                *live = None;
                return Err(ApiError::new(
                    ErrorCode::Unauthenticated,
                    "this session has expired; log in again",
                ));
            }
            let authed = &l.authed;
            if authed.user.state == crate::store::UserState::PendingApproval
                && !matches!(other, Request::Logout(_))
            {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "this account awaits an administrator's approval",
                ));
            }
            match other {
                Request::Logout(_) => {
                    auth::logout(state, authed)?;
                    let reply = wire::encode_ok(re, &Empty {});
                    if let Some(l) = live.take() {
                        state.hub.unregister(&l.authed.device_id, l.reg.id);
                        state
                            .hub
                            .end_session(&l.authed.device_id, &l.authed.token_hash);
                    }
                    Ok(vec![reply])
                }
                Request::PasswordChange(r) => {
                    auth::password_change(state, authed, r).await?;
                    ok(&Empty {})
                }
                Request::AdminUserCreate(r) => ok(&admin::user_create(state, authed, r)?),
                Request::Lookup(r) => ok(&directory::lookup(state, authed, r)?),
                Request::Users(r) => ok(&directory::users(state, authed, r)?),
                Request::ExportRecord(r) => {
                    audit::export(state, authed, r)?;
                    ok(&Empty {})
                }
                Request::Devices(r) => ok(&directory::devices(state, authed, r)?),
                Request::ConversationCreate(r) => ok(&conversations::create(state, authed, r)?),
                Request::Conversations(_) => ok(&conversations::list(state, authed)?),
                Request::Send(r) => match messaging::check_send(state, authed, &r.envelope)? {
                    messaging::SendPlan::AlreadyStored(seq) => ok(&wire::SendOk {
                        conv_id: r.envelope.conv_id,
                        msg_id: r.envelope.msg_id,
                        seq,
                    }),
                    messaging::SendPlan::Store(msg) => {
                        let writer = state.writer.clone();
                        pending.push(Box::pin(async move {
                            (re, messaging::commit(writer, re, msg).await)
                        }));
                        Ok(Vec::new())
                    }
                },
                Request::Ack(r) => {
                    messaging::ack(state, authed, r)?;
                    answer_when_durable(state, pending, re);
                    Ok(Vec::new())
                }
                Request::Read(r) => {
                    messaging::read(state, authed, r)?;
                    answer_when_durable(state, pending, re);
                    Ok(Vec::new())
                }
                Request::History(r) => Ok(vec![messaging::history(state, authed, re, r)?]),
                Request::Receipts(r) => ok(&messaging::receipts(state, authed, r)?),
                Request::ConversationAdd(r) => {
                    conversations::add(state, authed, r)?;
                    ok(&Empty {})
                }
                Request::ConversationRemove(r) => {
                    conversations::remove(state, authed, r)?;
                    ok(&Empty {})
                }
                Request::AdminWipe(r) => ok(&wipe::admin_wipe(state, authed, r)?),
                Request::WipeOwnDevice(r) => ok(&wipe::own_device(state, authed, r).await?),
                Request::AdminWipeStatus(r) => ok(&wipe::status(state, authed, r)?),
                Request::WipeDone(_) => Err(ApiError::new(
                    ErrorCode::Conflict,
                    "no wipe was ordered for this device",
                )),
                Request::DeviceList(r) => ok(&admin::device_list(state, authed, r)?),
                Request::AdminAudit(r) => ok(&audit::query(state, authed, r)?),
                Request::AdminDeviceRevoke(r) => {
                    accounts::revoke_device(state, authed, r)?;
                    ok(&Empty {})
                }
                Request::AdminUserSetState(r) => {
                    accounts::set_state(state, authed, r).await?;
                    ok(&Empty {})
                }
                Request::AdminUserReset(r) => ok(&accounts::reset(state, authed, r).await?),
                Request::AdminUserList(r) => ok(&accounts::list(state, authed, r)?),
                Request::AdminUserApprove(r) => {
                    accounts::approve(state, authed, r).await?;
                    ok(&Empty {})
                }
                Request::AdminIncidentMode(r) => {
                    accounts::incident_mode(state, authed, r)?;
                    ok(&Empty {})
                }
                Request::AdminResidency(_) => ok(&residency::report(state, authed)?),
                Request::AdminLegalHold(r) => {
                    retention::legal_hold(state, authed, r).await?;
                    ok(&Empty {})
                }
                Request::ConversationRetention(r) => {
                    retention::set_conversation(state, authed, r)?;
                    ok(&Empty {})
                }
                Request::EnrolStart(_)
                | Request::EnrolFinish(_)
                | Request::Login(_)
                | Request::Resume(_)
                | Request::Register(_) => unreachable!("handled above"),
            }
        }
    }
}

/// Answers `ok` to request `re` once every write so far is durable, so an
/// acknowledged cursor never moves back after a crash. Shares the writer's
/// group commit instead of syncing on its own.
fn answer_when_durable(state: &Arc<State>, pending: &mut FuturesUnordered<Pending>, re: u64) {
    let writer = state.writer.clone();
    pending.push(Box::pin(async move {
        let done = writer.barrier().await;
        (
            re,
            done.map(|()| wire::encode_ok(re, &Empty {}))
                .map_err(ApiError::from),
        )
    }));
}

fn refuse_if_authenticated(live: &Option<Live>) -> Result<(), ApiError> {
    if live.is_some() {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "this connection is already authenticated; open a new connection for another session",
        ));
    }
    Ok(())
}

/// Starts the authenticated phase: registers with the hub first (so nothing
/// committed from now on is missed), then sets up the backlog: everything
/// stored after the device's cursors, sent after the `ok` page by page, in
/// `seq` order per conversation, before any reply to a later request or any
/// live push (which wait in the queue and are de-duplicated by `seq`).
fn begin(
    state: &Arc<State>,
    live: &mut Option<Live>,
    authed: Authed,
    reply: String,
) -> Result<Vec<String>, ApiError> {
    // Shown to admins, not needed to serve: a disk that refuses writes
    // must not keep a clinician from reading.
    if let Err(e) = state
        .store
        .set_last_seen(&authed.device_id, state.clock.now_ms())
    {
        tracing::warn!(error = %e, "could not record when the device was last seen");
    }
    let reg = state.hub.register(
        &authed.device_id,
        authed.token_hash,
        state.config.outbound_queue,
    );
    let convs = match state.store.conversations_of(&authed.user.id) {
        Ok(c) => c,
        Err(e) => {
            state.hub.unregister(&authed.device_id, reg.id);
            return Err(e.into());
        }
    };
    *live = Some(Live {
        authed,
        reg,
        backlog: Some(Backlog {
            convs,
            next: 0,
            after: None,
        }),
        delivered: HashMap::new(),
    });
    Ok(vec![reply])
}

/// The next page of the backlog, or `None` (and the backlog ends) when every
/// conversation is caught up.
fn next_backlog_page(state: &State, l: &mut Live) -> Result<Option<Vec<String>>, ApiError> {
    loop {
        let Some(b) = l.backlog.as_mut() else {
            return Ok(None);
        };
        let Some(conv) = b.convs.get(b.next).cloned() else {
            l.backlog = None;
            return Ok(None);
        };
        let after = match b.after {
            Some(a) => a,
            None => state.store.cursor(&l.authed.device_id, &conv)?,
        };
        let page = messaging::backlog_page(state, &l.authed.device_id, &conv, after)?;
        match page.next_after {
            Some(n) => b.after = Some(n),
            None => {
                b.next += 1;
                b.after = None;
            }
        }
        if page.frames.is_empty() {
            continue;
        }
        let mut frames = Vec::with_capacity(page.frames.len());
        for (seq, frame) in page.frames {
            l.delivered.insert(conv.clone(), seq);
            frames.push(frame);
        }
        return Ok(Some(frames));
    }
}

/// Lets `dispatch` encode any reply type through one helper.
mod erased {
    pub trait Body {
        fn encode(&self, re: u64) -> String;
    }
    impl<T: serde::Serialize> Body for T {
        fn encode(&self, re: u64) -> String {
            wardline_protocol::wire::encode_ok(re, self)
        }
    }
}
