//! A minimal DER reader for the few X.509 fields Postamt shows and checks:
//! subject, issuer and validity. It validates nothing cryptographic (rustls
//! and the clients do that); it only refuses malformed encodings, never panics,
//! and never reads past its input.

use super::calendar::unix_from_utc;

const TAG_INTEGER: u8 = 0x02;
#[cfg(test)]
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_NUMERIC_STRING: u8 = 0x12;
const TAG_PRINTABLE_STRING: u8 = 0x13;
const TAG_TELETEX_STRING: u8 = 0x14;
const TAG_IA5_STRING: u8 = 0x16;
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;
const TAG_VISIBLE_STRING: u8 = 0x1a;
const TAG_UNIVERSAL_STRING: u8 = 0x1c;
const TAG_BMP_STRING: u8 = 0x1e;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
/// `[0] EXPLICIT` (the certificate's version field).
const TAG_CONTEXT_0: u8 = 0xa0;

/// What was wrong with the encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DerError(pub &'static str);

impl std::fmt::Display for DerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Reads consecutive TLVs (tag, length, value) from a byte slice.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.data.first().copied()
    }

    /// The next TLV: its tag and value, plus the whole encoding (tag included).
    pub(crate) fn read_any(&mut self) -> Result<(u8, &'a [u8], &'a [u8]), DerError> {
        let all = self.data;
        let (&tag, rest) = all.split_first().ok_or(DerError("truncated"))?;
        if tag & 0x1f == 0x1f {
            return Err(DerError("unsupported high tag number"));
        }
        let (&first, mut rest) = rest.split_first().ok_or(DerError("truncated length"))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 {
                return Err(DerError("indefinite length is not DER"));
            }
            if n > 4 {
                return Err(DerError("length too large"));
            }
            if rest.len() < n {
                return Err(DerError("truncated length"));
            }
            let (bytes, after) = rest.split_at(n);
            rest = after;
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        if rest.len() < len {
            return Err(DerError("value runs past the end"));
        }
        let (value, after) = rest.split_at(len);
        let header_len = all.len() - rest.len();
        self.data = after;
        Ok((tag, value, &all[..header_len + len]))
    }

    /// The value of the next TLV, which must carry `tag`.
    pub(crate) fn read(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        match self.read_any()? {
            (t, value, _) if t == tag => Ok(value),
            _ => Err(DerError("unexpected tag")),
        }
    }

    /// Like [`Reader::read`], returning the whole encoding instead.
    fn read_raw(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        match self.read_any()? {
            (t, _, raw) if t == tag => Ok(raw),
            _ => Err(DerError("unexpected tag")),
        }
    }
}

/// The fields of a certificate Postamt looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertFields {
    /// The subject in `CN=..., O=...` form (encoding order).
    pub subject: String,
    pub issuer: String,
    /// The subject's first common name, if any.
    pub subject_cn: Option<String>,
    /// Issuer and subject are the same name (a self-signed certificate).
    pub self_issued: bool,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

/// Reads subject, issuer and validity from a DER X.509 certificate.
pub(crate) fn parse_certificate(der: &[u8]) -> Result<CertFields, DerError> {
    let mut outer = Reader::new(der);
    let cert = outer.read(TAG_SEQUENCE)?;
    if !outer.is_empty() {
        return Err(DerError("trailing data after the certificate"));
    }
    let tbs = Reader::new(cert).read(TAG_SEQUENCE)?;
    let mut tbs = Reader::new(tbs);
    if tbs.peek_tag() == Some(TAG_CONTEXT_0) {
        tbs.read(TAG_CONTEXT_0)?;
    }
    tbs.read(TAG_INTEGER)?; // serial number
    tbs.read(TAG_SEQUENCE)?; // signature algorithm
    let issuer_raw = tbs.read_raw(TAG_SEQUENCE)?;
    let mut validity = Reader::new(tbs.read(TAG_SEQUENCE)?);
    let not_before = read_time(&mut validity)?;
    let not_after = read_time(&mut validity)?;
    let subject_raw = tbs.read_raw(TAG_SEQUENCE)?;
    let issuer = parse_name(inner(issuer_raw)?)?;
    let subject = parse_name(inner(subject_raw)?)?;
    let subject_cn = subject
        .iter()
        .find(|(oid, _)| oid == "2.5.4.3")
        .map(|(_, v)| v.clone());
    Ok(CertFields {
        subject: format_name(&subject),
        issuer: format_name(&issuer),
        subject_cn,
        self_issued: issuer_raw == subject_raw,
        not_before,
        not_after,
    })
}

