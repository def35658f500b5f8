use super::*;

use wardline_protocol::wire::DeviceInfo;
use wardline_protocol::{
    Body, BodyKind, ConversationId, DeviceId, DeviceSecrets, Envelope, KemPublicKey, MessageId,
    Priority, SigPublicKey, Timestamp, UserId, Username,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Cheap enough to open a keystore once per byte of the file.
const TINY: KdfCost = KdfCost::custom(64, 1, 1);

const TOKEN: &str = "tok-3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c";

fn registration() -> Registration {
    Registration {
        server: "ws://127.0.0.1:7443/v1".into(),
        trust: None,
        user_id: UserId::parse("u-alice").expect("valid"),
        username: Username::parse("alice").expect("valid"),
        device_id: DeviceId::parse("d-alice-1").expect("valid"),
        device_name: "ward 10 workstation".into(),
        token: Secret::new(TOKEN),
        expires_at: Timestamp::parse("2026-11-23T19:31:54.123Z").expect("valid"),
    }
}

fn fixture() -> Result<(tempfile::TempDir, PathBuf, DeviceSecrets), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("home");
    let secrets = DeviceSecrets::from_bytes(&[0x11; 32], &[0x22; 32]);
    Keystore::create_with_cost(
        &home,
        &Secret::new("correct horse"),
        State::new(registration(), &secrets),
        TINY,
    )?;
    Ok((dir, home, secrets))
}

#[test]
fn round_trips_state_and_secrets() -> TestResult {
    let (_dir, home, secrets) = fixture()?;
    let mut ks = Keystore::open(&home, &Secret::new("correct horse"))?;
    assert_eq!(ks.state().username.as_str(), "alice");
    assert_eq!(ks.state().token.expose(), TOKEN);
    assert_eq!(ks.state().device_secrets().public(), secrets.public());

    let stored = StoredMessage {
        conv_id: ConversationId::parse("c-1")?,
        seq: 1,
        msg_id: MessageId::generate_v7(1_000, [1; 10]),
        sender_user: ks.state().user_id.clone(),
        sender_device: ks.state().device_id.clone(),
        sent_at: Timestamp::from_unix_millis(1_000)?,
        priority: Priority::Urgent,
        body: Body {
            text: "Bed 4: repeat ECG".into(),
            kind: BodyKind::ClinicalNote,
            patient: None,
            reply_to: None,
        },
        envelope: None,
    };
    assert!(ks.state_mut().store_message(stored.clone()));
    assert!(
        !ks.state_mut().store_message(stored),
        "same (conv, seq) twice"
    );
    ks.save()?;

    let again = Keystore::open(&home, &Secret::new("correct horse"))?;
    assert_eq!(again.state().messages.len(), 1);
    assert_eq!(again.state().messages[0].body.text, "Bed 4: repeat ECG");
    Ok(())
}

#[test]
fn wrong_passphrase_is_refused_and_changes_nothing() -> TestResult {
    let (_dir, home, _) = fixture()?;
    let path = Keystore::path_in(&home);
    let before = fs::read(&path)?;
    let err = Keystore::open(&home, &Secret::new("wrong horse")).expect_err("must fail");
    assert!(matches!(err, KeystoreError::WrongPassphrase(_)), "{err:?}");
    assert!(err.to_string().contains("wrong passphrase"));
    assert_eq!(fs::read(&path)?, before);
    Ok(())
}

#[cfg(unix)]
#[test]
fn file_is_private_to_its_owner() -> TestResult {
    use std::os::unix::fs::PermissionsExt as _;
    let (_dir, home, _) = fixture()?;
    let file_mode = fs::metadata(Keystore::path_in(&home))?.permissions().mode();
    assert_eq!(file_mode & 0o777, 0o600);
    let dir_mode = fs::metadata(&home)?.permissions().mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    Ok(())
}

#[test]
fn file_holds_no_secret_in_the_clear() -> TestResult {
    let (_dir, home, secrets) = fixture()?;
    let bytes = fs::read(Keystore::path_in(&home))?;
    let kem = *secrets.kem_secret_bytes();
    let sig = *secrets.sig_secret_bytes();
    let needles: Vec<Vec<u8>> = vec![
        TOKEN.as_bytes().to_vec(),
        b64::encode(TOKEN).into_bytes(),
        kem.to_vec(),
        sig.to_vec(),
        b64::encode(kem).into_bytes(),
        b64::encode(sig).into_bytes(),
        b"alice".to_vec(),
    ];
    for needle in needles {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
            "file contains a secret"
        );
    }
    Ok(())
}

#[test]
fn a_change_to_any_byte_is_detected() -> TestResult {
    let (_dir, home, _) = fixture()?;
    let path = Keystore::path_in(&home);
    let original = fs::read(&path)?;
    for i in 0..original.len() {
        let mut tampered = original.clone();
        tampered[i] ^= 0x01;
        fs::write(&path, &tampered)?;
        assert!(
            Keystore::open(&home, &Secret::new("correct horse")).is_err(),
            "flipping byte {i} ({:?}) went unnoticed",
            original[i] as char
        );
    }
    fs::write(&path, &original)?;
    assert!(Keystore::open(&home, &Secret::new("correct horse")).is_ok());
    Ok(())
}

