//! DKIM key files: generating an RSA-2048 key as PKCS#8 PEM in the key
//! directory, reading a key back, and the matching `_domainkey` TXT record.

use crate::SenderAuthError;
use crate::domain::normalize_domain;
use crate::zone::txt_zone_line;
use base64::Engine;
use postamt_config::Config;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::{RsaPrivateKey, RsaPublicKey};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The size of generated keys (RFC 8301: at least 1024, 2048 recommended).
pub const KEY_BITS: usize = 2048;
/// Key files larger than this are refused unread (a 4096-bit PEM is ~3.3 KB).
pub(crate) const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;
/// The file name suffix of key files in the key directory.
pub(crate) const KEY_SUFFIX: &str = ".key";

/// A key written by [`generate_key`] (or read back by [`read_key_record`])
/// and the TXT record that publishes its public half.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedKey {
    /// The private key file, `<key_dir>/<domain>.key`.
    pub path: PathBuf,
    /// The record name, `<selector>._domainkey.<domain>` (no trailing dot).
    pub txt_name: String,
    /// The raw record value, `v=DKIM1; k=rsa; p=<base64 SPKI>`.
    pub txt_value: String,
}

impl GeneratedKey {
    /// The record as one zone-file line, the value split into quoted strings
    /// of at most 255 bytes: `name. IN TXT "..." "..."`.
    pub fn zone_file_line(&self) -> String {
        txt_zone_line(&self.txt_name, &self.txt_value)
    }
}

/// `<key_dir>/<domain>.key` for a validated, lowercased domain.
pub fn key_path(config: &Config, domain: &str) -> Result<PathBuf, SenderAuthError> {
    let domain = normalize_domain(domain)?;
    Ok(config.dkim_key_dir().join(format!("{domain}{KEY_SUFFIX}")))
}

/// `<selector>._domainkey.<domain>` (no trailing dot).
pub fn dkim_record_name(config: &Config, domain: &str) -> Result<String, SenderAuthError> {
    let domain = normalize_domain(domain)?;
    let selector = normalize_domain(&config.dkim.selector)?;
    Ok(format!("{selector}._domainkey.{domain}"))
}

/// The DKIM TXT value for a public key given as DER SubjectPublicKeyInfo.
pub fn dkim_txt_value(spki_der: &[u8]) -> String {
    format!(
        "v=DKIM1; k=rsa; p={}",
        base64::engine::general_purpose::STANDARD.encode(spki_der)
    )
}

/// Makes a new RSA-2048 key for `domain`, saves it as PKCS#8 PEM at
/// `<key_dir>/<domain>.key` (file mode 0600; the directory is created with
/// mode 0700) and returns the TXT record to publish.
///
/// An existing key is never replaced unless `force`; the file appears
/// atomically (written aside, then linked or renamed into place).
pub fn generate_key(
    config: &Config,
    domain: &str,
    force: bool,
) -> Result<GeneratedKey, SenderAuthError> {
    let domain = normalize_domain(domain)?;
    let txt_name = dkim_record_name(config, &domain)?;
    let dir = config.dkim_key_dir();
    let path = dir.join(format!("{domain}{KEY_SUFFIX}"));
    if !force && path.symlink_metadata().is_ok() {
        return Err(SenderAuthError::KeyExists { path });
    }

    let mut rng = rsa::rand_core::OsRng;
    let private = RsaPrivateKey::new(&mut rng, KEY_BITS)
        .map_err(|e| SenderAuthError::KeyGeneration(e.to_string()))?;
    let pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| SenderAuthError::KeyGeneration(e.to_string()))?;
    let spki = RsaPublicKey::from(&private)
        .to_public_key_der()
        .map_err(|e| SenderAuthError::KeyGeneration(e.to_string()))?;

    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| SenderAuthError::io(&dir, e))?;
    install_file(&dir, &path, pem.as_bytes(), force)?;
    tracing::info!(domain = %domain, path = %path.display(), "generated DKIM key");

    Ok(GeneratedKey {
        path,
        txt_name,
        txt_value: dkim_txt_value(spki.as_bytes()),
    })
}

