//! Content-Transfer-Encoding and charset decoding of part bodies (with
//! mail-parser's decoders), for BINARY (RFC 3516) and for SEARCH's text
//! matching. Lenient: damaged base64 or quoted-printable still decodes as
//! far as it can rather than failing the command.

use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;

/// A part body's transfer encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cte {
    /// 7bit, 8bit, binary (or none given): the bytes are the content.
    Identity,
    Base64,
    QuotedPrintable,
    /// Anything else (`x-uuencode`...): BINARY answers `NO [UNKNOWN-CTE]`.
    Unknown,
}

impl Cte {
    /// Classifies a Content-Transfer-Encoding value (case-insensitive).
    pub fn parse(encoding: &[u8]) -> Cte {
        let e = encoding.trim_ascii();
        if e.is_empty()
            || e.eq_ignore_ascii_case(b"7bit")
            || e.eq_ignore_ascii_case(b"8bit")
            || e.eq_ignore_ascii_case(b"binary")
        {
            Cte::Identity
        } else if e.eq_ignore_ascii_case(b"base64") {
            Cte::Base64
        } else if e.eq_ignore_ascii_case(b"quoted-printable") {
            Cte::QuotedPrintable
        } else {
            Cte::Unknown
        }
    }
}

/// Decodes `body` per `cte`; `None` only for [`Cte::Unknown`].
pub fn transfer_decode(body: &[u8], cte: Cte) -> Option<Vec<u8>> {
    match cte {
        Cte::Identity => Some(body.to_vec()),
        Cte::Base64 => Some(base64_lenient(body)),
        Cte::QuotedPrintable => Some(qp_lenient(body)),
        Cte::Unknown => None,
    }
}

/// Base64 ignoring everything outside the alphabet (line breaks, stray
/// characters) and a trailing incomplete group.
fn base64_lenient(body: &[u8]) -> Vec<u8> {
    let alphabet = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/');
    let clean: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| alphabet(b) || *b == b'=')
        .collect();
    if let Some(decoded) = base64_decode(&clean) {
        return decoded;
    }
    // Padding in odd places: drop it and any trailing incomplete group.
    let mut bare: Vec<u8> = clean.into_iter().filter(alphabet).collect();
    bare.truncate(bare.len() - bare.len() % 4);
    base64_decode(&bare).unwrap_or_default()
}

/// Quoted-printable; a malformed escape is kept as it is written and the
/// rest still decodes (mail-parser's decoder gives up on the whole input).
fn qp_lenient(body: &[u8]) -> Vec<u8> {
    if let Some(decoded) = quoted_printable_decode(body) {
        return decoded;
    }
    // Decode line by line so one bad escape spoils only its own line.
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|&b| b == b'\n') {
        match quoted_printable_decode(line) {
            Some(decoded) => out.extend_from_slice(&decoded),
            None => out.extend_from_slice(line),
        }
    }
    out
}

/// Text in `charset` (from Content-Type) as UTF-8; unknown charsets and
/// none given are read as UTF-8 with replacement characters.
pub fn to_text(bytes: &[u8], charset: Option<&[u8]>) -> String {
    if let Some(cs) = charset
        && !cs.eq_ignore_ascii_case(b"utf-8")
        && !cs.eq_ignore_ascii_case(b"us-ascii")
        && let Some(decoder) = charset_decoder(cs)
    {
        return decoder(bytes);
    }
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_encodings() {
        assert_eq!(Cte::parse(b"BASE64"), Cte::Base64);
        assert_eq!(Cte::parse(b" Quoted-Printable "), Cte::QuotedPrintable);
        assert_eq!(Cte::parse(b"8bit"), Cte::Identity);
        assert_eq!(Cte::parse(b""), Cte::Identity);
        assert_eq!(Cte::parse(b"x-uuencode"), Cte::Unknown);
        assert_eq!(transfer_decode(b"abc", Cte::Unknown), None);
    }

    #[test]
    fn base64_with_line_breaks_and_junk() {
        assert_eq!(
            transfer_decode(b"aGVs\r\nbG8=\r\n", Cte::Base64).unwrap(),
            b"hello"
        );
        assert_eq!(
            transfer_decode(b"aGVs*bG8=", Cte::Base64).unwrap(),
            b"hello"
        );
        assert_eq!(transfer_decode(b"AA==", Cte::Base64).unwrap(), b"\0");
    }

    #[test]
    fn quoted_printable_soft_breaks_and_bad_escapes() {
        assert_eq!(
            transfer_decode(b"Caf=C3=A9 =\r\nau lait\r\n", Cte::QuotedPrintable).unwrap(),
            "Café au lait\r\n".as_bytes()
        );
        let got = transfer_decode(b"bad =ZZ\r\ngood=21\r\n", Cte::QuotedPrintable).unwrap();
        assert_eq!(got, b"bad =ZZ\r\ngood!\r\n");
    }

    #[test]
    fn charsets() {
        assert_eq!(to_text(b"Caf\xe9", Some(b"iso-8859-1")), "Café");
        assert_eq!(to_text("Café".as_bytes(), Some(b"UTF-8")), "Café");
        assert_eq!(to_text(b"a\xffb", None), "a\u{fffd}b");
    }
}
