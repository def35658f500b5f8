//! Configuration files: any text must give a configuration or a clear
//! error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wardline_server::config::{Config, FileConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = toml::from_str::<FileConfig>(text) else {
        return;
    };
    let mut c = Config::new("127.0.0.1:7443".parse().expect("addr"), "d".into());
    if file.apply(&mut c).is_ok() {
        let _ = c.validate();
        let _ = c.to_toml();
    }
});
