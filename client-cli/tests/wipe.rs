//! Remote wipe through the `wardline` binary against the real server: an
//! admin's order, a user's order for their own lost device, and an order
//! that reaches a device in the middle of a chat.

mod support;

use std::path::Path;

use support::client::{Client, events, ward};
use support::has_keystore;
use wardline_cli::keystore::Keystore;
use wardline_protocol::{Secret, b64};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// What must not survive a wipe: the device's secret keys (raw and as
/// stored) and its session token.
struct KeyMaterial(Vec<Vec<u8>>);

impl KeyMaterial {
    fn of(client: &Client) -> Result<Self, Box<dyn std::error::Error>> {
        let keystore = Keystore::open(&client.home, &Secret::new(client.passphrase.as_str()))?;
        let state = keystore.state();
        let secrets = state.device_secrets();
        let kem = secrets.kem_secret_bytes().to_vec();
        let sig = secrets.sig_secret_bytes().to_vec();
        Ok(Self(vec![
            b64::encode(&kem).into_bytes(),
            b64::encode(&sig).into_bytes(),
            kem,
            sig,
            state.token.expose().as_bytes().to_vec(),
            // The keystore file itself, whose wrapped data key opens the rest.
            std::fs::read(Keystore::path_in(&client.home))?,
        ]))
    }

    /// Fails if any file under `dir` holds any of it.
    fn assert_absent_from(&self, dir: &Path) -> TestResult {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                self.assert_absent_from(&path)?;
                continue;
            }
            let bytes = std::fs::read(&path).unwrap_or_default();
            for secret in &self.0 {
                let found = bytes.windows(secret.len()).any(|w| w == secret.as_slice());
                assert!(!found, "{} still holds key material", path.display());
            }
        }
        Ok(())
    }
}

#[test]
fn an_admins_wipe_order_destroys_the_keystore_is_confirmed_and_exits_3() -> TestResult {
    let (server, root, admin, alice, bob) = ward();
    let laptop = alice.second_device(&root);
    assert!(laptop.login(&server, &["--server", &server.url]).ok);
    assert!(bob.run(&["send", "alice", "Bed 4 results are back"]).ok);
    assert!(laptop.run(&["inbox"]).ok);
    let material = KeyMaterial::of(&laptop)?;
    let device = laptop.device_id();

    let listed = admin.run(&["--json", "admin", "devices", "alice"]);
    assert!(listed.ok, "{}", listed.stderr);
    assert_eq!(events(&listed, "device").len(), 2);
    let ordered = admin.run(&[
        "--json",
        "admin",
        "wipe",
        &device,
        "--reason",
        "laptop stolen from ward 10",
    ]);
    assert!(ordered.ok, "{}", ordered.stderr);
    let wipe_id = ordered.event("wipe_ordered")["wipe_id"]
        .as_str()
        .ok_or("a wipe id")?
        .to_owned();
    let status = admin.run(&["--json", "admin", "wipe-status", &wipe_id]);
    assert_eq!(status.event("wipe_status")["state"], "pending");

    // The laptop's next command meets the order.
    let wiped = laptop.run(&["--json", "inbox"]);
    assert_eq!(wiped.code, Some(3), "{}", wiped.stderr);
    let event = wiped.event("wiped");
    assert_eq!(event["reason"], "laptop stolen from ward 10");
    assert_eq!(event["confirmed"], true);
    assert!(
        wiped.stderr.contains("wiped by order of your organisation"),
        "{}",
        wiped.stderr
    );
    assert!(!has_keystore(&laptop.home));
    material.assert_absent_from(&laptop.home)?;

    let status = admin.run(&["--json", "admin", "wipe-status", &wipe_id]);
    assert_eq!(status.event("wipe_status")["state"], "confirmed");
    let after = laptop.run(&["--json", "inbox"]);
    assert_eq!(after.event("error")["code"], "no_keystore");
    // The workstation is untouched.
    assert!(alice.run(&["inbox"]).ok);
    Ok(())
}

#[test]
fn a_user_wipes_their_own_lost_device_after_password_and_totp() -> TestResult {
    let (server, root, _admin, alice, _bob) = ward();
    let laptop = alice.second_device(&root);
    assert!(laptop.login(&server, &["--server", &server.url]).ok);
    let device = laptop.device_id();

    let wrong = alice.run(&["--json", "wipe", &device, "--totp", "000000"]);
    assert!(!wrong.ok);
    assert!(
        wrong.stderr.contains("nothing was wiped"),
        "{}",
        wrong.stderr
    );
    assert!(laptop.run(&["inbox"]).ok, "not wiped");

    let own = alice.run(&["wipe", &alice.device_id(), "--totp", "123456"]);
    assert!(!own.ok);
    assert!(
        own.stderr.contains("the device you are using"),
        "{}",
        own.stderr
    );

    let code = server.next_totp(alice.secret());
    let ordered = alice.run(&[
        "--json",
        "wipe",
        &device,
        "--totp",
        &code,
        "--reason",
        "left on the bus",
    ]);
    assert!(ordered.ok, "{}", ordered.stderr);
    assert_eq!(ordered.event("wipe_ordered")["device_id"], device.as_str());
    let devices = alice.run(&["--json", "devices"]);
    let states: Vec<String> = events(&devices, "device")
        .iter()
        .map(|d| d["state"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert!(states.iter().any(|s| s == "wipe_pending"), "{states:?}");

    let wiped = laptop.run(&["inbox"]);
    assert_eq!(wiped.code, Some(3), "{}", wiped.stderr);
    assert!(wiped.stderr.contains("left on the bus"), "{}", wiped.stderr);
    assert!(!has_keystore(&laptop.home));
    Ok(())
}

#[test]
fn a_device_in_a_chat_is_wiped_as_soon_as_the_order_arrives() -> TestResult {
    let (server, root, admin, alice, bob) = ward();
    let laptop = alice.second_device(&root);
    assert!(laptop.login(&server, &["--server", &server.url]).ok);
    assert!(bob.run(&["send", "alice", "hello"]).ok);
    let material = KeyMaterial::of(&laptop)?;
    let device = laptop.device_id();

    let mut chat = laptop.start(&["--json", "chat", "bob"]);
    chat.wait_event(|e| e["event"] == "message" && e["text"] == "hello");
    let ordered = admin.run(&["admin", "wipe", &device, "--reason", "redeployed"]);
    assert!(ordered.ok, "{}", ordered.stderr);
    let wiped = chat.wait_event(|e| e["event"] == "wiped");
    assert_eq!(wiped["confirmed"], true);
    // It exits by itself, standard input still open (nothing typed).
    while chat.next_line().is_some() {}
    let done = chat.finish();
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    assert!(!has_keystore(&laptop.home));
    material.assert_absent_from(&laptop.home)?;
    Ok(())
}
