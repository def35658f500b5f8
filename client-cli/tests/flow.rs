//! The `wardline` binary against the real server, run in-process: enrolment,
//! administration, sending, receiving, tampering, sessions, and TLS with a
//! pinned or CA-trusted certificate.
//!
//! (Resealing after `invalid_envelope` needs a device to register between
//! the sender's device fetch and its send, which a test cannot time through
//! the binary; `commands::send`'s unit tests cover that rule.)

mod support;

use support::client::{Client, add_user, texts, ward};
use support::{TestServer, has_keystore};
use wardline_cli::connection::{Connection, Endpoint};
use wardline_cli::keystore::Keystore;
use wardline_protocol::wire::{
    Conversations, ConversationsOk, Devices, DevicesOk, Resume, ResumeOk, Send, SendOk,
};
use wardline_protocol::{
    Body, BodyKind, Header, MessageId, Priority, Recipient, Request, Secret, Timestamp, envelope,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

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
    assert_eq!(reply.event("sent")["seq"], 2);

    // Alice's own message comes back to her device too (it was sealed to
    // it), but she wrote it: only the reply is news.
    let got = alice.run(&["inbox"]);
    assert!(got.ok, "{}", got.stderr);
    assert!(
        got.stdout.contains("→ alice & bob: On my way"),
        "{}",
        got.stdout
    );
    assert!(!got.stdout.contains("repeat ECG"), "{}", got.stdout);
    Ok(())
}

/// Sends `text` from `client`'s device with its ciphertext damaged after
/// sealing, through the client library: what a faulty client, or a bit flip
/// on the way, would produce. The server cannot tell (it never sees
/// plaintext), so it stores and delivers it.
fn send_tampered(client: &Client, to_conv: &str, text: &str) -> Result<SendOk, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let keystore = Keystore::open(&client.home, &Secret::new(client.passphrase.as_str()))
        .map_err(|e| e.to_string())?;
    let state = keystore.state();
    runtime.block_on(async {
        let endpoint =
            Endpoint::new(&state.server, state.trust.clone()).map_err(|e| e.to_string())?;
        let mut conn = Connection::connect(&endpoint)
            .await
            .map_err(|e| e.to_string())?;
        let _: ResumeOk = conn
            .call(Request::Resume(Resume {
                token: state.token.clone(),
            }))
            .await
            .map_err(|e| e.to_string())?;
        let convs: ConversationsOk = conn
            .call(Request::Conversations(Conversations {}))
            .await
            .map_err(|e| e.to_string())?;
        let conv = convs
            .conversations
            .into_iter()
            .find(|c| c.conv_id.as_str() == to_conv)
            .ok_or("no such conversation")?;
        let devices: DevicesOk = conn
            .call(Request::Devices(Devices {
                user_ids: conv.members.clone(),
            }))
            .await
            .map_err(|e| e.to_string())?;
        let recipients: Vec<Recipient> = devices
            .devices
            .into_iter()
            .map(|d| Recipient {
                device_id: d.device_id,
                kem_pk: d.kem_pk,
            })
            .collect();
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|e| e.to_string())?
                .as_millis(),
        )
        .map_err(|e| e.to_string())?;
        let header = Header {
            msg_id: MessageId::generate_v7(now.unsigned_abs(), [9; 10]),
            conv_id: conv.conv_id.clone(),
            sender_user: state.user_id.clone(),
            sender_device: state.device_id.clone(),
            sent_at: Timestamp::from_unix_millis(now).map_err(|e| e.to_string())?,
            priority: Priority::Routine,
            residency: conv.residency,
        };
        let body = Body {
            text: text.to_owned(),
            kind: BodyKind::Message,
            patient: None,
            reply_to: None,
        };
        let mut sealed = envelope::seal(header, &body, &state.device_secrets(), &recipients)
            .map_err(|e| e.to_string())?;
        sealed.ciphertext[0] ^= 1;
        let ok: SendOk = conn
            .call(Request::Send(Send { envelope: sealed }))
            .await
            .map_err(|e| e.to_string())?;
        conn.close().await;
        Ok(ok)
    })
}

