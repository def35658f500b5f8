//! `wardline chat CONVERSATION`: a live view of one conversation.
//!
//! On a terminal it is a full-screen view (module `screen`): history above, new
//! messages as they arrive (urgent ones marked), receipts on the user's own
//! messages, and a line editor below; Enter sends. It uses the terminal's
//! alternate screen, so nothing of the conversation stays in the terminal's
//! scrollback after it closes, and it closes by itself after the idle
//! timeout without a key press. Without a terminal (or with `--json`) it
//! runs in line mode (module `lines`): each line of standard input is sent, and
//! each event is printed as a line, so scripts and tests can drive it.
//!
//! When the connection drops it reconnects by itself, with growing pauses,
//! and resumes: the server then sends everything after this device's
//! acknowledged position, and messages already on screen are recognised by
//! id, so nothing is lost or shown twice. Messages typed while offline wait
//! in an outbox and are sent, under their original id, once it is back.

mod compose;
mod lines;
mod screen;
mod state;

use std::io::IsTerminal as _;
use std::time::Duration;

use clap::Args;
use tokio::time::Instant;
use wardline_protocol::wire::{Empty, History, HistoryOk, MessagePush, Read, Receipts, ReceiptsOk};
use wardline_protocol::{Body, Patient, Request};

use super::messages::open_history;
use super::{Context, Session};
use crate::connection::{ConnectionError, Push};
use crate::error::Error;
use crate::nhs;
use crate::outgoing::{deliver, new_header, resolve_conversation};
use crate::sync::{self, Received};
pub use compose::{Draft, HELP, Typed};
use state::{Chat, Level, Outgoing, Update};

/// Arguments of `wardline chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The conversation: its id, its title, or the username of the person
    /// to talk to (your one-to-one conversation is found or created).
    pub conversation: String,
    /// How many earlier messages to show.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=500))]
    pub history: u32,
}

/// What a frontend reports.
#[derive(Debug)]
pub(crate) enum Input {
    /// A line to send (or a chat command).
    Line(String),
    /// A key that changed only the frontend (editing, scrolling).
    Key,
    /// The user asked to leave.
    Quit,
    /// Standard input ended (line mode).
    Closed,
}

/// A way of showing the chat and reading what the user types.
pub(crate) trait Frontend {
    /// The next thing the user did. Must be cancel-safe.
    async fn next_input(&mut self) -> Input;
    /// Shows the state after `updates`.
    fn show(&mut self, chat: &Chat, updates: &[Update]) -> Result<(), Error>;
    /// Puts a line back into the editor (it was not sent).
    fn restore(&mut self, line: String);
    /// Closes the chat after this long without input, if at all.
    fn idle_timeout(&self) -> Option<Duration>;
}

/// How often to check the connection is alive.
const PING_EVERY: Duration = Duration::from_secs(20);
/// Silence after which the connection is presumed dead.
const DEAD_AFTER: Duration = Duration::from_secs(60);
/// How long to keep trying to send what is queued after input ends.
const DRAIN_LIMIT: Duration = Duration::from_secs(90);

/// Opens the chat.
pub async fn run(ctx: &Context, s: &mut Session, args: ChatArgs) -> Result<(), Error> {
    let (convs, received) = sync::catch_up(&mut s.conn, &mut s.keystore).await?;
    let conv = resolve_conversation(
        &mut s.conn,
        &mut s.keystore,
        &convs,
        &args.conversation,
        true,
    )
    .await?;
    let history = usize::try_from(args.history).unwrap_or(usize::MAX);
    fill_history(s, &conv.conv_id, history).await?;
    let mut chat = Chat::new(s.keystore.state(), conv, history);
    let receipts: ReceiptsOk = s
        .conn
        .call(Request::Receipts(Receipts {
            conv_id: chat.conv_id().clone(),
        }))
        .await?;
    chat.set_receipts(&receipts);
    let first = absorb(&mut chat, s, received);
    mark_read(&chat, s).await?;
    s.keystore.save()?;

    let interactive =
        !ctx.out.is_json() && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if interactive {
        let mut front = screen::Screen::open(ctx)?;
        let result = run_loop(&mut chat, s, &mut front, &first).await;
        let closing = front.close();
        let outcome = result?;
        closing?;
        if let Some(note) = outcome {
            ctx.out.note(&note);
        }
        Ok(())
    } else {
        let mut front = lines::Lines::new(ctx, &chat);
        run_loop(&mut chat, s, &mut front, &first).await?;
        Ok(())
    }
}

