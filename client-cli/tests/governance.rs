//! Administration through the `wardline` binary against the real server:
//! accounts by username, devices, the audit log and its verification,
//! residency, incident-mode registration, legal holds and retention, and
//! usernames (not ids) for people this device never looked up.

mod support;

use support::Run;
use support::client::{Client, add_user, events, ward};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn ok(run: &Run) {
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
}

fn account_state(admin: &Client, name: &str) -> String {
    let listed = admin.run(&["--json", "admin", "user", "list"]);
    ok(&listed);
    events(&listed, "account")
        .into_iter()
        .find(|a| a["username"] == name)
        .and_then(|a| a["state"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("{name} is not listed: {}", listed.stdout))
}

#[test]
fn admins_disable_enable_and_reset_accounts_named_by_username() -> TestResult {
    let (server, root, admin, alice, bob) = ward();
    let human = admin.run(&["admin", "user", "list"]);
    ok(&human);
    for needle in ["USERNAME", "alice", "clinician", "active", "GB"] {
        assert!(human.stdout.contains(needle), "{needle}: {}", human.stdout);
    }

    let disabled = admin.run(&[
        "--json",
        "admin",
        "user",
        "disable",
        "alice",
        "--reason",
        "left the trust",
    ]);
    ok(&disabled);
    let changed = disabled.event("account_changed");
    assert_eq!(
        (changed["username"].as_str(), changed["change"].as_str()),
        (Some("alice"), Some("disabled"))
    );
    assert_eq!(account_state(&admin, "alice"), "disabled");
    let shut_out = alice.run(&["inbox"]);
    assert!(!shut_out.ok);
    assert!(
        shut_out.stderr.contains("wardline login"),
        "{}",
        shut_out.stderr
    );

    // `lookup` no longer finds her, yet she can be named to enable her.
    let enabled = admin.run(&[
        "--json",
        "admin",
        "user",
        "enable",
        "alice",
        "--reason",
        "came back",
    ]);
    ok(&enabled);
    assert_eq!(enabled.event("account_changed")["change"], "enabled");
    ok(&alice.run(&["inbox"]));

    let own = admin.run(&["admin", "user", "disable", "admin", "--reason", "oops"]);
    assert!(!own.ok);
    assert!(
        own.stderr.contains("cannot disable your own account"),
        "{}",
        own.stderr
    );
    let nobody = admin.run(&["admin", "user", "disable", "nobody", "--reason", "x"]);
    assert!(
        nobody.stderr.contains("o user called 'nobody'"),
        "{}",
        nobody.stderr
    );

    let reset = admin.run(&[
        "--json",
        "admin",
        "user",
        "reset",
        "bob",
        "--reason",
        "lost phone",
    ]);
    ok(&reset);
    let code = reset.event("user_reset")["enrol_code"]
        .as_str()
        .ok_or("an enrolment code")?
        .to_owned();
    assert_eq!(account_state(&admin, "bob"), "enrolling");
    assert!(!bob.run(&["inbox"]).ok, "bob's sessions ended");
    // A later TOTP step than bob's first enrolment spent (replay protection).
    let _ = server.next_totp(bob.secret());
    let mut again = Client::new(&root, "bob");
    again.home = root.path().join("bob-again");
    ok(&again.enrol(&server, &["--server", &server.url, "--code", &code]));
    ok(&again.run(&["inbox"]));
    let human = admin.run(&[
        "admin",
        "user",
        "reset",
        "alice",
        "--reason",
        "forgot password",
    ]);
    ok(&human);
    assert!(
        human.stdout.contains("one-time enrolment code"),
        "{}",
        human.stdout
    );
    Ok(())
}

#[test]
fn non_admins_are_told_that_only_administrators_may_govern() {
    let (_server, _root, _admin, alice, _bob) = ward();
    for args in [
        &["admin", "user", "list"][..],
        &["admin", "audit"],
        &["admin", "residency"],
        &["admin", "incident-mode", "on", "--reason", "x"],
        &["admin", "user", "disable", "bob", "--reason", "x"],
    ] {
        let run = alice.run(&[&["--json"], args].concat());
        assert!(!run.ok, "{args:?}");
        assert_eq!(run.event("error")["code"], "forbidden", "{args:?}");
        assert!(
            run.stderr.contains("Only administrators can do this"),
            "{args:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn devices_show_when_added_and_a_revoked_device_is_signed_out() -> TestResult {
    let (server, root, admin, alice, _bob) = ward();
    let laptop = alice.second_device(&root);
    ok(&laptop.login(&server, &["--server", &server.url]));
    let listed = admin.run(&["admin", "devices", "alice"]);
    ok(&listed);
    for needle in ["ADDED", "LAST SEEN", "active"] {
        assert!(
            listed.stdout.contains(needle),
            "{needle}: {}",
            listed.stdout
        );
    }
    let device = laptop.device_id();
    let revoked = admin.run(&[
        "--json", "admin", "device", "revoke", &device, "--reason", "replaced",
    ]);
    ok(&revoked);
    assert_eq!(
        revoked.event("device_revoked")["device_id"],
        device.as_str()
    );
    assert!(!laptop.run(&["inbox"]).ok);
    let listed = admin.run(&["--json", "admin", "devices", "alice"]);
    let states: Vec<_> = events(&listed, "device")
        .iter()
        .map(|d| {
            (
                d["device_id"].as_str().unwrap_or("").to_owned(),
                d["state"].clone(),
            )
        })
        .collect();
    assert!(
        states
            .iter()
            .any(|(id, st)| *id == device && st == "revoked"),
        "{states:?}"
    );
    let unknown = admin.run(&["admin", "device", "revoke", "d-nope", "--reason", "x"]);
    assert!(
        unknown.stderr.contains("There is no device d-nope"),
        "{}",
        unknown.stderr
    );
    Ok(())
}

#[test]
fn the_audit_log_verifies_and_names_actors_and_targets() -> TestResult {
    let (_server, _root, admin, _alice, _bob) = ward();
    ok(&admin.run(&["admin", "user", "disable", "alice", "--reason", "audit me"]));
    ok(&admin.run(&[
        "admin",
        "user",
        "enable",
        "alice",
        "--reason",
        "audit me too",
    ]));

    let verified = admin.run(&["--json", "admin", "audit", "--verify"]);
    ok(&verified);
    let summary = verified.event("audit_verified");
    assert_eq!(summary["first_seq"], 1);
    assert!(summary["entries"].as_u64() >= Some(8), "{summary}");
    assert_eq!(summary["audit_key_source"], "server");
    let disable = events(&verified, "audit_entry")
        .into_iter()
        .find(|e| e["kind"] == "user_disabled")
        .ok_or("a user_disabled entry")?;
    assert_eq!(disable["actor_username"], "admin");
    assert_eq!(disable["target_username"], "alice");
    assert_eq!(disable["reason"], "audit me");

    let key = summary["audit_key"].as_str().ok_or("audit key")?;
    ok(&admin.run(&["admin", "audit", "--verify", "--audit-key", key]));

    let filtered = admin.run(&["--json", "admin", "audit", "--kind", "user_enabled"]);
    ok(&filtered);
    let kinds: Vec<_> = events(&filtered, "audit_entry")
        .iter()
        .map(|e| e["kind"].clone())
        .collect();
    assert_eq!(kinds, ["user_enabled"]);
    let by_admin = admin.run(&[
        "--json", "admin", "audit", "--actor", "admin", "--limit", "2",
    ]);
    ok(&by_admin);
    let rows = events(&by_admin, "audit_entry");
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|e| e["actor_username"] == "admin"));
    assert!(
        rows[0]["seq"].as_u64() < rows[1]["seq"].as_u64(),
        "oldest first"
    );

    let human = admin.run(&["admin", "audit", "--verify"]);
    ok(&human);
    for needle in [
        "TIME",
        "KIND",
        "ACTOR",
        "OUTCOME",
        "user_disabled",
        "verifies",
    ] {
        assert!(human.stdout.contains(needle), "{needle}: {}", human.stdout);
    }
    Ok(())
}

#[test]
fn incident_mode_registrations_wait_for_an_administrators_approval() -> TestResult {
    let (server, root, admin, _alice, _bob) = ward();
    let carol = Client::new(&root, "carol");
    let register = |c: &Client| {
        c.run(&[
            "--json",
            "register",
            "--server",
            &server.url,
            "--username",
            "carol",
            "--display-name",
            "Dr Carol Jones (locum)",
        ])
    };
    let closed = register(&carol);
    assert!(!closed.ok);
    assert!(
        closed.stderr.contains("Self-registration is closed"),
        "{}",
        closed.stderr
    );

    ok(&admin.run(&["admin", "incident-mode", "on", "--reason", "major incident"]));
    let registered = register(&carol);
    ok(&registered);
    let code = registered.event("registered")["enrol_code"]
        .as_str()
        .ok_or("a code")?
        .to_owned();
    let mut carol = carol;
    ok(&carol.enrol(&server, &["--server", &server.url, "--code", &code]));
    let waiting = carol.run(&["inbox"]);
    assert!(!waiting.ok);
    assert!(waiting.stderr.contains("approval"), "{}", waiting.stderr);

    let pending = admin.run(&[
        "--json",
        "admin",
        "user",
        "list",
        "--state",
        "pending-approval",
    ]);
    let names: Vec<_> = events(&pending, "account")
        .iter()
        .map(|a| a["username"].clone())
        .collect();
    assert_eq!(names, ["carol"]);
    let approved = admin.run(&["--json", "admin", "user", "approve", "carol"]);
    ok(&approved);
    assert_eq!(approved.event("account_changed")["change"], "approved");
    ok(&carol.run(&["inbox"]));
    let twice = admin.run(&["admin", "user", "approve", "carol"]);
    assert!(
        twice.stderr.contains("not awaiting approval"),
        "{}",
        twice.stderr
    );
    ok(&admin.run(&["admin", "incident-mode", "off", "--reason", "stood down"]));
    assert!(!register(&Client::new(&root, "dave")).ok);
    Ok(())
}

#[test]
fn residency_legal_holds_and_retention() -> TestResult {
    let (_server, _root, admin, alice, _bob) = ward();
    let report = admin.run(&["--json", "admin", "residency"]);
    ok(&report);
    let r = report.event("residency");
    assert_eq!(r["deployment_region"], "GB");
    assert!(
        r["permitted"]
            .as_array()
            .is_some_and(|p| p.contains(&"GB".into()))
    );
    let human = admin.run(&["admin", "residency"]);
    assert!(
        human.stdout.contains("Permitted regions"),
        "{}",
        human.stdout
    );

    let sent = alice.run(&["--json", "send", "bob", "Obs due at 14:00"]);
    ok(&sent);
    let conv = sent.event("sent")["conv_id"]
        .as_str()
        .ok_or("conv")?
        .to_owned();

    let held = admin.run(&[
        "--json",
        "admin",
        "legal-hold",
        "--user",
        "alice",
        "on",
        "--reason",
        "SAR 2026/118",
    ]);
    ok(&held);
    assert_eq!(held.event("legal_hold")["hold"], true);
    let listed = admin.run(&["--json", "admin", "user", "list"]);
    let alice_row = events(&listed, "account")
        .into_iter()
        .find(|a| a["username"] == "alice")
        .ok_or("alice")?;
    assert_eq!(alice_row["legal_hold"], true);
    // The admin is no member: the conversation is named by its id.
    let conv_hold = admin.run(&[
        "admin",
        "legal-hold",
        "--conversation",
        &conv,
        "on",
        "--reason",
        "SAR",
    ]);
    ok(&conv_hold);
    assert!(
        conv_hold.stdout.contains("Legal hold placed"),
        "{}",
        conv_hold.stdout
    );
    ok(&admin.run(&[
        "admin",
        "legal-hold",
        "--user",
        "alice",
        "off",
        "--reason",
        "closed",
    ]));

    let kept = alice.run(&["--json", "conversation", "retention", "bob", "7"]);
    ok(&kept);
    assert_eq!(kept.event("retention_set")["days"], 7);
    let too_long = alice.run(&["conversation", "retention", "bob", "365"]);
    assert!(!too_long.ok);
    assert!(
        too_long.stderr.contains("365 days is longer"),
        "{}",
        too_long.stderr
    );
    Ok(())
}

#[test]
fn members_and_senders_show_by_username_though_never_looked_up() -> TestResult {
    let (server, root, admin, alice, bob) = ward();
    let code = add_user(&admin, "carol");
    let mut carol = Client::new(&root, "carol");
    ok(&carol.enrol(&server, &["--server", &server.url, "--code", &code]));
    // Alice makes a group whose title names nobody; bob has never looked
    // carol up.
    ok(&alice.run(&[
        "conversation",
        "create",
        "--title",
        "Ward 10 night team",
        "bob",
        "carol",
    ]));
    ok(&carol.run(&["send", "Ward 10 night team", "Bed 4 is stable"]));
    let inbox = bob.run(&["--json", "inbox"]);
    ok(&inbox);
    assert_eq!(inbox.event("message")["sender_username"], "carol");
    let listed = bob.run(&["--json", "conversations"]);
    let row = listed.event("conversation");
    assert_eq!(row["members"], serde_json::json!(["bob", "alice", "carol"]));
    Ok(())
}

#[test]
fn register_needs_no_account_but_a_server_it_can_trust() {
    let root = tempfile::tempdir().expect("tempdir");
    let nobody = Client::new(&root, "nobody");
    let run = nobody.run(&[
        "register",
        "--server",
        "wss://wardline.nhs.example/v1",
        "--username",
        "x",
        "--display-name",
        "X",
    ]);
    assert!(!run.ok);
    assert!(run.stderr.contains("--pin"), "{}", run.stderr);
}
