//! The real Wardline server, run in-process on `127.0.0.1:0` over a
//! temporary directory, and the `wardline` binary run against it as a child
//! process with deadlines on everything the test waits for.
//!
//! The server gets its own multi-threaded runtime on a background thread:
//! the tests drive the client with blocking `std::process` calls, which
//! would starve a runtime shared with them.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod client;
pub mod pty;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;
use wardline_server::config::Tls;
use wardline_server::{Clock, Config, Server};

/// The longest a test waits for the server or the client to do something.
/// Generous: Argon2 on a busy two-core machine is slow, and the client has
/// its own shorter timeouts, so this only fires on a real hang.
pub const WAIT: Duration = Duration::from_secs(90);

/// A running server. Dropping it stops the server and removes its data.
pub struct TestServer {
    /// Where clients connect: `ws://127.0.0.1:PORT/v1`, or `wss://` with TLS.
    pub url: String,
    /// The bootstrap admin's one-time enrolment code.
    pub admin_code: String,
    /// With TLS: the certificate's SHA-256 fingerprint as the server prints it.
    pub fingerprint: Option<String>,
    clock: Clock,
    session_ttl: Duration,
    data_dir: PathBuf,
    addr: std::net::SocketAddr,
    tls: Tls,
    /// The listening socket bound at start, until the first launch takes
    /// it: binding a probed port again later races other tests' client
    /// sockets for the same ephemeral port.
    reserved: Option<std::net::TcpListener>,
    serving: Option<Serving>,
    // Dropped last (fields drop in order), once the server has let go of it.
    _dir: tempfile::TempDir,
}

/// Binds the port a stopped server used, for its restart. A client socket
/// of another test may hold that port as its ephemeral port for a moment;
/// binding is retried until it is free, within the wait.
async fn bind_again(addr: std::net::SocketAddr) -> tokio::net::TcpListener {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the server's port stayed in use: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("bind the loopback port: {e}"),
        }
    }
}

/// The stop switch of a server that is running.
struct Serving {
    stop: watch::Sender<bool>,
    stopped: mpsc::Receiver<()>,
}

impl TestServer {
    /// A server without TLS (allowed: it listens on loopback).
    pub fn start() -> Self {
        Self::start_with(Tls::Off)
    }

    /// A server with a self-signed development certificate (`--dev-tls`).
    pub fn start_tls() -> Self {
        Self::start_with(Tls::Dev)
    }

    fn start_with(tls: Tls) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let clock = Clock::system();
        let reserved = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let addr = reserved.local_addr().expect("bound address");
        let mut server = Self {
            url: String::new(),
            admin_code: String::new(),
            fingerprint: None,
            clock,
            session_ttl: Duration::ZERO,
            data_dir: dir.path().to_path_buf(),
            addr,
            tls,
            reserved: Some(reserved),
            serving: None,
            _dir: dir,
        };
        server.launch();
        server.admin_code = std::fs::read_to_string(server.data_dir.join("bootstrap-admin.code"))
            .expect("bootstrap code file")
            .trim()
            .to_owned();
        server
    }

    /// Opens the store in the data directory and serves on the same port.
    fn launch(&mut self) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        let listener = match self.reserved.take() {
            Some(std) => {
                std.set_nonblocking(true).expect("a non-blocking listener");
                let _in_runtime = runtime.enter();
                tokio::net::TcpListener::from_std(std).expect("the reserved listener")
            }
            None => runtime.block_on(bind_again(self.addr)),
        };
        let mut config = Config::new(self.addr, self.data_dir.clone());
        config.tls = self.tls.clone();
        self.session_ttl = Duration::from_millis(
            u64::try_from(config.session_ttl_ms).expect("a positive session lifetime"),
        );
        let server = Server::open(config, None, self.clock.clone()).expect("server opens");
        self.fingerprint = server.tls.as_ref().map(|t| t.fingerprint.clone());
        let (stop, stop_rx) = watch::channel(false);
        let (done, stopped) = mpsc::channel();
        std::thread::Builder::new()
            .name("wardline-server".into())
            .spawn(move || {
                runtime.block_on(server.run(listener, None, stop_rx));
                // The runtime (and with it every connection task) goes here.
                drop(runtime);
                let _ = done.send(());
            })
            .expect("server thread");
        let scheme = if self.fingerprint.is_some() {
            "wss"
        } else {
            "ws"
        };
        self.url = format!("{scheme}://{}/v1", self.addr);
        self.serving = Some(Serving { stop, stopped });
    }

    /// Stops the server: every connection is cut, as in a crash or a
    /// restart. Returns once it has stopped.
    pub fn stop(&mut self) {
        if let Some(r) = self.serving.take() {
            let _ = r.stop.send(true);
            // Bounded: a server that fails to stop must not hang the test run.
            r.stopped
                .recv_timeout(WAIT)
                .expect("the server stops within the wait");
        }
    }

    /// Starts the stopped server again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The development certificate (PEM), with TLS.
    pub fn dev_certificate(&self) -> PathBuf {
        self.data_dir.join("dev-tls").join("cert.pem")
    }

    /// The port the server listens on.
    pub fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// The TOTP code for `secret` at the server's current time.
    pub fn totp_now(&self, secret_b32: &str) -> String {
        totp_code(secret_b32, self.clock.now_secs())
    }

    /// Moves the server's clock to the next TOTP step and returns the code
    /// for it. The server spends each step once per user (replay
    /// protection), so a login after an enrolment or another login needs a
    /// later step; moving the clock gets one without waiting 30 seconds.
    pub fn next_totp(&self, secret_b32: &str) -> String {
        self.clock.advance_ms(30_000);
        self.totp_now(secret_b32)
    }

    /// Moves the server's clock past the session lifetime, so every session
    /// has ended the way it would after a week.
    pub fn expire_sessions(&self) {
        let ms = self.session_ttl.as_millis() + 60_000;
        self.clock
            .advance_ms(i64::try_from(ms).expect("a week fits in i64 milliseconds"));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = self.serving.take() {
            let _ = r.stop.send(true);
            let _ = r.stopped.recv_timeout(WAIT);
        }
    }
}

