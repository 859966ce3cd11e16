//! The self-signed certificate used when none is configured: made with rcgen
//! on first start, kept under `<data_dir>/tls/` (key mode 0600) and reused
//! while it is readable, matches the key, names the host and is not about to
//! expire.

use super::error::TlsError;
use super::info::now_unix;
use super::load::{Loaded, load_files};
use chrono::{DateTime, Datelike, TimeDelta, Utc};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use rustls::crypto::CryptoProvider;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The certificate file's name inside the TLS directory.
pub const CERT_FILE: &str = "selfsigned-cert.pem";
/// The private key file's name inside the TLS directory.
pub const KEY_FILE: &str = "selfsigned-key.pem";
/// How long a generated certificate is valid.
pub(crate) const VALIDITY_DAYS: i64 = 3 * 365;
/// A certificate expiring sooner than this is replaced at the next load.
pub(crate) const RENEW_BEFORE_SECS: i64 = 30 * 86_400;

/// The PEM text of a new self-signed certificate and its key.
#[derive(Debug, Clone)]
pub(crate) struct Generated {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The names a generated certificate is valid for: the host, `localhost` and
/// the loopback addresses.
fn subject_alt_names(hostname: &str) -> Vec<String> {
    let mut names = vec![hostname.to_ascii_lowercase()];
    for extra in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_string());
        }
    }
    names
}

/// The UTC date `days` after (or before, if negative) the day of `now`
/// (Unix seconds), in the types rcgen takes.
fn ymd(now: i64, days: i64) -> Result<(i32, u8, u8), TlsError> {
    let range = || TlsError::Generate("date out of range".into());
    let date = DateTime::<Utc>::from_timestamp(now, 0)
        .ok_or_else(range)?
        .date_naive()
        .checked_add_signed(TimeDelta::try_days(days).ok_or_else(range)?)
        .ok_or_else(range)?;
    // X.509 writes four-digit years, and rcgen panics outside them.
    if !(1..=9999).contains(&date.year()) {
        return Err(range());
    }
    Ok((
        date.year(),
        u8::try_from(date.month()).map_err(|_| range())?,
        u8::try_from(date.day()).map_err(|_| range())?,
    ))
}

