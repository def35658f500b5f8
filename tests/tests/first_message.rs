//! The foundation, end to end: real server process, real CLI processes.
//! The admin enrols from the bootstrap code, creates two clinicians, both
//! enrol, one sends an urgent message and the other decrypts it; nothing
//! secret is readable in the server's data directory.

use wardline_tests::{Cli, ServerProcess, files_containing};

const TEXT: &str = "Bed 4: K+ 6.8, repeat ECG now and call me. Diolch ❤";

#[test]
fn urgent_message_travels_encrypted_from_one_clinician_to_another() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("server-data");
    let server = ServerProcess::start(&data);

    // The administrator enrols with the bootstrap code.
    let admin = Cli::new(root.path(), "admin");
    let (out, admin_secret) = admin.enrol(&server.url, &server.bootstrap_code());
    assert!(out.ok, "admin enrol failed: {out:?}");
    out.event("enrolled");

    // ...and provisions two clinicians.
    let mut codes = Vec::new();
    for name in ["alice", "bob"] {
        let out = admin.run(&[
            "admin",
            "user",
            "add",
            name,
            "--display-name",
            name,
            "--role",
            "clinician",
        ]);
        assert!(out.ok, "admin user add {name} failed: {out:?}");
        let created = out.event("user_created");
        assert_eq!(created["username"], name);
        codes.push(
            created["enrol_code"]
                .as_str()
                .expect("enrol_code")
                .to_string(),
        );
    }

    let alice = Cli::new(root.path(), "alice");
    let bob = Cli::new(root.path(), "bob");
    let (out, alice_secret) = alice.enrol(&server.url, &codes[0]);
    assert!(out.ok, "alice enrol failed: {out:?}");
    let (out, bob_secret) = bob.enrol(&server.url, &codes[1]);
    assert!(out.ok, "bob enrol failed: {out:?}");

    // Alice sends Bob an urgent message by username.
    let out = alice.run(&["send", "bob", TEXT, "--urgent"]);
    assert!(out.ok, "send failed: {out:?}");
    let sent = out.event("sent");
    assert_eq!(sent["seq"], 1);

    // Bob's inbox decrypts it.
    let out = bob.run(&["inbox"]);
    assert!(out.ok, "inbox failed: {out:?}");
    let msg = out.event("message");
    assert_eq!(msg["text"], TEXT);
    assert_eq!(msg["priority"], "urgent");
    assert_eq!(msg["msg_id"], sent["msg_id"]);

    // A second look finds nothing new: the message was acknowledged.
    let out = bob.run(&["inbox"]);
    assert!(out.ok, "second inbox failed: {out:?}");
    assert!(
        out.events().iter().all(|e| e["event"] != "message"),
        "an acknowledged message came again: {out:?}"
    );

    // Nothing secret is readable in the server's data directory.
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("message text", TEXT.as_bytes().to_vec()),
        ("message text fragment", b"repeat ECG".to_vec()),
        ("admin password", admin.password.as_bytes().to_vec()),
        ("alice password", alice.password.as_bytes().to_vec()),
        ("bob password", bob.password.as_bytes().to_vec()),
        ("admin TOTP secret", admin_secret.as_bytes().to_vec()),
        ("alice TOTP secret", alice_secret.as_bytes().to_vec()),
        ("bob TOTP secret", bob_secret.as_bytes().to_vec()),
        ("alice TOTP secret bytes", raw_secret(&alice_secret)),
        ("bob TOTP secret bytes", raw_secret(&bob_secret)),
        ("username", b"alice".to_vec()),
        ("display name", b"Dr Alice Ng".to_vec()),
        ("conversation title", b"alice & bob".to_vec()),
    ];
    for (what, needle) in &secrets {
        let found = files_containing(&data, needle);
        assert!(found.is_empty(), "{what} is readable in {found:?}");
    }
    // Nor in the clients' keystores (sealed under their passphrases).
    for home in [&admin.home, &alice.home, &bob.home] {
        for (what, needle) in &secrets[..2] {
            let found = files_containing(home, needle);
            assert!(found.is_empty(), "{what} is readable in {found:?}");
        }
    }
}

fn raw_secret(b32: &str) -> Vec<u8> {
    totp_rs::Secret::try_from_base32(b32)
        .expect("base32")
        .as_bytes()
        .to_vec()
}