/// Rewrites the KDF parameters of the keystore file in `home`.
fn set_kdf(home: &Path, m: u64, t: u64, p: u64) -> TestResult {
    let path = Keystore::path_in(home);
    let mut file: serde_json::Value = serde_json::from_slice(&fs::read(&path)?)?;
    file["kdf"]["m_cost_kib"] = m.into();
    file["kdf"]["t_cost"] = t.into();
    file["kdf"]["p_cost"] = p.into();
    fs::write(&path, serde_json::to_vec(&file)?)?;
    Ok(())
}

#[test]
fn a_file_asking_for_a_costly_key_derivation_is_refused_at_once() -> TestResult {
    let (_dir, home, _) = fixture()?;
    // 4 TiB and 2^32 passes: refused before any memory is allocated.
    for (m, t, p) in [
        (u64::from(u32::MAX), 1, 1),
        (64, u64::from(u32::MAX), 1),
        (64, 1, 255),
    ] {
        set_kdf(&home, m, t, p)?;
        let started = std::time::Instant::now();
        let err = Keystore::open(&home, &Secret::new("correct horse")).expect_err("too costly");
        assert!(matches!(err, KeystoreError::KdfTooCostly { .. }), "{err:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(err.to_string().contains("tampered"), "{err}");
    }
    Ok(())
}

#[test]
fn open_bytes_opens_a_genuine_file_and_honours_the_callers_limits() -> TestResult {
    let (_dir, home, _) = fixture()?;
    let bytes = fs::read(Keystore::path_in(&home))?;
    let pass = Secret::new("correct horse");
    let state = open_bytes(&bytes, &pass, &KdfLimits::DEFAULT)?;
    assert_eq!(state.username.as_str(), "alice");
    let err = open_bytes(&bytes, &pass, &KdfLimits::new(32, 1, 1)).expect_err("over the limit");
    assert!(matches!(err, KeystoreError::KdfTooCostly { .. }), "{err:?}");
    let err = open_bytes(&bytes, &Secret::new("wrong"), &KdfLimits::DEFAULT).expect_err("wrong");
    assert!(matches!(err, KeystoreError::WrongPassphrase(_)), "{err:?}");
    for junk in [
        &b""[..],
        b"{}",
        b"\xff\xfe",
        b"[1,2,3]",
        &bytes[..bytes.len() / 2],
    ] {
        assert!(matches!(
            open_bytes(junk, &pass, &KdfLimits::DEFAULT),
            Err(KeystoreError::Corrupt { .. })
        ));
    }
    Ok(())
}

#[test]
fn tampered_state_is_reported_as_damage_not_a_wrong_passphrase() -> TestResult {
    let (_dir, home, _) = fixture()?;
    let path = Keystore::path_in(&home);
    let mut file: serde_json::Value = serde_json::from_slice(&fs::read(&path)?)?;
    let ct = file["state"]["ciphertext"].as_str().ok_or("ciphertext")?;
    let mut bytes = b64::decode(ct)?;
    bytes[0] ^= 0x80;
    file["state"]["ciphertext"] = b64::encode(bytes).into();
    fs::write(&path, serde_json::to_vec(&file)?)?;
    let err = Keystore::open(&home, &Secret::new("correct horse")).expect_err("tampered");
    assert!(matches!(err, KeystoreError::Corrupt { .. }), "{err:?}");
    Ok(())
}

#[test]
fn every_save_uses_a_fresh_nonce_and_leaves_no_temporary_file() -> TestResult {
    let (_dir, home, _) = fixture()?;
    let path = Keystore::path_in(&home);
    let ks = Keystore::open(&home, &Secret::new("correct horse"))?;
    let first = fs::read(&path)?;
    ks.save()?;
    let second = fs::read(&path)?;
    assert_ne!(first, second);
    let names: Vec<_> = fs::read_dir(&home)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    assert_eq!(names, vec![std::ffi::OsString::from(FILE_NAME)]);
    Ok(())
}

#[test]
fn refuses_to_overwrite_an_existing_keystore() -> TestResult {
    let (_dir, home, secrets) = fixture()?;
    let err = Keystore::create_with_cost(
        &home,
        &Secret::new("another"),
        State::new(registration(), &secrets),
        TINY,
    )
    .expect_err("exists");
    assert!(matches!(err, KeystoreError::AlreadyExists(_)));
    assert!(Keystore::open(&home, &Secret::new("correct horse")).is_ok());
    Ok(())
}

#[test]
fn a_missing_keystore_says_how_to_enrol() -> TestResult {
    let dir = tempfile::tempdir()?;
    let err = Keystore::open(dir.path(), &Secret::new("x")).expect_err("missing");
    assert!(matches!(err, KeystoreError::NotFound(_)));
    assert!(err.to_string().contains("wardline enrol"));
    Ok(())
}

#[test]
fn pinned_device_keys_are_not_replaced() -> TestResult {
    let secrets = DeviceSecrets::from_bytes(&[1; 32], &[2; 32]);
    let mut state = State::new(registration(), &secrets);
    let bob = UserId::parse("u-bob")?;
    let device = DeviceId::parse("d-bob-1")?;
    let info = |k: u8| DeviceInfo {
        user_id: bob.clone(),
        device_id: device.clone(),
        kem_pk: KemPublicKey::from_bytes([k; 32]),
        sig_pk: SigPublicKey::from_bytes([k; 32]),
    };
    assert!(state.remember_devices(&[info(5)]).is_empty());
    assert!(state.remember_devices(&[info(5)]).is_empty());
    let changed = state.remember_devices(&[info(6)]);
    assert_eq!(changed.len(), 1);
    let pinned = state.device_keys(&bob, &device).ok_or("pinned")?;
    assert_eq!(pinned.sig_pk, SigPublicKey::from_bytes([5; 32]));

    // The server may not reattribute this device to another user either.
    let eve = UserId::parse("u-eve")?;
    let moved = DeviceInfo {
        user_id: eve.clone(),
        ..info(5)
    };
    assert_eq!(state.remember_devices(&[moved]).len(), 1);
    assert!(state.device_keys(&eve, &device).is_none());
    Ok(())
}

#[test]
fn own_device_is_pinned_from_the_start() {
    let secrets = DeviceSecrets::from_bytes(&[1; 32], &[2; 32]);
    let state = State::new(registration(), &secrets);
    let own = state.device_keys(&state.user_id, &state.device_id);
    assert_eq!(own, Some(&secrets.public()));
    assert_eq!(
        state.username_of(&state.user_id).map(Username::as_str),
        Some("alice")
    );
}

#[test]
fn the_servers_trust_is_kept_with_its_address() -> TestResult {
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("home");
    let pin = crate::tls::Fingerprint::of(b"the server's certificate");
    let secrets = DeviceSecrets::from_bytes(&[0x11; 32], &[0x22; 32]);
    let registration = Registration {
        server: "wss://wardline.nhs.example/v1".into(),
        trust: Some(crate::tls::Trust::pin(pin)),
        ..registration()
    };
    Keystore::create_with_cost(
        &home,
        &Secret::new("correct horse"),
        State::new(registration, &secrets),
        TINY,
    )?;
    let ks = Keystore::open(&home, &Secret::new("correct horse"))?;
    assert_eq!(ks.state().server, "wss://wardline.nhs.example/v1");
    let trust = ks.state().trust.as_ref().ok_or("trust kept")?;
    assert_eq!(trust.to_string(), format!("certificate pinned to {pin}"));
    Ok(())
}

#[test]
fn state_saved_before_tls_still_reads_as_plain_ws() -> TestResult {
    let secrets = DeviceSecrets::from_bytes(&[1; 32], &[2; 32]);
    let mut old = serde_json::to_value(State::new(registration(), &secrets))?;
    old.as_object_mut().ok_or("an object")?.remove("trust");
    let state: State = serde_json::from_value(old)?;
    assert!(state.trust.is_none());
    Ok(())
}

fn device_of(user: &UserId, id: &str, k: u8) -> DeviceInfo {
    DeviceInfo {
        user_id: user.clone(),
        device_id: DeviceId::parse(id).expect("valid"),
        kem_pk: KemPublicKey::from_bytes([k; 32]),
        sig_pk: SigPublicKey::from_bytes([k; 32]),
    }
}

fn at(text: &str) -> Timestamp {
    Timestamp::parse(text).expect("valid")
}

#[test]
fn devices_seen_after_first_sight_are_flagged_until_verified() -> TestResult {
    let mut state = State::new(
        registration(),
        &DeviceSecrets::from_bytes(&[1; 32], &[2; 32]),
    );
    let bob = UserId::parse("u-bob")?;
    let phone = device_of(&bob, "d-bob-phone", 5);
    let laptop = device_of(&bob, "d-bob-laptop", 6);

    state.remember_devices_at(
        std::slice::from_ref(&phone),
        &at("2026-11-20T08:00:00.000Z"),
    );
    assert!(
        state.flags(std::slice::from_ref(&phone)).is_empty(),
        "the baseline is not flagged"
    );
    assert_eq!(
        state.standing(&bob, &phone.device_id),
        Some(DeviceStanding::Unverified)
    );

    state.remember_devices_at(
        &[phone.clone(), laptop.clone()],
        &at("2026-11-23T08:00:00.000Z"),
    );
    let flags = state.flags(&[phone.clone(), laptop.clone()]);
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0].device_id, laptop.device_id);
    assert_eq!(flags[0].first_seen, Some(at("2026-11-23T08:00:00.000Z")));
    // Still flagged the next time: nothing but verification clears it.
    assert_eq!(state.flags(std::slice::from_ref(&laptop)).len(), 1);

    let confirmed = state.confirm_verified(
        &bob,
        &[phone.clone(), laptop.clone()],
        &at("2026-11-23T09:00:00.000Z"),
    );
    assert_eq!(confirmed, 2);
    assert!(state.flags(&[phone.clone(), laptop.clone()]).is_empty());
    assert_eq!(
        state.standing(&bob, &laptop.device_id),
        Some(DeviceStanding::Verified)
    );
    Ok(())
}

