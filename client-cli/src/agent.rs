//! The unlock agent: keeps the keystore's data key in memory for a short
//! while, so a clinician types the passphrase once and not before every
//! command, and forgets it when told (`wardline lock`) or after a time
//! without use.
//!
//! The agent is the same `wardline` binary run as `wardline agent`, in the
//! background. It takes the 32-byte data key on its standard input (never
//! on the command line or in the environment, where other users could see
//! it), listens on the Unix socket `<home>/agent.sock` (mode 0600 in the
//! 0700 home directory), and answers only processes of the user who owns
//! the home directory (checked with the socket's peer credentials). It
//! holds the data key only: the passphrase itself is never kept.
//!
//! One request per connection, one line each way:
//!
//! | request  | answer                                   |
//! |----------|------------------------------------------|
//! | `key`    | the data key in base64; the idle timer restarts |
//! | `status` | seconds left before it locks             |
//! | `lock`   | `locked`, then the agent zeroizes the key and exits |
//!
//! It also exits, forgetting the key, when the idle time passes without a
//! `key` request, or when the keystore file disappears (a wipe).

use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixListener;
use wardline_protocol::b64;
use zeroize::Zeroizing;

use crate::keystore::Keystore;

/// The socket's file name inside the home directory.
pub const SOCKET_NAME: &str = "agent.sock";

/// How long a client waits for the agent: it answers from memory, so a
/// slow answer means it is stuck, and asking for the passphrase is better.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `start` waits for a new agent to be ready.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the agent could not be started or run.
#[derive(Debug, Error)]
pub enum AgentError {
    /// An operating-system call failed.
    #[error("cannot {action}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The agent started but did not say it was ready.
    #[error("the background unlock agent did not start")]
    NotReady,
    /// What the agent was given on standard input is not a data key.
    #[error("the agent expects a 32-byte key in base64 on standard input")]
    BadKey,
}

fn io_err(action: &'static str) -> impl FnOnce(io::Error) -> AgentError {
    move |source| AgentError::Io { action, source }
}

/// Where the agent of `home` listens.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join(SOCKET_NAME)
}

/// Sends one request to the agent of `home` and returns its answer, or
/// `None` when no agent answers.
fn ask(home: &Path, request: &str) -> Option<Zeroizing<String>> {
    let mut stream = UnixStream::connect(socket_path(home)).ok()?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT)).ok()?;
    stream.write_all(format!("{request}\n").as_bytes()).ok()?;
    let mut answer = Zeroizing::new(String::with_capacity(64));
    BufReader::new(stream.take(256))
        .read_line(&mut answer)
        .ok()?;
    let trimmed = answer.trim_end().len();
    answer.truncate(trimmed);
    (!answer.is_empty()).then_some(answer)
}

/// The data key from the agent of `home`, if one is running.
pub fn fetch_key(home: &Path) -> Option<Zeroizing<[u8; 32]>> {
    let answer = ask(home, "key")?;
    let bytes = Zeroizing::new(b64::decode(&answer).ok()?);
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != key.len() {
        return None;
    }
    key.copy_from_slice(&bytes);
    Some(key)
}

/// How long until the agent of `home` locks, if one is running.
pub fn time_left(home: &Path) -> Option<Duration> {
    ask(home, "status")?.parse().ok().map(Duration::from_secs)
}

/// Tells the agent of `home` to forget the key and exit. Returns whether
/// one was running. A socket left behind by an agent that died is removed.
pub fn lock(home: &Path) -> bool {
    let was_running = ask(home, "lock").is_some_and(|a| a.as_str() == "locked");
    if !was_running {
        let _ = std::fs::remove_file(socket_path(home));
    }
    was_running
}

/// Starts an agent for `home` holding `data_key`, which locks after `idle`
/// without use, replacing any agent already running there. Returns once
/// the agent is ready to answer.
pub fn start(home: &Path, data_key: &[u8; 32], idle: Duration) -> Result<(), AgentError> {
    lock(home);
    let exe = std::env::current_exe().map_err(io_err("find the wardline program"))?;
    let mut child = Command::new(exe)
        .arg("--home")
        .arg(home)
        .arg("agent")
        .arg("--idle-timeout")
        .arg(format!("{}s", idle.as_secs().max(1)))
        .env_remove("WARDLINE_PASSPHRASE")
        .env_remove("WARDLINE_NEW_PASSPHRASE")
        .env_remove("WARDLINE_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own process group: a Ctrl-C meant for a command in the same
        // terminal must not end the agent.
        .process_group(0)
        .spawn()
        .map_err(io_err("start the unlock agent"))?;
    let mut stdin = child.stdin.take().ok_or(AgentError::NotReady)?;
    let key = Zeroizing::new(format!("{}\n", b64::encode(data_key)));
    stdin
        .write_all(key.as_bytes())
        .map_err(io_err("hand the key to the unlock agent"))?;
    drop(stdin);
    let stdout = child.stdout.take().ok_or(AgentError::NotReady)?;
    // Read "ready" on a thread so the wait is bounded.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(line) if line.trim() == "ready" => Ok(()),
        _ => {
            let _ = child.kill();
            Err(AgentError::NotReady)
        }
    }
}