/// The value of a single TLV given as its whole encoding.
fn inner(raw: &[u8]) -> Result<&[u8], DerError> {
    Reader::new(raw).read_any().map(|(_, value, _)| value)
}

/// A Name's attributes in encoding order, as (dotted OID, value) pairs.
fn parse_name(body: &[u8]) -> Result<Vec<(String, String)>, DerError> {
    let mut out = Vec::new();
    let mut rdns = Reader::new(body);
    while !rdns.is_empty() {
        let mut set = Reader::new(rdns.read(TAG_SET)?);
        while !set.is_empty() {
            let mut atv = Reader::new(set.read(TAG_SEQUENCE)?);
            let oid = oid_to_string(atv.read(TAG_OID)?)?;
            let (tag, value, _) = atv.read_any()?;
            out.push((oid, decode_string(tag, value)?));
        }
    }
    Ok(out)
}

/// `CN=a, O=b`, with well-known attribute names and RFC 4514-style escapes.
fn format_name(attrs: &[(String, String)]) -> String {
    let mut s = String::new();
    for (i, (oid, value)) in attrs.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(attribute_name(oid).unwrap_or(oid));
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
    s
}

fn attribute_name(oid: &str) -> Option<&'static str> {
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

fn oid_to_string(body: &[u8]) -> Result<String, DerError> {
    if body.is_empty() {
        return Err(DerError("empty object identifier"));
    }
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    let mut in_arc = false;
    for &b in body {
        if !in_arc && b == 0x80 {
            return Err(DerError("object identifier arc not minimally encoded"));
        }
        if value > (u64::MAX >> 7) {
            return Err(DerError("object identifier arc too large"));
        }
        value = (value << 7) | u64::from(b & 0x7f);
        in_arc = b & 0x80 != 0;
        if !in_arc {
            arcs.push(value);
            value = 0;
        }
    }
    if in_arc {
        return Err(DerError("truncated object identifier"));
    }
    let first = arcs[0];
    let (a, b) = match first {
        0..=39 => (0, first),
        40..=79 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut s = format!("{a}.{b}");
    for arc in &arcs[1..] {
        s.push('.');
        s.push_str(&arc.to_string());
    }
    Ok(s)
}

fn decode_string(tag: u8, value: &[u8]) -> Result<String, DerError> {
    Ok(match tag {
        TAG_UTF8_STRING | TAG_PRINTABLE_STRING | TAG_IA5_STRING | TAG_NUMERIC_STRING
        | TAG_VISIBLE_STRING => String::from_utf8_lossy(value).into_owned(),
        // Treated as Latin-1, as most software does.
        TAG_TELETEX_STRING => value.iter().map(|&b| char::from(b)).collect(),
        TAG_BMP_STRING => {
            if !value.len().is_multiple_of(2) {
                return Err(DerError("odd BMPString length"));
            }
            let units = value
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect()
        }
        TAG_UNIVERSAL_STRING => {
            if !value.len().is_multiple_of(4) {
                return Err(DerError("bad UniversalString length"));
            }
            value
                .chunks_exact(4)
                .map(|c| {
                    char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                        .unwrap_or(char::REPLACEMENT_CHARACTER)
                })
                .collect()
        }
        _ => {
            let mut s = String::from("#");
            for b in value {
                s.push_str(&format!("{b:02x}"));
            }
            s
        }
    })
}

/// A UTCTime or GeneralizedTime in DER form (`...Z`, with seconds).
fn read_time(r: &mut Reader<'_>) -> Result<i64, DerError> {
    let (tag, value, _) = r.read_any()?;
    let (year, rest) = match tag {
        TAG_UTC_TIME if value.len() == 13 => {
            let yy = i64::from(digits(&value[..2])?);
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &value[2..])
        }
        TAG_GENERALIZED_TIME if value.len() == 15 => (i64::from(digits(&value[..4])?), &value[4..]),
        TAG_UTC_TIME | TAG_GENERALIZED_TIME => return Err(DerError("malformed time")),
        _ => return Err(DerError("expected a time")),
    };
    if rest[10] != b'Z' {
        return Err(DerError("time is not in UTC"));
    }
    let month = digits(&rest[0..2])?;
    let day = digits(&rest[2..4])?;
    let hour = digits(&rest[4..6])?;
    let minute = digits(&rest[6..8])?;
    let second = digits(&rest[8..10])?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(DerError("time out of range"));
    }
    Ok(unix_from_utc(year, month, day, hour, minute, second))
}

