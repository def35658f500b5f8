//! The progress line on standard error: rewritten in place on a terminal,
//! one line every few seconds otherwise (so logs stay readable).

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

/// Prints progress for one phase.
#[derive(Debug)]
pub struct Progress {
    quiet: bool,
    tty: bool,
    last: Option<Instant>,
    dirty: bool,
}

/// Off a terminal, print at most this often.
const LOG_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    /// A progress printer; `quiet` prints nothing.
    pub fn new(quiet: bool) -> Self {
        Self {
            quiet,
            tty: std::io::stderr().is_terminal(),
            last: None,
            dirty: false,
        }
    }

    /// Shows `line` as the current state.
    pub fn update(&mut self, line: &str) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
            self.dirty = true;
        } else if self.last.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            let _ = writeln!(err, "{line}");
            self.last = Some(Instant::now());
        }
    }

    /// Prints a line that stays (a phase finished).
    pub fn note(&mut self, line: &str) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.dirty {
            let _ = write!(err, "\r\x1b[2K");
            self.dirty = false;
        }
        let _ = writeln!(err, "{line}");
    }

    /// Ends the in-place line.
    pub fn finish(&mut self) {
        if self.dirty && !self.quiet {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.dirty = false;
        }
    }
}
