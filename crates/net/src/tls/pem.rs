//! Reading PEM certificate chains and private keys (PKCS#8, PKCS#1, SEC1),
//! with a size bound and errors that name the file and the problem.

use super::error::TlsError;
use rustls_pki_types::pem::{self, PemObject, SectionKind};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use std::io::Read;
use std::path::Path;

/// Largest PEM file read (a long chain is a few tens of KiB).
pub(crate) const MAX_PEM_FILE: u64 = 1024 * 1024;
/// Most certificates accepted in one chain.
pub(crate) const MAX_CHAIN: usize = 16;

/// The file's bytes, at most [`MAX_PEM_FILE`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut buf = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_error(path, e))?;
    if buf.len() as u64 > MAX_PEM_FILE {
        return Err(TlsError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_PEM_FILE,
        });
    }
    Ok(buf)
}

fn io_error(path: &Path, e: std::io::Error) -> TlsError {
    if e.kind() == std::io::ErrorKind::NotFound {
        TlsError::Missing {
            path: path.to_path_buf(),
        }
    } else {
        TlsError::Read {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// Every PEM section of a kind rustls-pki-types knows, in file order.
fn sections(bytes: &[u8], path: &Path) -> Result<Vec<(SectionKind, Vec<u8>)>, TlsError> {
    let mut out = Vec::new();
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes) {
        match item {
            Ok(section) => out.push(section),
            Err(e) => {
                if contains(bytes, b"ENCRYPTED") {
                    return Err(TlsError::EncryptedKey {
                        path: path.to_path_buf(),
                    });
                }
                return Err(TlsError::NotPem {
                    path: path.to_path_buf(),
                    reason: describe(&e),
                });
            }
        }
    }
    Ok(out)
}

fn describe(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line".into(),
        pem::Error::IllegalSectionStart { .. } => "malformed BEGIN line".into(),
        pem::Error::Base64Decode(_) => "invalid base64 inside a section".into(),
        pem::Error::SectionTooLarge => "a section is too large".into(),
        other => other.to_string(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn has_pem_marker(bytes: &[u8]) -> bool {
    contains(bytes, b"-----BEGIN ")
}

/// The certificate chain in `bytes` (read from `path`), leaf first.
pub(crate) fn parse_chain(
    bytes: &[u8],
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = sections(bytes, path)?
        .into_iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der))
        .collect();
    if chain.is_empty() {
        return Err(if has_pem_marker(bytes) {
            TlsError::NoCertificate {
                path: path.to_path_buf(),
            }
        } else {
            TlsError::NotPem {
                path: path.to_path_buf(),
                reason: "no `-----BEGIN` line".into(),
            }
        });
    }
    if chain.len() > MAX_CHAIN {
        return Err(TlsError::TooManyCertificates {
            path: path.to_path_buf(),
            limit: MAX_CHAIN,
        });
    }
    Ok(chain)
}

/// The first private key in `bytes` (read from `path`).
pub(crate) fn parse_key(bytes: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    for (kind, der) in sections(bytes, path)? {
        match kind {
            SectionKind::PrivateKey => return Ok(PrivatePkcs8KeyDer::from(der).into()),
            SectionKind::RsaPrivateKey => return Ok(PrivatePkcs1KeyDer::from(der).into()),
            SectionKind::EcPrivateKey => return Ok(PrivateSec1KeyDer::from(der).into()),
            _ => {}
        }
    }
    Err(if contains(bytes, b"ENCRYPTED PRIVATE KEY") {
        TlsError::EncryptedKey {
            path: path.to_path_buf(),
        }
    } else if has_pem_marker(bytes) {
        TlsError::NoKey {
            path: path.to_path_buf(),
        }
    } else {
        TlsError::NotPem {
            path: path.to_path_buf(),
            reason: "no `-----BEGIN` line".into(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(label: &str, body: &str) -> String {
        format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
    }

    #[test]
    fn reads_chain_in_order_skipping_other_sections() {
        let text = format!(
            "junk before\n{}{}{}",
            pem("CERTIFICATE", "AQID"),
            pem("EC PARAMETERS", "BggqhkjOPQMBBw=="),
            pem("CERTIFICATE", "BAUG")
        );
        let chain = parse_chain(text.as_bytes(), Path::new("c.pem")).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].as_ref(), &[1, 2, 3]);
        assert_eq!(chain[1].as_ref(), &[4, 5, 6]);
    }

    #[test]
    fn key_kinds_are_recognised() {
        let p = Path::new("k.pem");
        let k = parse_key(pem("PRIVATE KEY", "AQID").as_bytes(), p).unwrap();
        assert!(matches!(k, PrivateKeyDer::Pkcs8(_)));
        let k = parse_key(pem("RSA PRIVATE KEY", "AQID").as_bytes(), p).unwrap();
        assert!(matches!(k, PrivateKeyDer::Pkcs1(_)));
        let text = format!(
            "{}{}",
            pem("EC PARAMETERS", "BggqhkjOPQMBBw=="),
            pem("EC PRIVATE KEY", "AQID")
        );
        let k = parse_key(text.as_bytes(), p).unwrap();
        assert!(matches!(k, PrivateKeyDer::Sec1(_)));
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let p = Path::new("/etc/postamt/cert.pem");
        let e = parse_chain(b"hello world\n", p).unwrap_err();
        assert!(matches!(e, TlsError::NotPem { .. }), "{e}");
        assert!(e.to_string().contains("/etc/postamt/cert.pem"));

        let e = parse_chain(pem("PRIVATE KEY", "AQID").as_bytes(), p).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");

        let e = parse_chain(
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            p,
        )
        .unwrap_err();
        assert!(matches!(e, TlsError::NotPem { .. }), "{e}");

        let e = parse_chain(b"-----BEGIN CERTIFICATE-----\nAQID\n", p).unwrap_err();
        assert!(e.to_string().contains("no END line"), "{e}");

        let e = parse_key(pem("CERTIFICATE", "AQID").as_bytes(), p).unwrap_err();
        assert!(matches!(e, TlsError::NoKey { .. }), "{e}");

        let e = parse_key(pem("ENCRYPTED PRIVATE KEY", "AQID").as_bytes(), p).unwrap_err();
        assert!(matches!(e, TlsError::EncryptedKey { .. }), "{e}");

        let many = pem("CERTIFICATE", "AQID").repeat(MAX_CHAIN + 1);
        let e = parse_chain(many.as_bytes(), p).unwrap_err();
        assert!(matches!(e, TlsError::TooManyCertificates { .. }), "{e}");
    }

    #[test]
    fn read_file_reports_missing_and_oversized() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = read_file(&missing).unwrap_err();
        assert!(matches!(e, TlsError::Missing { .. }));
        assert!(e.to_string().contains("nope.pem"));

        let big = dir.path().join("big.pem");
        std::fs::write(&big, vec![b'a'; MAX_PEM_FILE as usize + 1]).unwrap();
        assert!(matches!(read_file(&big), Err(TlsError::TooLarge { .. })));

        let ok = dir.path().join("ok.pem");
        std::fs::write(&ok, b"abc").unwrap();
        assert_eq!(read_file(&ok).unwrap(), b"abc");
    }
}
