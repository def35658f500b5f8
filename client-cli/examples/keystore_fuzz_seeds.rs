//! Writes the seed corpus of the `keystore_file` fuzz target: one genuine
//! keystore file, sealed with the target's passphrase under a key
//! derivation cheap enough for fuzzing, and damaged copies of it.
//!
//! ```text
//! cargo run -p wardline-cli --example keystore_fuzz_seeds -- fuzz/seeds/keystore_file
//! ```
//!
//! The genuine file belongs to the user `fuzz.seed`: the target asserts
//! that anything that opens is that file (a fuzzer cannot forge AES-GCM).

use std::path::PathBuf;

use wardline_cli::keystore::{KdfCost, Keystore, Registration, State};
use wardline_protocol::{DeviceId, DeviceSecrets, Secret, Timestamp, UserId, Username};

/// Must match `fuzz/fuzz_targets/keystore_file.rs`.
const PASSPHRASE: &str = "fuzz keystore passphrase";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: keystore_fuzz_seeds OUT_DIR")?,
    );
    std::fs::create_dir_all(&out)?;
    let home = tempfile::tempdir()?;
    let registration = Registration {
        server: "ws://127.0.0.1:7443/v1".into(),
        trust: None,
        user_id: UserId::parse("u-fuzz-seed")?,
        username: Username::parse("fuzz.seed")?,
        device_id: DeviceId::parse("d-fuzz-seed")?,
        device_name: "fuzz seed".into(),
        token: Secret::new("tok-fuzz-seed"),
        expires_at: Timestamp::parse("2026-11-23T19:31:54.123Z")?,
    };
    let secrets = DeviceSecrets::from_bytes(&[0x11; 32], &[0x22; 32]);
    // The smallest cost Argon2 accepts: 8 KiB, one pass, one lane.
    let keystore = Keystore::create_with_cost(
        home.path(),
        &Secret::new(PASSPHRASE),
        State::new(registration, &secrets),
        KdfCost::custom(8, 1, 1),
    )?;
    let genuine = std::fs::read(keystore.path())?;
    let mut file: serde_json::Value = serde_json::from_slice(&genuine)?;

    let mut seeds: Vec<(&str, Vec<u8>)> = vec![
        ("genuine.json", genuine.clone()),
        ("truncated.json", genuine[..genuine.len() / 2].to_vec()),
    ];
    let mut flipped = genuine.clone();
    let at = flipped.len() - 40;
    flipped[at] ^= 0x01;
    seeds.push(("flipped-byte.json", flipped));
    file["kdf"]["m_cost_kib"] = (4u64 * 1024 * 1024).into();
    seeds.push(("costly-kdf.json", serde_json::to_vec(&file)?));
    file["kdf"]["m_cost_kib"] = 8.into();
    file["version"] = 2.into();
    seeds.push(("future-version.json", serde_json::to_vec(&file)?));
    for (name, bytes) in seeds {
        std::fs::write(out.join(name), bytes)?;
    }
    println!("wrote the keystore_file seeds to {}", out.display());
    Ok(())
}
