//! The account and the keystore through the `wardline` binary: enrolment at
//! a terminal (QR code, password twice, first code), a wrong passphrase,
//! the unlock agent and its idle timeout, `whoami`, `devices`, `logout`.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::client::{Client, events, ward};
use support::pty::Terminal;
use support::{Running, TestServer, WAIT, has_keystore};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The base32 secret printed after `secret:`, from the terminal's output.
fn secret_on(screen: &str) -> Option<String> {
    let after = &screen[screen.find("secret:")? + "secret:".len()..];
    let secret: String = after
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (!secret.is_empty()).then_some(secret)
}

#[test]
fn enrolment_at_a_terminal_shows_a_qr_code_and_asks_twice_then_for_the_first_code() -> TestResult {
    let server = TestServer::start();
    let root = tempfile::tempdir()?;
    let home = root.path().join("admin");
    let home_arg = home.to_str().ok_or("a UTF-8 path")?;
    let mut term = Terminal::start(
        env!("CARGO_BIN_EXE_wardline"),
        &[
            "--home",
            home_arg,
            "enrol",
            "--server",
            &server.url,
            "--code",
            &server.admin_code,
        ],
        &[("WARDLINE_KDF_FAST", "1")],
    );
    let at = term.wait_for(0, "Choose a passphrase to protect the keys on this device:");
    term.type_keys("ward 10 workstation\r");
    let at = term.wait_for(at, "Type it again to confirm:");
    term.type_keys("ward 10 workstation\r");
    let at = term.wait_for(at, "Choose your Wardline account password:");
    term.type_keys("correct horse battery\r");
    let at = term.wait_for(at, "Type it again to confirm:");
    term.type_keys("correct horse battery\r");

    let at = term.wait_for(at, "Code from your authenticator app:");
    let shown = &term.screen[..at];
    // A QR code drawn with half blocks, then the secret and the URI.
    assert!(
        shown
            .lines()
            .filter(|l| l.contains('█') || l.contains('▀'))
            .count()
            > 10,
        "no QR code:\n{}",
        support::pty::printable(shown)
    );
    assert!(shown.contains("otpauth://totp/"), "{shown}");
    let secret = secret_on(shown).ok_or("a secret on screen")?;
    term.type_keys(&format!("{}\r", server.totp_now(&secret)));
    term.wait_for(at, "Enrolled admin.");
    assert_eq!(term.wait_exit(), 0);
    // (Whether typing is echoed is not checked: the test types the moment
    // the prompt appears, which can be before the prompt has turned echo
    // off; a person cannot type that fast.)
    assert!(has_keystore(&home));
    Ok(())
}

#[test]
fn enrolment_without_a_terminal_prints_the_secret_and_qr_then_reads_the_code() -> TestResult {
    let server = TestServer::start();
    let root = tempfile::tempdir()?;
    let admin = Client::new(&root, "admin");
    let mut running = admin.start(&[
        "enrol",
        "--server",
        &server.url,
        "--code",
        &server.admin_code,
    ]);
    let mut shown = String::new();
    let secret = loop {
        let line = running
            .next_line()
            .ok_or("output ended before the secret")?;
        shown.push_str(&line);
        shown.push('\n');
        if let Some(s) = secret_on(&line) {
            break s;
        }
    };
    assert!(
        shown.contains('█') || shown.contains('▀'),
        "QR code:\n{shown}"
    );
    running.answer(&server.totp_now(&secret));
    let done = running.finish();
    assert!(done.ok, "{}", done.stderr);
    assert!(
        done.stdout.contains("link:    otpauth://totp/"),
        "{}",
        done.stdout
    );
    assert!(done.stdout.contains("Enrolled admin."), "{}", done.stdout);
    Ok(())
}

#[test]
fn a_wrong_passphrase_says_so_and_changes_nothing() -> TestResult {
    let (_server, root, _admin, alice, _bob) = ward();
    let path = alice.home.join("keystore.json");
    let before = std::fs::read(&path)?;
    let wrong = Client {
        passphrase: "not alice's passphrase".into(),
        ..Client::new(&root, "alice")
    };
    for command in [
        &["inbox"][..],
        &["send", "bob", "hi"],
        &["unlock"],
        &["whoami"],
    ] {
        let out = wrong.run(&[&["--json"][..], command].concat());
        assert!(!out.ok);
        assert_eq!(
            out.event("error")["code"],
            "wrong_passphrase",
            "{command:?}"
        );
        assert!(out.stderr.contains("Wrong passphrase"), "{}", out.stderr);
        assert!(out.stderr.contains("nothing was changed"), "{}", out.stderr);
    }
    assert_eq!(std::fs::read(&path)?, before, "the keystore is untouched");
    assert!(!alice.home.join("agent.sock").exists());
    assert!(alice.run(&["inbox"]).ok, "the right one still works");
    Ok(())
}

