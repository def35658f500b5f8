//! The chat's state: what is on screen, how far each member has received
//! and read, what is waiting to be sent, and whether the connection is up.
//! Frontends (the full-screen view, the line mode) only render it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;
use wardline_protocol::wire::{ConversationInfo, ReceiptKind, ReceiptPush, ReceiptsOk};
use wardline_protocol::{
    Body, BodyKind, ConversationId, Header, MessageId, Priority, Timestamp, UserId, Username,
};

use crate::keystore::{State, StoredMessage};

/// How prominent a notice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something to know.
    Info,
    /// Something to check.
    Warning,
    /// Act now (urgent messages, failures).
    Alarm,
}

/// One message line.
#[derive(Debug, Clone)]
pub struct Line {
    /// Its id.
    pub msg_id: MessageId,
    /// Its sequence number; `None` while the server has not accepted it.
    pub seq: Option<u64>,
    /// Sender.
    pub sender: UserId,
    /// Sender's name as shown.
    pub sender_name: String,
    /// Whether the user sent it.
    pub own: bool,
    /// When sent.
    pub sent_at: Timestamp,
    /// Routine or urgent.
    pub priority: Priority,
    /// Message or clinical note.
    pub kind: BodyKind,
    /// The text.
    pub text: String,
    /// The patient tag.
    pub patient: Option<String>,
    /// The `seq` of the message it answers, when known.
    pub reply_to_seq: Option<u64>,
    /// Sending failed for good.
    pub failed: bool,
}

/// Something on screen, in arrival order.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A message.
    Message(Line),
    /// A notice from the chat itself.
    Notice(Level, String),
}

/// A change the line mode prints (the full-screen view redraws instead).
#[derive(Debug, Clone)]
pub enum Update {
    /// A message appeared.
    Message(Line),
    /// A message of the user's was accepted by the server.
    Sent {
        /// Its id.
        msg_id: MessageId,
        /// Its sequence number.
        seq: u64,
    },
    /// A receipt for the user's messages, with the member's username when
    /// known.
    Receipt(ReceiptPush, Option<Username>),
    /// A notice.
    Notice(Level, String),
    /// The connection went down or came back.
    Link {
        /// Whether it is up now.
        up: bool,
        /// Why, when down.
        detail: Option<String>,
    },
}

/// A message not yet accepted by the server, kept to be sent again under
/// the same header (same `msg_id`, so never stored twice) after a reconnect.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The header, fixed at the first attempt.
    pub header: Header,
    /// The body.
    pub body: Body,
}

/// Whether the connection is usable.
#[derive(Debug, Clone)]
pub enum Link {
    /// Connected and resumed.
    Up,
    /// Lost; the next attempt is due at `retry_at`.
    Down {
        /// Why it was lost, or why the last attempt failed.
        reason: String,
        /// Attempts so far.
        attempts: u32,
        /// When to try again.
        retry_at: Instant,
    },
}

/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// The chat's state.
#[derive(Debug)]
pub struct Chat {
    /// The conversation.
    pub conv: ConversationInfo,
    /// The user.
    pub me: UserId,
    /// What is on screen.
    pub entries: Vec<Entry>,
    shown: HashSet<MessageId>,
    /// Per member: highest delivered and read `seq`.
    cursors: HashMap<UserId, (u64, u64)>,
    /// Messages waiting for the server's acceptance, oldest first.
    pub outbox: VecDeque<Outgoing>,
    /// The connection.
    pub link: Link,
    /// A line the user was warned about; typing it again sends it.
    pub confirm: Option<String>,
}

impl Chat {
    /// A chat of `conv`, showing the cached messages.
    pub fn new(state: &State, conv: ConversationInfo, history: usize) -> Self {
        let mut chat = Self {
            conv,
            me: state.user_id.clone(),
            entries: Vec::new(),
            shown: HashSet::new(),
            cursors: HashMap::new(),
            outbox: VecDeque::new(),
            link: Link::Up,
            confirm: None,
        };
        let cached = state.messages_in(&chat.conv.conv_id);
        let skip = cached.len().saturating_sub(history);
        for m in cached.into_iter().skip(skip) {
            chat.add_stored(state, m);
        }
        chat
    }

    /// The conversation's id.
    pub fn conv_id(&self) -> &ConversationId {
        &self.conv.conv_id
    }

    /// Adds a cached message unless it is on screen already; returns the
    /// line when it is new.
    pub fn add_stored(&mut self, state: &State, m: &StoredMessage) -> Option<Line> {
        if m.conv_id != self.conv.conv_id {
            return None;
        }
        if !self.shown.insert(m.msg_id) {
            // Our own message coming back with its seq: fill it in.
            for e in &mut self.entries {
                if let Entry::Message(l) = e
                    && l.msg_id == m.msg_id
                    && l.seq.is_none()
                {
                    l.seq = Some(m.seq);
                }
            }
            return None;
        }
        let reply_to_seq = m.body.reply_to.and_then(|r| {
            state
                .messages_in(&m.conv_id)
                .into_iter()
                .find(|x| x.msg_id == r)
                .map(|x| x.seq)
        });
        let line = Line {
            msg_id: m.msg_id,
            seq: Some(m.seq),
            own: m.sender_user == self.me,
            sender_name: state.display_name(&m.sender_user),
            sender: m.sender_user.clone(),
            sent_at: m.sent_at.clone(),
            priority: m.priority,
            kind: m.body.kind,
            text: m.body.text.clone(),
            patient: m.body.patient.as_ref().map(|p| p.nhs_number.clone()),
            reply_to_seq,
            failed: false,
        };
        self.entries.push(Entry::Message(line.clone()));
        Some(line)
    }

