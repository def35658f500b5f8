//! Exports to the health record through the `wardline` binary against the
//! real server: what is chosen, the patient rule, re-verification, the file
//! itself, and `verify-export` catching a changed character.

mod support;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::Duration;

use support::client::{Client, events, ward};
use support::{Run, Running};
use wardline_cli::keystore::Keystore;
use wardline_protocol::Secret;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const ADA: &str = "9434765919";
const BEN: &str = "4010232137";

fn ok(run: &Run) {
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
}

fn note(from: &Client, to: &str, text: &str, patient: Option<&str>) -> String {
    let mut args = vec!["--json", "send", to, text, "--kind", "clinical-note"];
    if let Some(p) = patient {
        args.extend(["--patient", p]);
    }
    let sent = from.run(&args);
    ok(&sent);
    sent.event("sent")["msg_id"]
        .as_str()
        .expect("a message id")
        .to_owned()
}

fn export(who: &Client, out: &Path, extra: &[&str]) -> Run {
    let out = out.to_string_lossy();
    who.run(&[&["--json", "export", "alice", "--out", &out], extra].concat())
}

fn texts(bundle: &serde_json::Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| e["resource"]["payload"][0]["contentString"].as_str())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_clinical_note_exports_verifies_and_a_changed_character_is_caught() -> TestResult {
    let (_server, root, _admin, alice, bob) = ward();
    let id = note(&alice, "bob", "Start IV co-amoxiclav 1.2 g tds", Some(ADA));
    ok(&alice.run(&["send", "bob", "Thanks, see you at handover"]));
    ok(&bob.run(&["inbox"]));

    let file = root.path().join("bed4.json");
    let exported = export(&bob, &file, &[]);
    ok(&exported);
    let summary = exported.event("exported");
    assert_eq!(summary["messages"], 1, "the ordinary message stays out");
    assert_eq!(summary["bundle_type"], "collection");
    assert_eq!(summary["file"], file.to_string_lossy().as_ref());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&file)?.permissions().mode() & 0o777,
            0o600
        );
    }
    let text = std::fs::read_to_string(&file)?;
    assert!(text.contains("\n  \""), "pretty JSON");
    let bundle: serde_json::Value = serde_json::from_str(&text)?;
    assert_eq!(texts(&bundle), ["Start IV co-amoxiclav 1.2 g tds"]);
    let comm = &bundle["entry"][0]["resource"];
    assert_eq!(comm["sender"]["identifier"]["value"], "alice");
    assert_eq!(comm["sender"]["display"], "alice");
    assert_eq!(comm["recipient"][0]["identifier"]["value"], "bob");
    assert_eq!(comm["subject"]["identifier"]["value"], ADA);
    let enterer = &bundle["entry"][1]["resource"]["agent"][1]["who"]["identifier"]["value"];
    assert_eq!(*enterer, "bob");

    let checked = bob.run(&["--json", "verify-export", &file.to_string_lossy()]);
    ok(&checked);
    let entry = checked.event("export_entry");
    assert_eq!(entry["msg_id"], id.as_str());
    assert_eq!(entry["key"], "matches");
    assert_eq!(entry["sender_username"], "alice");
    assert_eq!(checked.event("export_checked")["failed"], 0);
    // Anyone can check it; without a keystore the keys are not compared.
    let stranger = Client::new(&root, "stranger");
    let anyone = stranger.run(&["--json", "verify-export", &file.to_string_lossy()]);
    ok(&anyone);
    assert_eq!(anyone.event("export_entry")["key"], "not_checked");

    let forged = root.path().join("forged.json");
    std::fs::write(&forged, text.replace("1.2 g tds", "1.2 g qds"))?;
    let caught = bob.run(&["--json", "verify-export", &forged.to_string_lossy()]);
    assert!(!caught.ok);
    assert_eq!(caught.code, Some(1));
    let error = caught.event("error");
    assert_eq!(error["code"], "export_invalid");
    assert!(
        error["message"].as_str().is_some_and(|m| m.contains(&id)),
        "{error}"
    );
    assert!(
        caught.event("export_entry")["failures"]
            .as_array()
            .is_some_and(|f| f
                .iter()
                .any(|x| x.as_str().is_some_and(|x| x.contains("text differs"))))
    );
    let human = bob.run(&["verify-export", &forged.to_string_lossy()]);
    assert!(human.stdout.contains("FAILED"), "{}", human.stdout);

    // The sender can export her own message too: it was sealed to her device.
    let own = root.path().join("own.json");
    let out = alice.run(&[
        "--json",
        "export",
        "bob",
        "--out",
        &own.to_string_lossy(),
        "--transaction",
    ]);
    ok(&out);
    assert_eq!(out.event("exported")["bundle_type"], "transaction");
    ok(&alice.run(&["verify-export", &own.to_string_lossy()]));
    Ok(())
}