#[test]
fn replaced_keys_are_refused_until_verified_then_pinned() -> TestResult {
    let mut state = State::new(
        registration(),
        &DeviceSecrets::from_bytes(&[1; 32], &[2; 32]),
    );
    let bob = UserId::parse("u-bob")?;
    let now = at("2026-11-23T08:00:00.000Z");
    state.remember_devices_at(&[device_of(&bob, "d-bob-1", 5)], &now);
    let substituted = device_of(&bob, "d-bob-1", 9);
    assert_eq!(
        state
            .remember_devices_at(std::slice::from_ref(&substituted), &now)
            .len(),
        1
    );
    assert_eq!(
        state.standing(&bob, &substituted.device_id),
        Some(DeviceStanding::KeysChanged)
    );
    // Sealing still uses the first-seen keys until the user verifies.
    let pinned = state
        .device_keys(&bob, &substituted.device_id)
        .ok_or("pinned")?;
    assert_eq!(pinned.kem_pk, KemPublicKey::from_bytes([5; 32]));

    state.confirm_verified(&bob, std::slice::from_ref(&substituted), &now);
    let pinned = state
        .device_keys(&bob, &substituted.device_id)
        .ok_or("pinned")?;
    assert_eq!(pinned.kem_pk, KemPublicKey::from_bytes([9; 32]));
    assert!(state.remember_devices_at(&[substituted], &now).is_empty());
    Ok(())
}