/// RFC 6238 code (SHA-1, 6 digits, 30 s): what an authenticator app shows.
pub fn totp_code(secret_b32: &str, now_secs: u64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret_b32).expect("base32 TOTP secret");
    totp_rs::Builder::new()
        .with_secret(secret.as_bytes().to_vec())
        .build()
        .expect("TOTP parameters")
        .generate(now_secs)
        .to_string()
}

/// What a finished `wardline` run printed.
pub struct Run {
    pub ok: bool,
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Every line of standard output as JSON (for `--json` runs).
    pub fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
            .collect()
    }

    /// The first event called `name`.
    pub fn event(&self, name: &str) -> Value {
        self.events()
            .into_iter()
            .find(|e| e["event"] == name)
            .unwrap_or_else(|| panic!("no {name} event: {}\n{}", self.stdout, self.stderr))
    }
}

/// A `wardline` process in flight: its standard output arrives line by
/// line, so a test can answer a prompt after reading what came before it.
pub struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stdout: String,
    stderr: Option<JoinHandle<String>>,
}

impl Running {
    /// Starts `command` with piped standard streams.
    pub fn start(command: &mut Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wardline");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        Self {
            stdin: child.stdin.take(),
            child,
            lines,
            stdout: String::new(),
            stderr: Some(stderr),
        }
    }

    /// The next line of standard output, or `None` once the process has
    /// closed it. Kills the process and fails the test after [`WAIT`].
    pub fn next_line(&mut self) -> Option<String> {
        match self.lines.recv_timeout(WAIT) {
            Ok(line) => {
                self.stdout.push_str(&line);
                self.stdout.push('\n');
                Some(line)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                let stderr = self.stderr_text();
                panic!(
                    "wardline printed nothing for {WAIT:?}; output so far:\n{}\n{stderr}",
                    self.stdout
                );
            }
        }
    }

    /// Writes `line` to standard input and closes it. A process that has
    /// already exited (after an error) is not a test failure here: its exit
    /// status and output tell what happened.
    pub fn answer(&mut self, line: &str) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "{line}");
        }
    }

    /// Writes `line` to standard input, keeping it open for more.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("standard input still open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .expect("write to wardline");
    }

    /// Reads standard output until an event satisfies `wanted`, and
    /// returns it. Fails the test if output ends first (or after [`WAIT`]).
    pub fn wait_event(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let Some(line) = self.next_line() else {
                let stderr = self.stderr_text();
                panic!(
                    "output ended before the awaited event:\n{}\n{stderr}",
                    self.stdout
                );
            };
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && wanted(&v)
            {
                return v;
            }
        }
    }

    /// Reads the rest of the output and the exit status.
    pub fn finish(mut self) -> Run {
        self.stdin = None;
        while self.next_line().is_some() {}
        // Standard output is closed, so the process is exiting; bound the
        // wait anyway.
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for wardline") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("wardline closed its output but did not exit");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Run {
            ok: status.success(),
            code: status.code(),
            stdout: std::mem::take(&mut self.stdout),
            stderr: self.stderr_text(),
        }
    }

    fn stderr_text(&mut self) -> String {
        self.stderr
            .take()
            .map(|h| h.join().expect("stderr reader"))
            .unwrap_or_default()
    }
}

/// Whether `home` holds a keystore.
pub fn has_keystore(home: &Path) -> bool {
    home.join("keystore.json").exists()
}
