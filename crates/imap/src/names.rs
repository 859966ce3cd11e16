//! Folder names on the wire (pure): modified UTF-7 (RFC 3501 5.1.3)
//! decoded to UTF-8 for the store and encoded back for LIST, raw UTF-8
//! once the client enabled `UTF8=ACCEPT` (RFC 6855), and the names this
//! server refuses outright (`..`, a leading `/`, `~`, control characters)
//! with `NO [CANNOT]`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use thiserror::Error;

/// Longest folder name accepted, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 512;

/// Why a folder name was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("invalid modified UTF-7 in folder name")]
    BadUtf7,
    #[error("folder name is not UTF-8")]
    NotUtf8,
    #[error("folder name not allowed")]
    Forbidden,
    #[error("folder name too long")]
    TooLong,
}

/// Decodes a mailbox name as the client sent it: modified UTF-7 unless
/// `utf8` (UTF8=ACCEPT enabled), where it is taken as UTF-8 (`&` is then
/// literal). `INBOX` in any case becomes `INBOX`.
pub fn decode(raw: &[u8], utf8: bool) -> Result<String, NameError> {
    let text = std::str::from_utf8(raw).map_err(|_| NameError::NotUtf8)?;
    let name = if utf8 {
        text.to_string()
    } else {
        decode_mutf7(text)?
    };
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    Ok(canonical_inbox(name))
}

/// The name checks of issue 6: names containing `..`, a leading
/// `/`, a `~` anywhere, empty components, a trailing `/` or control
/// characters are refused.
pub fn check(name: &str) -> Result<(), NameError> {
    if name.is_empty()
        || name.starts_with('/')
        || name.contains('~')
        || name.contains("..")
        || name.chars().any(|c| c.is_control())
    {
        return Err(NameError::Forbidden);
    }
    if name
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(NameError::Forbidden);
    }
    Ok(())
}

/// `INBOX` (any case) as the first component is spelled `INBOX`.
pub fn canonical_inbox(name: String) -> String {
    let (first, rest) = match name.split_once('/') {
        Some((f, r)) => (f, Some(r)),
        None => (name.as_str(), None),
    };
    if first.eq_ignore_ascii_case("INBOX") && first != "INBOX" {
        return match rest {
            Some(r) => format!("INBOX/{r}"),
            None => "INBOX".to_string(),
        };
    }
    name
}

/// Encodes a UTF-8 name for the wire: modified UTF-7 unless `utf8`.
pub fn encode(name: &str, utf8: bool) -> String {
    if utf8 {
        name.to_string()
    } else {
        encode_mutf7(name)
    }
}

/// RFC 3501 5.1.3 modified UTF-7 to UTF-8.
pub fn decode_mutf7(s: &str) -> Result<String, NameError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        let plain = &rest[..amp];
        if !plain.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(NameError::BadUtf7);
        }
        out.push_str(plain);
        let after = &rest[amp + 1..];
        let Some(dash) = after.find('-') else {
            return Err(NameError::BadUtf7);
        };
        let b64 = &after[..dash];
        if b64.is_empty() {
            out.push('&');
        } else {
            let std_b64: String = b64
                .chars()
                .map(|c| if c == ',' { '/' } else { c })
                .collect();
            let bytes = STANDARD_NO_PAD
                .decode(std_b64.as_bytes())
                .map_err(|_| NameError::BadUtf7)?;
            if bytes.len() % 2 != 0 {
                return Err(NameError::BadUtf7);
            }
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            let decoded = String::from_utf16(&units).map_err(|_| NameError::BadUtf7)?;
            // Printable ASCII must not be base64-encoded (RFC 3501 5.1.3).
            if decoded.chars().any(|c| (' '..='~').contains(&c)) {
                return Err(NameError::BadUtf7);
            }
            out.push_str(&decoded);
        }
        rest = &after[dash + 1..];
    }
    if !rest.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(NameError::BadUtf7);
    }
    out.push_str(rest);
    Ok(out)
}

/// UTF-8 to RFC 3501 5.1.3 modified UTF-7.
pub fn encode_mutf7(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        let b64 = STANDARD_NO_PAD.encode(bytes).replace('/', ",");
        out.push('&');
        out.push_str(&b64);
        out.push('-');
        pending.clear();
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3501_example_round_trips() {
        let wire = "~peter/mail/&U,BTFw-/&ZeVnLIqe-";
        let utf8 = decode_mutf7(wire).unwrap();
        assert_eq!(utf8, "~peter/mail/台北/日本語");
        assert_eq!(encode_mutf7(&utf8), wire);
    }

    #[test]
    fn ampersand_and_plain_names() {
        assert_eq!(decode_mutf7("Tom &- Jerry").unwrap(), "Tom & Jerry");
        assert_eq!(encode_mutf7("Tom & Jerry"), "Tom &- Jerry");
        assert_eq!(encode_mutf7("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(decode_mutf7("Entw&APw-rfe").unwrap(), "Entwürfe");
        assert_eq!(encode_mutf7("😀"), "&2D3eAA-");
        assert_eq!(decode_mutf7("&2D3eAA-").unwrap(), "😀");
    }

    #[test]
    fn bad_utf7_is_refused() {
        assert_eq!(
            decode_mutf7("a&Jjo"),
            Err(NameError::BadUtf7),
            "unterminated"
        );
        assert_eq!(decode_mutf7("a&!!-"), Err(NameError::BadUtf7), "bad base64");
        // "A" encoded in base64 is not allowed.
        assert_eq!(decode_mutf7("&AEE-"), Err(NameError::BadUtf7));
        assert_eq!(decode_mutf7("ü"), Err(NameError::BadUtf7), "raw 8-bit");
        // A lone high surrogate.
        assert_eq!(decode_mutf7("&2D0-"), Err(NameError::BadUtf7));
    }

    #[test]
    fn decode_respects_utf8_mode() {
        assert_eq!(
            decode("Entw&APw-rfe".as_bytes(), false).unwrap(),
            "Entwürfe"
        );
        assert_eq!(
            decode("Tom & Jerry".as_bytes(), true).unwrap(),
            "Tom & Jerry"
        );
        assert_eq!(decode("Entwürfe".as_bytes(), true).unwrap(), "Entwürfe");
        assert_eq!(decode(b"\xff", true), Err(NameError::NotUtf8));
        assert_eq!(encode("Entwürfe", true), "Entwürfe");
        assert_eq!(encode("Entwürfe", false), "Entw&APw-rfe");
    }

    #[test]
    fn inbox_is_canonical() {
        assert_eq!(decode(b"inbox", false).unwrap(), "INBOX");
        assert_eq!(decode(b"Inbox/Sub", false).unwrap(), "INBOX/Sub");
        assert_eq!(decode(b"Inboxes", false).unwrap(), "Inboxes");
    }

    #[test]
    fn forbidden_names() {
        for bad in [
            "..", "a/../b", "/etc", "~root", "a~b", "", "a//b", "a/", "a/./b", "x\ny", "x..y",
        ] {
            assert_eq!(check(bad), Err(NameError::Forbidden), "{bad:?}");
        }
        for good in ["INBOX", "Sent", "Projects/2026", "a.b", "Tom & Jerry"] {
            assert_eq!(check(good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn long_names_are_refused() {
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert_eq!(decode(long.as_bytes(), false), Err(NameError::TooLong));
    }
}