#[test]
fn unread_counts_come_from_the_cache_and_the_read_position() -> TestResult {
    use wardline_protocol::Region;
    use wardline_protocol::wire::ConversationInfo;

    let mut state = State::new(
        registration(),
        &DeviceSecrets::from_bytes(&[1; 32], &[2; 32]),
    );
    let conv = ConversationId::parse("c-ward-10")?;
    let bob = UserId::parse("u-bob")?;
    let me = state.user_id.clone();
    state.update_conversations(&[ConversationInfo {
        conv_id: conv.clone(),
        title: "Ward 10".into(),
        members: vec![me.clone(), bob.clone()],
        residency: Region::GB,
        last_seq: 0,
    }]);
    let message = |seq: u64, from: &UserId| StoredMessage {
        conv_id: conv.clone(),
        seq,
        msg_id: MessageId::generate_v7(1_700_000_000_000 + seq, [seq as u8; 10]),
        sender_user: from.clone(),
        sender_device: DeviceId::parse("d-x").expect("valid"),
        sent_at: at("2026-11-23T08:00:00.000Z"),
        priority: Priority::Routine,
        body: Body {
            text: format!("m{seq}"),
            kind: BodyKind::Message,
            patient: None,
            reply_to: None,
        },
        envelope: None,
    };
    assert!(state.store_message(message(1, &bob)));
    assert!(state.store_message(message(2, &me)));
    assert!(state.store_message(message(3, &bob)));
    assert!(
        !state.store_message(message(3, &bob)),
        "a repeat is recognised"
    );
    let unread: Vec<u64> = state.unread_in(&conv).iter().map(|m| m.seq).collect();
    assert_eq!(unread, [1, 3], "own messages are never unread");
    state.mark_read(&conv, 1);
    assert_eq!(state.unread_in(&conv).len(), 1);
    assert_eq!(state.conversations[&conv].last_seq, 3);
    Ok(())
}

#[test]
fn destroying_the_keystore_leaves_no_file_behind() -> TestResult {
    let (_dir, home, _secrets) = fixture()?;
    std::fs::write(home.join(".keystore.json.abc123.tmp"), b"sealed leftovers")?;
    let keystore = Keystore::open(&home, &Secret::new("correct horse"))?;
    keystore.destroy()?;
    let left: Vec<_> = std::fs::read_dir(&home)?.collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(matches!(
        Keystore::open(&home, &Secret::new("correct horse")),
        Err(KeystoreError::NotFound(_))
    ));
    Ok(())
}

#[test]
fn the_agents_data_key_opens_only_its_own_keystore() -> TestResult {
    let (_dir, home, secrets) = fixture()?;
    let keystore = Keystore::open(&home, &Secret::new("correct horse"))?;
    let key = keystore.data_key().clone();
    let reopened = Keystore::open_with_data_key(&home, key)?;
    assert_eq!(reopened.state().device_id, keystore.state().device_id);

    let (_other_dir, other_home, _) = fixture()?;
    let wrong = Keystore::open_with_data_key(&other_home, keystore.data_key().clone());
    assert!(matches!(wrong, Err(KeystoreError::WrongPassphrase(_))));
    drop(secrets);
    Ok(())
}

