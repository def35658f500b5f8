//! Governance end to end: a real `wardline-server` process and real
//! `wardline` processes.
//!
//! * A remote wipe reaches a clinician's device that is running `wardline
//!   chat` at once, and an offline device at its next command; each
//!   destroys its keystore, confirms with a signature, and exits 3; a copy
//!   of the old keystore can no longer do anything; the same home can then
//!   be enrolled by another user; the audit log, with the wipes in it,
//!   verifies; and a clinician cannot read it.
//! * A clinical note exported to a FHIR bundle verifies, and a copy with
//!   one character of its text changed does not.
//!
//! Every wait has a deadline; nothing sleeps and hopes.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use wardline_tests::{Cli, Output, ServerProcess, bin, files_containing};

const NOTE: &str = "Start IV co-amoxiclav 1.2 g tds; review cultures at 48 h";
const PATIENT: &str = "9434765919";

/// A long-lived `wardline --json` process (a chat) whose standard input is
/// kept open, with its output read line by line as it comes.
struct Running {
    child: Child,
    _stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    stdout: String,
    stderr: Option<JoinHandle<String>>,
}

impl Running {
    /// Starts `wardline --home H --json ARGS` as `cli` (as `Cli::run` does,
    /// but without closing standard input).
    fn start(cli: &Cli, args: &[&str]) -> Self {
        let mut child = Command::new(bin("wardline"))
            .arg("--home")
            .arg(&cli.home)
            .arg("--json")
            .args(args)
            .env("WARDLINE_PASSPHRASE", &cli.passphrase)
            .env("WARDLINE_PASSWORD", &cli.password)
            .env("WARDLINE_KDF_FAST", "1")
            .env_remove("WARDLINE_HOME")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wardline");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
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
            _stdin: child.stdin.take().expect("piped stdin"),
            child,
            lines,
            stdout: String::new(),
            stderr: Some(stderr),
        }
    }

    /// Waits at most `limit` for an event that satisfies `wanted`.
    fn wait_event(&mut self, limit: Duration, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout.push_str(&line);
                    self.stdout.push('\n');
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && wanted(&v)
                    {
                        return v;
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default());
                    panic!(
                        "no awaited event within {limit:?} ({e}); output:\n{}\n{stderr:?}",
                        self.stdout
                    );
                }
            }
        }
    }

    /// Waits at most `limit` for the process to exit by itself.
    fn wait_exit(mut self, limit: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for wardline") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("wardline did not exit within {limit:?}:\n{}", self.stdout);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (status, stderr)
    }
}

fn ok(out: &Output) {
    assert!(out.ok, "{}\n{}", out.stdout, out.stderr);
}

/// An admin, and clinicians enrolled with codes the admin made.
fn deployment(root: &Path, server: &ServerProcess, names: &[&str]) -> (Cli, Vec<Cli>) {
    let admin = Cli::new(root, "admin");
    let (out, _) = admin.enrol(&server.url, &server.bootstrap_code());
    ok(&out);
    let clinicians = names
        .iter()
        .map(|name| {
            let cli = Cli::new(root, name);
            let (out, _) = cli.enrol(&server.url, &add_user(&admin, name));
            ok(&out);
            cli
        })
        .collect();
    (admin, clinicians)
}

fn add_user(admin: &Cli, name: &str) -> String {
    let out = admin.run(&["admin", "user", "add", name, "--display-name", name]);
    ok(&out);
    text(&out.event("user_created"), "enrol_code")
}

fn text(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
        .to_owned()
}

/// The active device of `user`, as the admin sees it.
fn device_of(admin: &Cli, user: &str) -> String {
    let out = admin.run(&["admin", "devices", user]);
    ok(&out);
    text(&out.event("device"), "device_id")
}

fn wipe(admin: &Cli, device: &str, reason: &str) -> String {
    let out = admin.run(&["admin", "wipe", device, "--reason", reason]);
    ok(&out);
    text(&out.event("wipe_ordered"), "wipe_id")
}

fn wipe_state(admin: &Cli, wipe_id: &str) -> String {
    let out = admin.run(&["admin", "wipe-status", wipe_id]);
    ok(&out);
    text(&out.event("wipe_status"), "state")
}

