//! Turning raw message bytes into imap-types strings without ever failing:
//! short clean text becomes a quoted string, anything else a literal; the
//! one byte IMAP strings cannot carry (NUL) is replaced by 0x80, as Dovecot
//! does, so a damaged message still renders.

use imap_codec::imap_types::core::{IString, Literal, NString, Quoted};
use std::borrow::Cow;

/// Longest value sent as a quoted string; longer ones go as literals.
const MAX_QUOTED: usize = 1024;

/// Replaces NUL bytes (not allowed in IMAP strings) by 0x80.
pub fn without_nul(bytes: Cow<'_, [u8]>) -> Vec<u8> {
    let mut v = bytes.into_owned();
    for b in v.iter_mut() {
        if *b == 0 {
            *b = 0x80;
        }
    }
    v
}

/// A literal holding `bytes` (NULs replaced).
pub fn literal(bytes: Vec<u8>) -> Literal<'static> {
    let data = without_nul(Cow::Owned(bytes));
    // Literal::validate only rejects NUL, which `without_nul` removed; the
    // fallback keeps this total anyway.
    Literal::try_from(data).unwrap_or_else(|_| Literal::unvalidated(Vec::new()))
}

/// An IMAP string for `bytes`: quoted when short and plain, else a literal.
pub fn istring(bytes: &[u8]) -> IString<'static> {
    // Quoted strings take 7-bit text without CR and LF (TEXT-CHAR); the
    // check is Quoted::validate's, done once here.
    if bytes.len() <= MAX_QUOTED && bytes.iter().all(|&b| is_text_char(b)) {
        // All bytes are ASCII, so this is valid UTF-8 (one copy, no
        // per-character pushes).
        if let Ok(text) = std::str::from_utf8(bytes) {
            return IString::Quoted(Quoted::unvalidated(text.to_owned()));
        }
    }
    IString::Literal(literal(bytes.to_vec()))
}

/// TEXT-CHAR of RFC 3501: any 7-bit character except NUL, CR and LF.
fn is_text_char(b: u8) -> bool {
    matches!(b, 0x01..=0x09 | 0x0b..=0x0c | 0x0e..=0x7f)
}

/// An IMAP string or NIL.
pub fn nstring(bytes: Option<&[u8]>) -> NString<'static> {
    NString(bytes.map(istring))
}

/// Body data: always a literal (even when empty), never NIL.
pub fn body_data(bytes: Vec<u8>) -> NString<'static> {
    NString(Some(IString::Literal(literal(bytes))))
}

/// An IMAP string for a value that must not be empty on the wire in some
/// positions (media types, encodings): `fallback` when `bytes` is empty.
pub fn istring_or(bytes: &[u8], fallback: &str) -> IString<'static> {
    if bytes.is_empty() {
        istring(fallback.as_bytes())
    } else {
        istring(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_quoted() {
        assert!(matches!(istring(b"hello world"), IString::Quoted(_)));
    }

    #[test]
    fn crlf_and_eight_bit_become_literals() {
        assert!(matches!(istring(b"a\r\nb"), IString::Literal(_)));
        assert!(matches!(istring("Grüße".as_bytes()), IString::Literal(_)));
    }

    #[test]
    fn quoted_check_agrees_with_the_codec() {
        for b in 0..=255u8 {
            assert_eq!(is_text_char(b), Quoted::validate([b]).is_ok(), "byte {b}");
        }
    }

    #[test]
    fn nul_is_replaced() {
        let IString::Literal(l) = istring(b"a\0b") else {
            panic!("expected a literal");
        };
        assert_eq!(l.data(), b"a\x80b");
    }

    #[test]
    fn nil_and_empty_differ() {
        assert_eq!(nstring(None), NString(None));
        assert!(nstring(Some(b"")).0.is_some());
        assert!(body_data(Vec::new()).0.is_some());
    }
}