#[test]
fn the_fuzz_seed_is_a_genuine_keystore_within_the_fuzz_targets_limits() -> TestResult {
    // Regenerate with `cargo run -p wardline-cli --example keystore_fuzz_seeds
    // -- fuzz/seeds/keystore_file` if the format changes.
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/keystore_file");
    let pass = Secret::new("fuzz keystore passphrase");
    let limits = KdfLimits::new(64, 2, 1);
    let state = open_bytes(&fs::read(seed.join("genuine.json"))?, &pass, &limits)?;
    assert_eq!(state.username.as_str(), "fuzz.seed");
    for damaged in [
        "truncated.json",
        "flipped-byte.json",
        "costly-kdf.json",
        "future-version.json",
    ] {
        assert!(open_bytes(&fs::read(seed.join(damaged))?, &pass, &limits).is_err());
    }
    Ok(())
}

/// Bob's device as alice's keystore sees it, with the public half of `secrets`.
fn bobs_device(secrets: &DeviceSecrets) -> DeviceInfo {
    let public = secrets.public();
    DeviceInfo {
        user_id: UserId::parse("u-bob").expect("valid"),
        device_id: DeviceId::parse("d-bob-1").expect("valid"),
        kem_pk: public.kem_pk,
        sig_pk: public.sig_pk,
    }
}

/// A message from bob's device to alice's, sent at `sent_at`, signed by `signer`.
fn from_bob(signer: &DeviceSecrets, sent_at: &str, alice: &DeviceSecrets) -> Envelope {
    let header = wardline_protocol::Header {
        msg_id: MessageId::generate_v7(1_795_419_114_000, [7; 10]),
        conv_id: ConversationId::parse("c-1").expect("valid"),
        sender_user: UserId::parse("u-bob").expect("valid"),
        sender_device: DeviceId::parse("d-bob-1").expect("valid"),
        sent_at: at(sent_at),
        priority: Priority::Routine,
        residency: wardline_protocol::Region::parse("GB").expect("valid"),
    };
    let body = Body {
        text: "Ada: repeat ECG".into(),
        kind: BodyKind::ClinicalNote,
        patient: None,
        reply_to: None,
    };
    let to = wardline_protocol::Recipient {
        device_id: DeviceId::parse("d-alice-1").expect("valid"),
        kem_pk: alice.public().kem_pk,
    };
    wardline_protocol::envelope::seal(header, &body, signer, &[to]).expect("sealed")
}

#[test]
fn keys_replaced_after_verification_are_kept_with_when_they_were_pinned() -> TestResult {
    let mine = DeviceSecrets::from_bytes(&[1; 32], &[2; 32]);
    let mut state = State::new(registration(), &mine);
    let bob = UserId::parse("u-bob")?;
    let (first, second, third) = (
        DeviceSecrets::from_bytes(&[5; 32], &[6; 32]),
        DeviceSecrets::from_bytes(&[7; 32], &[8; 32]),
        DeviceSecrets::from_bytes(&[9; 32], &[10; 32]),
    );
    let device = bobs_device(&first).device_id;
    state.remember_devices_at(&[bobs_device(&first)], &at("2026-11-20T08:00:00.000Z"));
    state.remember_devices_at(&[bobs_device(&second)], &at("2026-11-21T08:00:00.000Z"));
    assert!(
        state.contacts[&bob].replaced.is_empty(),
        "published keys replace nothing until verified"
    );
    state.confirm_verified(
        &bob,
        &[bobs_device(&second)],
        &at("2026-11-22T08:00:00.000Z"),
    );
    // Confirming the same keys again replaces nothing.
    state.confirm_verified(
        &bob,
        &[bobs_device(&second)],
        &at("2026-11-22T09:00:00.000Z"),
    );
    state.remember_devices_at(&[bobs_device(&third)], &at("2026-11-23T08:00:00.000Z"));
    state.confirm_verified(
        &bob,
        &[bobs_device(&third)],
        &at("2026-11-23T09:00:00.000Z"),
    );
    assert_eq!(
        state.contacts[&bob].replaced[&device],
        [
            ReplacedKeys {
                keys: first.public(),
                pinned_from: Some(at("2026-11-20T08:00:00.000Z")),
                replaced_at: at("2026-11-22T08:00:00.000Z"),
                verified: false,
            },
            ReplacedKeys {
                keys: second.public(),
                pinned_from: Some(at("2026-11-22T08:00:00.000Z")),
                replaced_at: at("2026-11-23T09:00:00.000Z"),
                verified: true,
            },
        ]
    );
    assert_eq!(
        state.device_keys(&bob, &device),
        Some(&third.public()),
        "the verified keys are the ones sealed to"
    );
    Ok(())
}