/// Fetches earlier messages when the cache holds fewer than `want`.
async fn fill_history(
    s: &mut Session,
    conv: &wardline_protocol::ConversationId,
    want: usize,
) -> Result<(), Error> {
    let have = s.keystore.state().messages_in(conv).len();
    let last = s
        .keystore
        .state()
        .conversations
        .get(conv)
        .map_or(0, |c| c.last_seq);
    if want == 0 || have >= want || last == 0 {
        return Ok(());
    }
    let page: HistoryOk = s
        .conn
        .call(Request::History(History {
            conv_id: conv.clone(),
            before_seq: None,
            limit: Some(u32::try_from(want).unwrap_or(u32::MAX)),
        }))
        .await?;
    let pushes = page
        .messages
        .into_iter()
        .map(|h| MessagePush {
            conv_id: conv.clone(),
            seq: h.seq,
            envelope: h.envelope,
        })
        .collect();
    open_history(s, pushes).await?;
    Ok(())
}

/// The event loop: server pushes, the user's input, reconnection and a
/// ticker for keep-alive and the idle timeout. Returns a note to print
/// after the screen is restored, if any.
async fn run_loop(
    chat: &mut Chat,
    s: &mut Session,
    front: &mut impl Frontend,
    first: &[Update],
) -> Result<Option<String>, Error> {
    front.show(chat, first)?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_input = Instant::now();
    let mut last_ping = Instant::now();
    let mut input_closed: Option<Instant> = None;
    loop {
        let up = chat.is_up();
        let retry_at = chat.retry_at();
        let mut updates = Vec::new();
        tokio::select! {
            push = s.conn.next_push(), if up => match push {
                Ok(p) => updates = on_push(chat, s, p).await?,
                Err(e) => updates.push(lost(chat, e)?),
            },
            input = front.next_input(), if input_closed.is_none() => {
                last_input = Instant::now();
                match input {
                    Input::Line(line) => updates = on_line(chat, s, front, line).await?,
                    Input::Key => {}
                    Input::Quit => return Ok(None),
                    Input::Closed => input_closed = Some(Instant::now()),
                }
            }
            () = tokio::time::sleep_until(retry_at), if !up => {
                updates = reconnect(chat, s).await?;
            }
            _ = tick.tick() => {
                if let Some(limit) = front.idle_timeout()
                    && last_input.elapsed() >= limit
                {
                    return Ok(Some(format!(
                        "wardline: the chat closed after {} without use, to keep patient information off the screen.",
                        crate::agent::describe_duration(limit)
                    )));
                }
                if up && last_ping.elapsed() >= PING_EVERY {
                    last_ping = Instant::now();
                    if s.conn.last_heard().elapsed() >= DEAD_AFTER {
                        updates.push(chat.lost("the server stopped answering".into()));
                    } else if let Err(e) = s.conn.ping().await {
                        updates.push(lost(chat, e)?);
                    }
                }
            }
        }
        front.show(chat, &updates)?;
        if let Some(since) = input_closed {
            if chat.outbox.is_empty() {
                return Ok(None);
            }
            if since.elapsed() >= DRAIN_LIMIT {
                return Err(Error::Refused(format!(
                    "{} message(s) could not be sent before giving up; they were not delivered",
                    chat.outbox.len()
                )));
            }
        }
    }
}

/// A connection failure becomes "reconnecting"; a wipe order (or anything
/// else) ends the chat.
fn lost(chat: &mut Chat, e: ConnectionError) -> Result<Update, Error> {
    match e {
        ConnectionError::Closed(_)
        | ConnectionError::Timeout(_)
        | ConnectionError::Connect { .. } => Ok(chat.lost(e.to_string())),
        other => Err(other.into()),
    }
}

/// Runs `op`; a lost connection becomes an update, other errors end the chat.
fn recover(chat: &mut Chat, result: Result<Vec<Update>, Error>) -> Result<Vec<Update>, Error> {
    match result {
        Ok(u) => Ok(u),
        Err(Error::Connection(e)) => Ok(vec![lost(chat, e)?]),
        Err(e) => Err(e),
    }
}

