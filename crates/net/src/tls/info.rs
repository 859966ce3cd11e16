//! What Postamt tells about a loaded certificate (logs, admin UI): subject,
//! issuer, validity, self-issuedness and the SHA-256 fingerprint. The
//! certificate is read with `x509-parser` (no signature checks: rustls and the
//! clients do those); dates are printed with `chrono`.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use x509_parser::asn1_rs::{Any, Tag};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

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
    /// Issuer and subject are the same name, byte for byte (a self-signed
    /// certificate; the signature itself is not checked).
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

/// The fields of a certificate Postamt looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertFields {
    /// The subject in `CN=..., O=...` form (encoding order).
    pub subject: String,
    pub issuer: String,
    /// The subject's first common name, if any.
    pub subject_cn: Option<String>,
    /// Issuer and subject are byte-identical DER names (RFC 5280's
    /// "self-issued"): what Postamt calls self-signed. Neither the signature
    /// nor the key identifiers are checked; this is for display and for
    /// recognising Postamt's own generated certificate, not for trust.
    pub self_issued: bool,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

/// Why a certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CertReadError {
    #[error("truncated certificate")]
    Truncated,
    #[error("malformed certificate: {0}")]
    Malformed(String),
    #[error("trailing data after the certificate")]
    TrailingData,
}