#[test]
fn another_patients_messages_stay_out_and_untagged_ones_need_a_confirmed_link() -> TestResult {
    let (_server, root, _admin, alice, bob) = ward();
    note(&alice, "bob", "Ada: repeat ECG", Some(ADA));
    note(&alice, "bob", "Ben: stop warfarin", Some(BEN));
    note(&alice, "bob", "Bed 4 to be reviewed by the registrar", None);
    ok(&bob.run(&["inbox"]));

    let declined = root.path().join("declined.json");
    let run = bob.run_answering(
        &[
            "--json",
            "export",
            "alice",
            "--patient",
            "943 476 5919",
            "--out",
            &declined.to_string_lossy(),
        ],
        "n",
    );
    ok(&run);
    let s = run.event("exported");
    assert_eq!(
        (
            s["messages"].as_u64(),
            s["other_patient"].as_u64(),
            s["no_patient"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );

    let confirmed = root.path().join("confirmed.json");
    let run = bob.run_answering(
        &[
            "--json",
            "export",
            "alice",
            "--patient",
            "943 476 5919",
            "--out",
            &confirmed.to_string_lossy(),
        ],
        "y",
    );
    ok(&run);
    let s = run.event("exported");
    assert_eq!(
        (s["messages"].as_u64(), s["linked_by_exporter"].as_u64()),
        (Some(2), Some(1))
    );
    let bundle: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&confirmed)?)?;
    assert_eq!(
        texts(&bundle),
        ["Ada: repeat ECG", "Bed 4 to be reviewed by the registrar"]
    );
    assert!(!std::fs::read_to_string(&confirmed)?.contains("warfarin"));
    ok(&bob.run(&["verify-export", &confirmed.to_string_lossy()]));

    // Without --patient, the untagged note cannot go in.
    let plain = root.path().join("plain.json");
    let run = export(&bob, &plain, &[]);
    ok(&run);
    assert_eq!(run.event("exported")["messages"], 2);
    assert_eq!(run.event("exported")["no_patient"], 1);
    Ok(())
}

#[test]
fn an_export_of_nothing_says_why_and_writes_nothing() {
    let (_server, root, _admin, alice, bob) = ward();
    ok(&alice.run(&["send", "bob", "Coffee?"]));
    ok(&bob.run(&["inbox"]));
    let file = root.path().join("none.json");
    let run = export(&bob, &file, &[]);
    assert!(!run.ok);
    assert!(run.stderr.contains("--kind all"), "{}", run.stderr);
    assert!(!file.exists());
    let old = export(&bob, &file, &["--kind", "all", "--until", "2020-01-01"]);
    assert!(!old.ok);
    assert!(old.stderr.contains("time window"), "{}", old.stderr);
}

#[test]
fn messages_cached_before_exports_existed_are_fetched_again_and_kept() -> TestResult {
    let (_server, root, _admin, alice, bob) = ward();
    note(&alice, "bob", "Ada: repeat ECG", Some(ADA));
    ok(&bob.run(&["inbox"]));
    // Strip the envelope from the cache, as an older client kept it.
    let pass = Secret::new(bob.passphrase.as_str());
    let mut keystore = Keystore::open(&bob.home, &pass)?;
    for m in &mut keystore.state_mut().messages {
        m.envelope = None;
    }
    keystore.save()?;

    let file = root.path().join("refetched.json");
    let run = export(&bob, &file, &[]);
    ok(&run);
    assert_eq!(run.event("exported")["messages"], 1);
    ok(&bob.run(&["verify-export", &file.to_string_lossy()]));
    let keystore = Keystore::open(&bob.home, &pass)?;
    assert!(
        keystore
            .state()
            .messages
            .iter()
            .all(|m| m.envelope.is_some())
    );
    assert!(events(&run, "warning").is_empty(), "{}", run.stdout);
    Ok(())
}

