//! Modified UTF-7 (RFC 3501 5.1.3) for folder names on disk: printable
//! ASCII stands for itself (`&` as `&-`), anything else is UTF-16 in
//! base64 with `,` for `/`, between `&` and `-`.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Encodes a UTF-8 string.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut pending: Vec<u16> = Vec::new();
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

fn flush(units: &mut Vec<u16>, out: &mut String) {
    if units.is_empty() {
        return;
    }
    let bytes: Vec<u8> = units.iter().flat_map(|u| u.to_be_bytes()).collect();
    out.push('&');
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(ALPHABET[idx as usize]));
        }
    }
    out.push('-');
    units.clear();
}

/// Decodes; `None` for anything malformed (non-printable bytes, bad
/// base64, broken UTF-16, an unterminated shift).
pub fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !(0x20..=0x7e).contains(&b) {
            return None;
        }
        if b != b'&' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let end = i + 1 + bytes[i + 1..].iter().position(|&c| c == b'-')?;
        let encoded = &bytes[i + 1..end];
        if encoded.is_empty() {
            out.push('&');
        } else {
            out.push_str(&decode_base64_utf16(encoded)?);
        }
        i = end + 1;
    }
    Some(out)
}

fn decode_base64_utf16(encoded: &[u8]) -> Option<String> {
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut bytes = Vec::with_capacity(encoded.len());
    for &c in encoded {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            bytes.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    if bits != 0 || bytes.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]))
        .collect();
    let s = String::from_utf16(&units).ok()?;
    // Printable ASCII must not be shifted (one spelling per name).
    if s.chars().any(|c| (' '..='~').contains(&c)) {
        return None;
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_examples() {
        assert_eq!(
            encode("~peter/mail/\u{65e5}\u{672c}\u{8a9e}/\u{53f0}\u{5317}"),
            "~peter/mail/&ZeVnLIqe-/&U,BTFw-"
        );
        assert_eq!(decode("&U,BTFw-").unwrap(), "\u{53f0}\u{5317}");
        assert_eq!(encode("A&B"), "A&-B");
        assert_eq!(decode("A&-B").unwrap(), "A&B");
        assert_eq!(encode("\u{1f600}"), "&2D3eAA-");
        assert_eq!(decode("&2D3eAA-").unwrap(), "\u{1f600}");
    }

    #[test]
    fn malformed_is_refused() {
        for bad in ["&", "&ZeVn", "&Z-", "&AGE-", "a\u{e9}", "&2D0-", "&ZeV!-"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trips(s in "\\PC{0,20}") {
            let e = encode(&s);
            prop_assert!(e.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            prop_assert_eq!(decode(&e), Some(s));
        }

        #[test]
        fn decode_never_panics(s in ".{0,30}") {
            let _ = decode(&s);
        }
    }
}