/// Reads the existing key of `domain` and returns its TXT record, or `None`
/// when there is no key file.
pub fn read_key_record(
    config: &Config,
    domain: &str,
) -> Result<Option<GeneratedKey>, SenderAuthError> {
    let path = key_path(config, domain)?;
    let txt_name = dkim_record_name(config, domain)?;
    let pem = match read_key_file(&path) {
        Ok(pem) => pem,
        Err(SenderAuthError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let private = parse_rsa_private_key(&path, &pem)?;
    let spki = RsaPublicKey::from(&private)
        .to_public_key_der()
        .map_err(|e| bad_key(&path, e))?;
    Ok(Some(GeneratedKey {
        path,
        txt_name,
        txt_value: dkim_txt_value(spki.as_bytes()),
    }))
}

/// Reads a key file, refusing anything but a regular file of bounded size.
pub(crate) fn read_key_file(path: &Path) -> Result<Vec<u8>, SenderAuthError> {
    let meta = std::fs::metadata(path).map_err(|e| SenderAuthError::io(path, e))?;
    if !meta.is_file() {
        return Err(SenderAuthError::BadKey {
            path: path.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(SenderAuthError::BadKey {
            path: path.to_path_buf(),
            reason: format!("larger than {MAX_KEY_FILE_BYTES} bytes"),
        });
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "DKIM key file is readable by group or others; chmod 600 it");
    }
    std::fs::read(path).map_err(|e| SenderAuthError::io(path, e))
}

/// The DER form of a PEM private key (PKCS#8 or PKCS#1 "RSA PRIVATE KEY").
pub(crate) fn private_key_der(
    path: &Path,
    pem: &[u8],
) -> Result<PrivateKeyDer<'static>, SenderAuthError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| bad_key(path, e))
}

fn parse_rsa_private_key(path: &Path, pem: &[u8]) -> Result<RsaPrivateKey, SenderAuthError> {
    match private_key_der(path, pem)? {
        PrivateKeyDer::Pkcs8(der) => {
            RsaPrivateKey::from_pkcs8_der(der.secret_pkcs8_der()).map_err(|e| bad_key(path, e))
        }
        PrivateKeyDer::Pkcs1(der) => {
            RsaPrivateKey::from_pkcs1_der(der.secret_pkcs1_der()).map_err(|e| bad_key(path, e))
        }
        _ => Err(SenderAuthError::BadKey {
            path: path.to_path_buf(),
            reason: "not an RSA key (PKCS#8 or PKCS#1 expected)".into(),
        }),
    }
}

pub(crate) fn bad_key(path: &Path, e: impl std::fmt::Display) -> SenderAuthError {
    SenderAuthError::BadKey {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Writes `data` to a fresh 0600 file beside `path`, then moves it into
/// place: a hard link that fails if `path` exists (no `force`), or a rename
/// that replaces it (`force`).
fn install_file(dir: &Path, path: &Path, data: &[u8], force: bool) -> Result<(), SenderAuthError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    // A leftover from a crashed run of this same process id: ours to replace.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| SenderAuthError::io(&tmp, e))?;
        f.write_all(data)
            .and_then(|()| f.sync_all())
            .map_err(|e| SenderAuthError::io(&tmp, e))?;
        if force {
            std::fs::rename(&tmp, path).map_err(|e| SenderAuthError::io(path, e))
        } else {
            match std::fs::hard_link(&tmp, path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(SenderAuthError::KeyExists {
                        path: path.to_path_buf(),
                    })
                }
                Err(e) => Err(SenderAuthError::io(path, e)),
            }
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    if result.is_ok()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{TEST_KEY_PEM, TEST_KEY_PKCS1_PEM, config_in};

    #[test]
    fn generates_a_0600_key_in_a_0700_dir_and_a_txt_record_of_its_spki() {
        let tmp = tempfile::tempdir().unwrap();
        let config = config_in(tmp.path());
        let key = generate_key(&config, "Example.ORG", false).unwrap();

        assert_eq!(key.path, tmp.path().join("dkim/example.org.key"));
        assert_eq!(key.txt_name, "postamt._domainkey.example.org");
        let mode = std::fs::metadata(&key.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(tmp.path().join("dkim"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);

        // The file is PKCS#8 PEM of a 2048-bit RSA key.
        let pem = std::fs::read_to_string(&key.path).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        let private = RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(rsa::traits::PublicKeyParts::size(&private) * 8, 2048);

        // The TXT value's p= is the base64 SPKI of that very key.
        let p = key.txt_value.strip_prefix("v=DKIM1; k=rsa; p=").unwrap();
        let spki = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
        let public =
            <RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&spki).unwrap();
        assert_eq!(public, RsaPublicKey::from(&private));

        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("dkim"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["example.org.key"]);

        // Reading the key back gives the same record.
        assert_eq!(
            read_key_record(&config, "example.org").unwrap().unwrap(),
            key
        );

        // The zone-file line splits the value into strings of <= 255 bytes.
        let line = key.zone_file_line();
        assert!(line.starts_with("postamt._domainkey.example.org. IN TXT \"v=DKIM1; k=rsa; p="));
        let strings: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        assert!(strings.len() >= 2);
        assert!(strings.iter().all(|s| s.len() <= 255));
        assert_eq!(strings.concat(), key.txt_value);
    }

    #[test]
    fn refuses_to_overwrite_unless_forced() {
        let tmp = tempfile::tempdir().unwrap();
        let config = config_in(tmp.path());
        let dir = config.dkim_key_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("example.org.key");
        std::fs::write(&path, TEST_KEY_PEM).unwrap();

        let err = generate_key(&config, "example.org", false).unwrap_err();
        assert!(
            matches!(err, SenderAuthError::KeyExists { ref path } if path.ends_with("example.org.key")),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), TEST_KEY_PEM);

        let key = generate_key(&config, "example.org", true).unwrap();
        let replaced = std::fs::read_to_string(&path).unwrap();
        assert_ne!(replaced, TEST_KEY_PEM);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            read_key_record(&config, "example.org").unwrap().unwrap(),
            key
        );
    }

    #[test]
    fn invalid_domains_touch_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let config = config_in(tmp.path());
        for bad in ["../evil", "a/b", "", ".."] {
            assert!(matches!(
                generate_key(&config, bad, true),
                Err(SenderAuthError::InvalidDomain(_))
            ));
        }
        assert!(!config.dkim_key_dir().exists());
    }

    #[test]
    fn read_key_record_of_a_missing_or_broken_key() {
        let tmp = tempfile::tempdir().unwrap();
        let config = config_in(tmp.path());
        assert_eq!(read_key_record(&config, "example.org").unwrap(), None);
        std::fs::create_dir_all(config.dkim_key_dir()).unwrap();
        std::fs::write(config.dkim_key_dir().join("example.org.key"), "junk").unwrap();
        let err = read_key_record(&config, "example.org").unwrap_err();
        assert!(err.to_string().contains("example.org.key"), "{err}");
        // A PKCS#1 key is read too.
        std::fs::write(
            config.dkim_key_dir().join("example.net.key"),
            TEST_KEY_PKCS1_PEM,
        )
        .unwrap();
        let rec = read_key_record(&config, "example.net").unwrap().unwrap();
        assert!(
            rec.txt_value.starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"),
            "{}",
            rec.txt_value
        );
    }
}
