//! The chat without a terminal: each line of standard input is typed into
//! the chat (so `/urgent`, `/patient` and the rest work), and each event is
//! printed as one line, human or `--json`.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader, Lines as LineReader, Stdin};

use super::state::{Chat, Level, Line, Update};
use super::{Frontend, Input};
use crate::commands::Context;
use crate::error::Error;
use crate::output::{Event, MessageView, Output};

/// Line mode.
#[derive(Debug)]
pub struct Lines {
    out: Output,
    input: LineReader<BufReader<Stdin>>,
}

impl Lines {
    /// Line mode on standard input and output; prints the messages already
    /// on screen first.
    pub fn new(ctx: &Context, chat: &Chat) -> Self {
        let lines = Self {
            out: ctx.out,
            input: BufReader::new(tokio::io::stdin()).lines(),
        };
        for e in &chat.entries {
            if let super::state::Entry::Message(l) = e {
                let _ = lines.out.emit(&Event::Message(view(chat, l)));
            }
        }
        lines
    }
}

impl Frontend for Lines {
    async fn next_input(&mut self) -> Input {
        match self.input.next_line().await {
            Ok(Some(line)) => Input::Line(line),
            Ok(None) | Err(_) => Input::Closed,
        }
    }

    fn show(&mut self, chat: &Chat, updates: &[Update]) -> Result<(), Error> {
        for u in updates {
            let event = match u {
                Update::Message(l) if l.seq.is_some() => Event::Message(view(chat, l)),
                // Shown once accepted, with its number.
                Update::Message(_) => continue,
                Update::Sent { msg_id, seq } => Event::Sent {
                    conv_id: chat.conv_id().clone(),
                    msg_id: *msg_id,
                    seq: *seq,
                },
                Update::Receipt(r, username) => Event::Receipt {
                    conv_id: r.conv_id.clone(),
                    seq: r.seq,
                    user_id: r.user_id.clone(),
                    username: username.clone(),
                    kind: r.kind,
                },
                Update::Notice(level, text) => Event::Warning {
                    code: match level {
                        Level::Info => "info",
                        Level::Warning => "warning",
                        Level::Alarm => "alarm",
                    },
                    message: text.clone(),
                },
                Update::Link { up, detail } => Event::Connection {
                    state: if *up { "connected" } else { "reconnecting" },
                    detail: detail.clone(),
                },
            };
            self.out.emit(&event)?;
        }
        Ok(())
    }

    fn restore(&mut self, _line: String) {}

    fn idle_timeout(&self) -> Option<Duration> {
        None
    }
}

/// A chat line as a message event.
fn view(chat: &Chat, l: &Line) -> MessageView {
    MessageView {
        conv_id: chat.conv_id().clone(),
        conv_title: Some(chat.conv.title.clone()),
        seq: l.seq.unwrap_or(0),
        msg_id: l.msg_id,
        sender_user: l.sender.clone(),
        sender_username: wardline_protocol::Username::parse(l.sender_name.as_str()).ok(),
        sent_at: l.sent_at.clone(),
        priority: l.priority,
        kind: l.kind,
        text: l.text.clone(),
        patient: l.patient.clone(),
        reply_to: l.reply_to_seq.and_then(|seq| chat.msg_id_of(seq)),
    }
}