/// How the fake FHIR server answers one POST.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// A chunked transaction-response creating every entry.
    Created,
    /// HTTP 401 with an OperationOutcome, as for a wrong token.
    Unauthorized,
    /// HTTP 200, but a transaction-response in which the entry at this
    /// position failed.
    EntryFailed(usize),
    /// Reads the request and closes the connection without answering.
    HangUp,
    /// HTTP 200 with an HTML page, as a proxy's login page.
    Html,
    /// HTTP 200 with a transaction-response one entry short.
    TooFew,
}

/// One POST as the fake FHIR server received it.
struct Received {
    head: String,
    bundle: serde_json::Value,
}

/// Reads one HTTP request with a Content-Length body.
fn read_request(conn: &mut std::net::TcpStream) -> Received {
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("a read timeout");
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = conn.read(&mut buf).expect("the request");
        assert!(n > 0, "the request ended early");
        raw.extend_from_slice(&buf[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("a Content-Length");
        if raw.len() >= end + 4 + len {
            let bundle = serde_json::from_slice(&raw[end + 4..end + 4 + len]).expect("JSON");
            return Received { head, bundle };
        }
    }
}

/// A FHIR server that takes one POST per answer, in order, answers each
/// as told, and hands back what it received.
fn fake_fhir_server(
    answers: Vec<Answer>,
) -> std::io::Result<(u16, std::thread::JoinHandle<Vec<Received>>)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = std::thread::spawn(move || {
        let mut received = Vec::new();
        for answer in answers {
            let (mut conn, _) = listener.accept().expect("a connection");
            let request = read_request(&mut conn);
            let entries = request.bundle["entry"].as_array().map_or(0, Vec::len);
            let created = serde_json::json!({"response": {"status": "201 Created"}});
            match answer {
                Answer::Created => {
                    let answer = serde_json::json!({
                        "resourceType": "Bundle",
                        "type": "transaction-response",
                        "entry": vec![created; entries],
                    })
                    .to_string();
                    let (a, b) = answer.split_at(answer.len() / 2);
                    write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                        a.len(),
                        b.len()
                    )
                    .expect("the answer");
                }
                Answer::Unauthorized => {
                    let outcome = serde_json::json!({
                        "resourceType": "OperationOutcome",
                        "issue": [{"severity": "error", "code": "login",
                                   "diagnostics": "the bearer token has expired"}],
                    })
                    .to_string();
                    write!(
                        conn,
                        "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/fhir+json\r\nWWW-Authenticate: Bearer\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{outcome}",
                        outcome.len()
                    )
                    .expect("the answer");
                }
                Answer::EntryFailed(failed) => {
                    let mut statuses = vec![created; entries];
                    statuses[failed] = serde_json::json!({"response": {
                        "status": "422 Unprocessable Entity",
                        "outcome": {"resourceType": "OperationOutcome", "issue": [
                            {"severity": "error", "code": "processing",
                             "diagnostics": "subject: no such patient on this system"}]},
                    }});
                    let answer = serde_json::json!({
                        "resourceType": "Bundle",
                        "type": "transaction-response",
                        "entry": statuses,
                    })
                    .to_string();
                    write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                        answer.len()
                    )
                    .expect("the answer");
                }
                Answer::Html => {
                    let page = "<html><body><h1>Proxy login</h1></body></html>";
                    write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                        page.len()
                    )
                    .expect("the answer");
                }
                Answer::TooFew => {
                    let answer = serde_json::json!({
                        "resourceType": "Bundle",
                        "type": "transaction-response",
                        "entry": vec![created; entries.saturating_sub(1)],
                    })
                    .to_string();
                    write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                        answer.len()
                    )
                    .expect("the answer");
                }
                Answer::HangUp => {}
            }
            drop(conn);
            received.push(request);
        }
        received
    });
    Ok((port, server))
}

