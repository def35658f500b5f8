//! `wardline passphrase` through the `wardline` binary: the keystore sealed
//! under a new passphrase, the old one refused (the file, an old copy of
//! it, the unlock agent), refusals that change nothing, the prompts at a
//! terminal, and a chat left open that must not put the old passphrase back.

mod support;

use std::path::Path;

use support::client::{Client, texts, ward};
use support::pty::Terminal;
use support::{Run, Running, TestServer};
use wardline_cli::keystore::{KdfLimits, Keystore, KeystoreError, open_bytes};
use wardline_protocol::Secret;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const NEW: &str = "ward 10 night shift passphrase";

/// A server and its administrator, enrolled: enough for a keystore.
fn enrolled() -> (TestServer, tempfile::TempDir, Client) {
    let server = TestServer::start();
    let root = tempfile::tempdir().expect("tempdir");
    let mut admin = Client::new(&root, "admin");
    let out = admin.enrol(
        &server,
        &["--server", &server.url, "--code", &server.admin_code],
    );
    assert!(out.ok, "{}", out.stderr);
    (server, root, admin)
}

/// `wardline args` as `client`, with the new passphrase `new` (if any) in
/// the environment and nothing on standard input.
fn run_with(client: &Client, args: &[&str], new: Option<&str>) -> Run {
    let mut command = client.command(args);
    match new {
        Some(new) => command.env("WARDLINE_NEW_PASSPHRASE", new),
        None => command.env_remove("WARDLINE_NEW_PASSPHRASE"),
    };
    Running::start(&mut command).finish()
}

/// The same user and home with another passphrase.
fn with_passphrase(client: &Client, passphrase: &str) -> Client {
    Client {
        name: client.name.clone(),
        home: client.home.clone(),
        passphrase: passphrase.to_owned(),
        password: client.password.clone(),
        totp_secret: client.totp_secret.clone(),
    }
}

/// `wardline args` with no passphrase in the environment and nothing on
/// standard input: it opens the keystore only through the unlock agent.
fn from_the_agent_only(client: &Client, args: &[&str]) -> Run {
    let mut command = client.command(args);
    command.env_remove("WARDLINE_PASSPHRASE");
    Running::start(&mut command).finish()
}

