//! A progress bar on standard error, for long runs at a terminal only:
//! never in a pipe or a log file, where it would be noise.

use std::io::{self, IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

/// Runs shorter than this many steps finish before a bar would help.
pub const THRESHOLD: usize = 300;
const WIDTH: usize = 30;
const REDRAW: Duration = Duration::from_millis(100);

/// A bar counting up to a total.
#[derive(Debug)]
pub struct Progress {
    label: &'static str,
    total: usize,
    done: usize,
    visible: bool,
    drawn: Option<Instant>,
}

impl Progress {
    /// A bar for `total` steps; it shows only when standard error is a
    /// terminal and `total` is at least [`THRESHOLD`].
    pub fn new(label: &'static str, total: usize) -> Self {
        Self {
            label,
            total,
            done: 0,
            visible: shows(total, io::stderr().is_terminal()),
            drawn: None,
        }
    }

    /// One step done.
    pub fn step(&mut self) {
        self.done = (self.done + 1).min(self.total);
        if self.visible && self.drawn.is_none_or(|t| t.elapsed() >= REDRAW) {
            self.draw();
        }
    }

    fn draw(&mut self) {
        self.drawn = Some(Instant::now());
        let mut err = io::stderr().lock();
        // A bar that fails to draw only costs the user the bar.
        let _ = write!(err, "{}", render(self.label, self.done, self.total));
        let _ = err.flush();
    }

    /// Clears the bar, so what follows starts on a clean line.
    pub fn finish(self) {
        if self.visible && self.drawn.is_some() {
            let mut err = io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

/// Whether a run of `total` steps shows a bar.
fn shows(total: usize, to_terminal: bool) -> bool {
    total >= THRESHOLD && to_terminal
}

/// One frame of the bar, drawn over the previous one.
fn render(label: &str, done: usize, total: usize) -> String {
    let filled = (done * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH)
        .min(WIDTH);
    format!(
        "\r{label} [{}{}] {done}/{total}",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_runs_show_a_bar_only_at_a_terminal() {
        assert!(shows(THRESHOLD, true));
        assert!(shows(5_000, true));
        assert!(!shows(5_000, false), "never in a pipe or a log file");
        assert!(!shows(THRESHOLD - 1, true));
    }

    #[test]
    fn the_bar_fills_in_proportion() {
        assert_eq!(
            render("exporting", 0, 600),
            format!("\rexporting [{}] 0/600", " ".repeat(WIDTH))
        );
        assert_eq!(
            render("exporting", 300, 600),
            format!("\rexporting [{}{}] 300/600", "#".repeat(15), " ".repeat(15))
        );
        assert_eq!(
            render("exporting", 600, 600),
            format!("\rexporting [{}] 600/600", "#".repeat(WIDTH))
        );
    }

    #[test]
    fn short_runs_never_show_a_bar() {
        let mut p = Progress::new("exporting", THRESHOLD - 1);
        assert!(!p.visible);
        p.step();
        assert_eq!(p.done, 1);
        p.finish();
    }
}
