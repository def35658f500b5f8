//! The `wardline` binary against an in-memory stand-in server: enrolment,
//! administration, sending, receiving, re-sealing and failure reporting.

mod support;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::{FakeServer, TOTP_SECRET};
use wardline_protocol::Role;

type TestResult = Result<(), Box<dyn std::error::Error>>;

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
            .collect()
    }

    fn event(&self, name: &str) -> Value {
        self.events()
            .into_iter()
            .find(|e| e["event"] == name)
            .unwrap_or_else(|| panic!("no {name} event: {}\n{}", self.stdout, self.stderr))
    }
}

/// A workstation: one `wardline` home.
struct Client {
    home: PathBuf,
    passphrase: String,
    password: String,
}

impl Client {
    fn new(root: &tempfile::TempDir, name: &str) -> Self {
        Self {
            home: root.path().join(name),
            passphrase: format!("{name}'s keystore passphrase"),
            password: format!("{name}'s password"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_wardline"));
        c.arg("--home")
            .arg(&self.home)
            .args(args)
            .env("WARDLINE_PASSPHRASE", &self.passphrase)
            .env("WARDLINE_PASSWORD", &self.password)
            .env("WARDLINE_KDF_FAST", "1")
            .env_remove("WARDLINE_HOME")
            .env_remove("WARDLINE_SERVER")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().expect("run wardline");
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8(out.stdout).expect("utf-8"),
            stderr: String::from_utf8(out.stderr).expect("utf-8"),
        }
    }

    /// Enrols as a script would: reads the TOTP secret from the first JSON
    /// line, then writes the code to standard input.
    fn enrol(&self, server: &str, code: &str) -> Run {
        let mut child = self
            .command(&["--json", "enrol", "--server", server, "--code", code])
            .stdin(Stdio::piped())
            .spawn()
            .expect("start enrol");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        stdout.read_line(&mut first).expect("totp line");
        let totp: Value = serde_json::from_str(&first).expect("totp event is JSON");
        assert_eq!(totp["event"], "totp");
        assert_eq!(totp["totp_secret"], TOTP_SECRET);
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "123456").expect("write code");
        drop(stdin);
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).expect("rest of stdout");
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut stderr)
            .expect("stderr");
        let status = child.wait().expect("wait");
        Run {
            ok: status.success(),
            stdout: first + &rest,
            stderr,
        }
    }
}

/// A server with an enrolled admin, alice and bob.
fn ward() -> (FakeServer, tempfile::TempDir, Client, Client, Client) {
    let server = FakeServer::start();
    server
        .world
        .lock()
        .expect("lock")
        .add_user("admin", Role::Admin, "ADMIN-CODE");
    let root = tempfile::tempdir().expect("tempdir");
    let admin = Client::new(&root, "admin");
    let enrolled = admin.enrol(&server.url, "ADMIN-CODE");
    assert!(enrolled.ok, "{}", enrolled.stderr);
    let enrolled = enrolled.event("enrolled");
    assert!(enrolled["device_id"].is_string());

    let mut users = Vec::new();
    for name in ["alice", "bob"] {
        let created = admin.run(&[
            "--json",
            "admin",
            "user",
            "add",
            name,
            "--display-name",
            name,
        ]);
        assert!(created.ok, "{}", created.stderr);
        let code = created.event("user_created")["enrol_code"]
            .as_str()
            .expect("code")
            .to_owned();
        let client = Client::new(&root, name);
        let out = client.run(&[
            "--json",
            "enrol",
            "--server",
            &server.url,
            "--code",
            &code,
            "--totp",
            "123456",
        ]);
        assert!(out.ok, "{}", out.stderr);
        users.push(client);
    }
    let bob = users.pop().expect("bob");
    let alice = users.pop().expect("alice");
    (server, root, admin, alice, bob)
}

#[test]
fn a_message_travels_end_to_end_and_is_received_once() -> TestResult {
    let (_server, _root, _admin, alice, bob) = ward();
    let sent = alice.run(&[
        "--json",
        "send",
        "bob",
        "Bed 4: repeat ECG now",
        "--urgent",
        "--kind",
        "clinical-note",
        "--patient",
        "943 476 5919",
    ]);
    assert!(sent.ok, "{}", sent.stderr);
    let sent = sent.event("sent");
    assert_eq!(sent["seq"], 1);

    let inbox = bob.run(&["--json", "inbox"]);
    assert!(inbox.ok, "{}", inbox.stderr);
    let events = inbox.events();
    assert_eq!(events.len(), 1, "{}", inbox.stdout);
    let m = &events[0];
    assert_eq!(m["event"], "message");
    assert_eq!(m["text"], "Bed 4: repeat ECG now");
    assert_eq!(m["priority"], "urgent");
    assert_eq!(m["kind"], "clinical_note");
    assert_eq!(m["patient"], "9434765919");
    assert_eq!(m["msg_id"], sent["msg_id"]);
    assert_eq!(m["conv_id"], sent["conv_id"]);
    assert_eq!(m["conv_title"], "alice & bob");

    let again = bob.run(&["--json", "inbox"]);
    assert!(again.ok, "{}", again.stderr);
    assert!(again.stdout.is_empty(), "acknowledged: {}", again.stdout);
    let human = bob.run(&["inbox"]);
    assert_eq!(human.stdout.trim(), "No new messages.");

    // A reply by conversation id reuses the conversation.
    let conv = sent["conv_id"].as_str().ok_or("conv_id")?;
    let msg = sent["msg_id"].as_str().ok_or("msg_id")?;
    let reply = bob.run(&["--json", "send", conv, "On my way", "--reply-to", msg]);
    assert!(reply.ok, "{}", reply.stderr);
    assert_eq!(reply.event("sent")["conv_id"], conv);

    let got = alice.run(&["inbox"]);
    assert!(got.ok, "{}", got.stderr);
    assert!(
        got.stdout.contains("→ alice & bob: On my way"),
        "{}",
        got.stdout
    );
    Ok(())
}

