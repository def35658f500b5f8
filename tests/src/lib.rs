//! End-to-end test support: runs the real `wardline-server` and `wardline`
//! binaries as separate processes over a temporary directory.
//!
//! The binaries are the ones `cargo test --workspace` builds next to this
//! test (in the same target profile directory).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

pub mod ws;

/// How long any single step may take before the test fails.
pub const STEP: Duration = Duration::from_secs(30);

/// The directory holding the workspace's binaries for this profile.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .expect("test runs from target/<profile>/deps")
        .to_path_buf()
}

/// Path of a workspace binary, failing clearly if it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run the suite with `cargo test --workspace`, which builds it",
        p.display()
    );
    p
}

/// The current TOTP code for a base32 secret.
pub fn totp_now(secret_b32: &str) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret_b32).expect("base32 secret");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    totp_rs::Builder::new()
        .with_secret(secret.as_bytes().to_vec())
        .build()
        .expect("totp")
        .generate(now)
        .to_string()
}

/// A `wardline-server` process over a temporary data directory.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// `ws://127.0.0.1:PORT/v1`
    pub url: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// `127.0.0.1:PORT` of the operators' listener (`/healthz`, `/metrics`).
    pub admin_addr: String,
    _stdout: std::thread::JoinHandle<()>,
}

impl ServerProcess {
    /// Starts the server on an ephemeral loopback port and waits until it listens.
    pub fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[])
    }

    /// [`Self::start`] with extra command-line flags.
    pub fn start_with(data_dir: &Path, flags: &[&str]) -> Self {
        let mut child = Command::new(bin("wardline-server"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(flags)
            .env("WARDLINE_LOG", "warn")
            // Return freed memory at once, so RSS measures live memory.
            .env("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")
            .env_remove("WARDLINE_DATA_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start wardline-server");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut admin_addr = String::new();
        let url = loop {
            let line = rx
                .recv_timeout(STEP)
                .expect("server prints its address within 30 s");
            if let Some(rest) = line.strip_prefix("admin listening on http://") {
                admin_addr = rest.trim().to_string();
            }
            if let Some(rest) = line.strip_prefix("listening on ") {
                break rest.trim().to_string();
            }
        };
        Self {
            child,
            url,
            admin_addr,
            data_dir: data_dir.to_path_buf(),
            _stdout: reader,
        }
    }

    /// The bootstrap admin's one-time code.
    pub fn bootstrap_code(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("bootstrap-admin.code"))
            .expect("bootstrap-admin.code")
            .trim()
            .to_string()
    }

    /// The server's resident memory, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    /// The most resident memory the server has had so far (its high-water
    /// mark), from /proc.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }

    fn status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("server process status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("{field} line"))
    }

    /// `GET /healthz`: the status code and body.
    pub fn healthz(&self) -> (u16, String) {
        use std::io::{Read as _, Write as _};
        let mut tcp = std::net::TcpStream::connect(&self.admin_addr).expect("admin listener");
        tcp.set_read_timeout(Some(STEP)).expect("read timeout");
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .expect("request");
        let mut reply = String::new();
        tcp.read_to_string(&mut reply).expect("reply");
        let status = reply
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
        (status, body.to_string())
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A clinician's or admin's workstation: a `wardline` home directory.
#[derive(Debug)]
pub struct Cli {
    /// `--home`.
    pub home: PathBuf,
    /// Passphrase of the keystore.
    pub passphrase: String,
    /// Account password.
    pub password: String,
}

/// What a finished `wardline` process printed.
#[derive(Debug)]
pub struct Output {
    /// Exit status success.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Every stdout line that is a JSON object.
    pub fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    /// The first event named `name`.
    pub fn event(&self, name: &str) -> Value {
        self.events()
            .into_iter()
            .find(|e| e["event"] == name)
            .unwrap_or_else(|| panic!("no `{name}` event in output:\n{self:?}"))
    }
}

impl Cli {
    /// A new, empty home under `root`.
    pub fn new(root: &Path, name: &str) -> Self {
        Self {
            home: root.join(name),
            passphrase: format!("{name} keystore passphrase"),
            password: format!("{name} account password"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("wardline"));
        c.arg("--home")
            .arg(&self.home)
            .arg("--json")
            .args(args)
            .env("WARDLINE_PASSPHRASE", &self.passphrase)
            .env("WARDLINE_PASSWORD", &self.password)
            .env("WARDLINE_KDF_FAST", "1")
            .env_remove("WARDLINE_HOME")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs `wardline --home H --json ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        let child = self.command(args).spawn().expect("start wardline");
        finish(child, None)
    }

    /// Enrols with `code`: reads the TOTP secret the CLI prints, and answers
    /// its prompt with a code computed from it, as a person with an
    /// authenticator app would.
    pub fn enrol(&self, server: &str, code: &str) -> (Output, String) {
        let mut child = self
            .command(&["enrol", "--server", server, "--code", code])
            .spawn()
            .expect("start wardline enrol");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        stdout.read_line(&mut first).expect("read the totp event");
        let event: Value = serde_json::from_str(&first)
            .unwrap_or_else(|e| panic!("first line is the totp event, got {first:?}: {e}"));
        let secret = event["totp_secret"]
            .as_str()
            .expect("totp_secret")
            .to_string();
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "{}", totp_now(&secret)).expect("answer the code prompt");
        drop(stdin);
        let mut out = finish(child, Some(stdout));
        out.stdout.insert_str(0, &first);
        (out, secret)
    }
}

fn finish(mut child: Child, stdout: Option<BufReader<ChildStdout>>) -> Output {
    drop(child.stdin.take());
    let mut out_pipe = stdout
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>)
        .unwrap_or_else(|| Box::new(child.stdout.take().expect("stdout")));
    let mut err_pipe = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let deadline = std::time::Instant::now() + STEP;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("wardline did not finish within {STEP:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        ok: status.success(),
        stdout: out_t.join().expect("stdout reader"),
        stderr: err_t.join().expect("stderr reader"),
    }
}

/// Every byte of every file under `dir`, for scanning.
pub fn all_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let p = entry.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).expect("read file")));
            }
        }
    }
    out
}

/// Files under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    all_bytes(dir)
        .into_iter()
        .filter(|(_, b)| b.windows(needle.len()).any(|w| w == needle))
        .map(|(p, _)| p)
        .collect()
}
