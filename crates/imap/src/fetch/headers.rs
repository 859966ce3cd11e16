//! Raw header blocks: splitting into fields (folded continuation lines
//! kept with their field), HEADER.FIELDS / HEADER.FIELDS.NOT subsetting,
//! and RFC 2047 decoding of field values (mail-parser) for SEARCH.

use mail_parser::HeaderValue;
use mail_parser::parsers::MessageStream;
use postamt_rawmsg::{line_end, trim_eol, trim_wsp_end};

/// One header field as it lies in the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    /// The field name (before the colon, trailing blanks trimmed).
    pub name: &'a [u8],
    /// The value: everything after the colon up to the end of the field,
    /// continuation lines included, final line ending excluded.
    pub value: &'a [u8],
    /// The whole field with its line ending(s), as it lies in the header.
    pub raw: &'a [u8],
}

/// The fields of `header` (a header block, optionally followed by its
/// blank line) in order. Stops at the first empty line. A line without a
/// colon is a field with an empty value and the line as its name.
pub fn fields(header: &[u8]) -> Vec<Field<'_>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < header.len() {
        let line_end = line_end(header, pos);
        let line = &header[pos..line_end];
        if trim_eol(line).is_empty() {
            break;
        }
        // Continuation lines (starting with SP or HT) belong to the field.
        let mut end = line_end;
        while end < header.len() && matches!(header[end], b' ' | b'\t') {
            end = self::line_end(header, end);
        }
        let raw = &header[pos..end];
        let body = trim_eol(raw);
        let (name, value) = match body.iter().position(|&b| b == b':') {
            Some(colon) => (trim_wsp_end(&body[..colon]), &body[colon + 1..]),
            None => (body, &body[body.len()..]),
        };
        out.push(Field { name, value, raw });
        pos = end;
    }
    out
}

/// Whether the header block ends with the blank line separating it from
/// the body (absent only for a message without a body).
pub fn has_blank_line(header: &[u8]) -> bool {
    header.ends_with(b"\r\n\r\n")
        || header.ends_with(b"\n\n")
        || header == b"\r\n"
        || header == b"\n"
        || header.ends_with(b"\n\r\n")
}

/// HEADER.FIELDS (`keep` = true) or HEADER.FIELDS.NOT (`keep` = false):
/// the fields whose name is (is not) in `names`, compared
/// case-insensitively, followed by the blank line when the header has one.
pub fn subset(header: &[u8], names: &[&[u8]], keep: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for field in fields(header) {
        let listed = names.iter().any(|n| n.eq_ignore_ascii_case(field.name));
        if listed == keep {
            out.extend_from_slice(field.raw);
            if !field.raw.ends_with(b"\n") {
                // The last field of a header without a final line ending.
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    if has_blank_line(header) {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A header field value with folding removed and RFC 2047 encoded words
/// decoded (charset converted to UTF-8).
pub fn decode_value(value: &[u8]) -> String {
    let mut buf = Vec::with_capacity(value.len() + 1);
    buf.extend_from_slice(value);
    // mail-parser's unstructured parser stops at an unfolded line end and
    // returns nothing at end of input without one.
    buf.push(b'\n');
    match MessageStream::new(&buf).parse_unstructured() {
        HeaderValue::Text(text) => text.into_owned(),
        HeaderValue::TextList(list) => list.join(" "),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &[u8] =
        b"From: a@example.org\r\nSubject: one\r\n two\r\nX-Empty:\r\nTo : b@example.org\r\n\r\n";

    #[test]
    fn splits_fields_keeping_folded_lines() {
        let f = fields(HEADER);
        assert_eq!(f.len(), 4);
        assert_eq!(f[1].name, b"Subject");
        assert_eq!(f[1].value, b" one\r\n two");
        assert_eq!(f[1].raw, b"Subject: one\r\n two\r\n");
        assert_eq!(f[2].value, b"");
        assert_eq!(f[3].name, b"To");
    }

    #[test]
    fn subset_is_case_insensitive_and_keeps_blank_line() {
        let got = subset(HEADER, &[b"SUBJECT", b"to"], true);
        assert_eq!(got, b"Subject: one\r\n two\r\nTo : b@example.org\r\n\r\n");
        let not = subset(HEADER, &[b"subject", b"x-empty", b"to"], false);
        assert_eq!(not, b"From: a@example.org\r\n\r\n");
    }

    #[test]
    fn subset_without_blank_line() {
        let got = subset(b"Subject: x", &[b"subject"], true);
        assert_eq!(got, b"Subject: x\r\n");
        assert_eq!(subset(b"Subject: x", &[b"from"], true), b"");
    }

    #[test]
    fn nothing_matches_gives_only_the_blank_line() {
        assert_eq!(subset(HEADER, &[b"cc"], true), b"\r\n");
    }

    #[test]
    fn decodes_encoded_words_and_unfolds() {
        assert_eq!(
            decode_value(b" =?UTF-8?B?R3LDvMOfZQ==?= aus\r\n Bern"),
            "Grüße aus Bern"
        );
        assert_eq!(decode_value(b" =?ISO-8859-1?Q?Caf=E9?="), "Café");
        assert_eq!(decode_value(b" plain"), "plain");
    }

    #[test]
    fn stops_at_blank_line_and_tolerates_bare_lf() {
        let f = fields(b"A: 1\nB: 2\n\nC: body\n");
        assert_eq!(f.len(), 2);
        assert!(has_blank_line(b"A: 1\nB: 2\n\n"));
        assert!(!has_blank_line(b"A: 1\r\n"));
    }
}