/// The names in `home` other than the keystore and the agent's socket.
fn other_files(home: &Path) -> Vec<String> {
    std::fs::read_dir(home)
        .expect("read the home directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != "keystore.json" && n != "agent.sock")
        .collect()
}

fn kdf_of(bytes: &[u8]) -> serde_json::Value {
    let file: serde_json::Value = serde_json::from_slice(bytes).expect("a keystore file");
    file["kdf"].clone()
}

#[test]
fn after_a_change_only_the_new_passphrase_opens_the_keystore_and_the_unlock_is_ended() -> TestResult
{
    let (_server, root, _admin, alice, bob) = ward();
    assert!(bob.run(&["send", "alice", "Bed 4 obs are due"]).ok);
    let inbox = alice.run(&["--json", "inbox"]);
    assert_eq!(texts(&inbox), ["Bed 4 obs are due"]);

    // Unlocked: commands open the keystore without the passphrase.
    let unlocked = alice.run(&["--json", "--idle-timeout", "10m", "unlock"]);
    assert!(unlocked.ok, "{}", unlocked.stderr);
    assert!(from_the_agent_only(&alice, &["--json", "whoami"]).ok);

    let path = alice.home.join("keystore.json");
    let old_bytes = std::fs::read(&path)?;
    // Another name for the old file's blocks, and a copy a crashed save left.
    let linked = root.path().join("alice-keystore-hard-link");
    std::fs::hard_link(&path, &linked)?;
    let leftover = alice.home.join(".keystore.json.0123456789ab.tmp");
    std::fs::write(&leftover, &old_bytes)?;

    let changed = run_with(&alice, &["--json", "passphrase"], Some(NEW));
    assert!(changed.ok, "{}", changed.stderr);
    let event = changed.event("passphrase_changed");
    assert_eq!(event["was_unlocked"], true);
    assert_eq!(changed.events().len(), 1, "{}", changed.stdout);
    for secret in [alice.passphrase.as_str(), NEW] {
        assert!(!changed.stdout.contains(secret), "{}", changed.stdout);
        assert!(!changed.stderr.contains(secret), "{}", changed.stderr);
    }

    // The unlock is over: nothing opens the keystore without a passphrase.
    assert!(!alice.home.join("agent.sock").exists());
    let cached = from_the_agent_only(&alice, &["--json", "whoami"]);
    assert!(!cached.ok);
    assert_eq!(cached.event("error")["code"], "input");

    // The old passphrase is refused, the new one works, messages included.
    for command in [&["--json", "whoami"][..], &["--json", "inbox"]] {
        let old = alice.run(command);
        assert!(!old.ok, "{command:?}");
        assert_eq!(
            old.event("error")["code"],
            "wrong_passphrase",
            "{command:?}"
        );
    }
    let renewed = with_passphrase(&alice, NEW);
    let me = renewed.run(&["--json", "whoami"]);
    assert!(me.ok, "{}", me.stderr);
    assert_eq!(me.event("whoami")["username"], "alice");
    assert!(bob.run(&["send", "alice", "Repeat ECG at 22:00"]).ok);
    let inbox = renewed.run(&["--json", "inbox"]);
    assert!(inbox.ok, "{}", inbox.stderr);
    assert_eq!(texts(&inbox), ["Repeat ECG at 22:00"]);
    let keystore = Keystore::open(&alice.home, &Secret::new(NEW))?;
    let cached: Vec<&str> = keystore
        .state()
        .messages
        .iter()
        .map(|m| m.body.text.as_str())
        .collect();
    assert_eq!(cached, ["Bed 4 obs are due", "Repeat ECG at 22:00"]);

    // The file's bytes: a fresh salt, the same cost, and the old
    // passphrase opens neither them nor what is left of the old file.
    let old = Secret::new(alice.passphrase.as_str());
    let new_bytes = std::fs::read(&path)?;
    let err = open_bytes(&new_bytes, &old, &KdfLimits::DEFAULT).expect_err("old passphrase");
    assert!(matches!(err, KeystoreError::WrongPassphrase(_)), "{err:?}");
    assert!(open_bytes(&new_bytes, &Secret::new(NEW), &KdfLimits::DEFAULT).is_ok());
    let (before, after) = (kdf_of(&old_bytes), kdf_of(&new_bytes));
    assert_ne!(before["salt"], after["salt"]);
    for field in ["algorithm", "m_cost_kib", "t_cost", "p_cost"] {
        assert_eq!(before[field], after[field], "{field}");
    }
    let remains = std::fs::read(&linked)?;
    assert_ne!(remains, old_bytes, "the old file's blocks were overwritten");
    assert!(open_bytes(&remains, &old, &KdfLimits::DEFAULT).is_err());
    assert!(!leftover.exists());
    assert!(other_files(&alice.home).is_empty());
    Ok(())
}

#[test]
fn a_wrong_current_passphrase_or_an_unacceptable_new_one_changes_nothing() -> TestResult {
    let (_server, _root, admin) = enrolled();
    let path = admin.home.join("keystore.json");
    let unlocked = admin.run(&["--json", "--idle-timeout", "10m", "unlock"]);
    assert!(unlocked.ok, "{}", unlocked.stderr);
    let before = std::fs::read(&path)?;

    let wrong = with_passphrase(&admin, "not the admin's passphrase");
    let current = admin.passphrase.as_str();
    for (who, new, code, says) in [
        (&wrong, Some(NEW), "wrong_passphrase", "nothing was changed"),
        (&admin, Some("short"), "input", "at least 8 characters"),
        (
            &admin,
            Some(current),
            "passphrase_unchanged",
            "same as the current",
        ),
        (&admin, None, "input", "WARDLINE_NEW_PASSPHRASE"),
    ] {
        let out = run_with(who, &["--json", "passphrase"], new);
        assert!(!out.ok, "{new:?}");
        assert_eq!(out.event("error")["code"], code, "{new:?}");
        assert!(out.stderr.contains(says), "{new:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        for secret in [current, NEW, "short", "not the admin's"] {
            assert!(!out.stderr.contains(secret), "{}", out.stderr);
            assert!(!out.stdout.contains(secret), "{}", out.stdout);
        }
        assert_eq!(std::fs::read(&path)?, before, "{new:?}: keystore changed");
        assert!(other_files(&admin.home).is_empty());
    }
    // Nothing changed, so the unlock stays.
    assert!(from_the_agent_only(&admin, &["--json", "whoami"]).ok);

    // Without the environment, one line each from standard input: the
    // current passphrase, then the new one.
    let mut bare = admin.command(&["--json", "passphrase"]);
    bare.env_remove("WARDLINE_PASSPHRASE")
        .env_remove("WARDLINE_NEW_PASSPHRASE");
    let mut running = Running::start(&mut bare);
    running.answer(&format!("{current}\n{NEW}"));
    let out = running.finish();
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.event("passphrase_changed")["was_unlocked"], true);
    assert!(with_passphrase(&admin, NEW).run(&["whoami"]).ok);
    assert!(!admin.run(&["whoami"]).ok);
    Ok(())
}