/// Makes a self-signed ECDSA P-256 certificate for `hostname`, valid from
/// yesterday (clock skew) for [`VALIDITY_DAYS`] after `now`.
pub(crate) fn generate(hostname: &str, now: i64) -> Result<Generated, TlsError> {
    let err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let mut params = CertificateParams::new(subject_alt_names(hostname)).map_err(err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, hostname.to_ascii_lowercase());
    dn.push(DnType::OrganizationName, "Postamt self-signed");
    params.distinguished_name = dn;
    let (y, m, d) = ymd(now, -1)?;
    params.not_before = date_time_ymd(y, m, d);
    let (y, m, d) = ymd(now, VALIDITY_DAYS)?;
    params.not_after = date_time_ymd(y, m, d);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(err)?;
    let cert = params.self_signed(&key).map_err(err)?;
    Ok(Generated {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The certificate and key paths inside `dir`.
pub(crate) fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(CERT_FILE), dir.join(KEY_FILE))
}

/// Loads the persisted certificate from `dir`, or makes (and persists) a new
/// one when it is missing, unusable, for another host name, or expires within
/// [`RENEW_BEFORE_SECS`]. Returns it and whether it was just generated.
pub(crate) fn load_or_create(
    dir: &Path,
    hostname: &str,
    crypto: &CryptoProvider,
) -> Result<(Loaded, bool), TlsError> {
    let (cert_path, key_path) = paths(dir);
    let now = now_unix();
    match load_files(&cert_path, &key_path, None, crypto) {
        Ok(loaded) => {
            let cn_matches = loaded
                .fields
                .subject_cn
                .as_deref()
                .is_some_and(|cn| cn.eq_ignore_ascii_case(hostname));
            if !cn_matches {
                tracing::info!(
                    file = %cert_path.display(),
                    hostname,
                    "self-signed certificate is for another host name; generating a new one"
                );
            } else if loaded.fields.not_after - now < RENEW_BEFORE_SECS {
                tracing::info!(
                    file = %cert_path.display(),
                    not_after = %loaded.info.not_after_utc(),
                    "self-signed certificate expires soon; generating a new one"
                );
            } else {
                return Ok((loaded, false));
            }
        }
        Err(TlsError::Missing { .. }) => {
            tracing::info!(dir = %dir.display(), hostname, "no TLS certificate configured; generating a self-signed one");
        }
        Err(e) => {
            tracing::warn!(error = %e, "self-signed certificate unusable; generating a new one");
        }
    }
    let generated = generate(hostname, now)?;
    persist(dir, &generated)?;
    let loaded = load_files(&cert_path, &key_path, None, crypto)?;
    Ok((loaded, true))
}

/// Writes the key (mode 0600) and then the certificate, each atomically.
fn persist(dir: &Path, generated: &Generated) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    // The directory holds a private key: owner only.
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let (cert_path, key_path) = paths(dir);
    write_atomic(&key_path, generated.key_pem.as_bytes(), 0o600)?;
    write_atomic(&cert_path, generated.cert_pem.as_bytes(), 0o644)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let werr = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(werr(e)),
    }
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(werr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::info::parse_certificate;
    use crate::tls::pem::parse_chain;

    fn crypto() -> CryptoProvider {
        rustls::crypto::ring::default_provider()
    }

    #[test]
    fn generated_certificate_names_the_host_and_is_valid_now() {
        let now = now_unix();
        let g = generate("MX.Example.org", now).unwrap();
        let chain = parse_chain(g.cert_pem.as_bytes(), Path::new("x")).unwrap();
        let f = parse_certificate(chain[0].as_ref()).unwrap();
        assert_eq!(f.subject_cn.as_deref(), Some("mx.example.org"));
        assert!(f.self_issued);
        assert!(f.not_before <= now && now < f.not_after);
        assert!(f.not_after - now > (VALIDITY_DAYS - 1) * 86_400);
        assert_eq!(
            subject_alt_names("localhost"),
            vec!["localhost", "127.0.0.1", "::1"]
        );
    }

    #[test]
    fn dates_are_whole_utc_days_from_now() {
        // 2024-02-28 13:00:00 UTC.
        let now = 1_709_125_200;
        assert_eq!(ymd(now, 0).unwrap(), (2024, 2, 28));
        assert_eq!(ymd(now, 1).unwrap(), (2024, 2, 29));
        assert_eq!(ymd(now, 2).unwrap(), (2024, 3, 1));
        assert_eq!(ymd(0, -1).unwrap(), (1969, 12, 31));
        assert_eq!(ymd(now, VALIDITY_DAYS).unwrap(), (2027, 2, 27));
        assert!(matches!(ymd(i64::MAX, 0), Err(TlsError::Generate(_))));
        // 9999-12-31 is the last date a certificate can carry.
        assert_eq!(ymd(253_402_214_400, 0).unwrap(), (9999, 12, 31));
        assert!(matches!(
            ymd(253_402_214_400, 1),
            Err(TlsError::Generate(_))
        ));
        assert!(generate("a.example", 253_402_214_400).is_err());
        assert!(matches!(ymd(now, i64::MAX), Err(TlsError::Generate(_))));
    }

    #[test]
    fn created_once_then_reused_with_private_key_mode() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let (first, created) = load_or_create(&tls, "mx.example.org", &crypto()).unwrap();
        assert!(created);
        let (_, key_path) = paths(&tls);
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (second, created) = load_or_create(&tls, "mx.example.org", &crypto()).unwrap();
        assert!(!created);
        assert_eq!(
            first.info.fingerprint_sha256,
            second.info.fingerprint_sha256
        );
        // No temporary files left behind.
        let names: Vec<_> = std::fs::read_dir(&tls)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn regenerated_when_broken_mismatched_or_for_another_host() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = paths(dir.path());
        let (first, _) = load_or_create(dir.path(), "a.example", &crypto()).unwrap();

        // Another host name.
        let (second, created) = load_or_create(dir.path(), "b.example", &crypto()).unwrap();
        assert!(created);
        assert_ne!(
            first.info.fingerprint_sha256,
            second.info.fingerprint_sha256
        );

        // Garbage in the certificate file.
        std::fs::write(&cert_path, b"garbage").unwrap();
        let (third, created) = load_or_create(dir.path(), "b.example", &crypto()).unwrap();
        assert!(created);
        assert_ne!(
            second.info.fingerprint_sha256,
            third.info.fingerprint_sha256
        );

        // A key that belongs to another certificate.
        let other = generate("b.example", now_unix()).unwrap();
        std::fs::write(&key_path, other.key_pem).unwrap();
        let (fourth, created) = load_or_create(dir.path(), "b.example", &crypto()).unwrap();
        assert!(created);
        assert_ne!(
            third.info.fingerprint_sha256,
            fourth.info.fingerprint_sha256
        );

        // Missing key.
        std::fs::remove_file(&key_path).unwrap();
        let (_, created) = load_or_create(dir.path(), "b.example", &crypto()).unwrap();
        assert!(created);
    }

    #[test]
    fn regenerated_when_expired_or_expiring() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path()).unwrap();
        // Generated long ago: expired years before now.
        let old = generate("a.example", now_unix() - 2 * VALIDITY_DAYS * 86_400).unwrap();
        persist(dir.path(), &old).unwrap();
        let (loaded, created) = load_or_create(dir.path(), "a.example", &crypto()).unwrap();
        assert!(created);
        assert!(loaded.fields.not_after > now_unix() + RENEW_BEFORE_SECS);

        // Expiring within the renewal window.
        let soon = generate(
            "a.example",
            now_unix() - (VALIDITY_DAYS * 86_400) + RENEW_BEFORE_SECS / 2,
        )
        .unwrap();
        persist(dir.path(), &soon).unwrap();
        let (_, created) = load_or_create(dir.path(), "a.example", &crypto()).unwrap();
        assert!(created);
    }

    #[test]
    fn unwritable_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let e = load_or_create(&file.join("tls"), "a.example", &crypto()).unwrap_err();
        assert!(matches!(e, TlsError::Write { .. }), "{e}");
        assert!(e.to_string().contains("not-a-dir"), "{e}");
    }
}
