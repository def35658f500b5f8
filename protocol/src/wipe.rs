//! The signed confirmation a device sends after destroying its data.

use crate::ids::DeviceId;
use crate::keys::{DeviceSecrets, KeyError, SigPublicKey};

const WIPE_DONE_LABEL: &[u8] = b"wardline/v1/wipe-done";

fn wipe_done_input(wipe_id: &str, device_id: &DeviceId) -> Vec<u8> {
    [
        WIPE_DONE_LABEL,
        wipe_id.as_bytes(),
        device_id.as_str().as_bytes(),
    ]
    .concat()
}

/// Signs `wipe_done` for `wipe_id` as `device_id`.
pub fn sign_wipe_done(secrets: &DeviceSecrets, wipe_id: &str, device_id: &DeviceId) -> [u8; 64] {
    secrets.sign(&wipe_done_input(wipe_id, device_id))
}

/// Verifies a `wipe_done` signature by the device's signing key.
pub fn verify_wipe_done(
    sig_pk: &SigPublicKey,
    wipe_id: &str,
    device_id: &DeviceId,
    sig: &[u8; 64],
) -> Result<(), KeyError> {
    sig_pk.verify(&wipe_done_input(wipe_id, device_id), sig)
}
