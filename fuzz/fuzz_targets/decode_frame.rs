//! Any bytes a client or server might send: decoding must never panic, and
//! what decodes must re-encode and decode to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wardline_protocol::wire;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(frame) = wire::decode_request(text) {
        let again = wire::encode_request(frame.id, &frame.request);
        let back = wire::decode_request(&again).expect("a re-encoded request decodes");
        assert_eq!(back.id, frame.id);
        assert_eq!(back.request.type_name(), frame.request.type_name());
    }
    let _ = wire::decode_server_frame(text);
});