#[test]
fn a_message_read_again_signed_with_a_replaced_verified_key_opens_if_sent_while_it_was_pinned()
-> TestResult {
    let mine = DeviceSecrets::from_bytes(&[1; 32], &[2; 32]);
    let mut state = State::new(registration(), &mine);
    let bob = UserId::parse("u-bob")?;
    let (old, new) = (
        DeviceSecrets::from_bytes(&[5; 32], &[6; 32]),
        DeviceSecrets::from_bytes(&[7; 32], &[8; 32]),
    );
    let device = bobs_device(&old).device_id;
    state.remember_devices_at(&[bobs_device(&old)], &at("2026-11-20T08:00:00.000Z"));
    // The old key was verified in person before it was replaced.
    state.confirm_verified(&bob, &[bobs_device(&old)], &at("2026-11-20T09:00:00.000Z"));
    let before = from_bob(&old, "2026-11-21T08:00:00.000Z", &mine);
    assert_eq!(
        state.signing_key(&before, Reading::New)?,
        SigningKey::Current(&old.public())
    );
    state.confirm_verified(&bob, &[bobs_device(&new)], &at("2026-11-22T08:00:00.000Z"));
    assert!(state.contacts[&bob].replaced[&device][0].verified);

    // Sent while the old key was pinned: that key, reported as such.
    let key = state.signing_key(&before, Reading::Again)?;
    assert_eq!(key.keys(), &old.public());
    assert_eq!(key.pinned_until(), Some(&at("2026-11-22T08:00:00.000Z")));
    let body =
        wardline_protocol::envelope::open(&before, &state.device_id, &mine, &key.keys().sig_pk)?;
    assert_eq!(body.text, "Ada: repeat ECG");
    // Up to the moment of the replacement, not after it.
    let at_replacement = from_bob(&old, "2026-11-22T08:00:00.000Z", &mine);
    assert!(state.signing_key(&at_replacement, Reading::Again).is_ok());
    let after = from_bob(&old, "2026-11-22T08:00:00.001Z", &mine);
    let refused = state
        .signing_key(&after, Reading::Again)
        .expect_err("replaced before it was sent");
    assert!(
        refused.contains("only until 2026-11-22T08:00:00.000Z, before it was sent"),
        "{refused}"
    );
    // The new key, whenever sent; any other key, never.
    let fresh = from_bob(&new, "2026-11-21T08:00:00.000Z", &mine);
    for reading in [Reading::New, Reading::Again] {
        assert_eq!(
            state.signing_key(&fresh, reading)?,
            SigningKey::Current(&new.public())
        );
    }
    let stranger = DeviceSecrets::from_bytes(&[3; 32], &[4; 32]);
    let forged = from_bob(&stranger, "2026-11-21T08:00:00.000Z", &mine);
    assert_eq!(
        state.signing_key(&forged, Reading::Again),
        Err("the sender's signature does not verify".to_owned())
    );

    // What a bundle discloses, compared the same way.
    let sent = at("2026-11-21T08:00:00.000Z");
    let late = at("2026-11-23T08:00:00.000Z");
    let old_pk = old.public().sig_pk;
    assert_eq!(
        state.pinned_match(&device, &old_pk, Some(&sent)),
        (
            Some(&bob),
            PinnedMatch::PinnedUntil(at("2026-11-22T08:00:00.000Z"))
        )
    );
    assert_eq!(
        state.pinned_match(&device, &old_pk, Some(&late)).1,
        PinnedMatch::ReplacedBefore(at("2026-11-22T08:00:00.000Z"))
    );
    assert_eq!(
        state
            .pinned_match(&device, &new.public().sig_pk, Some(&sent))
            .1,
        PinnedMatch::Current
    );
    assert_eq!(
        state
            .pinned_match(&device, &stranger.public().sig_pk, Some(&sent))
            .1,
        PinnedMatch::Differs
    );
    let unknown = DeviceId::parse("d-nobody")?;
    assert_eq!(
        state.pinned_match(&unknown, &old_pk, Some(&sent)),
        (None, PinnedMatch::UnknownDevice)
    );
    Ok(())
}

#[test]
fn a_newly_received_message_signed_with_a_replaced_key_is_refused_however_it_is_dated() -> TestResult
{
    let mine = DeviceSecrets::from_bytes(&[1; 32], &[2; 32]);
    let mut state = State::new(registration(), &mine);
    let bob = UserId::parse("u-bob")?;
    let (old, new) = (
        DeviceSecrets::from_bytes(&[5; 32], &[6; 32]),
        DeviceSecrets::from_bytes(&[7; 32], &[8; 32]),
    );
    state.remember_devices_at(&[bobs_device(&old)], &at("2026-11-20T08:00:00.000Z"));
    state.confirm_verified(&bob, &[bobs_device(&old)], &at("2026-11-20T09:00:00.000Z"));
    state.confirm_verified(&bob, &[bobs_device(&new)], &at("2026-11-22T08:00:00.000Z"));

    // Whoever still holds the old key backdates a new message into the
    // time it was pinned: as a live push it does not open.
    let backdated = from_bob(&old, "2026-11-21T08:00:00.000Z", &mine);
    let refused = state
        .signing_key(&backdated, Reading::New)
        .expect_err("a replaced key is never accepted for a new message");
    assert!(
        refused.contains("new but signed with a key") && refused.contains("replaced since"),
        "{refused}"
    );
    let push = wardline_protocol::wire::MessagePush {
        conv_id: backdated.conv_id.clone(),
        seq: 9,
        envelope: backdated.clone(),
    };
    let live = crate::sync::open_one(&state, &mine, &push, Reading::New)
        .expect_err("a backdated live push with a replaced key is refused");
    assert_eq!(live, refused);
    Ok(())
}

