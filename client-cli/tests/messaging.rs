//! Conversations and messages through the `wardline` binary against the
//! real server: every send option, the NHS-number checks, unread counts,
//! reading, history, group membership, and safety numbers.

mod support;

use serde_json::Value;
use support::client::{events, texts, ward};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
}

#[test]
fn every_send_option_arrives_intact_and_reading_marks_it_read() -> TestResult {
    let (_server, _root, _admin, alice, bob) = ward();
    let first = alice.run(&["--json", "send", "bob", "Can you see bed 4?"]);
    assert!(first.ok, "{}", first.stderr);
    let first = first.event("sent");
    let note = alice.run(&[
        "--json",
        "send",
        "bob",
        "Start IV co-amoxiclav",
        "--urgent",
        "--kind",
        "clinical-note",
        "--patient",
        "943-476-5919",
        "--reply-to",
        str_of(&first, "msg_id"),
    ]);
    assert!(note.ok, "{}", note.stderr);

    let listed = bob.run(&["--json", "conversations"]);
    assert!(listed.ok, "{}", listed.stderr);
    let conv = listed.event("conversation");
    assert_eq!(conv["unread"], 2);
    assert_eq!(conv["unread_urgent"], 1);
    assert_eq!(conv["title"], "alice & bob");

    let read = bob.run(&["--json", "read", "alice"]);
    assert!(read.ok, "{}", read.stderr);
    let messages = events(&read, "message");
    assert_eq!(messages.len(), 2, "{}", read.stdout);
    let m = &messages[1];
    assert_eq!(m["text"], "Start IV co-amoxiclav");
    assert_eq!(m["priority"], "urgent");
    assert_eq!(m["kind"], "clinical_note");
    assert_eq!(m["patient"], "9434765919");
    assert_eq!(m["reply_to"], first["msg_id"]);
    assert_eq!(m["sender_username"], "alice");

    // Read now, on the server too: nothing is unread any more.
    let listed = bob.run(&["--json", "conversations"]);
    assert_eq!(listed.event("conversation")["unread"], 0);
    let again = bob.run(&["read", "alice"]);
    assert!(
        again.stdout.contains("No unread messages"),
        "{}",
        again.stdout
    );
    // ...and the human form shows the marks and the patient tag.
    let history = bob.run(&["history", "alice"]);
    assert!(history.ok, "{}", history.stderr);
    assert!(
        history.stdout.contains("[URGENT] [CLINICAL NOTE]"),
        "{}",
        history.stdout
    );
    assert!(
        history.stdout.contains("(patient 943 476 5919)"),
        "{}",
        history.stdout
    );
    Ok(())
}

#[test]
fn an_nhs_number_in_the_text_is_questioned_before_anything_is_sent() -> TestResult {
    let (_server, _root, _admin, alice, bob) = ward();
    let text = "Pt 943 476 5919 needs a repeat ECG";

    let declined = alice.run_answering(&["--json", "send", "bob", text], "n");
    assert!(!declined.ok);
    let warning = declined.event("warning");
    assert_eq!(warning["code"], "nhs_number_in_text");
    assert!(
        str_of(&warning, "message").contains("--patient"),
        "{warning}"
    );
    assert_eq!(declined.event("error")["code"], "refused");
    assert!(declined.stderr.contains("Not sent"), "{}", declined.stderr);
    assert!(events(&declined, "sent").is_empty());

    let confirmed = alice.run_answering(&["--json", "send", "bob", text], "y");
    assert!(confirmed.ok, "{}", confirmed.stderr);
    assert_eq!(confirmed.event("sent")["seq"], 1);

    // The flag answers in advance; a patient tag means no question at all.
    let flagged = alice.run(&["send", "bob", text, "--allow-nhs-number-in-text"]);
    assert!(flagged.ok, "{}", flagged.stderr);
    let tagged = alice.run(&["--json", "send", "bob", text, "--patient", "9434765919"]);
    assert!(tagged.ok, "{}", tagged.stderr);
    assert!(events(&tagged, "warning").is_empty(), "{}", tagged.stdout);

    // A number with a wrong check digit is not a patient's: no question.
    let phone = alice.run(&["--json", "send", "bob", "Bleep 943 476 5918"]);
    assert!(phone.ok, "{}", phone.stderr);
    assert!(events(&phone, "warning").is_empty());

    let inbox = bob.run(&["--json", "inbox"]);
    assert_eq!(texts(&inbox), [text, text, text, "Bleep 943 476 5918"]);
    Ok(())
}