/// Reads subject, issuer and validity from a DER X.509 certificate. Never
/// panics on malformed input; a certificate followed by other bytes is
/// refused.
pub(crate) fn parse_certificate(der: &[u8]) -> Result<CertFields, CertReadError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| match e {
        x509_parser::nom::Err::Incomplete(_) => CertReadError::Truncated,
        x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => {
            CertReadError::Malformed(e.to_string())
        }
    })?;
    if !rest.is_empty() {
        return Err(CertReadError::TrailingData);
    }
    let subject = cert.subject();
    let issuer = cert.issuer();
    let subject_cn = subject
        .iter_common_name()
        .next()
        .map(|cn| attribute_value(cn.attr_value()));
    Ok(CertFields {
        subject: format_name(subject),
        issuer: format_name(issuer),
        subject_cn,
        self_issued: subject.as_raw() == issuer.as_raw(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// `CN=a, O=b` in encoding order, with well-known attribute names, `+`
/// between the attributes of a multi-valued RDN and RFC 4514-style escapes.
fn format_name(name: &X509Name<'_>) -> String {
    let rdns = name.iter_rdn().map(|rdn| {
        rdn.iter()
            .map(|atv| {
                let oid = atv.attr_type().to_id_string();
                let label = attribute_label(&oid).map_or(oid, str::to_string);
                (label, attribute_value(atv.attr_value()))
            })
            .collect::<Vec<_>>()
    });
    join_rdns(rdns)
}

/// Joins (label, value) pairs: RDNs with `, `, attributes within one with
/// ` + `, escaping the characters RFC 4514 reserves and control characters.
fn join_rdns(rdns: impl IntoIterator<Item = Vec<(String, String)>>) -> String {
    let mut s = String::new();
    for (i, rdn) in rdns.into_iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        for (j, (label, value)) in rdn.iter().enumerate() {
            if j > 0 {
                s.push_str(" + ");
            }
            s.push_str(label);
            s.push('=');
            for c in value.chars() {
                match c {
                    ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                        s.push('\\');
                        s.push(c);
                    }
                    c if c.is_control() => s.extend(c.escape_default()),
                    c => s.push(c),
                }
            }
        }
    }
    s
}

/// The short name of a well-known attribute type (dotted OID given).
fn attribute_label(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// An attribute value as text: the string types decoded (invalid UTF-8
/// replaced, TeletexString read as Latin-1 as most software does), anything
/// else as `#` and the hex of its content.
fn attribute_value(value: &Any<'_>) -> String {
    let text = match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => Some(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        Tag::T61String => Some(value.as_bytes().iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => value.as_bmpstring().ok().map(|s| s.string()),
        Tag::UniversalString => value.as_universalstring().ok().map(|s| s.string()),
        _ => None,
    };
    text.unwrap_or_else(|| {
        let mut s = String::from("#");
        for b in value.as_bytes() {
            s.push_str(&format!("{b:02x}"));
        }
        s
    })
}

/// `secs` as `YYYY-MM-DD HH:MM:SS UTC` (outside chrono's range, which no
/// X.509 date reaches, the bare number).
pub(crate) fn format_unix(secs: i64) -> String {
    match DateTime::<Utc>::from_timestamp(secs, 0) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => format!("{secs} (Unix seconds)"),
    }
}

/// The current time in Unix seconds.
pub(crate) fn now_unix() -> i64 {
    Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, IsCa, Issuer,
        KeyPair, date_time_ymd,
    };

    /// Unix seconds of midnight UTC on a date (chrono as the reference).
    fn midnight(y: i32, m: u32, d: u32) -> i64 {
        chrono::NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp()
    }

    fn params(dn: DistinguishedName, from: (i32, u8, u8), to: (i32, u8, u8)) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = dn;
        p.not_before = date_time_ymd(from.0, from.1, from.2);
        p.not_after = date_time_ymd(to.0, to.1, to.2);
        p
    }

    fn cn(name: &str) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn
    }

    /// A self-signed certificate with `dn` valid from `from` to `to`.
    fn self_signed(dn: DistinguishedName, from: (i32, u8, u8), to: (i32, u8, u8)) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        params(dn, from, to)
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec()
    }

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

    #[test]
    fn formats_utc() {
        assert_eq!(format_unix(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_unix(1_709_208_000 + 3723), "2024-02-29 13:02:03 UTC");
        assert_eq!(format_unix(-1), "1969-12-31 23:59:59 UTC");
        assert_eq!(
            format_unix(i64::MAX),
            format!("{} (Unix seconds)", i64::MAX)
        );
        assert!(now_unix() > midnight(2024, 1, 1));
    }

    #[test]
    fn reads_names_and_times_of_a_ca_signed_leaf() {
        let mut ca_dn = DistinguishedName::new();
        ca_dn.push(
            DnType::OrganizationName,
            DnValue::PrintableString("Test CA".try_into().unwrap()),
        );
        ca_dn.push(DnType::CommonName, "Root, Inc");
        let mut ca = params(ca_dn, (2024, 1, 1), (2060, 1, 1));
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        // 2024-02-29 (UTCTime) to 2051-01-01 (GeneralizedTime from 2050 on).
        let leaf = params(cn("mail.example.org"), (2024, 2, 29), (2051, 1, 1))
            .signed_by(&key, &issuer)
            .unwrap();
        let f = parse_certificate(leaf.der()).unwrap();
        assert_eq!(f.subject, "CN=mail.example.org");
        assert_eq!(f.issuer, "O=Test CA, CN=Root\\, Inc");
        assert_eq!(f.subject_cn.as_deref(), Some("mail.example.org"));
        assert!(!f.self_issued);
        assert_eq!(f.not_before, 1_709_164_800);
        assert_eq!(f.not_before, midnight(2024, 2, 29));
        assert_eq!(f.not_after, midnight(2051, 1, 1));
    }

    #[test]
    fn self_issued_and_last_century_dates() {
        let mut dn = cn("mx.example.org");
        dn.push(DnType::OrganizationName, "Postamt self-signed");
        let der = self_signed(dn, (1999, 12, 31), (2049, 12, 31));
        let f = parse_certificate(&der).unwrap();
        assert!(f.self_issued);
        assert_eq!(f.subject, "CN=mx.example.org, O=Postamt self-signed");
        assert_eq!(f.subject, f.issuer);
        assert_eq!(f.not_before, midnight(1999, 12, 31));
        assert_eq!(f.not_after, midnight(2049, 12, 31));
    }

    #[test]
    fn decodes_other_string_types_and_unknown_oids() {
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            DnValue::BmpString("Grüße".try_into().unwrap()),
        );
        dn.push(
            DnType::OrganizationName,
            DnValue::UniversalString("Ωmega".try_into().unwrap()),
        );
        dn.push(
            DnType::OrganizationalUnitName,
            DnValue::TeletexString("T61".try_into().unwrap()),
        );
        dn.push(
            DnType::CustomDnType(vec![1, 3, 6, 1, 4, 1, 311]),
            DnValue::Ia5String("v".try_into().unwrap()),
        );
        dn.push(DnType::LocalityName, "a+b;c\"d\\e<f>g=h\ni");
        let der = self_signed(dn, (2024, 1, 1), (2025, 1, 1));
        let f = parse_certificate(&der).unwrap();
        assert_eq!(
            f.subject,
            "CN=Grüße, O=Ωmega, OU=T61, 1.3.6.1.4.1.311=v, \
             L=a\\+b\\;c\\\"d\\\\e\\<f\\>g=h\\ni"
        );
        assert_eq!(f.subject_cn.as_deref(), Some("Grüße"));
    }

    #[test]
    fn multi_valued_rdns_are_joined_with_plus() {
        let rdns = vec![
            vec![("CN".to_string(), "a".to_string())],
            vec![
                ("O".to_string(), "b".to_string()),
                ("OU".to_string(), "c, d".to_string()),
            ],
        ];
        assert_eq!(join_rdns(rdns), "CN=a, O=b + OU=c\\, d");
        assert_eq!(join_rdns(Vec::new()), "");
    }

    #[test]
    fn non_string_values_are_shown_as_hex() {
        let any = Any::from_tag_and_data(Tag::OctetString, &[0xde, 0xad]);
        assert_eq!(attribute_value(&any), "#dead");
        // A BMPString that is not valid UTF-16 (a lone surrogate): hex.
        let bad_bmp = Any::from_tag_and_data(Tag::BmpString, &[0x00, 0x41, 0xd8, 0x00]);
        assert_eq!(attribute_value(&bad_bmp), "#0041d800");
        let bmp = Any::from_tag_and_data(Tag::BmpString, &[0x00, 0x41, 0x00, 0xdf]);
        assert_eq!(attribute_value(&bmp), "Aß");
    }

    /// Replaces the first occurrence of `from` in `der` by `to` (same length,
    /// so the encoding stays well formed).
    fn patched(der: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let at = der
            .windows(from.len())
            .position(|w| w == from)
            .expect("pattern in the certificate");
        let mut out = der.to_vec();
        out[at..at + to.len()].copy_from_slice(to);
        out
    }

    #[test]
    fn rejects_malformed_input_without_panicking() {
        let good = self_signed(cn("x"), (2024, 1, 1), (2025, 1, 1));
        assert!(parse_certificate(&good).is_ok());
        // Every truncation fails cleanly.
        for n in 0..good.len() {
            assert!(parse_certificate(&good[..n]).is_err(), "prefix {n}");
        }
        // Every single-byte corruption is handled (ok or error, never a panic).
        for i in 0..good.len() {
            for b in [0x00, 0x7f, 0x80, 0x84, 0xff] {
                let mut bad = good.clone();
                bad[i] = b;
                let _ = parse_certificate(&bad);
            }
        }
        assert!(parse_certificate(&[]).is_err());
        assert!(parse_certificate(&[0x30, 0x80, 0, 0]).is_err());
        assert!(parse_certificate(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
        assert!(parse_certificate(b"not a certificate").is_err());

        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            parse_certificate(&trailing),
            Err(CertReadError::TrailingData)
        );
        // Month 13.
        let bad_month = patched(&good, b"240101000000Z", b"241301000000Z");
        assert!(parse_certificate(&bad_month).is_err());
        // A local time (no `Z`) is not DER.
        let local = patched(&good, b"240101000000Z", b"2401010000001");
        assert!(parse_certificate(&local).is_err());
    }
}