#[test]
fn a_replaced_key_never_verified_in_person_is_refused() -> TestResult {
    let mine = DeviceSecrets::from_bytes(&[1; 32], &[2; 32]);
    let mut state = State::new(registration(), &mine);
    let bob = UserId::parse("u-bob")?;
    let (substituted, real) = (
        DeviceSecrets::from_bytes(&[5; 32], &[6; 32]),
        DeviceSecrets::from_bytes(&[7; 32], &[8; 32]),
    );
    let device = bobs_device(&substituted).device_id;
    // Pinned on first sight only; the in-person check then showed other keys.
    state.remember_devices_at(
        &[bobs_device(&substituted)],
        &at("2026-11-20T08:00:00.000Z"),
    );
    state.confirm_verified(&bob, &[bobs_device(&real)], &at("2026-11-22T08:00:00.000Z"));
    assert!(!state.contacts[&bob].replaced[&device][0].verified);

    let sent_while_pinned = from_bob(&substituted, "2026-11-21T08:00:00.000Z", &mine);
    for reading in [Reading::New, Reading::Again] {
        assert!(
            state.signing_key(&sent_while_pinned, reading).is_err(),
            "{reading:?}"
        );
    }
    let refused = state
        .signing_key(&sent_while_pinned, Reading::Again)
        .expect_err("never verified");
    assert!(refused.contains("never verified in person"), "{refused}");
    // Nor does a bundle that discloses it verify as that device's.
    assert_eq!(
        state
            .pinned_match(
                &device,
                &substituted.public().sig_pk,
                Some(&at("2026-11-21T08:00:00.000Z"))
            )
            .1,
        PinnedMatch::ReplacedUnverified(at("2026-11-22T08:00:00.000Z"))
    );
    Ok(())
}

#[test]
fn the_history_of_replaced_keys_is_saved_and_older_keystores_without_it_still_load() -> TestResult {
    let (_dir, home, _secrets) = fixture()?;
    let pass = Secret::new("correct horse");
    let bob = UserId::parse("u-bob")?;
    let (old, new) = (
        DeviceSecrets::from_bytes(&[5; 32], &[6; 32]),
        DeviceSecrets::from_bytes(&[7; 32], &[8; 32]),
    );
    let mut ks = Keystore::open(&home, &pass)?;
    let state = ks.state_mut();
    state.remember_devices_at(&[bobs_device(&old)], &at("2026-11-20T08:00:00.000Z"));
    let unchanged = serde_json::to_value(&*state)?;
    assert!(
        unchanged["contacts"]["u-bob"].get("replaced").is_none(),
        "nothing new is written while no key was replaced: {unchanged}"
    );
    state.confirm_verified(&bob, &[bobs_device(&new)], &at("2026-11-22T08:00:00.000Z"));
    ks.save()?;
    let reopened = Keystore::open(&home, &pass)?;
    let device = bobs_device(&old).device_id;
    assert_eq!(
        reopened.state().contacts[&bob].replaced[&device][0].keys,
        old.public()
    );

    // A keystore written before the history was kept.
    let mut older = serde_json::to_value(reopened.state())?;
    older["contacts"]["u-bob"]
        .as_object_mut()
        .ok_or("a contact")?
        .remove("replaced");
    let state: State = serde_json::from_value(older)?;
    assert!(state.contacts[&bob].replaced.is_empty());
    assert_eq!(state.device_keys(&bob, &device), Some(&new.public()));
    Ok(())
}

const OLD: &str = "correct horse";
const NEW: &str = "battery staple";

/// The names in `home`, sorted.
fn names_in(home: &Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut names: Vec<String> = fs::read_dir(home)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    Ok(names)
}

fn a_message(
    ks: &Keystore,
    seq: u64,
    text: &str,
) -> Result<StoredMessage, Box<dyn std::error::Error>> {
    Ok(StoredMessage {
        conv_id: ConversationId::parse("c-1")?,
        seq,
        msg_id: MessageId::generate_v7(1_000 + seq, [1; 10]),
        sender_user: ks.state().user_id.clone(),
        sender_device: ks.state().device_id.clone(),
        sent_at: Timestamp::from_unix_millis(1_000)?,
        priority: Priority::Routine,
        body: Body {
            text: text.into(),
            kind: BodyKind::Message,
            patient: None,
            reply_to: None,
        },
        envelope: None,
    })
}

