//! The `wardline` binary run as a real process, without a server.

use std::process::{Command, Output, Stdio};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Runs `wardline` with `args`, an isolated home and no stdin, and with the
/// environment cleared of anything that could leak in from the developer's
/// shell.
fn wardline(home: &std::path::Path, args: &[&str]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_wardline"))
        .args(args)
        .env_remove("WARDLINE_PASSWORD")
        .env_remove("WARDLINE_PASSPHRASE")
        .env_remove("WARDLINE_SERVER")
        .env_remove("WARDLINE_PIN")
        .env_remove("WARDLINE_CA")
        .env_remove("WARDLINE_IDLE_TIMEOUT")
        .env("WARDLINE_HOME", home)
        .env("WARDLINE_KDF_FAST", "1")
        .stdin(Stdio::null())
        .output()
}

#[test]
fn help_lists_every_command() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = wardline(dir.path(), &["--help"])?;
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout)?;
    for command in [
        "enrol",
        "login",
        "logout",
        "whoami",
        "devices",
        "inbox",
        "conversations",
        "conversation",
        "send",
        "read",
        "history",
        "chat",
        "verify",
        "unlock",
        "lock",
        "passphrase",
        "password",
        "wipe",
        "admin",
        "export",
        "verify-export",
        "register",
        "completions",
    ] {
        assert!(help.contains(command), "--help lacks {command}:\n{help}");
    }
    assert!(help.contains("wardline enrol --server wss://"), "{help}");
    assert!(help.contains("--pin"), "{help}");
    Ok(())
}

#[test]
fn enrol_help_shows_tls_examples_and_the_trust_options() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = wardline(dir.path(), &["enrol", "--help"])?;
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout)?;
    for needle in [
        "Examples:",
        "--server wss://",
        "--pin 3A:91:",
        "--ca <FILE>",
        "WARDLINE_PIN",
        "WARDLINE_CA",
    ] {
        assert!(
            help.contains(needle),
            "enrol --help lacks {needle}:\n{help}"
        );
    }
    Ok(())
}

#[test]
fn send_refuses_a_bad_nhs_number_before_any_network_use() -> TestResult {
    let dir = tempfile::tempdir()?;
    // No keystore and no server: reaching either would fail differently.
    let out = wardline(
        dir.path(),
        &["send", "bob", "Repeat ECG", "--patient", "9434765918"],
    )?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr)?;
    assert!(err.contains("9434765918"), "{err}");
    assert!(err.contains("NHS number"), "{err}");
    assert!(!err.contains("keystore"), "{err}");
    assert!(out.stdout.is_empty());
    Ok(())
}

#[test]
fn inbox_without_a_keystore_says_how_to_enrol() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = wardline(dir.path(), &["inbox"])?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr)?;
    assert!(err.contains("no keystore"), "{err}");
    assert!(err.contains("wardline enrol"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    Ok(())
}

#[test]
fn json_errors_are_one_event_on_stdout_and_a_line_on_stderr() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = wardline(dir.path(), &["--json", "inbox"])?;
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout)?;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let event: serde_json::Value = serde_json::from_str(lines[0])?;
    assert_eq!(event["event"], "error");
    assert_eq!(event["code"], "no_keystore");
    assert!(!out.stderr.is_empty());
    Ok(())
}

#[test]
fn enrol_refuses_a_remote_server_without_tls_before_asking_anything() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = wardline(
        dir.path(),
        &[
            "enrol",
            "--server",
            "ws://wardline.example.nhs.uk/v1",
            "--code",
            "ABCD-EFGH",
        ],
    )?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr)?;
    assert!(err.contains("TLS"), "{err}");
    assert!(err.contains("use wss://"), "{err}");
    Ok(())
}

#[test]
fn enrol_refuses_wss_without_a_pin_or_ca_and_says_where_the_fingerprint_is() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = wardline(
        dir.path(),
        &[
            "--json",
            "enrol",
            "--server",
            "wss://wardline.example.nhs.uk/v1",
            "--code",
            "ABCD-EFGH",
        ],
    )?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr)?;
    assert_eq!(err.lines().count(), 1, "{err}");
    for needle in ["--pin", "--ca", "tls certificate sha256 fingerprint"] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let event: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(event["code"], "usage");
    assert!(!dir.path().join("keystore.json").exists());
    Ok(())
}

#[test]
fn a_malformed_pin_or_missing_ca_file_is_refused_before_any_network_use() -> TestResult {
    let dir = tempfile::tempdir()?;
    let base = [
        "enrol",
        "--server",
        "wss://wardline.example.nhs.uk/v1",
        "--code",
        "ABCD-EFGH",
    ];
    let out = wardline(dir.path(), &[&base[..], &["--pin", "AB:CD:EF"]].concat())?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr)?;
    assert!(err.contains("64 hexadecimal digits"), "{err}");

    let missing = dir.path().join("no-such-ca.pem");
    let missing = missing.to_str().ok_or("UTF-8 path")?;
    let out = wardline(dir.path(), &[&base[..], &["--ca", missing]].concat())?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr)?;
    assert!(err.contains("no-such-ca.pem"), "{err}");
    Ok(())
}