/// Runs the agent: reads the data key from standard input, listens on the
/// socket and answers until locked, idle for `idle`, or the keystore is gone.
pub async fn serve(home: &Path, idle: Duration) -> Result<(), AgentError> {
    let key = read_key_from_stdin()?;
    let path = socket_path(home);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(io_err("listen on the agent socket"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err("restrict the agent socket"))?;
    let ours = std::fs::metadata(&path)
        .map_err(io_err("inspect the agent socket"))?
        .ino();
    let owner = std::fs::metadata(home)
        .map_err(io_err("inspect the home directory"))?
        .uid();
    {
        let mut out = io::stdout().lock();
        out.write_all(b"ready\n")
            .and_then(|()| out.flush())
            .map_err(io_err("report readiness"))?;
    }

    let deadline = tokio::time::sleep(idle);
    tokio::pin!(deadline);
    loop {
        let accepted = tokio::select! {
            () = &mut deadline => break,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else { continue };
        let same_user = stream.peer_cred().is_ok_and(|c| c.uid() == owner);
        if !same_user {
            continue;
        }
        if !Keystore::exists(home) {
            break;
        }
        let (read, mut write) = stream.into_split();
        let mut request = String::new();
        let mut reader = tokio::io::BufReader::new(read);
        let got = tokio::time::timeout(CLIENT_TIMEOUT, reader.read_line(&mut request)).await;
        if !matches!(got, Ok(Ok(n)) if n > 0) {
            continue;
        }
        let answer = match request.trim() {
            "key" => {
                deadline.as_mut().reset(tokio::time::Instant::now() + idle);
                Zeroizing::new(format!("{}\n", b64::encode(key.as_ref())))
            }
            "status" => {
                let left = deadline
                    .deadline()
                    .saturating_duration_since(tokio::time::Instant::now());
                Zeroizing::new(format!("{}\n", left.as_secs()))
            }
            "lock" => {
                let _ = write.write_all(b"locked\n").await;
                break;
            }
            _ => continue,
        };
        let _ = tokio::time::timeout(CLIENT_TIMEOUT, write.write_all(answer.as_bytes())).await;
    }
    drop(key);
    // Only our own socket: a newer agent may have replaced it.
    if std::fs::metadata(&path).is_ok_and(|m| m.ino() == ours) {
        let _ = std::fs::remove_file(&path);
    }
    Ok(())
}

fn read_key_from_stdin() -> Result<Zeroizing<[u8; 32]>, AgentError> {
    let mut line = Zeroizing::new(String::with_capacity(64));
    io::stdin()
        .lock()
        .take(256)
        .read_line(&mut line)
        .map_err(io_err("read the key"))?;
    let bytes = Zeroizing::new(b64::decode(line.trim()).map_err(|_| AgentError::BadKey)?);
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != key.len() {
        return Err(AgentError::BadKey);
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// Parses a duration as people write it: `90s`, `5m`, `1h`, `1h30m`, or a
/// plain number of seconds. `0` means never.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let bad = || format!("'{text}' is not a duration; write it like 90s, 5m or 1h");
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = total.saturating_add(n.saturating_mul(unit));
        number.clear();
    }
    if !number.is_empty() || text.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// `5 min`, `90 s`, `1 h 30 min`: a duration for people.
pub fn describe_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / 3600, (secs % 3600) / 60, secs % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, 0) => format!("{m} min"),
        (0, m, s) => format!("{m} min {s} s"),
        (h, 0, _) => format!("{h} h"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_people_write_them() {
        for (text, secs) in [
            ("90", 90),
            ("90s", 90),
            ("5m", 300),
            ("1h30m", 5400),
            ("0", 0),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for bad in ["", "5x", "m", "5m3", "-1"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_are_described_in_words() {
        assert_eq!(describe_duration(Duration::from_secs(300)), "5 min");
        assert_eq!(describe_duration(Duration::from_secs(45)), "45 s");
        assert_eq!(describe_duration(Duration::from_secs(5400)), "1 h 30 min");
    }
}