#[test]
fn a_new_passphrase_reseals_with_a_fresh_salt_and_a_fresh_data_key() -> TestResult {
    let (_dir, home, secrets) = fixture()?;
    let path = Keystore::path_in(&home);
    let before: serde_json::Value = serde_json::from_slice(&fs::read(&path)?)?;
    let mut ks = Keystore::open(&home, &Secret::new(OLD))?;
    let old_data_key = ks.data_key().clone();
    ks.change_passphrase_with_cost(&Secret::new(NEW), TINY)?;

    let err = Keystore::open(&home, &Secret::new(OLD)).expect_err("old passphrase");
    assert!(matches!(err, KeystoreError::WrongPassphrase(_)), "{err:?}");
    let bytes = fs::read(&path)?;
    let err = open_bytes(&bytes, &Secret::new(OLD), &KdfLimits::DEFAULT).expect_err("old");
    assert!(matches!(err, KeystoreError::WrongPassphrase(_)), "{err:?}");
    let reopened = Keystore::open(&home, &Secret::new(NEW))?;
    assert_eq!(reopened.state().token.expose(), TOKEN);
    assert_eq!(reopened.state().device_secrets().public(), secrets.public());

    // What the unlock agent held opens nothing now.
    assert_ne!(reopened.data_key().as_ref(), old_data_key.as_ref());
    let err = Keystore::open_with_data_key(&home, old_data_key).expect_err("old data key");
    assert!(matches!(err, KeystoreError::WrongPassphrase(_)), "{err:?}");

    let after: serde_json::Value = serde_json::from_slice(&bytes)?;
    assert_ne!(after["kdf"]["salt"], before["kdf"]["salt"]);
    for field in ["algorithm", "m_cost_kib", "t_cost", "p_cost"] {
        assert_eq!(after["kdf"][field], before["kdf"][field], "{field}");
    }
    assert_eq!(names_in(&home)?, [FILE_NAME]);
    Ok(())
}

#[test]
fn a_passphrase_change_destroys_the_replaced_file_and_leftover_temporary_files() -> TestResult {
    let (dir, home, _) = fixture()?;
    let path = Keystore::path_in(&home);
    let old_bytes = fs::read(&path)?;
    // Another name for the old file's blocks, and a copy a crashed save left.
    let linked = dir.path().join("linked-to-the-old-keystore");
    fs::hard_link(&path, &linked)?;
    let leftover = home.join(".keystore.json.0123456789ab.tmp");
    fs::write(&leftover, &old_bytes)?;

    let mut ks = Keystore::open(&home, &Secret::new(OLD))?;
    ks.change_passphrase_with_cost(&Secret::new(NEW), TINY)?;

    let blocks = fs::read(&linked)?;
    assert_eq!(blocks.len(), old_bytes.len());
    assert_ne!(blocks, old_bytes, "the old file's blocks were overwritten");
    assert!(open_bytes(&blocks, &Secret::new(OLD), &KdfLimits::DEFAULT).is_err());
    assert!(!leftover.exists());
    assert_eq!(names_in(&home)?, [FILE_NAME]);
    Ok(())
}

#[test]
fn a_keystore_opened_before_a_passphrase_change_cannot_be_saved_over_it() -> TestResult {
    let (_dir, home, _) = fixture()?;
    let path = Keystore::path_in(&home);
    let mut stale = Keystore::open(&home, &Secret::new(OLD))?;
    let mut changer = Keystore::open(&home, &Secret::new(OLD))?;
    changer.change_passphrase_with_cost(&Secret::new(NEW), TINY)?;
    let changed = fs::read(&path)?;

    let message = a_message(&stale, 1, "received by a chat meanwhile")?;
    stale.state_mut().store_message(message);
    let err = stale.save().expect_err("would put the old passphrase back");
    assert!(matches!(err, KeystoreError::Changed(_)), "{err:?}");
    assert!(err.to_string().contains("try again"), "{err}");
    assert_eq!(fs::read(&path)?, changed, "the file is untouched");
    assert_eq!(names_in(&home)?, [FILE_NAME], "no temporary file left");

    // Nor can it change the passphrase again from its stale view.
    let err = stale
        .change_passphrase_with_cost(&Secret::new("a third one"), TINY)
        .expect_err("sealed again meanwhile");
    assert!(matches!(err, KeystoreError::Changed(_)), "{err:?}");
    assert_eq!(fs::read(&path)?, changed);
    assert!(
        Keystore::open(&home, &Secret::new(NEW))?
            .state()
            .messages
            .is_empty()
    );
    Ok(())
}

#[test]
fn a_passphrase_change_keeps_what_another_command_saved_since_it_opened() -> TestResult {
    let (_dir, home, _) = fixture()?;
    let mut changer = Keystore::open(&home, &Secret::new(OLD))?;
    let mut other = Keystore::open(&home, &Secret::new(OLD))?;
    let message = a_message(&other, 1, "saved by another command")?;
    other.state_mut().store_message(message);
    other.save()?;

    changer.change_passphrase_with_cost(&Secret::new(NEW), TINY)?;
    let reopened = Keystore::open(&home, &Secret::new(NEW))?;
    assert_eq!(reopened.state().messages.len(), 1);
    assert_eq!(
        reopened.state().messages[0].body.text,
        "saved by another command"
    );
    // Saving after the change works as usual.
    changer.save()?;
    assert_eq!(
        Keystore::open(&home, &Secret::new(NEW))?
            .state()
            .messages
            .len(),
        1
    );
    Ok(())
}