#[test]
fn a_patient_number_with_a_wrong_check_digit_is_refused_and_nothing_is_sent() -> TestResult {
    let (_server, _root, _admin, alice, bob) = ward();
    let out = alice.run(&[
        "--json",
        "send",
        "bob",
        "Repeat ECG",
        "--patient",
        "943 476 5918",
    ]);
    assert!(!out.ok);
    assert_eq!(out.code, Some(1));
    assert_eq!(out.event("error")["code"], "invalid_nhs_number");
    assert!(
        out.stderr
            .contains("'943 476 5918' is not a valid NHS number: its check digit is wrong"),
        "{}",
        out.stderr
    );
    let inbox = bob.run(&["--json", "inbox"]);
    assert!(inbox.stdout.is_empty(), "{}", inbox.stdout);
    Ok(())
}

#[test]
fn the_inbox_shows_unread_from_every_conversation_urgent_first() -> TestResult {
    let (_server, _root, admin, alice, bob) = ward();
    let created = alice.run(&[
        "--json",
        "conversation",
        "create",
        "--title",
        "Ward 10 night team",
        "bob",
        "admin",
    ]);
    assert!(created.ok, "{}", created.stderr);
    assert!(alice.run(&["send", "bob", "Routine: obs at 14:00"]).ok);
    assert!(
        alice
            .run(&[
                "send",
                "ward 10 night team",
                "Bed 4 arrest call",
                "--urgent"
            ])
            .ok
    );
    assert!(admin.run(&["send", "bob", "Rota updated"]).ok);

    let inbox = bob.run(&["--json", "inbox", "--peek"]);
    assert!(inbox.ok, "{}", inbox.stderr);
    assert_eq!(
        texts(&inbox),
        ["Bed 4 arrest call", "Routine: obs at 14:00", "Rota updated"]
    );
    // --peek left them unread; a plain inbox shows them and reads them.
    let human = bob.run(&["inbox"]);
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", human.stdout);
    assert!(
        lines[0].starts_with("[URGENT]") && lines[0].contains("Ward 10 night team"),
        "{}",
        human.stdout
    );
    assert_eq!(bob.run(&["inbox"]).stdout.trim(), "No new messages.");
    Ok(())
}

#[test]
fn group_conversations_are_made_and_changed_by_username() -> TestResult {
    let (_server, _root, admin, alice, bob) = ward();
    let created = alice.run(&[
        "--json",
        "conversation",
        "create",
        "--title",
        "Theatre 3",
        "bob",
    ]);
    assert!(created.ok, "{}", created.stderr);
    let created = created.event("conversation_created");
    assert_eq!(created["members"], serde_json::json!(["alice", "bob"]));

    let unknown = alice.run(&["conversation", "add", "Theatre 3", "nobody"]);
    assert!(!unknown.ok);
    assert!(
        unknown.stderr.contains("No user called 'nobody'"),
        "{}",
        unknown.stderr
    );

    let added = alice.run(&["--json", "conversation", "add", "Theatre 3", "admin"]);
    assert!(added.ok, "{}", added.stderr);
    let added = added.event("members_changed");
    assert_eq!(added["added"], serde_json::json!(["admin"]));

    assert!(alice.run(&["send", "theatre 3", "List starts 13:30"]).ok);
    let admin_inbox = admin.run(&["--json", "inbox"]);
    assert_eq!(texts(&admin_inbox), ["List starts 13:30"]);

    // Bob leaves; the conversation is gone from his list, not from alice's.
    let left = bob.run(&["--json", "conversation", "remove", "Theatre 3", "bob"]);
    assert!(left.ok, "{}", left.stderr);
    let bobs = bob.run(&["--json", "conversations"]);
    assert!(
        events(&bobs, "conversation")
            .iter()
            .all(|c| c["title"] != "Theatre 3"),
        "{}",
        bobs.stdout
    );
    let alices = alice.run(&["conversations"]);
    assert!(alices.stdout.contains("Theatre 3"), "{}", alices.stdout);
    assert!(alices.stdout.starts_with("UNREAD"), "{}", alices.stdout);
    Ok(())
}