/// What a copy of a keystore file would open with: its wrapped data key
/// and its sealed state, as stored.
fn sealed_parts(keystore: &[u8]) -> Vec<Vec<u8>> {
    let file: Value = serde_json::from_slice(keystore).expect("a keystore file is JSON");
    ["data_key", "state"]
        .iter()
        .map(|part| text(&file[part], "ciphertext").into_bytes())
        .collect()
}

/// Nothing under `home` is, or holds any part of, the keystore `copy`.
fn assert_no_key_material(home: &Path, copy: &[u8]) {
    assert!(
        !home.join("keystore.json").exists(),
        "the keystore survived"
    );
    for part in sealed_parts(copy) {
        let found = files_containing(home, &part);
        assert!(found.is_empty(), "key material survives in {found:?}");
    }
}

#[test]
fn a_wipe_reaches_a_chatting_device_at_once_an_offline_one_at_its_next_command_and_the_home_can_be_redeployed()
 {
    let root = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::start(&root.path().join("server-data"));
    let (admin, clinicians) = deployment(root.path(), &server, &["alice", "bob"]);
    let [alice, bob] = &clinicians[..] else {
        unreachable!("two clinicians")
    };
    ok(&bob.run(&["send", "alice", "Bed 4 results are back"]));

    // (a) Alice's device is in a chat, connected, standard input open.
    let mut chat = Running::start(alice, &["chat", "bob"]);
    chat.wait_event(Duration::from_secs(30), |e| {
        e["event"] == "message" && e["text"] == "Bed 4 results are back"
    });
    let alice_keystore = std::fs::read(alice.home.join("keystore.json")).expect("alice's keystore");
    let alice_device = device_of(&admin, "alice");
    // Timed from the moment the admin's command starts: the order is
    // pushed as soon as the server has it, often before that command (a
    // process of its own, opening its keystore) has even exited.
    let started = Instant::now();
    let wipe_id = wipe(&admin, &alice_device, "redeployed to ward 12");
    let admin_took = started.elapsed();
    let wiped = chat.wait_event(Duration::from_secs(10), |e| e["event"] == "wiped");
    assert_eq!(wiped["reason"], "redeployed to ward 12");
    assert_eq!(wiped["confirmed"], true);
    let (status, stderr) = chat.wait_exit(Duration::from_secs(10));
    let exited = started.elapsed();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("wiped by order of your organisation"),
        "{stderr}"
    );
    // About a second after the order on a quiet machine; generous for a
    // loaded CI runner.
    assert!(
        exited < admin_took + Duration::from_secs(3),
        "the chat took {exited:?} to wipe and exit (the admin's command took {admin_took:?})"
    );
    eprintln!(
        "wipe: the chatting device had exited {exited:?} after the admin's command started (that command took {admin_took:?})"
    );
    assert_no_key_material(&alice.home, &alice_keystore);
    assert_eq!(wipe_state(&admin, &wipe_id), "confirmed");

    // The old device can do nothing: its home has no keystore, and a copy
    // of the keystore taken before the wipe (a backup, say) is refused.
    let gone = alice.run(&["inbox"]);
    assert!(!gone.ok);
    assert_eq!(gone.event("error")["code"], "no_keystore");
    let copy = Cli {
        home: root.path().join("alice-backup"),
        passphrase: alice.passphrase.clone(),
        password: alice.password.clone(),
    };
    std::fs::create_dir_all(&copy.home).expect("backup home");
    std::fs::write(copy.home.join("keystore.json"), &alice_keystore).expect("restore");
    let refused = copy.run(&["inbox"]);
    assert!(
        !refused.ok,
        "a wiped device's copy still works: {refused:?}"
    );
    assert_eq!(refused.event("error")["code"], "unauthenticated");
    let devices = admin.run(&["admin", "devices", "alice"]);
    assert_eq!(devices.event("device")["state"], "wiped");

    // (b) Bob's device is offline when its wipe is ordered; it carries it
    // out when it next runs a command.
    let bob_keystore = std::fs::read(bob.home.join("keystore.json")).expect("bob's keystore");
    let bob_wipe = wipe(&admin, &device_of(&admin, "bob"), "reported lost");
    assert_eq!(wipe_state(&admin, &bob_wipe), "pending");
    let next = bob.run(&["inbox"]);
    assert!(!next.ok);
    assert_eq!(next.event("wiped")["confirmed"], true);
    assert!(next.stderr.contains("reported lost"), "{}", next.stderr);
    assert_no_key_material(&bob.home, &bob_keystore);
    assert_eq!(wipe_state(&admin, &bob_wipe), "confirmed");

    // (c) The redeployed workstation (alice's home) is enrolled by carol.
    let carol = Cli {
        home: alice.home.clone(),
        passphrase: "carol keystore passphrase".into(),
        password: "carol account password".into(),
    };
    let (out, _) = carol.enrol(&server.url, &add_user(&admin, "carol"));
    ok(&out);
    let who = carol.run(&["whoami"]);
    ok(&who);
    assert_eq!(who.event("whoami")["username"], "carol");
    ok(&carol.run(&["conversations"]));
    assert_eq!(
        admin.run(&["admin", "devices", "carol"]).event("device")["state"],
        "active"
    );

    // (d) The audit log, wipes and all, verifies; a clinician cannot read it.
    let audit = admin.run(&["admin", "audit", "--verify", "--limit", "1000"]);
    ok(&audit);
    let verified = audit.event("audit_verified");
    assert_eq!(verified["first_seq"], 1);
    let kinds: Vec<Value> = audit
        .events()
        .into_iter()
        .filter(|e| e["event"] == "audit_entry")
        .map(|e| e["kind"].clone())
        .collect();
    for kind in ["wipe_ordered", "wipe_confirmed"] {
        assert_eq!(
            kinds.iter().filter(|k| **k == kind).count(),
            2,
            "{kind}: {kinds:?}"
        );
    }
    let denied = carol.run(&["admin", "user", "list"]);
    assert!(!denied.ok);
    assert_eq!(denied.event("error")["code"], "forbidden");
    assert!(
        denied.stderr.contains("administrators"),
        "{}",
        denied.stderr
    );
}