/// `bob export alice --out FILE --post URL` with `token`, as JSON.
fn export_and_post(bob: &Client, file: &Path, url: &str, token: &str) -> Run {
    let mut command = bob.command(&[
        "--json",
        "export",
        "alice",
        "--out",
        &file.to_string_lossy(),
        "--post",
        url,
    ]);
    command.env("WARDLINE_FHIR_TOKEN", token);
    Running::start(&mut command).finish()
}

/// Runs the retry command a failed export printed, with `token`.
fn retry(bob: &Client, failed: &Run, token: &str) -> Run {
    let args: Vec<String> = failed.event("error")["incomplete"]["retry_args"]
        .as_array()
        .expect("retry arguments")
        .iter()
        .map(|a| a.as_str().expect("a string").to_owned())
        .collect();
    let mut command = bob.command_line(&args);
    command.env("WARDLINE_FHIR_TOKEN", token);
    Running::start(&mut command).finish()
}

/// How many times the audit log records an export of these messages to
/// each of `destinations`.
fn audited(admin: &Client, destinations: &[&str]) -> Vec<usize> {
    let audit = admin.run(&["--json", "admin", "audit", "--kind", "record_export"]);
    ok(&audit);
    let targets: Vec<String> = events(&audit, "audit_entry")
        .iter()
        .filter_map(|e| e["target"].as_str().map(str::to_owned))
        .collect();
    destinations
        .iter()
        .map(|d| targets.iter().filter(|t| t == d).count())
        .collect()
}

/// Checks that a failed post says what was done and what was not, and
/// returns its `incomplete` report.
fn assert_post_failed(run: &Run, file: &Path, url: &str) -> serde_json::Value {
    assert!(!run.ok, "{}", run.stdout);
    assert_eq!(run.code, Some(1));
    assert!(
        run.events().iter().all(|e| e["event"] != "posted"),
        "nothing is recorded as posted: {}",
        run.stdout
    );
    let file_name = file.to_string_lossy();
    assert_eq!(run.event("exported")["file"], file_name.as_ref());
    let error = run.event("error");
    assert_eq!(error["code"], "fhir_post_failed", "{error}");
    let incomplete = &error["incomplete"];
    assert_eq!(incomplete["file"], file_name.as_ref());
    assert_eq!(incomplete["file_written"], true);
    assert_eq!(incomplete["posted"], false);
    assert_eq!(incomplete["url"], url);
    assert_eq!(incomplete["audited"], serde_json::json!([file_name]));
    let args = incomplete["retry_args"].as_array().expect("retry_args");
    assert_eq!(
        args.iter().filter(|a| *a == "--force").count(),
        1,
        "the file exists now, so re-running needs --force, once: {args:?}"
    );
    assert!(args.iter().any(|a| a == "--post") && args.iter().any(|a| a == url));
    let retry = incomplete["retry"].as_str().expect("retry");
    let message = error["message"].as_str().expect("message");
    for needle in [
        &format!("Posting to {url} failed"),
        &format!("The bundle file was written: {file_name}"),
        "The post was NOT recorded as done",
        &format!("not show these messages as exported to {url}"),
        "To retry (every entry is a conditional create",
        retry,
    ] {
        assert!(message.contains(needle), "{needle:?} in {message}");
        assert!(run.stderr.contains(needle), "{needle:?} in {}", run.stderr);
    }
    assert!(file.exists(), "the file stays, as the message says");
    incomplete.clone()
}