#[test]
fn enrol_reports_an_unreachable_server_without_echoing_secrets() -> TestResult {
    let dir = tempfile::tempdir()?;
    // Port 9 on loopback: nothing listens there in a test environment.
    let out = Command::new(env!("CARGO_BIN_EXE_wardline"))
        .args([
            "enrol",
            "--server",
            "ws://127.0.0.1:9/v1",
            "--code",
            "ENROL-CODE-123",
        ])
        .env("WARDLINE_HOME", dir.path())
        .env("WARDLINE_PASSWORD", "hunter2-correct-horse")
        .env("WARDLINE_PASSPHRASE", "battery-staple-99")
        .stdin(Stdio::null())
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr)?;
    assert!(err.contains("Could not reach"), "{err}");
    for secret in ["hunter2", "battery-staple", "ENROL-CODE-123"] {
        assert!(!err.contains(secret), "stderr leaks {secret}: {err}");
    }
    assert!(
        !dir.path().join("keystore.json").exists(),
        "no keystore without a registered device"
    );
    Ok(())
}

#[test]
fn every_command_s_help_shows_examples() -> TestResult {
    let dir = tempfile::tempdir()?;
    for command in [
        &["enrol"][..],
        &["login"],
        &["inbox"],
        &["conversations"],
        &["conversation", "create"],
        &["conversation", "add"],
        &["send"],
        &["read"],
        &["history"],
        &["chat"],
        &["verify"],
        &["unlock"],
        &["lock"],
        &["passphrase"],
        &["password"],
        &["wipe"],
        &["devices"],
        &["admin"],
        &["admin", "wipe"],
        &["admin", "user", "add"],
        &["admin", "user", "list"],
        &["admin", "user", "disable"],
        &["admin", "user", "enable"],
        &["admin", "user", "reset"],
        &["admin", "user", "approve"],
        &["admin", "device", "revoke"],
        &["admin", "audit"],
        &["admin", "residency"],
        &["admin", "incident-mode"],
        &["admin", "legal-hold"],
        &["conversation", "retention"],
        &["register"],
        &["export"],
        &["verify-export"],
    ] {
        let out = wardline(dir.path(), &[command, &["--help"]].concat())?;
        assert!(out.status.success(), "{command:?}");
        let help = String::from_utf8(out.stdout)?;
        assert!(help.contains("Examples:"), "{command:?} --help:\n{help}");
        assert!(help.contains("wardline "), "{command:?} --help:\n{help}");
    }
    Ok(())
}

#[test]
fn governance_arguments_are_checked_before_anything_is_asked() -> TestResult {
    let dir = tempfile::tempdir()?;
    let long = "x".repeat(201);
    for (args, needle) in [
        (
            &["admin", "user", "disable", "alice", "--reason", " "][..],
            "a --reason for the",
        ),
        (&["admin", "wipe", "d-1", "--reason", &long], "at most 200"),
        (
            &["admin", "audit", "--verify", "--audit-key", "not-a-key"],
            "--audit-key",
        ),
        (
            &[
                "export",
                "bob",
                "--patient",
                "943 476 5918",
                "--out",
                "x.json",
            ],
            "check digit",
        ),
        (
            &["export", "bob", "--since", "last week", "--out", "x.json"],
            "2026-11-23",
        ),
    ] {
        let out = wardline(dir.path(), args)?;
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8(out.stderr)?;
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            !err.contains("passphrase"),
            "{args:?} asked for the passphrase: {err}"
        );
    }
    let out = wardline(dir.path(), &["admin", "legal-hold", "on", "--reason", "r"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)?.contains("--user"));
    Ok(())
}

#[test]
fn an_export_never_overwrites_a_file_unless_told() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("notes.json");
    std::fs::write(&file, "{}")?;
    let out = wardline(
        dir.path(),
        &["export", "bob", "--out", &file.to_string_lossy()],
    )?;
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)?.contains("--force"));
    assert_eq!(std::fs::read_to_string(&file)?, "{}");
    Ok(())
}

#[test]
fn verify_export_refuses_a_file_that_is_not_a_bundle_without_quoting_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("notes.json");
    std::fs::write(
        &file,
        "{\"resourceType\": \"Patient\", \"name\": \"Ada Okafor\"}",
    )?;
    let out = wardline(
        dir.path(),
        &["--json", "verify-export", &file.to_string_lossy()],
    )?;
    assert!(!out.status.success());
    let stdout = String::from_utf8(out.stdout)?;
    assert!(stdout.contains("export_invalid"), "{stdout}");
    assert!(!stdout.contains("Okafor"), "{stdout}");
    Ok(())
}

#[test]
fn completions_are_printed_for_each_shell() -> TestResult {
    let dir = tempfile::tempdir()?;
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = wardline(dir.path(), &["completions", shell])?;
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout)?;
        for word in ["wardline", "conversations", "verify"] {
            assert!(script.contains(word), "{shell} lacks {word}");
        }
    }
    let out = wardline(dir.path(), &["completions", "tcsh"])?;
    assert!(!out.status.success());
    Ok(())
}

#[test]
fn a_bad_idle_timeout_is_refused_with_an_example() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = wardline(dir.path(), &["--idle-timeout", "soon", "lock"])?;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr)?;
    assert!(err.contains("90s, 5m or 1h"), "{err}");
    Ok(())
}

#[test]
fn lock_without_an_unlocked_keystore_says_so() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = wardline(dir.path(), &["lock"])?;
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout)?.trim(), "Already locked.");
    Ok(())
}