#[test]
fn history_pages_back_through_a_conversation() -> TestResult {
    let (_server, _root, _admin, alice, bob) = ward();
    for i in 1..=5 {
        assert!(alice.run(&["send", "bob", &format!("update {i}")]).ok);
    }
    let last_two = bob.run(&["--json", "history", "alice", "--limit", "2"]);
    assert!(last_two.ok, "{}", last_two.stderr);
    assert_eq!(texts(&last_two), ["update 4", "update 5"]);
    let earlier = bob.run(&[
        "--json", "history", "alice", "--limit", "2", "--before", "4",
    ]);
    assert_eq!(texts(&earlier), ["update 2", "update 3"]);
    Ok(())
}

#[test]
fn safety_numbers_match_on_both_sides_and_new_devices_are_flagged_until_verified() -> TestResult {
    let (server, root, _admin, alice, bob) = ward();
    assert!(alice.run(&["send", "bob", "hello"]).ok);

    let alices_view = alice.run(&["--json", "verify", "bob"]);
    assert!(alices_view.ok, "{}", alices_view.stderr);
    let bobs_view = bob.run(&["--json", "verify", "alice"]);
    let a = alices_view.event("safety_number");
    let b = bobs_view.event("safety_number");
    assert_eq!(a["safety_number"], b["safety_number"]);
    let number = str_of(&a, "safety_number");
    assert_eq!(number.split(' ').count(), 12);
    assert!(number.split(' ').all(|g| g.len() == 5));
    assert_eq!(a["standing"], "unverified");

    // Bob registers a laptop: alice's sends flag it, every time.
    let laptop = bob.second_device(&root);
    let login = laptop.login(&server, &["--server", &server.url]);
    assert!(login.ok, "{}", login.stderr);
    for _ in 0..2 {
        let sent = alice.run(&["--json", "send", "bob", "still there?"]);
        assert!(sent.ok, "{}", sent.stderr);
        let warning = sent.event("warning");
        assert_eq!(warning["code"], "unverified_new_device");
        assert!(
            str_of(&warning, "message").contains("wardline verify bob"),
            "{warning}"
        );
    }
    let flagged = alice.run(&["--json", "verify", "bob"]);
    let standings: Vec<String> = events(&flagged, "safety_number")
        .iter()
        .map(|e| e["standing"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert!(standings.iter().any(|s| s == "new"), "{standings:?}");

    let confirmed = alice.run(&["--json", "verify", "bob", "--confirm"]);
    assert!(confirmed.ok, "{}", confirmed.stderr);
    assert_eq!(confirmed.event("verified")["devices"], 2);
    let quiet = alice.run(&["--json", "send", "bob", "thanks"]);
    assert!(quiet.ok, "{}", quiet.stderr);
    assert!(events(&quiet, "warning").is_empty(), "{}", quiet.stdout);
    Ok(())
}

#[test]
fn an_urgent_sender_can_wait_until_it_is_read_and_is_told_whom_to_phone() -> TestResult {
    let (_server, _root, admin, alice, bob) = ward();
    let created = alice.run(&[
        "conversation",
        "create",
        "--title",
        "Resus team",
        "bob",
        "admin",
    ]);
    assert!(created.ok, "{}", created.stderr);

    // Bob reads it while alice waits; the admin does not.
    let mut waiting = alice.start(&[
        "--json",
        "send",
        "resus team",
        "Bed 4 arrest, come now",
        "--urgent",
        "--wait-read",
        "60s",
    ]);
    waiting.wait_event(|e| e["event"] == "sent");
    let read = bob.run(&["read", "resus team"]);
    assert!(read.ok, "{}", read.stderr);
    let receipt = waiting.wait_event(|e| e["event"] == "receipt");
    assert_eq!(receipt["username"], "bob");
    assert_eq!(receipt["kind"], "read");
    assert!(admin.run(&["read", "resus team"]).ok);
    let done = waiting.finish();
    assert!(done.ok, "{}", done.stderr);

    // Nobody reads this one in time: the sender is told whom to phone.
    let unread = alice.run(&[
        "send",
        "resus team",
        "Still need help",
        "--urgent",
        "--wait-read",
        "1s",
    ]);
    assert!(!unread.ok);
    assert!(
        unread.stderr.contains("was not read by")
            && unread.stderr.contains("bob")
            && unread.stderr.contains("phone them"),
        "{}",
        unread.stderr
    );
    Ok(())
}