async fn on_push(chat: &mut Chat, s: &mut Session, push: Push) -> Result<Vec<Update>, Error> {
    let step = async {
        let received = sync::receive(&mut s.conn, &mut s.keystore, vec![push]).await?;
        let mut updates = absorb(chat, s, received);
        mark_read(chat, s).await?;
        Ok::<_, Error>(std::mem::take(&mut updates))
    };
    let result = step.await;
    recover(chat, result)
}

/// Turns what was received into screen entries and updates.
fn absorb(chat: &mut Chat, s: &Session, r: Received) -> Vec<Update> {
    let state = s.keystore.state();
    let mut updates = Vec::new();
    for m in &r.messages {
        if m.conv_id == *chat.conv_id() {
            if let Some(line) = chat.add_stored(state, m) {
                updates.push(Update::Message(line));
            }
        } else if m.sender_user != chat.me {
            let title = state
                .conversations
                .get(&m.conv_id)
                .map_or_else(|| m.conv_id.to_string(), |c| c.title.clone());
            let urgent = m.priority == wardline_protocol::Priority::Urgent;
            let level = if urgent { Level::Alarm } else { Level::Info };
            updates.push(chat.notice(
                level,
                format!(
                    "{}new message in {title} from {} (see `wardline read`)",
                    if urgent { "URGENT: " } else { "" },
                    state.display_name(&m.sender_user)
                ),
            ));
        }
    }
    for r in &r.receipts {
        if chat.receipt(r) {
            updates.push(Update::Receipt(
                r.clone(),
                state.username_of(&r.user_id).cloned(),
            ));
        }
    }
    for u in &r.unread_urgent {
        let names: Vec<String> = u.unread.iter().map(|id| state.display_name(id)).collect();
        updates.push(chat.notice(
            Level::Alarm,
            format!(
                "Your urgent message #{} is still unread by {}: phone them.",
                u.seq,
                names.join(", ")
            ),
        ));
    }
    for c in &r.conversations_changed {
        if c.conv_id == *chat.conv_id() {
            chat.conv.title.clone_from(&c.title);
            chat.conv.members.clone_from(&c.members);
            let names = super::conversations::names(state, &c.members);
            updates.push(chat.notice(Level::Info, format!("Members now: {}", names.join(", "))));
        }
    }
    for k in &r.key_changes {
        updates.push(chat.notice(
            Level::Warning,
            format!(
                "The server published different keys for a device of {} than before; their messages from it are not trusted. Check with `wardline verify {}`.",
                state.display_name(&k.user_id),
                state.display_name(&k.user_id)
            ),
        ));
    }
    for p in &r.problems {
        updates.push(chat.notice(
            Level::Warning,
            format!(
                "A message (#{}) could not be opened: {}",
                p.seq.map_or("?".into(), |s| s.to_string()),
                p.reason
            ),
        ));
    }
    updates
}

/// Tells the server the user has read what is on screen.
async fn mark_read(chat: &Chat, s: &mut Session) -> Result<(), Error> {
    let newest = chat.newest_from_others();
    let read = s
        .keystore
        .state()
        .conversations
        .get(chat.conv_id())
        .map_or(0, |c| c.read_seq);
    if newest > read {
        let _: Empty = s
            .conn
            .call(Request::Read(Read {
                conv_id: chat.conv_id().clone(),
                seq: newest,
            }))
            .await?;
        s.keystore.state_mut().mark_read(chat.conv_id(), newest);
    }
    Ok(())
}

