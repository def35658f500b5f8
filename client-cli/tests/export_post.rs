//! `wardline export --post` against `tools/fhir-validate/endpoint.py`: a
//! small FHIR endpoint that checks what it receives with the validators of
//! `tools/fhir-validate/run.sh` (the fhir.resources models, each entry's
//! signature) and answers as a FHIR server does, over HTTPS with a
//! certificate the client trusts through `--fhir-ca`.
//!
//! The endpoint runs under the validators' Python environment, named by
//! `WARDLINE_FHIR_PYTHON` (run.sh sets it to `$target/fhir-venv-r4b/bin/python`).
//! Without it the test says it is skipped and passes, so a plain
//! `cargo test --workspace` needs no Python; with `WARDLINE_FHIR_REQUIRED=1`
//! (run.sh sets that too) it fails instead.

mod support;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;

use serde_json::Value;
use support::client::{Client, ward};
use support::{Run, Running, WAIT};
use wardline_server::config::Tls;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const PYTHON_ENV: &str = "WARDLINE_FHIR_PYTHON";
const REQUIRED_ENV: &str = "WARDLINE_FHIR_REQUIRED";
const TOKEN: &str = "tok-ward-7";
const ADA: &str = "9434765919";

/// Written straight to standard error, past the test harness's capture, so
/// that a skip shows in a plain `cargo test` and run.sh can see the test ran.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The validators' Python, or `None` (after saying so) when it is not set up.
fn validator_python() -> Option<PathBuf> {
    let Some(python) = std::env::var_os(PYTHON_ENV).filter(|p| !p.is_empty()) else {
        if std::env::var(REQUIRED_ENV).as_deref() == Ok("1") {
            panic!(
                "{REQUIRED_ENV}=1 but {PYTHON_ENV} is not set: name the Python of the FHIR \
                 validators' environment (tools/fhir-validate/run.sh makes it)"
            );
        }
        say(&format!(
            "export_post: skipped: the FHIR validator environment is absent ({PYTHON_ENV} is not set; tools/fhir-validate/run.sh runs this test)"
        ));
        return None;
    };
    let python = PathBuf::from(python);
    assert!(
        python.is_file(),
        "{PYTHON_ENV}={} is not a file",
        python.display()
    );
    Some(python)
}

/// `tools/fhir-validate/endpoint.py`, running. Dropping it stops it.
struct Endpoint {
    child: Child,
    port: u16,
    record: PathBuf,
    _stdout: JoinHandle<()>,
}