#[test]
fn a_refused_post_says_what_was_done_and_how_to_retry_and_the_retry_posts_it() -> TestResult {
    let (_server, root, admin, alice, bob) = ward();
    note(&alice, "bob", "Ada: repeat ECG", Some(ADA));
    ok(&bob.run(&["inbox"]));
    let (port, fhir) = fake_fhir_server(vec![Answer::Unauthorized, Answer::Created])?;
    let file = root.path().join("refused.json");
    let url = format!("http://127.0.0.1:{port}/fhir/r4");

    let refused = export_and_post(&bob, &file, &url, "an-expired-token");
    let incomplete = assert_post_failed(&refused, &file, &url);
    assert_eq!(incomplete["http_status"], 401);
    assert_eq!(incomplete["fhir_stored"], "nothing");
    assert_eq!(incomplete["failed_entries"], serde_json::json!([]));
    let message = refused.event("error")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for needle in [
        "HTTP 401 Unauthorized: the bearer token has expired",
        "none of it is in the health record",
        "did not accept the bearer token in WARDLINE_FHIR_TOKEN",
    ] {
        assert!(message.contains(needle), "{needle:?} in {message}");
    }
    assert!(
        !message.contains("an-expired-token"),
        "the token is never shown"
    );
    // The file's export is audited; the post is not.
    let (file_name, url_name) = (file.to_string_lossy().into_owned(), url.clone());
    assert_eq!(audited(&admin, &[&file_name, &url_name]), [1, 0]);
    // Without --force the same command would stop at the existing file.
    let plain = export_and_post(&bob, &file, &url, "tok-123");
    assert!(!plain.ok);
    assert!(plain.stderr.contains("--force"), "{}", plain.stderr);

    let retried = retry(&bob, &refused, "tok-123");
    ok(&retried);
    let posted = retried.event("posted");
    assert_eq!(
        (posted["http_status"].as_u64(), posted["created"].as_u64()),
        (Some(200), Some(2))
    );
    assert_eq!(audited(&admin, &[&file_name, &url_name]), [2, 1]);
    let received = fhir.join().map_err(|_| "the FHIR server failed")?;
    assert_eq!(received.len(), 2);
    assert!(
        received[0]
            .head
            .contains("Authorization: Bearer an-expired-token")
    );
    assert!(received[1].head.contains("Authorization: Bearer tok-123"));
    let requests = |r: &Received| {
        r.bundle["entry"]
            .as_array()
            .map(|e| e.iter().map(|x| x["request"].clone()).collect::<Vec<_>>())
    };
    assert_eq!(
        requests(&received[0]),
        requests(&received[1]),
        "the retry posts the same conditional creates"
    );
    ok(&bob.run(&["verify-export", &file.to_string_lossy()]));
    Ok(())
}

#[test]
fn a_post_with_failed_entries_or_no_answer_names_them_and_a_retry_posts_it() -> TestResult {
    let (_server, root, admin, alice, bob) = ward();
    note(&alice, "bob", "Ada: repeat ECG", Some(ADA));
    let second = note(&alice, "bob", "Ada: stop the heparin infusion", Some(ADA));
    ok(&bob.run(&["inbox"]));

    // No FHIR server there at all: nothing reached one.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?;
    let nobody = format!("http://127.0.0.1:{}/fhir", closed.local_addr()?.port());
    drop(closed);
    let unsent_file = root.path().join("unsent.json");
    let unsent = export_and_post(&bob, &unsent_file, &nobody, "tok-123");
    let incomplete = assert_post_failed(&unsent, &unsent_file, &nobody);
    assert_eq!(incomplete["fhir_stored"], "nothing");
    assert!(incomplete.get("http_status").is_none(), "{incomplete}");
    assert!(
        unsent.stderr.contains("Nothing reached the FHIR server"),
        "{}",
        unsent.stderr
    );

    let (port, fhir) = fake_fhir_server(vec![
        Answer::EntryFailed(2),
        Answer::HangUp,
        Answer::Created,
    ])?;
    let file = root.path().join("partly.json");
    let url = format!("http://127.0.0.1:{port}/fhir/r4");

    let partly = export_and_post(&bob, &file, &url, "tok-123");
    let incomplete = assert_post_failed(&partly, &file, &url);
    assert_eq!(incomplete["http_status"], 200);
    assert_eq!(incomplete["fhir_stored"], "some");
    let failed = incomplete["failed_entries"].as_array().expect("entries");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["index"], 2);
    assert_eq!(failed[0]["resource_type"], "Communication");
    assert_eq!(failed[0]["msg_id"], second.as_str());
    assert_eq!(failed[0]["status"], "422 Unprocessable Entity");
    assert_eq!(
        failed[0]["diagnostics"],
        "subject: no such patient on this system"
    );
    let line = format!(
        "entry 2 (the Communication of message {second}): 422 Unprocessable Entity: subject: no such patient on this system"
    );
    assert!(
        partly.stderr.contains(&line),
        "{line:?} in {}",
        partly.stderr
    );
    assert!(
        partly.stderr.contains("reports 1 entry of the 4 as failed"),
        "{}",
        partly.stderr
    );

    // The retry: the server hangs up without answering; that is reported
    // as unknown, and the command to retry is the same again.
    let hung = retry(&bob, &partly, "tok-123");
    let again = assert_post_failed(&hung, &file, &url);
    assert_eq!(again["fhir_stored"], "unknown");
    assert_eq!(again["retry_args"], incomplete["retry_args"]);
    assert!(
        hung.stderr.contains("may or may not have stored it"),
        "{}",
        hung.stderr
    );

    let done = retry(&bob, &hung, "tok-123");
    ok(&done);
    assert_eq!(done.event("posted")["created"], 4);
    let (file_name, url_name) = (file.to_string_lossy().into_owned(), url.clone());
    assert_eq!(
        audited(&admin, &[&file_name, &url_name]),
        [3, 1],
        "each run wrote and audited the file; only the post that succeeded is audited"
    );
    assert_eq!(fhir.join().map_err(|_| "the FHIR server failed")?.len(), 3);
    Ok(())
}

