//! The full-screen chat view on a terminal (crossterm): a title bar, the
//! messages, a hint line and a line editor. Drawn on the alternate screen,
//! so closing it leaves nothing of the conversation in the scrollback.

use std::io::{self, Stdout, Write as _};
use std::time::Duration;

use crossterm::event::{
    Event as TermEvent, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers,
};
use crossterm::style::{Attribute, Color, Print, ResetColor, SetAttribute, SetForegroundColor};
use crossterm::terminal::{self, Clear, ClearType};
use crossterm::{cursor, event, execute, queue};
use futures_util::StreamExt as _;
use wardline_protocol::{BodyKind, Priority};

use super::state::{Chat, Entry, Level, Line, Link, Update};
use super::{Frontend, Input};
use crate::commands::Context;
use crate::error::Error;
use crate::nhs::NhsNumber;
use crate::output::clean;
use crate::output::time::{Now, clock_time};

/// How a screen row is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    Plain,
    Own,
    Urgent,
    Note,
    Dim,
    Warning,
    Alarm,
}

/// The full-screen view.
pub struct Screen {
    out: Stdout,
    events: EventStream,
    input: Vec<char>,
    cursor: usize,
    scroll: usize,
    idle: Option<Duration>,
    offset: ::time::UtcOffset,
    open: bool,
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screen").finish_non_exhaustive()
    }
}

impl Screen {
    /// Takes over the terminal: raw mode, alternate screen.
    pub fn open(ctx: &Context) -> Result<Self, Error> {
        terminal::enable_raw_mode()?;
        let mut out = io::stdout();
        execute!(
            out,
            terminal::EnterAlternateScreen,
            event::EnableBracketedPaste
        )?;
        Ok(Self {
            out,
            events: EventStream::new(),
            input: Vec::new(),
            cursor: 0,
            scroll: 0,
            idle: (!ctx.idle_timeout.is_zero()).then_some(ctx.idle_timeout),
            offset: ctx.out.now().offset,
            open: true,
        })
    }

    /// Gives the terminal back as it was.
    pub fn close(mut self) -> Result<(), Error> {
        self.restore_terminal()?;
        Ok(())
    }

    fn restore_terminal(&mut self) -> io::Result<()> {
        if !self.open {
            return Ok(());
        }
        self.open = false;
        execute!(
            self.out,
            event::DisableBracketedPaste,
            terminal::LeaveAlternateScreen,
            cursor::Show
        )?;
        terminal::disable_raw_mode()
    }

