//! Keystore files from the disk: parsing and opening must never panic,
//! never take long (the key derivation's cost is read from the file, so it
//! is capped before anything is derived), and nothing but a genuine file
//! may open.
//!
//! The seeds (`seeds/keystore_file/`, made by `cargo run -p wardline-cli
//! --example keystore_fuzz_seeds -- fuzz/seeds/keystore_file`) hold one
//! genuine file sealed with [`PASSPHRASE`] under the cheapest Argon2 cost,
//! for the user `fuzz.seed`, and damaged copies of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wardline_cli::keystore::{KdfLimits, KeystoreError, open_bytes};
use wardline_protocol::Secret;

const PASSPHRASE: &str = "fuzz keystore passphrase";

/// Far below what `wardline` accepts, so that no input makes a run slow:
/// 64 KiB and two passes derive in well under a millisecond.
const LIMITS: KdfLimits = KdfLimits::new(64, 2, 1);

fuzz_target!(|data: &[u8]| {
    match open_bytes(data, &Secret::new(PASSPHRASE), &LIMITS) {
        // Only the genuine seed opens: forging its sealed state would mean
        // forging AES-GCM under a key derived from the passphrase.
        Ok(state) => {
            assert_eq!(state.username.as_str(), "fuzz.seed");
            assert_eq!(state.device_id.as_str(), "d-fuzz-seed");
        }
        Err(
            KeystoreError::Corrupt { .. }
            | KeystoreError::WrongPassphrase(_)
            | KeystoreError::KdfTooCostly { .. },
        ) => {}
        Err(other) => panic!("a file's bytes gave an unexpected error: {other:?}"),
    }
});