#[test]
fn a_2xx_answer_that_is_not_a_full_transaction_response_is_a_failed_post() -> TestResult {
    let (_server, root, admin, alice, bob) = ward();
    note(&alice, "bob", "Ada: repeat ECG", Some(ADA));
    ok(&bob.run(&["inbox"]));
    let (port, fhir) = fake_fhir_server(vec![Answer::Html, Answer::TooFew, Answer::Created])?;
    let file = root.path().join("unanswered.json");
    let url = format!("http://127.0.0.1:{port}/fhir/r4");
    let (file_name, url_name) = (file.to_string_lossy().into_owned(), url.clone());

    // A proxy's HTML page with 200 OK: not a post that succeeded.
    let html = export_and_post(&bob, &file, &url, "tok-123");
    let incomplete = assert_post_failed(&html, &file, &url);
    assert_eq!(incomplete["http_status"], 200);
    assert_eq!(incomplete["fhir_stored"], "unknown");
    for needle in [
        "answered HTTP 200 OK but its answer is not FHIR JSON, not a transaction-response (it begins \"<html><body><h1>Proxy login",
        "may or may not have stored it",
        "ask the FHIR server's administrators whether the bundle arrived",
    ] {
        assert!(
            html.stderr.contains(needle),
            "{needle:?} in {}",
            html.stderr
        );
    }
    assert_eq!(audited(&admin, &[&file_name, &url_name]), [1, 0]);

    // A transaction-response one entry short: not a success either.
    let short = retry(&bob, &html, "tok-123");
    let again = assert_post_failed(&short, &file, &url);
    assert_eq!(again["fhir_stored"], "unknown");
    assert_eq!(again["retry_args"], incomplete["retry_args"]);
    assert!(
        short.stderr.contains(
            "answered HTTP 200 OK but its transaction-response has 1 entry for the 2 sent"
        ),
        "{}",
        short.stderr
    );
    assert_eq!(audited(&admin, &[&file_name, &url_name]), [2, 0]);

    let done = retry(&bob, &short, "tok-123");
    ok(&done);
    assert_eq!(done.event("posted")["created"], 2);
    assert_eq!(audited(&admin, &[&file_name, &url_name]), [3, 1]);
    assert_eq!(fhir.join().map_err(|_| "the FHIR server failed")?.len(), 3);
    Ok(())
}