    /// What a key press does to the editor; `Some` when the chat must act.
    fn key(&mut self, key: KeyEvent) -> Option<Input> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Esc => return Some(Input::Quit),
            KeyCode::Char('c') if ctrl => return Some(Input::Quit),
            KeyCode::Char('d') if ctrl && self.input.is_empty() => return Some(Input::Quit),
            KeyCode::Enter => {
                let line: String = self.input.drain(..).collect();
                self.cursor = 0;
                self.scroll = 0;
                return Some(Input::Line(line));
            }
            KeyCode::Char('a') if ctrl => self.cursor = 0,
            KeyCode::Char('e') if ctrl => self.cursor = self.input.len(),
            KeyCode::Char('u') if ctrl => {
                self.input.drain(..self.cursor);
                self.cursor = 0;
            }
            KeyCode::Char('k') if ctrl => self.input.truncate(self.cursor),
            KeyCode::Char('w') if ctrl => {
                let mut start = self.cursor;
                while start > 0 && self.input[start - 1] == ' ' {
                    start -= 1;
                }
                while start > 0 && self.input[start - 1] != ' ' {
                    start -= 1;
                }
                self.input.drain(start..self.cursor);
                self.cursor = start;
            }
            KeyCode::Char(c) if !ctrl => {
                self.input.insert(self.cursor, c);
                self.cursor += 1;
            }
            KeyCode::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                self.input.remove(self.cursor);
            }
            KeyCode::Delete if self.cursor < self.input.len() => {
                self.input.remove(self.cursor);
            }
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(self.input.len()),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = self.input.len(),
            KeyCode::PageUp => self.scroll += 10,
            KeyCode::PageDown => self.scroll = self.scroll.saturating_sub(10),
            _ => {}
        }
        Some(Input::Key)
    }

    fn draw(&mut self, chat: &Chat) -> io::Result<()> {
        let (w, h) = terminal::size()?;
        let (width, height) = (usize::from(w.max(20)), usize::from(h.max(5)));
        let now = Now::system(self.offset);
        let mut rows: Vec<(Tone, String)> = Vec::new();
        for e in &chat.entries {
            let (tone, text) = match e {
                Entry::Message(l) => line_text(chat, l, &now),
                Entry::Notice(level, text) => (
                    match level {
                        Level::Info => Tone::Dim,
                        Level::Warning => Tone::Warning,
                        Level::Alarm => Tone::Alarm,
                    },
                    format!("-- {text}"),
                ),
            };
            for row in wrap(&clean(&text), width) {
                rows.push((tone, row));
            }
        }
        let area = height - 3;
        let max_scroll = rows.len().saturating_sub(area);
        self.scroll = self.scroll.min(max_scroll);
        let end = rows.len() - self.scroll;
        let start = end.saturating_sub(area);

        let link = match &chat.link {
            Link::Up => "● connected".to_owned(),
            Link::Down { attempts, .. } => format!("○ reconnecting (attempt {})…", attempts + 1),
        };
        let title = format!(
            " {} · {} member(s)",
            clean(&chat.conv.title),
            chat.conv.members.len()
        );
        let pad = width.saturating_sub(title.chars().count() + link.chars().count() + 1);
        let bar: String = format!("{title}{}{link} ", " ".repeat(pad))
            .chars()
            .take(width)
            .collect();
        queue!(
            self.out,
            cursor::Hide,
            cursor::MoveTo(0, 0),
            SetAttribute(Attribute::Reverse),
            Print(&bar),
            SetAttribute(Attribute::Reset),
            Clear(ClearType::UntilNewLine)
        )?;
        // The newest message sits just above the input line, as in any chat.
        let blank = area - (end - start);
        for (i, y) in (1..=area).enumerate() {
            queue!(self.out, cursor::MoveTo(0, to_u16(y)))?;
            if let Some((tone, text)) = i.checked_sub(blank).and_then(|r| rows.get(start + r)) {
                paint(&mut self.out, *tone, text)?;
            }
            queue!(self.out, Clear(ClearType::UntilNewLine))?;
        }
        let hint = if let Link::Down { reason, .. } = &chat.link {
            format!("-- offline ({reason}); messages you send wait until it is back --")
        } else if self.scroll > 0 {
            format!(
                "-- scrolled back {} line(s); PgDn to return --",
                self.scroll
            )
        } else {
            "Enter send · /urgent /note /patient NHS · /help · PgUp/PgDn scroll · Esc leave"
                .to_owned()
        };
        queue!(self.out, cursor::MoveTo(0, to_u16(height - 2)))?;
        paint(
            &mut self.out,
            Tone::Dim,
            &hint.chars().take(width).collect::<String>(),
        )?;
        queue!(self.out, Clear(ClearType::UntilNewLine))?;

        // The input line scrolls sideways to keep the cursor in view.
        let room = width - 3;
        let first = self.cursor.saturating_sub(room);
        let visible: String = self.input[first..].iter().take(room).collect();
        queue!(
            self.out,
            cursor::MoveTo(0, to_u16(height - 1)),
            Print("> "),
            Print(&visible),
            Clear(ClearType::UntilNewLine),
            cursor::MoveTo(to_u16(2 + self.cursor - first), to_u16(height - 1)),
            cursor::Show
        )?;
        self.out.flush()
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        // Also on errors and panics: never leave the terminal in raw mode.
        let _ = self.restore_terminal();
    }
}

impl Frontend for Screen {
    async fn next_input(&mut self) -> Input {
        loop {
            match self.events.next().await {
                Some(Ok(TermEvent::Key(k))) if k.kind != KeyEventKind::Release => {
                    if let Some(input) = self.key(k) {
                        return input;
                    }
                }
                Some(Ok(TermEvent::Paste(text))) => {
                    for c in text.chars().map(|c| if c.is_control() { ' ' } else { c }) {
                        self.input.insert(self.cursor, c);
                        self.cursor += 1;
                    }
                    return Input::Key;
                }
                Some(Ok(TermEvent::Resize(..))) => return Input::Key,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Input::Quit,
            }
        }
    }

    fn show(&mut self, chat: &Chat, updates: &[Update]) -> Result<(), Error> {
        let alarm = updates.iter().any(|u| match u {
            Update::Message(l) => !l.own && l.priority == Priority::Urgent,
            Update::Notice(Level::Alarm, _) => true,
            _ => false,
        });
        if alarm {
            // The terminal's bell: an urgent message must be noticed.
            queue!(self.out, Print("\u{7}"))?;
        }
        self.draw(chat)?;
        Ok(())
    }

