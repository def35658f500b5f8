//! `wardline` run under a pseudo-terminal, as a person at a terminal runs
//! it: the test reads what it draws and types keys.

use std::io::{Read as _, Write as _};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portable_pty::{Child, CommandBuilder, MasterPty, PtySize, native_pty_system};

use super::WAIT;

/// A process on a pseudo-terminal.
pub struct Terminal {
    child: Box<dyn Child + Send + Sync>,
    // Kept open: closing the master hangs up the terminal.
    _master: Box<dyn MasterPty + Send>,
    writer: Box<dyn std::io::Write + Send>,
    output: mpsc::Receiver<Vec<u8>>,
    /// Everything drawn so far, escape sequences included.
    pub screen: String,
}

impl Terminal {
    /// Starts `program args` on a 100x30 terminal with `env` (and nothing
    /// else from this process's environment that starts with WARDLINE_).
    pub fn start(program: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 30,
                cols: 100,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("open a pseudo-terminal");
        let mut cmd = CommandBuilder::new(program);
        cmd.args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("WARDLINE_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("TERM", "xterm-256color");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = pair
            .slave
            .spawn_command(cmd)
            .expect("start under the terminal");
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().expect("terminal reader");
        let writer = pair.master.take_writer().expect("terminal writer");
        let (tx, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Self {
            child,
            _master: pair.master,
            writer,
            output,
            screen: String::new(),
        }
    }

    /// Waits until the output drawn since `from` (a byte offset into
    /// [`Terminal::screen`]) contains `needle`; returns where it ends.
    /// Fails the test after [`WAIT`].
    pub fn wait_for(&mut self, from: usize, needle: &str) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(at) = self.screen.get(from..).and_then(|s| s.find(needle)) {
                return from + at + needle.len();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left.min(Duration::from_secs(1))) {
                Ok(bytes) => self.screen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => {
                    let _ = self.child.kill();
                    panic!(
                        "the terminal never showed {needle:?}; it showed:\n{}",
                        printable(&self.screen[from.min(self.screen.len())..])
                    );
                }
            }
        }
    }

    /// Types `keys`.
    pub fn type_keys(&mut self, keys: &str) {
        self.writer
            .write_all(keys.as_bytes())
            .and_then(|()| self.writer.flush())
            .expect("type into the terminal");
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self) -> u32 {
        let deadline = Instant::now() + WAIT;
        loop {
            // Keep draining, so the process never blocks on a full terminal.
            while let Ok(bytes) = self.output.try_recv() {
                self.screen.push_str(&String::from_utf8_lossy(&bytes));
            }
            if let Some(status) = self.child.try_wait().expect("wait for the process") {
                return status.exit_code();
            }
            assert!(Instant::now() < deadline, "the process did not exit");
            if let Ok(bytes) = self.output.recv_timeout(Duration::from_millis(50)) {
                self.screen.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Output with escape sequences made visible, for failure messages.
pub fn printable(s: &str) -> String {
    s.replace('\x1b', "\\e")
}