#[test]
fn a_tampered_message_is_reported_and_does_not_stop_the_others() -> TestResult {
    let (_server, _root, _admin, alice, bob) = ward();
    let first = alice.run(&["--json", "send", "bob", "first"]);
    assert!(first.ok, "{}", first.stderr);
    let conv = first.event("sent")["conv_id"]
        .as_str()
        .ok_or("conv_id")?
        .to_owned();
    let tampered = send_tampered(&alice, &conv, "second")?;
    assert_eq!(tampered.seq, 2);
    assert!(alice.run(&["send", &conv, "third"]).ok);

    let inbox = bob.run(&["--json", "inbox"]);
    assert!(inbox.ok, "{}", inbox.stderr);
    assert_eq!(texts(&inbox), ["first", "third"]);
    let bad = inbox.event("undecryptable");
    assert_eq!(bad["seq"], 2);
    assert!(
        inbox.stderr.contains("could not be opened"),
        "{}",
        inbox.stderr
    );
    // Reported once, then acknowledged with the rest.
    let again = bob.run(&["--json", "inbox"]);
    assert!(again.stdout.is_empty(), "{}", again.stdout);
    Ok(())
}

#[test]
fn login_renews_the_session_or_registers_a_new_device() -> TestResult {
    let (server, root, _admin, alice, bob) = ward();
    let again = alice.login(&server, &[]);
    assert!(again.ok, "{}", again.stderr);
    assert_eq!(again.event("logged_in")["new_device"], false);

    let laptop = alice.second_device(&root);
    let new = laptop.login(&server, &["--server", &server.url]);
    assert!(new.ok, "{}", new.stderr);
    assert_eq!(new.event("logged_in")["new_device"], true);

    let sent = bob.run(&["send", "alice", "Both your devices get this"]);
    assert!(sent.ok, "{}", sent.stderr);
    for device in [&alice, &laptop] {
        let inbox = device.run(&["--json", "inbox"]);
        assert!(inbox.ok, "{}", inbox.stderr);
        assert_eq!(texts(&inbox), ["Both your devices get this"]);
    }

    // A code already spent is refused as such, with advice.
    let code = server.totp_now(alice.secret());
    let replayed = alice.run(&["--json", "login", "--username", "alice", "--totp", &code]);
    assert!(!replayed.ok);
    assert_eq!(replayed.event("error")["code"], "totp_replayed");
    Ok(())
}

#[test]
fn wrong_passphrase_and_server_errors_are_single_clear_lines() -> TestResult {
    let (_server, root, admin, alice, _bob) = ward();
    let wrong = Client {
        passphrase: "not the passphrase".into(),
        ..Client::new(&root, "alice")
    };
    assert_eq!(wrong.home, alice.home);
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
    assert!(taken.stderr.contains("already taken"), "{}", taken.stderr);

    let nobody = alice.run(&["send", "nobody", "hello?"]);
    assert!(!nobody.ok);
    assert!(nobody.stderr.contains("'nobody'"), "{}", nobody.stderr);
    Ok(())
}

#[test]
fn an_ended_session_says_how_to_log_in_again() -> TestResult {
    let (server, _root, _admin, alice, _bob) = ward();
    server.expire_sessions();
    let out = alice.run(&["--json", "inbox"]);
    assert!(!out.ok);
    assert_eq!(out.event("error")["code"], "unauthenticated");
    assert!(
        out.stderr
            .contains("Your session has ended; run `wardline login --username alice`."),
        "{}",
        out.stderr
    );
    let back = alice.login(&server, &[]);
    assert!(back.ok, "{}", back.stderr);
    let inbox = alice.run(&["inbox"]);
    assert!(inbox.ok, "{}", inbox.stderr);
    Ok(())
}