#[test]
fn an_export_is_posted_to_a_fhir_server_as_a_transaction() -> TestResult {
    let (_server, root, _admin, alice, bob) = ward();
    note(&alice, "bob", "Ada: repeat ECG", Some(ADA));
    ok(&bob.run(&["inbox"]));
    let (port, fhir) = fake_fhir_server(vec![Answer::Created])?;
    let file = root.path().join("posted.json");
    let url = format!("http://127.0.0.1:{port}/fhir/r4");
    let mut command = bob.command(&[
        "--json",
        "export",
        "alice",
        "--out",
        &file.to_string_lossy(),
        "--post",
        &url,
    ]);
    command.env("WARDLINE_FHIR_TOKEN", "tok-123");
    let run = Running::start(&mut command).finish();
    ok(&run);
    assert_eq!(run.event("exported")["bundle_type"], "transaction");
    let posted = run.event("posted");
    assert_eq!(
        (posted["http_status"].as_u64(), posted["created"].as_u64()),
        (Some(200), Some(2))
    );
    let Received { head, bundle } = fhir.join().map_err(|_| "the FHIR server failed")?.remove(0);
    assert!(head.starts_with("POST /fhir/r4 HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("Authorization: Bearer tok-123"), "{head}");
    assert!(
        head.contains("Content-Type: application/fhir+json"),
        "{head}"
    );
    assert_eq!(bundle["type"], "transaction");
    assert_eq!(bundle["entry"][0]["request"]["method"], "POST");

    let remote = bob.run(&[
        "export",
        "alice",
        "--out",
        &root.path().join("x.json").to_string_lossy(),
        "--post",
        "http://fhir.trust.nhs.uk/r4",
    ]);
    assert!(!remote.ok);
    assert!(remote.stderr.contains("https://"), "{}", remote.stderr);
    assert!(
        !root.path().join("x.json").exists(),
        "refused before anything was done"
    );
    Ok(())
}

/// Replaces, in `who`'s keystore, the keys pinned for `user`'s device
/// `device`, as `wardline verify USER --confirm` does once the server
/// publishes other keys for a device this one knows and the user has
/// verified them in person. With `verified_before`, the keys pinned until
/// then had been verified in person too (`verify --confirm` earlier).
/// (The real server never gives a device id new keys, so the new keys are
/// made up here; no message is signed with them.) Returns when the pin
/// was replaced.
fn replace_pinned_keys(
    who: &Client,
    user: &str,
    device: &str,
    verified_before: bool,
) -> Result<wardline_protocol::Timestamp, Box<dyn std::error::Error>> {
    let pass = Secret::new(who.passphrase.as_str());
    let mut keystore = Keystore::open(&who.home, &pass)?;
    let user = wardline_protocol::UserId::parse(user)?;
    let new_keys = wardline_protocol::DeviceSecrets::from_bytes(&[0x5a; 32], &[0xa5; 32]).public();
    let published = wardline_protocol::wire::DeviceInfo {
        user_id: user.clone(),
        device_id: wardline_protocol::DeviceId::parse(device)?,
        kem_pk: new_keys.kem_pk,
        sig_pk: new_keys.sig_pk,
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let now = wardline_protocol::Timestamp::from_unix_millis(i64::try_from(now.as_millis())?)?;
    let state = keystore.state_mut();
    if verified_before {
        let pinned = *state
            .device_keys(&user, &published.device_id)
            .ok_or("the device is not pinned")?;
        let earlier = wardline_protocol::wire::DeviceInfo {
            kem_pk: pinned.kem_pk,
            sig_pk: pinned.sig_pk,
            ..published.clone()
        };
        assert_eq!(state.confirm_verified(&user, &[earlier], &now), 1);
    }
    state.remember_devices_at(std::slice::from_ref(&published), &now);
    assert_eq!(state.confirm_verified(&user, &[published], &now), 1);
    keystore.save()?;
    Ok(now)
}

#[test]
fn a_message_signed_with_a_verified_key_replaced_since_still_exports_and_verifies_as_pinned_then()
-> TestResult {
    let (_server, root, _admin, alice, bob) = ward();
    let id = note(&alice, "bob", "Ada: repeat ECG", Some(ADA));
    ok(&bob.run(&["inbox"]));
    let before = root.path().join("before.json");
    ok(&export(&bob, &before, &[]));
    let checked = bob.run(&["--json", "verify-export", &before.to_string_lossy()]);
    ok(&checked);
    let entry = checked.event("export_entry");
    assert_eq!(entry["key"], "matches");
    let (sender, device) = {
        let pass = Secret::new(bob.passphrase.as_str());
        let keystore = Keystore::open(&bob.home, &pass)?;
        let m = &keystore.state().messages[0];
        (m.sender_user.to_string(), m.sender_device.to_string())
    };

    let replaced_at = replace_pinned_keys(&bob, &sender, &device, true)?;

    // The bundle made before: still alice's device's signature, with the
    // key pinned for it when the message was sent.
    let checked = bob.run(&["--json", "verify-export", &before.to_string_lossy()]);
    ok(&checked);
    let entry = checked.event("export_entry");
    assert_eq!(entry["msg_id"], id.as_str());
    assert_eq!(entry["ok"], true);
    assert_eq!(entry["key"], "pinned_until", "{entry}");
    assert_eq!(entry["key_pinned_until"], replaced_at.as_str());
    assert_eq!(entry["sender_username"], "alice");
    let summary = checked.event("export_checked");
    assert_eq!(
        (summary["failed"].as_u64(), summary["keys_unknown"].as_u64()),
        (Some(0), Some(0))
    );
    let human = bob.run(&["verify-export", &before.to_string_lossy()]);
    ok(&human);
    assert!(
        human.stdout.contains("signed with the key pinned until"),
        "{}",
        human.stdout
    );

    // Exporting it again opens it with that key, and says so.
    let after = root.path().join("after.json");
    let run = export(&bob, &after, &[]);
    ok(&run);
    let exported = run.event("exported");
    assert_eq!(
        (
            exported["messages"].as_u64(),
            exported["unverifiable"].as_u64()
        ),
        (Some(1), Some(0)),
        "{}",
        run.stdout
    );
    assert_eq!(exported["signed_with_replaced_keys"], 1);
    assert!(events(&run, "warning").is_empty(), "{}", run.stdout);
    let checked = bob.run(&["--json", "verify-export", &after.to_string_lossy()]);
    ok(&checked);
    assert_eq!(checked.event("export_entry")["key"], "pinned_until");

    // Fetched again from the server, it still opens.
    let history = bob.run(&["--json", "history", "alice"]);
    ok(&history);
    assert_eq!(support::client::texts(&history), ["Ada: repeat ECG"]);
    assert!(
        events(&history, "undecryptable").is_empty(),
        "{}",
        history.stdout
    );

    // A new message signed with the old key is not that device's as far
    // as this device knows, whenever it says it was sent: its holder
    // chooses that.
    note(&alice, "bob", "Ada: discharge", Some(ADA));
    let inbox = bob.run(&["--json", "inbox"]);
    ok(&inbox);
    let problem = inbox.event("undecryptable");
    assert!(
        problem["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&format!(
                "new but signed with a key this device pinned for its sending device only until {}",
                replaced_at.as_str()
            ))),
        "{problem}"
    );
    Ok(())
}

#[test]
fn a_message_signed_with_a_key_replaced_without_being_verified_no_longer_verifies() -> TestResult {
    let (_server, root, _admin, alice, bob) = ward();
    note(&alice, "bob", "Ada: repeat ECG", Some(ADA));
    ok(&bob.run(&["inbox"]));
    let before = root.path().join("before.json");
    ok(&export(&bob, &before, &[]));
    let (sender, device) = {
        let pass = Secret::new(bob.passphrase.as_str());
        let keystore = Keystore::open(&bob.home, &pass)?;
        let m = &keystore.state().messages[0];
        (m.sender_user.to_string(), m.sender_device.to_string())
    };
    // Pinned on first sight only: the in-person check found other keys.
    let replaced_at = replace_pinned_keys(&bob, &sender, &device, false)?;

    let checked = bob.run(&["--json", "verify-export", &before.to_string_lossy()]);
    assert!(!checked.ok, "{}", checked.stdout);
    let entry = checked.event("export_entry");
    assert_eq!(entry["ok"], false);
    assert_eq!(entry["key"], "replaced_unverified", "{entry}");
    assert_eq!(entry["key_pinned_until"], replaced_at.as_str());
    let human = bob.run(&["verify-export", &before.to_string_lossy()]);
    assert!(!human.ok);
    assert!(
        format!("{}{}", human.stdout, human.stderr).contains("NEVER verified in person"),
        "{}{}",
        human.stdout,
        human.stderr
    );

    // Nor does it open again for an export.
    let after = root.path().join("after.json");
    let run = export(&bob, &after, &[]);
    let exported = events(&run, "exported");
    assert!(
        exported
            .iter()
            .all(|e| e["signed_with_replaced_keys"].as_u64() == Some(0)),
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains("never verified in person"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    Ok(())
}
