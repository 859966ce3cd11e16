//! `postamt_config::parse` on arbitrary TOML text.
//!
//! Invariants: no panic; a successful parse records the source path and is
//! stable (the same text parses to the same configuration again); an error
//! names the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/postamt/fuzz.toml");
    match postamt_config::parse(text, path) {
        Ok(config) => {
            assert_eq!(config.source.as_deref(), Some(path));
            let again = postamt_config::parse(text, path).expect("parses twice");
            assert_eq!(format!("{config:?}"), format!("{again:?}"));
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(
                shown.contains("fuzz.toml"),
                "error without the file: {shown}"
            );
        }
    }
});
