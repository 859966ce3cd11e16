//! Turning a PEM certificate chain and private key into a rustls
//! `CertifiedKey`, checking that the key belongs to the certificate.

use super::error::TlsError;
use super::info::CertInfo;
use super::info::{CertFields, parse_certificate};
use super::pem::{parse_chain, parse_key, read_file};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{Error as RustlsError, InconsistentKeys};
use std::path::Path;
use std::sync::Arc;

/// A certificate ready to serve, with its description.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
    pub fields: CertFields,
}

/// Reads and checks the PEM files `cert` and `key`.
pub(crate) fn load_files(
    cert: &Path,
    key: &Path,
    sni_hostname: Option<String>,
    crypto: &CryptoProvider,
) -> Result<Loaded, TlsError> {
    let cert_pem = read_file(cert)?;
    let key_pem = read_file(key)?;
    load_pem(&cert_pem, &key_pem, cert, key, sni_hostname, crypto, true)
}

/// Checks PEM text; `cert_path`/`key_path` only name the sources in errors
/// (and in [`CertInfo::cert_file`] when `from_file`).
pub(crate) fn load_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
    sni_hostname: Option<String>,
    crypto: &CryptoProvider,
    from_file: bool,
) -> Result<Loaded, TlsError> {
    let chain = parse_chain(cert_pem, cert_path)?;
    let key_der = parse_key(key_pem, key_path)?;
    let leaf = chain.first().ok_or_else(|| TlsError::NoCertificate {
        path: cert_path.to_path_buf(),
    })?;
    let fields = parse_certificate(leaf.as_ref()).map_err(|e| TlsError::BadCertificate {
        path: cert_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let info = CertInfo::new(
        sni_hostname,
        leaf.as_ref(),
        &fields,
        from_file.then(|| cert_path.to_path_buf()),
    );
    let signing_key =
        crypto
            .key_provider
            .load_private_key(key_der)
            .map_err(|e| TlsError::UnsupportedKey {
                path: key_path.to_path_buf(),
                reason: e.to_string(),
            })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // ring's keys always know their public half; an unknown answer is
        // treated as rustls itself does (accepted).
        Ok(()) | Err(RustlsError::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(RustlsError::InconsistentKeys(_)) => {
            return Err(TlsError::KeyMismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            });
        }
        Err(e) => {
            return Err(TlsError::BadCertificate {
                path: cert_path.to_path_buf(),
                reason: e.to_string(),
            });
        }
    }
    Ok(Loaded {
        key: Arc::new(certified),
        info,
        fields,
    })
}