/// Waits (bounded) until `path` is gone.
fn wait_until_gone(path: &Path) {
    let deadline = Instant::now() + WAIT;
    while path.exists() {
        assert!(Instant::now() < deadline, "{} stayed", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_passphrase_typed_once_unlocks_until_lock_or_the_idle_timeout() -> TestResult {
    let (_server, _root, _admin, alice, _bob) = ward();
    let home = alice.home.to_str().ok_or("a UTF-8 path")?;
    // Typed at the terminal: the keystore stays unlocked.
    let mut term = Terminal::start(
        env!("CARGO_BIN_EXE_wardline"),
        &["--home", home, "--idle-timeout", "2m", "inbox"],
        &[("WARDLINE_KDF_FAST", "1")],
    );
    let at = term.wait_for(0, "Passphrase for this device's keystore:");
    term.type_keys(&format!("{}\r", alice.passphrase));
    term.wait_for(at, "No new messages.");
    assert_eq!(term.wait_exit(), 0);

    // No passphrase anywhere now, and still it opens.
    let no_secret = |args: &[&str]| {
        let mut c = alice.command(args);
        c.env_remove("WARDLINE_PASSPHRASE");
        support::Running::start(&mut c).finish()
    };
    let whoami = no_secret(&["--json", "whoami"]);
    assert!(whoami.ok, "{}", whoami.stderr);
    let left = whoami.event("whoami")["unlocked_for_secs"]
        .as_u64()
        .ok_or("unlocked")?;
    assert!(left > 60 && left <= 120, "{left}");

    let locked = no_secret(&["--json", "lock"]);
    assert_eq!(locked.event("locked")["was_unlocked"], true);
    let refused = no_secret(&["--json", "inbox"]);
    assert!(!refused.ok);
    assert_eq!(refused.event("error")["code"], "input");

    // `unlock` works from a script too; the idle timeout locks by itself.
    let unlocked = alice.run(&["--json", "--idle-timeout", "1s", "unlock"]);
    assert!(unlocked.ok, "{}", unlocked.stderr);
    assert_eq!(unlocked.event("unlocked")["idle_timeout_secs"], 1);
    wait_until_gone(&alice.home.join("agent.sock"));
    let expired = no_secret(&["--json", "inbox"]);
    assert_eq!(expired.event("error")["code"], "input");
    Ok(())
}

#[test]
fn whoami_devices_and_logout_describe_and_end_the_session() -> TestResult {
    let (server, root, admin, alice, _bob) = ward();
    let me = alice.run(&["--json", "whoami"]);
    assert!(me.ok, "{}", me.stderr);
    let me = me.event("whoami");
    assert_eq!(me["username"], "alice");
    assert_eq!(me["server"], server.url.as_str());
    assert!(me.get("unlocked_for_secs").is_none());

    let laptop = alice.second_device(&root);
    assert!(laptop.login(&server, &["--server", &server.url]).ok);
    let devices = alice.run(&["--json", "devices"]);
    let rows = events(&devices, "device");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows.iter().filter(|d| d["this_device"] == true).count(), 1);
    let table = alice.run(&["devices"]);
    assert!(table.stdout.starts_with("DEVICE"), "{}", table.stdout);
    assert!(table.stdout.contains("* this device"), "{}", table.stdout);

    let out = laptop.run(&["--json", "logout"]);
    assert!(out.ok, "{}", out.stderr);
    assert!(out.event("logged_out")["device_id"].is_string());
    let after = laptop.run(&["inbox"]);
    assert!(!after.ok);
    assert!(
        after
            .stderr
            .contains("logged out on this device; run `wardline login --username alice`"),
        "{}",
        after.stderr
    );
    // The keys stayed: a login on the same device works again.
    let again = laptop.login(&server, &[]);
    assert!(again.ok, "{}", again.stderr);
    assert_eq!(again.event("logged_in")["new_device"], false);
    assert!(laptop.run(&["inbox"]).ok);

    // Admins see anyone's devices; others may not.
    let theirs = admin.run(&["--json", "admin", "devices", "alice"]);
    assert_eq!(events(&theirs, "device").len(), 2);
    let denied = alice.run(&["admin", "devices", "admin"]);
    assert!(!denied.ok);
    assert!(
        denied.stderr.contains("Only administrators"),
        "{}",
        denied.stderr
    );
    Ok(())
}

#[test]
fn a_clinician_changes_their_account_password() -> TestResult {
    let (server, root, _admin, mut alice, _bob) = ward();
    let new = "alice's brand new password";

    // A wrong current password changes nothing and says so.
    let mut wrong = alice.command(&["password", "--totp", &server.next_totp(alice.secret())]);
    wrong
        .env("WARDLINE_PASSWORD", "not alice's password")
        .env("WARDLINE_NEW_PASSWORD", new);
    let wrong = Running::start(&mut wrong).finish();
    assert!(!wrong.ok);
    assert!(
        wrong.stderr.contains("your password is unchanged"),
        "{}",
        wrong.stderr
    );

    let mut change = alice.command(&[
        "--json",
        "password",
        "--totp",
        &server.next_totp(alice.secret()),
    ]);
    change.env("WARDLINE_NEW_PASSWORD", new);
    let changed = Running::start(&mut change).finish();
    assert!(changed.ok, "{}", changed.stderr);
    assert_eq!(changed.event("password_changed")["username"], "alice");
    assert!(
        !changed.stdout.contains(new) && !changed.stderr.contains(new),
        "the password is never printed"
    );

    // This device's session goes on; a new login needs the new password.
    assert!(alice.run(&["inbox"]).ok);
    let laptop = alice.second_device(&root);
    let old = laptop.login(&server, &["--server", &server.url]);
    assert!(!old.ok, "the old password still works");
    alice.password = new.to_owned();
    let laptop = alice.second_device(&root);
    let again = laptop.login(&server, &["--server", &server.url]);
    assert!(again.ok, "{}", again.stderr);
    Ok(())
}