#[test]
fn an_exported_clinical_note_verifies_and_a_one_character_change_is_caught() {
    let root = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::start(&root.path().join("server-data"));
    let (admin, clinicians) = deployment(root.path(), &server, &["alice", "bob"]);
    let [alice, bob] = &clinicians[..] else {
        unreachable!("two clinicians")
    };
    let sent = alice.run(&[
        "send",
        "bob",
        NOTE,
        "--kind",
        "clinical-note",
        "--patient",
        PATIENT,
    ]);
    ok(&sent);
    let msg_id = text(&sent.event("sent"), "msg_id");
    ok(&bob.run(&["inbox"]));

    let file: PathBuf = root.path().join("bed4.json");
    let exported = bob.run(&["export", "alice", "--out", &file.to_string_lossy()]);
    ok(&exported);
    let summary = exported.event("exported");
    assert_eq!(summary["messages"], 1);
    assert_eq!(summary["bundle_type"], "collection");
    let bundle = std::fs::read_to_string(&file).expect("the bundle");
    assert!(bundle.contains(NOTE) && bundle.contains(PATIENT));
    // The export is in the server's audit log: which message, where to, by
    // which device; never the content.
    let log = admin.run(&["admin", "audit", "--kind", "record_export"]);
    ok(&log);
    assert!(
        log.stdout.contains(&msg_id) && !log.stdout.contains(NOTE),
        "{log:?}"
    );

    let checked = bob.run(&["verify-export", &file.to_string_lossy()]);
    ok(&checked);
    let entry = checked.event("export_entry");
    assert_eq!(entry["msg_id"], msg_id.as_str());
    assert_eq!(entry["ok"], true);
    assert_eq!(entry["key"], "matches");

    // One character of the text changed: "tds" (three times a day) to
    // "qds" (four times).
    let forged = root.path().join("bed4-forged.json");
    let changed = bundle.replacen("1.2 g tds", "1.2 g qds", 1);
    assert_ne!(changed, bundle);
    std::fs::write(&forged, changed).expect("write the copy");
    let caught = bob.run(&["verify-export", &forged.to_string_lossy()]);
    assert!(!caught.ok, "a changed text passed: {caught:?}");
    let error = caught.event("error");
    assert_eq!(error["code"], "export_invalid");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains(&msg_id)),
        "the entry is not named: {error}"
    );
    let entry = caught.event("export_entry");
    assert_eq!(entry["ok"], false);
    assert!(
        entry["failures"].to_string().contains("text differs"),
        "{entry}"
    );
}