async fn on_line(
    chat: &mut Chat,
    s: &mut Session,
    front: &mut impl Frontend,
    line: String,
) -> Result<Vec<Update>, Error> {
    let draft = match compose::parse(&line) {
        Ok(Typed::Message(d)) => d,
        Ok(Typed::Quit) => {
            return Ok(vec![
                chat.notice(Level::Info, "Type Esc or Ctrl-D to leave."),
            ]);
        }
        Ok(Typed::Help) => return Ok(vec![chat.notice(Level::Info, HELP)]),
        Err(compose::ComposeError::Empty) => return Ok(Vec::new()),
        Err(e) => {
            front.restore(line);
            return Ok(vec![chat.notice(Level::Warning, e.to_string())]);
        }
    };
    if draft.patient.is_none()
        && chat.confirm.as_deref() != Some(line.as_str())
        && let Some(n) = nhs::find_in_text(&draft.text).first()
    {
        chat.confirm = Some(line.clone());
        front.restore(line);
        return Ok(vec![chat.notice(
            Level::Warning,
            format!(
                "That looks like an NHS number ({n}). Patient identifiers belong in the patient tag: write /patient {} followed by the text. To send it as it is, press Enter again.",
                n.as_str()
            ),
        )]);
    }
    chat.confirm = None;
    let reply_to = match draft.reply_to_seq {
        Some(seq) => match chat.msg_id_of(seq) {
            Some(id) => Some(id),
            None => {
                front.restore(line);
                return Ok(vec![chat.notice(
                    Level::Warning,
                    format!("There is no message #{seq} on screen to reply to."),
                )]);
            }
        },
        None => None,
    };
    let header = new_header(&s.keystore, &chat.conv, draft.priority)?;
    let body = Body {
        text: draft.text,
        kind: draft.kind,
        patient: draft.patient.map(|p| Patient {
            nhs_number: p.as_str().to_owned(),
        }),
        reply_to,
    };
    let queued = chat.queue(
        s.keystore.state(),
        Outgoing { header, body },
        draft.reply_to_seq,
    );
    let mut updates = vec![Update::Message(queued)];
    if chat.is_up() {
        let flushed = flush(chat, s).await;
        updates.extend(recover(chat, flushed)?);
    } else {
        updates.push(chat.notice(
            Level::Info,
            "Offline: the message will be sent when the connection is back.",
        ));
    }
    Ok(updates)
}

/// Sends what is queued, oldest first, stopping at a lost connection.
async fn flush(chat: &mut Chat, s: &mut Session) -> Result<Vec<Update>, Error> {
    let mut updates = Vec::new();
    while let Some(next) = chat.outbox.front().cloned() {
        let members = chat.conv.members.clone();
        match deliver(
            &mut s.conn,
            &mut s.keystore,
            &members,
            &next.header,
            &next.body,
        )
        .await
        {
            Ok(done) => {
                chat.accepted(next.header.msg_id, done.ok.seq);
                updates.push(Update::Sent {
                    msg_id: next.header.msg_id,
                    seq: done.ok.seq,
                });
                if !done.flags.is_empty() {
                    let names: Vec<String> = done
                        .flags
                        .iter()
                        .map(|f| s.keystore.state().display_name(&f.user_id))
                        .collect();
                    updates.push(chat.notice(
                        Level::Warning,
                        format!(
                            "Also sealed to new, unverified devices of: {}. Check with `wardline verify`.",
                            names.join(", ")
                        ),
                    ));
                }
                s.keystore.save()?;
            }
            Err(Error::Connection(
                e @ (ConnectionError::Closed(_)
                | ConnectionError::Timeout(_)
                | ConnectionError::Connect { .. }),
            )) => return Err(Error::Connection(e)),
            Err(e @ Error::Connection(ConnectionError::WipeOrdered(_))) => return Err(e),
            Err(e) => {
                chat.failed(next.header.msg_id);
                updates.push(chat.notice(Level::Alarm, format!("Not sent: {e}")));
            }
        }
    }
    Ok(updates)
}

/// One reconnection attempt: connect, resume, catch up, send what waited.
async fn reconnect(chat: &mut Chat, s: &mut Session) -> Result<Vec<Update>, Error> {
    let attempt = async {
        s.reconnect().await?;
        let (_, received) = sync::catch_up(&mut s.conn, &mut s.keystore).await?;
        let receipts: ReceiptsOk = s
            .conn
            .call(Request::Receipts(Receipts {
                conv_id: chat.conv_id().clone(),
            }))
            .await?;
        chat.set_receipts(&receipts);
        chat.link = state::Link::Up;
        let mut updates = vec![
            Update::Link {
                up: true,
                detail: None,
            },
            chat.notice(Level::Info, "Connected again; caught up."),
        ];
        updates.extend(absorb(chat, s, received));
        mark_read(chat, s).await?;
        updates.extend(flush(chat, s).await?);
        Ok::<_, Error>(updates)
    };
    let result = attempt.await;
    recover(chat, result)
}
