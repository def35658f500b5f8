//! Envelopes from the network: parsing and opening must never panic, and
//! nothing but a correctly sealed envelope may open.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wardline_protocol::{DeviceId, DeviceSecrets, Envelope, envelope};

struct Keys {
    me: DeviceId,
    mine: DeviceSecrets,
    sender: DeviceSecrets,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| Keys {
        me: DeviceId::parse("d-r1").expect("id"),
        mine: DeviceSecrets::from_bytes(&[1; 32], &[2; 32]),
        sender: DeviceSecrets::from_bytes(&[3; 32], &[4; 32]),
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(env) = serde_json::from_slice::<Envelope>(data) else {
        return;
    };
    let k = keys();
    // The fuzzer cannot forge an Ed25519 signature by the sender's key.
    assert!(envelope::open(&env, &k.me, &k.mine, &k.sender.public().sig_pk).is_err());
    let _ = wardline_protocol::wire::SplitEnvelope::new(&env);
});
