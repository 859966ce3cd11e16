//! Shared fixtures for the unit tests: a configuration rooted in a temporary
//! directory and fixed test keys.

use postamt_config::Config;
use std::path::Path;

/// A PKCS#8 RSA-2048 test key.
pub const TEST_KEY_PEM: &str = include_str!("../testdata/rsa2048-a.pkcs8.pem");
/// The same key as [`TEST_KEY_PEM`] in PKCS#1 form.
pub const TEST_KEY_PKCS1_PEM: &str = include_str!("../testdata/rsa2048-a.pkcs1.pem");
/// Another PKCS#8 RSA-2048 test key.
pub const OTHER_KEY_PEM: &str = include_str!("../testdata/rsa2048-b.pkcs8.pem");

/// A configuration for `mail.example.org` serving `example.org`, all data
/// under `dir`.
pub fn config_in(dir: &Path) -> Config {
    Config {
        hostname: "mail.example.org".into(),
        domains: vec!["example.org".into()],
        data_dir: dir.to_path_buf(),
        ..Config::default()
    }
}

/// Puts `pem` at `<key_dir>/<domain>.key`.
pub fn install_key(config: &Config, domain: &str, pem: &str) {
    let dir = config.dkim_key_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{domain}.key")), pem).unwrap();
}