#[test]
fn at_a_terminal_the_new_passphrase_is_asked_for_twice() -> TestResult {
    let (_server, _root, admin) = enrolled();
    let path = admin.home.join("keystore.json");
    let before = std::fs::read(&path)?;
    let home = admin.home.to_str().ok_or("a UTF-8 home")?;
    let start = || {
        Terminal::start(
            env!("CARGO_BIN_EXE_wardline"),
            &["--home", home, "passphrase"],
            &[("WARDLINE_KDF_FAST", "1")],
        )
    };

    // Two different entries: refused, nothing changed.
    let mut term = start();
    let at = term.wait_for(0, "Passphrase for this device's keystore:");
    term.type_keys(&format!("{}\r", admin.passphrase));
    let at = term.wait_for(at, "Choose a new passphrase for this device's keystore:");
    term.type_keys(&format!("{NEW}\r"));
    let at = term.wait_for(at, "Type it again to confirm:");
    term.type_keys("ward 10 night shift passphrasf\r");
    term.wait_for(at, "do not match");
    assert_eq!(term.wait_exit(), 1);
    assert_eq!(std::fs::read(&path)?, before);

    let mut term = start();
    let at = term.wait_for(0, "Passphrase for this device's keystore:");
    term.type_keys(&format!("{}\r", admin.passphrase));
    let at = term.wait_for(at, "Choose a new passphrase for this device's keystore:");
    term.type_keys(&format!("{NEW}\r"));
    let at = term.wait_for(at, "Type it again to confirm:");
    term.type_keys(&format!("{NEW}\r"));
    term.wait_for(at, "Passphrase changed");
    assert_eq!(term.wait_exit(), 0);
    assert!(with_passphrase(&admin, NEW).run(&["whoami"]).ok);
    assert!(!admin.run(&["whoami"]).ok);
    Ok(())
}

#[test]
fn a_chat_left_open_cannot_put_the_old_passphrase_back() -> TestResult {
    let (_server, _root, _admin, alice, bob) = ward();
    assert!(alice.run(&["send", "bob", "before"]).ok);
    // Bob's chat opened the keystore under the old passphrase.
    let mut chat = bob.start(&["--json", "chat", "alice"]);
    chat.wait_event(|e| e["event"] == "message" && e["text"] == "before");

    let changed = run_with(&bob, &["--json", "passphrase"], Some(NEW));
    assert!(changed.ok, "{}", changed.stderr);
    let after_change = std::fs::read(bob.home.join("keystore.json"))?;

    // A message arrives: the chat would save the keystore it opened.
    assert!(alice.run(&["send", "bob", "after"]).ok);
    let done = chat.finish();
    assert!(!done.ok, "{}", done.stdout);
    assert_eq!(done.event("error")["code"], "keystore_changed");
    assert!(done.stderr.contains("try again"), "{}", done.stderr);
    assert_eq!(std::fs::read(bob.home.join("keystore.json"))?, after_change);

    // Still only the new passphrase; the message was not lost.
    let old = bob.run(&["--json", "inbox"]);
    assert_eq!(old.event("error")["code"], "wrong_passphrase");
    let inbox = with_passphrase(&bob, NEW).run(&["--json", "inbox"]);
    assert!(inbox.ok, "{}", inbox.stderr);
    assert_eq!(texts(&inbox), ["after"]);
    Ok(())
}