    fn restore(&mut self, line: String) {
        self.input = line.chars().collect();
        self.cursor = self.input.len();
    }

    fn idle_timeout(&self) -> Option<Duration> {
        self.idle
    }
}

fn to_u16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

fn paint(out: &mut Stdout, tone: Tone, text: &str) -> io::Result<()> {
    let (color, bold) = match tone {
        Tone::Plain => (None, false),
        Tone::Own => (Some(Color::Green), false),
        Tone::Urgent | Tone::Alarm => (Some(Color::Red), true),
        Tone::Note => (Some(Color::Cyan), false),
        Tone::Dim => (Some(Color::DarkGrey), false),
        Tone::Warning => (Some(Color::Yellow), false),
    };
    if let Some(c) = color {
        queue!(out, SetForegroundColor(c))?;
    }
    if bold {
        queue!(out, SetAttribute(Attribute::Bold))?;
    }
    queue!(out, Print(text), SetAttribute(Attribute::Reset), ResetColor)
}

/// `07:31 bob: text (patient 943 476 5919)  ✓✓ read`, and its colour.
fn line_text(chat: &Chat, l: &Line, now: &Now) -> (Tone, String) {
    let mut text = format!("{} ", clock_time(&l.sent_at, now));
    if let Some(seq) = l.seq {
        text.push_str(&format!("#{seq} "));
    }
    if l.priority == Priority::Urgent {
        text.push_str("‼ URGENT ");
    }
    if l.kind == BodyKind::ClinicalNote {
        text.push_str("[CLINICAL NOTE] ");
    }
    if let Some(r) = l.reply_to_seq {
        text.push_str(&format!("↪#{r} "));
    }
    let who = if l.own { "you" } else { l.sender_name.as_str() };
    text.push_str(&format!("{who}: {}", l.text));
    if let Some(p) = &l.patient {
        text.push_str(&format!(" (patient {})", NhsNumber::grouped(p)));
    }
    if l.own {
        text.push_str("  ");
        text.push_str(&marks(chat, l));
    }
    let tone = if l.priority == Priority::Urgent {
        Tone::Urgent
    } else if l.kind == BodyKind::ClinicalNote {
        Tone::Note
    } else if l.own {
        Tone::Own
    } else {
        Tone::Plain
    };
    (tone, text)
}

/// Delivery and read marks for the user's own message.
fn marks(chat: &Chat, l: &Line) -> String {
    if l.failed {
        return "✗ not sent".into();
    }
    let Some(seq) = l.seq else {
        return "… sending".into();
    };
    let (delivered, read, others) = chat.reach(seq);
    match (delivered, read, others) {
        (_, _, 0) => "✓".into(),
        (_, r, n) if r == n => "✓✓ read".into(),
        (_, r, n) if r > 0 => format!("✓✓ read by {r}/{n}"),
        (d, _, n) if d == n => "✓ delivered".into(),
        (d, _, n) if d > 0 => format!("✓ delivered to {d}/{n}"),
        _ => "· sent".into(),
    }
}

/// Splits `text` into rows of at most `width` characters, at spaces where
/// possible; continuation rows are indented.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut rows = Vec::new();
    for (n, para) in text.split('\n').enumerate() {
        let mut rest: Vec<char> = para.chars().collect();
        let mut first = n == 0;
        loop {
            let indent = if first { 0 } else { 4 };
            let room = width.saturating_sub(indent).max(1);
            if rest.len() <= room {
                rows.push(format!(
                    "{}{}",
                    " ".repeat(indent),
                    rest.iter().collect::<String>()
                ));
                break;
            }
            let cut = rest[..room]
                .iter()
                .rposition(|c| *c == ' ')
                .filter(|&i| i > 0)
                .unwrap_or(room);
            let head: String = rest[..cut].iter().collect();
            rows.push(format!("{}{}", " ".repeat(indent), head.trim_end()));
            rest.drain(..cut);
            while rest.first() == Some(&' ') {
                rest.remove(0);
            }
            first = false;
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn long_lines_wrap_at_spaces_with_indented_continuations() {
        let rows = wrap("one two three four five six", 12);
        assert_eq!(rows, ["one two", "    three", "    four", "    five six"]);
        for r in wrap(&"x".repeat(30), 10) {
            assert!(r.chars().count() <= 10, "{r}");
        }
    }
}