impl Endpoint {
    /// Starts the endpoint on HTTPS with `cert` and `key`, requiring
    /// [`TOKEN`], and waits for the line saying it is listening.
    fn start(python: &Path, cert: &Path, key: &Path, record: &Path) -> Self {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/fhir-validate/endpoint.py");
        let mut child = Command::new(python)
            .arg(&script)
            .arg("--record")
            .arg(record)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            // It also stops if this test process dies without dropping it.
            .arg("--until-stdin-closes")
            .env("WARDLINE_FHIR_TOKEN", TOKEN)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Lines after the first show what it received, for a failure's output.
                println!("{line}");
                let _ = tx.send(line);
            }
        });
        let ready = lines.recv_timeout(WAIT);
        let port = ready
            .as_deref()
            .ok()
            .and_then(|l| l.strip_prefix("fhir-endpoint: ready port="))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            panic!("endpoint.py did not say it was ready ({ready:?}):\n{stderr}");
        };
        Self {
            child,
            port,
            record: record.to_path_buf(),
            _stdout: reader,
        }
    }

    /// What it decided about each request so far, in order. Each verdict is
    /// written before the request is answered.
    fn verdicts(&self) -> Vec<Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.record)
            .expect("the record directory")
            .map(|e| e.expect("a directory entry").path())
            .filter(|p| p.to_string_lossy().ends_with("-verdict.json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| {
                serde_json::from_str(&std::fs::read_to_string(p).expect("a verdict"))
                    .expect("a verdict is JSON")
            })
            .collect()
    }

    /// The body of request `n` (from 1), exactly as received.
    fn body(&self, n: usize) -> Vec<u8> {
        std::fs::read(self.record.join(format!("{n:03}-request.body"))).expect("a recorded body")
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate and key for `localhost` and 127.0.0.1, made by
/// the server's own development-certificate code.
fn certificate(dir: &Path) -> Result<(PathBuf, PathBuf), Box<dyn std::error::Error>> {
    let mut config = wardline_server::Config::new("127.0.0.1:443".parse()?, dir.to_path_buf());
    config.tls = Tls::Dev;
    wardline_server::tls::acceptor(&config)?.ok_or("TLS is configured")?;
    let files = dir.join("dev-tls");
    Ok((files.join("cert.pem"), files.join("key.pem")))
}

fn ok(run: &Run) {
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
}

fn note(from: &Client, to: &str, text: &str) {
    let sent = from.run(&[
        "--json",
        "send",
        to,
        text,
        "--kind",
        "clinical-note",
        "--patient",
        ADA,
    ]);
    ok(&sent);
}

fn texts(bundle: &Value) -> Vec<&str> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| e["resource"]["payload"][0]["contentString"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

fn statuses(verdict: &Value) -> Vec<&str> {
    verdict["response"]["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| e["response"]["status"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_posted_export_is_validated_created_once_and_a_refusal_is_reported() -> TestResult {
    let Some(python) = validator_python() else {
        return Ok(());
    };
    let (_server, root, admin, alice, bob) = ward();
    let notes = [
        "Ada: start bisoprolol 2.5 mg once daily",
        "Ada: ECG normal, bore da ✓ — review at 08:00",
    ];
    for text in notes {
        note(&alice, "bob", text);
    }
    ok(&alice.run(&["send", "bob", "Coffee after the ward round?"]));
    ok(&bob.run(&["inbox"]));

    let (cert, key) = certificate(&root.path().join("fhir-tls"))?;
    let fhir = Endpoint::start(&python, &cert, &key, &root.path().join("received"));
    let url = format!("https://127.0.0.1:{}/fhir/r4", fhir.port);
    let file = root.path().join("posted.json");
    let post = |token: &str, extra: &[&str]| {
        let mut command = bob.command(
            &[
                &[
                    "--json",
                    "export",
                    "alice",
                    "--out",
                    &file.to_string_lossy(),
                    "--post",
                    &url,
                    "--fhir-ca",
                    &cert.to_string_lossy(),
                ][..],
                extra,
            ]
            .concat(),
        );
        command.env("WARDLINE_FHIR_TOKEN", token);
        Running::start(&mut command).finish()
    };

    // The export: two notes, each a Communication and its Provenance.
    let run = post(TOKEN, &[]);
    ok(&run);
    let exported = run.event("exported");
    assert_eq!(exported["bundle_type"], "transaction");
    let messages = exported["messages"].as_u64().ok_or("a message count")?;
    assert_eq!(messages, 2, "the ordinary message stays out");
    let posted = run.event("posted");
    assert_eq!(
        (
            posted["http_status"].as_u64(),
            posted["created"].as_u64(),
            posted["already_present"].as_u64()
        ),
        (Some(200), Some(2 * messages), Some(0)),
        "{posted}"
    );
    let verdicts = fhir.verdicts();
    assert_eq!(verdicts.len(), 1, "{verdicts:?}");
    let v = &verdicts[0];
    assert_eq!(v["accepted"], true, "{v}");
    assert_eq!(
        (v["method"].as_str(), v["path"].as_str()),
        (Some("POST"), Some("/fhir/r4"))
    );
    assert_eq!(v["authorized"], true);
    assert_eq!(v["content_type"], "application/fhir+json");
    assert_eq!(v["prefer"], "return=minimal");
    assert!(
        v["validator"]
            .as_str()
            .is_some_and(|l| l.starts_with("R4B ")),
        "{v}"
    );
    assert_eq!(v["fhir_valid"], true);
    assert_eq!(v["bundle_type"], "transaction");
    assert_eq!(v["entries"].as_u64(), Some(2 * messages));
    assert_eq!(v["signatures_verified"].as_u64(), Some(messages));
    assert_eq!(statuses(v), ["201 Created"; 4]);
    assert!(
        v["response"]["entry"]
            .as_array()
            .is_some_and(|e| e.iter().all(|e| e["response"]["location"].is_string())),
        "{v}"
    );
    // What arrived is the file the client wrote, byte for byte.
    let sent = fhir.body(1);
    assert_eq!(sent, std::fs::read(&file)?);
    let bundle: Value = serde_json::from_slice(&sent)?;
    assert_eq!(texts(&bundle), notes);

    // The same messages again: every conditional create finds its resource.
    let again = post(TOKEN, &["--force"]);
    ok(&again);
    let posted = again.event("posted");
    assert_eq!(
        (
            posted["created"].as_u64(),
            posted["already_present"].as_u64()
        ),
        (Some(0), Some(2 * messages)),
        "{posted}"
    );
    let verdicts = fhir.verdicts();
    assert_eq!(statuses(&verdicts[1]), ["200 OK"; 4]);
    let held = serde_json::json!({"Communication": 2, "Provenance": 2});
    assert_eq!(verdicts[1]["store"], held, "nothing duplicated");

    // A refusal (the wrong token): the client fails and says what the
    // server said; the server stored nothing, and the audit log records
    // the post only where it succeeded.
    let refused = post("an-old-token", &["--force"]);
    assert!(!refused.ok);
    assert_eq!(refused.code, Some(1));
    assert_eq!(refused.event("exported")["messages"], messages);
    assert!(
        refused.events().iter().all(|e| e["event"] != "posted"),
        "{}",
        refused.stdout
    );
    let error = refused.event("error");
    assert_eq!(error["code"], "fhir_post_failed");
    let incomplete = &error["incomplete"];
    assert_eq!(
        (&incomplete["file_written"], &incomplete["posted"]),
        (&Value::Bool(true), &Value::Bool(false))
    );
    assert_eq!(incomplete["fhir_stored"], "nothing");
    let retry = incomplete["retry"].as_str().ok_or("a retry command")?;
    assert!(retry.ends_with("--force"), "{retry}");
    let message = error["message"].as_str().ok_or("an error message")?;
    for needle in [
        url.as_str(),
        "HTTP 401",
        "the Authorization header must carry the bearer token",
        "The post was NOT recorded as done",
        retry,
    ] {
        assert!(message.contains(needle), "{needle:?} in {message}");
    }
    let verdicts = fhir.verdicts();
    assert_eq!(verdicts.len(), 3);
    assert_eq!(
        (verdicts[2]["status"].as_u64(), &verdicts[2]["accepted"]),
        (Some(401), &Value::Bool(false))
    );
    assert_eq!(verdicts[2]["store"], held, "a refused post stores nothing");

    let audit = admin.run(&["--json", "admin", "audit", "--kind", "record_export"]);
    ok(&audit);
    let destinations: Vec<String> = audit
        .events()
        .iter()
        .filter(|e| e["event"] == "audit_entry")
        .filter_map(|e| e["target"].as_str().map(str::to_owned))
        .collect();
    let count = |d: &str| destinations.iter().filter(|x| *x == d).count();
    assert_eq!(
        (count(&file.to_string_lossy()), count(&url)),
        (3, 2),
        "{destinations:?}"
    );

    // The command the refusal printed, with the right token, finishes it.
    let retry_args: Vec<String> = refused.event("error")["incomplete"]["retry_args"]
        .as_array()
        .ok_or("retry arguments")?
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    let mut command = bob.command_line(&retry_args);
    command.env("WARDLINE_FHIR_TOKEN", TOKEN);
    let retried = Running::start(&mut command).finish();
    ok(&retried);
    assert_eq!(
        retried.event("posted")["already_present"].as_u64(),
        Some(2 * messages)
    );
    let verdicts = fhir.verdicts();
    assert_eq!(verdicts.len(), 4);
    assert_eq!(verdicts[3]["store"], held, "the retry duplicates nothing");

    say(&format!(
        "export_post: endpoint.py ({}) validated and accepted the posted bundle ({} entries for {messages} messages), found it again on a repeat, refused a wrong token, and took the retry the client printed",
        python.display(),
        2 * messages
    ));
    Ok(())
}