    /// Shows a message of the user's that is not accepted yet, and queues it.
    pub fn queue(&mut self, state: &State, out: Outgoing, reply_to_seq: Option<u64>) -> Line {
        let line = Line {
            msg_id: out.header.msg_id,
            seq: None,
            sender: self.me.clone(),
            sender_name: state.display_name(&self.me),
            own: true,
            sent_at: out.header.sent_at.clone(),
            priority: out.header.priority,
            kind: out.body.kind,
            text: out.body.text.clone(),
            patient: out.body.patient.as_ref().map(|p| p.nhs_number.clone()),
            reply_to_seq,
            failed: false,
        };
        self.shown.insert(line.msg_id);
        self.entries.push(Entry::Message(line.clone()));
        self.outbox.push_back(out);
        line
    }

    /// Records the server's acceptance of a queued message.
    pub fn accepted(&mut self, msg_id: MessageId, seq: u64) {
        self.outbox.retain(|o| o.header.msg_id != msg_id);
        for e in &mut self.entries {
            if let Entry::Message(l) = e
                && l.msg_id == msg_id
            {
                l.seq = Some(seq);
            }
        }
    }

    /// Gives up on a queued message (the server refused it).
    pub fn failed(&mut self, msg_id: MessageId) {
        self.outbox.retain(|o| o.header.msg_id != msg_id);
        for e in &mut self.entries {
            if let Entry::Message(l) = e
                && l.msg_id == msg_id
            {
                l.failed = true;
            }
        }
    }

    /// Adds a notice.
    pub fn notice(&mut self, level: Level, text: impl Into<String>) -> Update {
        let text = text.into();
        self.entries.push(Entry::Notice(level, text.clone()));
        Update::Notice(level, text)
    }

    /// Sets the members' positions from a `receipts` answer.
    pub fn set_receipts(&mut self, r: &ReceiptsOk) {
        for m in &r.receipts {
            let e = self.cursors.entry(m.user_id.clone()).or_default();
            e.0 = e.0.max(m.delivered_seq);
            e.1 = e.1.max(m.read_seq);
        }
    }

    /// Applies a receipt push; returns whether it concerns this chat.
    pub fn receipt(&mut self, r: &ReceiptPush) -> bool {
        if r.conv_id != self.conv.conv_id {
            return false;
        }
        let e = self.cursors.entry(r.user_id.clone()).or_default();
        match r.kind {
            ReceiptKind::Delivered => e.0 = e.0.max(r.seq),
            // Read implies delivered.
            ReceiptKind::Read => {
                e.1 = e.1.max(r.seq);
                e.0 = e.0.max(r.seq);
            }
        }
        true
    }

    /// How many other members have received and read message `seq`, out of
    /// how many.
    pub fn reach(&self, seq: u64) -> (usize, usize, usize) {
        let others: Vec<&UserId> = self
            .conv
            .members
            .iter()
            .filter(|m| **m != self.me)
            .collect();
        let (mut delivered, mut read) = (0, 0);
        for m in &others {
            let (d, r) = self.cursors.get(*m).copied().unwrap_or_default();
            if d >= seq {
                delivered += 1;
            }
            if r >= seq {
                read += 1;
            }
        }
        (delivered, read, others.len())
    }

    /// The highest `seq` on screen from someone else.
    pub fn newest_from_others(&self) -> u64 {
        self.entries
            .iter()
            .filter_map(|e| match e {
                Entry::Message(l) if !l.own => l.seq,
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// The `msg_id` of message `seq` on screen.
    pub fn msg_id_of(&self, seq: u64) -> Option<MessageId> {
        self.entries.iter().find_map(|e| match e {
            Entry::Message(l) if l.seq == Some(seq) => Some(l.msg_id),
            _ => None,
        })
    }

    /// Marks the connection lost; the next attempt waits longer each time.
    pub fn lost(&mut self, reason: String) -> Update {
        let attempts = match &self.link {
            Link::Down { attempts, .. } => attempts + 1,
            Link::Up => 0,
        };
        let backoff = Duration::from_secs(1 << attempts.min(4)).min(MAX_BACKOFF);
        self.link = Link::Down {
            reason: reason.clone(),
            attempts,
            retry_at: Instant::now() + backoff,
        };
        Update::Link {
            up: false,
            detail: Some(reason),
        }
    }

    /// Whether the connection is up.
    pub fn is_up(&self) -> bool {
        matches!(self.link, Link::Up)
    }

    /// When to try reconnecting (far off while up).
    pub fn retry_at(&self) -> Instant {
        match &self.link {
            Link::Down { retry_at, .. } => *retry_at,
            Link::Up => Instant::now() + Duration::from_secs(3600),
        }
    }
}
