//! What Postamt tells about a loaded certificate (logs, admin UI):
//! subject, issuer, validity and the SHA-256 fingerprint.

use super::calendar::format_unix;
use super::der::CertFields;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// One served certificate, described.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// The SNI host name it is served for; `None` for the default certificate.
    pub sni_hostname: Option<String>,
    /// The leaf's subject, e.g. `CN=mail.example.org`.
    pub subject: String,
    pub issuer: String,
    /// Validity, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-256 of the leaf's DER, `AB:CD:...` (uppercase hex).
    pub fingerprint_sha256: String,
    /// Issuer and subject are the same (self-signed).
    pub self_signed: bool,
    /// The PEM file it came from (`None` when built in memory).
    pub cert_file: Option<PathBuf>,
}

impl CertInfo {
    pub(crate) fn new(
        sni_hostname: Option<String>,
        leaf_der: &[u8],
        fields: &CertFields,
        cert_file: Option<PathBuf>,
    ) -> Self {
        CertInfo {
            sni_hostname,
            subject: fields.subject.clone(),
            issuer: fields.issuer.clone(),
            not_before: fields.not_before,
            not_after: fields.not_after,
            fingerprint_sha256: fingerprint_sha256(leaf_der),
            self_signed: fields.self_issued,
            cert_file,
        }
    }

    /// The SNI host name, or `default` for the default certificate.
    pub fn hostname_or_default(&self) -> &str {
        self.sni_hostname.as_deref().unwrap_or("default")
    }

    /// `not_after` as `YYYY-MM-DD HH:MM:SS UTC`.
    pub fn not_after_utc(&self) -> String {
        format_unix(self.not_after)
    }
}

/// SHA-256 of `der` as colon-separated uppercase hex (`AB:CD:...`), the form
/// `openssl x509 -fingerprint -sha256` prints.
pub fn fingerprint_sha256(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut s = String::with_capacity(digest.len() * 3);
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02X}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_format() {
        // SHA-256("abc") is well known.
        assert_eq!(
            fingerprint_sha256(b"abc"),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:\
             B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn default_scope_is_named() {
        let fields = CertFields {
            subject: "CN=a".into(),
            issuer: "CN=a".into(),
            subject_cn: Some("a".into()),
            self_issued: true,
            not_before: 0,
            not_after: 86_400,
        };
        let info = CertInfo::new(None, b"x", &fields, None);
        assert_eq!(info.hostname_or_default(), "default");
        assert!(info.self_signed);
        assert_eq!(info.not_after_utc(), "1970-01-02 00:00:00 UTC");
        let info = CertInfo::new(Some("mx.example.org".into()), b"x", &fields, None);
        assert_eq!(info.hostname_or_default(), "mx.example.org");
    }
}
