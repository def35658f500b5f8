//! `wardline chat`: the full-screen view under a pseudo-terminal, and the
//! line mode across a server restart.

mod support;

use std::collections::BTreeMap;

use serde_json::Value;
use support::client::{events, texts, ward};
use support::pty::Terminal;

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[test]
fn the_chat_view_shows_history_live_urgent_messages_receipts_and_sends_on_enter() -> TestResult {
    let (_server, _root, _admin, alice, bob) = ward();
    assert!(alice.run(&["send", "bob", "Bed 4 obs are due"]).ok);

    let home = bob.home.to_str().ok_or("a UTF-8 home")?;
    let mut term = Terminal::start(
        env!("CARGO_BIN_EXE_wardline"),
        &["--home", home, "chat", "alice"],
        &[
            ("WARDLINE_PASSPHRASE", &bob.passphrase),
            ("WARDLINE_KDF_FAST", "1"),
        ],
    );
    // History, on the alternate screen.
    let at = term.wait_for(0, "\x1b[?1049h");
    let at = term.wait_for(at, "alice: Bed 4 obs are due");
    term.wait_for(0, "connected");

    // A live message, urgent, is marked as such.
    assert!(
        alice
            .run(&["send", "bob", "Bed 4 is deteriorating", "--urgent"])
            .ok
    );
    let at = term.wait_for(at, "URGENT alice: Bed 4 is deteriorating");

    // Typing and Enter send; alice receives it exactly once.
    term.type_keys("On my way\r");
    let at = term.wait_for(at, "you: On my way");
    let inbox = alice.run(&["--json", "inbox"]);
    assert!(inbox.ok, "{}", inbox.stderr);
    assert_eq!(texts(&inbox), ["On my way"]);
    // Alice's inbox read it: the read receipt reaches the view.
    term.wait_for(at, "On my way  ✓✓ read");

    // Bob saw alice's messages on screen: they count as read.
    let receipts = alice.run(&["--json", "conversations"]);
    assert_eq!(receipts.event("conversation")["unread"], 0);

    // Ctrl-D on an empty line leaves, and the terminal is given back.
    term.type_keys("\x04");
    assert_eq!(term.wait_exit(), 0);
    assert!(term.screen.contains("\x1b[?1049l"), "alternate screen left");
    Ok(())
}

#[test]
fn the_chat_warns_about_an_nhs_number_and_sends_only_when_confirmed() -> TestResult {
    let (_server, _root, _admin, alice, bob) = ward();
    assert!(alice.run(&["send", "bob", "hello"]).ok);
    let mut chat = bob.start(&["--json", "chat", "alice"]);
    chat.wait_event(|e| e["event"] == "message" && e["text"] == "hello");

    chat.send_line("Pt 943 476 5919 needs review");
    let warning = chat.wait_event(|e| e["event"] == "warning");
    assert!(
        warning["message"]
            .as_str()
            .is_some_and(|m| m.contains("/patient 9434765919")),
        "{warning}"
    );
    chat.send_line("/patient 943 476 5919 Needs review");
    let sent = chat.wait_event(|e| e["event"] == "sent");
    assert_eq!(sent["seq"], 2);
    chat.send_line("/urgent Call me");
    chat.wait_event(|e| e["event"] == "sent");
    let done = chat.finish();
    assert!(done.ok, "{}", done.stderr);

    let inbox = alice.run(&["--json", "inbox"]);
    let got = events(&inbox, "message");
    assert_eq!(got.len(), 2, "{}", inbox.stdout);
    assert_eq!(got[0]["text"], "Call me");
    assert_eq!(got[0]["priority"], "urgent");
    assert_eq!(got[1]["text"], "Needs review");
    assert_eq!(got[1]["patient"], "9434765919");
    Ok(())
}

#[test]
fn the_chat_reconnects_after_a_server_restart_and_loses_or_repeats_nothing() -> TestResult {
    let (mut server, _root, _admin, alice, bob) = ward();
    assert!(alice.run(&["send", "bob", "before"]).ok);
    let mut chat = bob.start(&["--json", "chat", "alice"]);
    chat.wait_event(|e| e["event"] == "message" && e["text"] == "before");
    assert!(alice.run(&["send", "bob", "live"]).ok);
    chat.wait_event(|e| e["event"] == "message" && e["text"] == "live");

    server.stop();
    // Several failed attempts: the next one is seconds away.
    for _ in 0..3 {
        chat.wait_event(|e| e["event"] == "connection" && e["state"] == "reconnecting");
    }
    // Typed while the server is down: waits in the outbox.
    chat.send_line("typed while offline");
    server.restart();
    // Sent while bob is still disconnected: comes with the catch-up.
    assert!(alice.run(&["send", "bob", "while you were away"]).ok);
    chat.wait_event(|e| e["event"] == "connection" && e["state"] == "connected");
    chat.wait_event(|e| e["event"] == "message" && e["text"] == "while you were away");
    chat.wait_event(|e| e["event"] == "sent");
    assert!(alice.run(&["send", "bob", "after"]).ok);
    chat.wait_event(|e| e["event"] == "message" && e["text"] == "after");
    let done = chat.finish();
    assert!(done.ok, "{}", done.stderr);

    // Every message from alice appeared exactly once, in order.
    let shown: Vec<String> = events(&done, "message")
        .iter()
        .filter(|m| m["sender_username"] == "alice")
        .map(|m| m["text"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert_eq!(shown, ["before", "live", "while you were away", "after"]);
    let mut seqs: BTreeMap<u64, usize> = BTreeMap::new();
    for m in events(&done, "message") {
        *seqs.entry(m["seq"].as_u64().unwrap_or(0)).or_default() += 1;
    }
    assert!(seqs.values().all(|n| *n == 1), "{seqs:?}");

    // What bob typed offline reached alice once.
    let inbox = alice.run(&["--json", "inbox"]);
    assert_eq!(texts(&inbox), ["typed while offline"]);
    let history = bob.run(&["--json", "history", "alice"]);
    let all: Vec<Value> = events(&history, "message");
    let numbers: Vec<u64> = all.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5], "{}", history.stdout);
    Ok(())
}