#[test]
fn a_pinned_tls_server_serves_every_command_without_repeating_the_pin() -> TestResult {
    let server = TestServer::start_tls();
    assert!(server.url.starts_with("wss://127.0.0.1:"), "{}", server.url);
    let printed = server.fingerprint.clone().ok_or("a fingerprint")?;
    let root = tempfile::tempdir()?;

    // The pin as printed by the server, but lower case and without colons.
    let bare: String = printed
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_lowercase();
    let mut admin = Client::new(&root, "admin");
    let enrolled = admin.enrol(
        &server,
        &[
            "--server",
            &server.url,
            "--pin",
            &bare,
            "--code",
            &server.admin_code,
        ],
    );
    assert!(enrolled.ok, "{}", enrolled.stderr);

    // No flags from here on: the keystore holds the server and the pin.
    let code = add_user(&admin, "bob");
    let mut bob = Client::new(&root, "bob");
    let enrolled = bob.enrol_with(
        &server,
        &["--code", &code],
        &[("WARDLINE_SERVER", &server.url), ("WARDLINE_PIN", &printed)],
    );
    assert!(enrolled.ok, "{}", enrolled.stderr);

    let sent = admin.run(&["--json", "send", "bob", "Theatre list moved to 14:00"]);
    assert!(sent.ok, "{}", sent.stderr);
    let inbox = bob.run(&["--json", "inbox"]);
    assert!(inbox.ok, "{}", inbox.stderr);
    assert_eq!(texts(&inbox), ["Theatre list moved to 14:00"]);

    let again = bob.login(&server, &[]);
    assert!(again.ok, "{}", again.stderr);
    // Naming the same server again does not mean forgetting its pin.
    let again = bob.login(&server, &["--server", &server.url]);
    assert!(again.ok, "{}", again.stderr);
    assert!(bob.run(&["inbox"]).ok);
    Ok(())
}

#[test]
fn a_wrong_pin_is_refused_before_anything_is_sent() -> TestResult {
    let server = TestServer::start_tls();
    let printed = server.fingerprint.clone().ok_or("a fingerprint")?;
    let root = tempfile::tempdir()?;
    let wrong = "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF";

    let mut admin = Client::new(&root, "admin");
    let refused = admin.enrol(
        &server,
        &[
            "--server",
            &server.url,
            "--pin",
            wrong,
            "--code",
            &server.admin_code,
        ],
    );
    assert!(!refused.ok);
    assert_eq!(refused.event("error")["code"], "tls_pin_mismatch");
    assert_eq!(refused.stderr.lines().count(), 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("did not match"),
        "{}",
        refused.stderr
    );
    // The server's real fingerprint helps IT tell a rotation from an attack.
    assert!(refused.stderr.contains(&printed), "{}", refused.stderr);
    assert!(!has_keystore(&admin.home));

    // Nothing reached the server: the one-time code still works.
    let enrolled = admin.enrol(
        &server,
        &[
            "--server",
            &server.url,
            "--pin",
            &printed,
            "--code",
            &server.admin_code,
        ],
    );
    assert!(enrolled.ok, "{}", enrolled.stderr);
    Ok(())
}

#[test]
fn a_ca_file_is_trusted_for_the_names_in_the_certificate() -> TestResult {
    let server = TestServer::start_tls();
    let root = tempfile::tempdir()?;
    let ca = server.dev_certificate();
    let ca = ca.to_str().ok_or("a UTF-8 path")?;
    // The development certificate names localhost as well as the address.
    let url = format!("wss://localhost:{}/v1", server.port());
    let mut admin = Client::new(&root, "admin");
    let enrolled = admin.enrol_with(
        &server,
        &["--server", &url, "--code", &server.admin_code],
        &[("WARDLINE_CA", ca)],
    );
    assert!(enrolled.ok, "{}", enrolled.stderr);
    let code = add_user(&admin, "carol");
    assert!(!code.is_empty());
    Ok(())
}