fn digits(s: &[u8]) -> Result<u32, DerError> {
    s.iter().try_fold(0u32, |acc, &b| {
        if b.is_ascii_digit() {
            Ok(acc * 10 + u32::from(b - b'0'))
        } else {
            Err(DerError("non-digit in time"))
        }
    })
}

/// The inner key of a PKCS#8 `PrivateKeyInfo` (an RSAPrivateKey or
/// ECPrivateKey), used by tests to produce PKCS#1 and SEC1 files.
#[cfg(test)]
pub(crate) fn pkcs8_inner_key(der: &[u8]) -> Result<&[u8], DerError> {
    let mut info = Reader::new(Reader::new(der).read(TAG_SEQUENCE)?);
    info.read(TAG_INTEGER)?;
    info.read(TAG_SEQUENCE)?;
    info.read(TAG_OCTET_STRING)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        if value.len() < 0x80 {
            v.push(value.len() as u8);
        } else {
            v.push(0x82);
            v.extend_from_slice(&(value.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(value);
        v
    }

    fn atv(oid: &[u8], tag: u8, value: &str) -> Vec<u8> {
        let mut seq = tlv(TAG_OID, oid);
        seq.extend(tlv(tag, value.as_bytes()));
        tlv(TAG_SET, &tlv(TAG_SEQUENCE, &seq))
    }

    fn cert(issuer: &[u8], subject: &[u8], nb: &[u8], na: &[u8]) -> Vec<u8> {
        let mut tbs = tlv(TAG_CONTEXT_0, &tlv(TAG_INTEGER, &[2]));
        tbs.extend(tlv(TAG_INTEGER, &[1, 2, 3]));
        tbs.extend(tlv(TAG_SEQUENCE, &tlv(TAG_OID, &[0x2a, 0x03])));
        tbs.extend(tlv(TAG_SEQUENCE, issuer));
        let mut validity = nb.to_vec();
        validity.extend_from_slice(na);
        tbs.extend(tlv(TAG_SEQUENCE, &validity));
        tbs.extend(tlv(TAG_SEQUENCE, subject));
        let mut c = tlv(TAG_SEQUENCE, &tbs);
        c.extend(tlv(TAG_SEQUENCE, &tlv(TAG_OID, &[0x2a, 0x03])));
        c.extend(tlv(0x03, &[0, 1]));
        tlv(TAG_SEQUENCE, &c)
    }

    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const O: &[u8] = &[0x55, 0x04, 0x0a];

    #[test]
    fn reads_names_and_times() {
        let mut issuer = atv(O, TAG_PRINTABLE_STRING, "Test CA");
        issuer.extend(atv(CN, TAG_UTF8_STRING, "Root, Inc"));
        let subject = atv(CN, TAG_UTF8_STRING, "mail.example.org");
        let der = cert(
            &issuer,
            &subject,
            &tlv(TAG_UTC_TIME, b"240229120000Z"),
            &tlv(TAG_GENERALIZED_TIME, b"20510101000000Z"),
        );
        let f = parse_certificate(&der).unwrap();
        assert_eq!(f.subject, "CN=mail.example.org");
        assert_eq!(f.issuer, "O=Test CA, CN=Root\\, Inc");
        assert_eq!(f.subject_cn.as_deref(), Some("mail.example.org"));
        assert!(!f.self_issued);
        assert_eq!(f.not_before, 1_709_208_000);
        assert_eq!(f.not_after, unix_from_utc(2051, 1, 1, 0, 0, 0));
    }

    #[test]
    fn utc_time_century_rule_and_self_issued() {
        let name = atv(CN, TAG_UTF8_STRING, "x");
        let der = cert(
            &name,
            &name,
            &tlv(TAG_UTC_TIME, b"991231235959Z"),
            &tlv(TAG_UTC_TIME, b"490101000000Z"),
        );
        let f = parse_certificate(&der).unwrap();
        assert!(f.self_issued);
        assert_eq!(f.not_before, unix_from_utc(1999, 12, 31, 23, 59, 59));
        assert_eq!(f.not_after, unix_from_utc(2049, 1, 1, 0, 0, 0));
    }

    #[test]
    fn decodes_other_string_types_and_unknown_oids() {
        let bmp: Vec<u8> = "Grüße".encode_utf16().flat_map(u16::to_be_bytes).collect();
        let mut name = tlv(
            TAG_SET,
            &tlv(
                TAG_SEQUENCE,
                &[tlv(TAG_OID, CN), tlv(TAG_BMP_STRING, &bmp)].concat(),
            ),
        );
        name.extend(atv(
            &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37],
            TAG_IA5_STRING,
            "v",
        ));
        let der = cert(
            &name,
            &name,
            &tlv(TAG_UTC_TIME, b"240101000000Z"),
            &tlv(TAG_UTC_TIME, b"250101000000Z"),
        );
        let f = parse_certificate(&der).unwrap();
        assert_eq!(f.subject, "CN=Grüße, 1.3.6.1.4.1.311=v");
    }

    #[test]
    fn rejects_malformed_input_without_panicking() {
        let name = atv(CN, TAG_UTF8_STRING, "x");
        let good = cert(
            &name,
            &name,
            &tlv(TAG_UTC_TIME, b"240101000000Z"),
            &tlv(TAG_UTC_TIME, b"250101000000Z"),
        );
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
        assert!(parse_certificate(&[0x30, 0x80, 0, 0]).is_err());
        assert!(parse_certificate(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
        let bad_time = cert(
            &name,
            &name,
            &tlv(TAG_UTC_TIME, b"241301000000Z"),
            &tlv(TAG_UTC_TIME, b"250101000000Z"),
        );
        assert_eq!(
            parse_certificate(&bad_time),
            Err(DerError("time out of range"))
        );
        let local_time = cert(
            &name,
            &name,
            &tlv(TAG_UTC_TIME, b"2401010000001"),
            &tlv(TAG_UTC_TIME, b"250101000000Z"),
        );
        assert_eq!(
            parse_certificate(&local_time),
            Err(DerError("time is not in UTC"))
        );
    }

    #[test]
    fn oid_encoding_rules() {
        assert_eq!(oid_to_string(&[0x55, 0x04, 0x03]).unwrap(), "2.5.4.3");
        assert_eq!(oid_to_string(&[0x88, 0x37, 0x03]).unwrap(), "2.999.3");
        assert!(oid_to_string(&[0x55, 0x84]).is_err());
        assert!(oid_to_string(&[0x55, 0x80, 0x01]).is_err());
        assert!(oid_to_string(&[0xff; 12]).is_err());
        assert!(oid_to_string(&[]).is_err());
    }
}