#[test]
fn a_stale_device_list_is_resealed_once_under_the_same_id() -> TestResult {
    let (server, _root, _admin, alice, bob) = ward();
    server.world.lock().expect("lock").stale_devices_once = true;
    let sent = alice.run(&["--json", "send", "bob", "Obs due at 14:00"]);
    assert!(sent.ok, "{}", sent.stderr);
    let world = server.world.lock().expect("lock");
    assert_eq!(world.invalid_envelopes, 1);
    let stored = world.stored();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        serde_json::to_value(stored[0].msg_id)?,
        sent.event("sent")["msg_id"]
    );
    drop(world);
    let inbox = bob.run(&["--json", "inbox"]);
    assert_eq!(inbox.event("message")["text"], "Obs due at 14:00");
    Ok(())
}

#[test]
fn a_tampered_message_is_reported_and_does_not_stop_the_others() -> TestResult {
    let (server, _root, _admin, alice, bob) = ward();
    assert!(alice.run(&["send", "bob", "first"]).ok);
    assert!(alice.run(&["send", "bob", "second"]).ok);
    server.world.lock().expect("lock").tamper_with_newest();
    assert!(alice.run(&["send", "bob", "third"]).ok);

    let inbox = bob.run(&["--json", "inbox"]);
    assert!(inbox.ok, "{}", inbox.stderr);
    let texts: Vec<_> = inbox
        .events()
        .into_iter()
        .filter(|e| e["event"] == "message")
        .map(|e| e["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(texts, vec![Some("first".into()), Some("third".into())]);
    let bad = inbox.event("undecryptable");
    assert_eq!(bad["seq"], 2);
    assert!(
        inbox.stderr.contains("could not be opened"),
        "{}",
        inbox.stderr
    );
    Ok(())
}

#[test]
fn login_renews_the_session_or_registers_a_new_device() -> TestResult {
    let (server, root, _admin, alice, bob) = ward();
    let again = alice.run(&["--json", "login", "--username", "alice", "--totp", "123456"]);
    assert!(again.ok, "{}", again.stderr);
    assert_eq!(again.event("logged_in")["new_device"], false);

    let laptop = Client {
        home: root.path().join("alice-laptop"),
        ..Client::new(&root, "alice")
    };
    let new = laptop.run(&[
        "--json",
        "login",
        "--server",
        &server.url,
        "--username",
        "alice",
        "--totp",
        "123456",
    ]);
    assert!(new.ok, "{}", new.stderr);
    assert_eq!(new.event("logged_in")["new_device"], true);

    assert!(bob.run(&["send", "alice", "Both your devices get this"]).ok);
    for device in [&alice, &laptop] {
        let inbox = device.run(&["--json", "inbox"]);
        assert_eq!(
            inbox.event("message")["text"],
            "Both your devices get this",
            "{}",
            inbox.stderr
        );
    }
    Ok(())
}

#[test]
fn wrong_passphrase_and_server_errors_are_single_clear_lines() -> TestResult {
    let (_server, _root, admin, alice, _bob) = ward();
    let wrong = Client {
        home: alice.home.clone(),
        passphrase: "not the passphrase".into(),
        password: alice.password.clone(),
    };
    let out = wrong.run(&["inbox"]);
    assert!(!out.ok);
    assert!(out.stderr.contains("Wrong passphrase"), "{}", out.stderr);

    let forbidden = alice.run(&["admin", "user", "add", "eve", "--display-name", "Eve"]);
    assert!(!forbidden.ok);
    assert_eq!(forbidden.stderr.lines().count(), 1, "{}", forbidden.stderr);
    assert!(
        forbidden.stderr.contains("Only administrators"),
        "{}",
        forbidden.stderr
    );

    let taken = admin.run(&[
        "--json",
        "admin",
        "user",
        "add",
        "alice",
        "--display-name",
        "Alice",
    ]);
    assert!(!taken.ok);
    assert_eq!(taken.event("error")["code"], "conflict");

    let nobody = alice.run(&["send", "nobody", "hello?"]);
    assert!(!nobody.ok);
    assert!(nobody.stderr.contains("'nobody'"), "{}", nobody.stderr);
    Ok(())
}

#[test]
fn an_ended_session_says_how_to_log_in_again() -> TestResult {
    let (server, _root, _admin, alice, _bob) = ward();
    server.world.lock().expect("lock").end_sessions();
    let out = alice.run(&["--json", "inbox"]);
    assert!(!out.ok);
    assert_eq!(out.event("error")["code"], "unauthenticated");
    assert!(
        out.stderr
            .contains("Your session has ended; run `wardline login --username alice`."),
        "{}",
        out.stderr
    );
    let back = alice.run(&["login", "--username", "alice", "--totp", "123456"]);
    assert!(back.ok, "{}", back.stderr);
    assert!(alice.run(&["inbox"]).ok);
    Ok(())
}
