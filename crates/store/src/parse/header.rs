//! Header blocks of a message or MIME part, without copying or decoding:
//! where the block ends (blank line included), its fields as raw byte
//! ranges, unfolding, and the `type/subtype; name=value` syntax of
//! Content-Type and Content-Disposition (comments skipped, quoted strings
//! unquoted). Works on CRLF and LF-only text alike.

use postamt_rawmsg::{line_end, trim_wsp_end};

/// Most fields kept from one header block (later ones are skipped, the
/// block's length is still found).
const MAX_FIELDS: usize = 2_000;
/// Most parameters kept from one Content-Type or Content-Disposition.
const MAX_PARAMS: usize = 64;
/// Longest header value kept in the meta (longer ones are cut).
pub const MAX_VALUE: usize = 16 * 1024;

/// One header block.
pub struct Header<'a> {
    /// (name, raw value after the colon, folded lines and line end included).
    pub fields: Vec<(&'a [u8], &'a [u8])>,
    /// Length of the block, the blank line after it included when there is one.
    pub len: usize,
}

impl<'a> Header<'a> {
    /// The raw value of the first field called `name` (case-insensitive).
    pub fn raw(&self, name: &str) -> Option<&'a [u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|&(_, v)| v)
    }

    /// The unfolded, trimmed value of the first field called `name`.
    pub fn value(&self, name: &str) -> Option<Vec<u8>> {
        self.raw(name).map(unfold)
    }
}

fn is_blank(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

/// Scans the header block at the start of `data`. It ends after the
/// first blank line, or before the first line that is neither a field
/// nor a continuation (then the rest is body), or at the end of `data`.
pub fn scan(data: &[u8]) -> Header<'_> {
    // (name, value start, value end) while scanning.
    let mut found: Vec<(&[u8], usize, usize)> = Vec::new();
    let mut pos = 0;
    // Whether the last field was kept, so a continuation line extends it.
    let mut continuable = false;
    let mut in_field = false;
    while pos < data.len() {
        let end = line_end(data, pos);
        let line = &data[pos..end];
        if is_blank(line) {
            pos = end;
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            if !in_field {
                // A continuation with no field before it: not a header.
                break;
            }
            if continuable && let Some(last) = found.last_mut() {
                last.2 = end;
            }
            pos = end;
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            break;
        };
        let name = trim_wsp_end(&line[..colon]);
        let valid = !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b));
        if !valid {
            break;
        }
        in_field = true;
        continuable = found.len() < MAX_FIELDS;
        if continuable {
            found.push((name, pos + colon + 1, end));
        }
        pos = end;
    }
    Header {
        fields: found
            .into_iter()
            .map(|(n, s, e)| (n, &data[s..e]))
            .collect(),
        len: pos,
    }
}

/// Unfolds a raw value (line breaks dropped, the whitespace after them
/// kept) and trims surrounding whitespace; at most [`MAX_VALUE`] bytes.
pub fn unfold(raw: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    let end = out
        .iter()
        .rposition(|&c| !matches!(c, b' ' | b'\t'))
        .map_or(0, |i| i + 1);
    out.truncate(end);
    let start = out
        .iter()
        .position(|&c| !matches!(c, b' ' | b'\t'))
        .unwrap_or(out.len());
    out.drain(..start);
    out.truncate(MAX_VALUE);
    out
}

/// A parsed `value; name=value...` header (Content-Type, -Disposition).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Structured {
    /// The leading value (`text/plain`, `attachment`), as written.
    pub value: Vec<u8>,
    pub params: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Skips whitespace and (nested) comments from `pos`.
fn skip_cfws(v: &[u8], mut pos: usize) -> usize {
    loop {
        while pos < v.len() && matches!(v[pos], b' ' | b'\t' | b'\r' | b'\n') {
            pos += 1;
        }
        if pos < v.len() && v[pos] == b'(' {
            let mut depth = 0usize;
            while pos < v.len() {
                match v[pos] {
                    b'\\' => pos += 1,
                    b'(' => depth += 1,
                    b')' => {
                        depth -= 1;
                        if depth == 0 {
                            pos += 1;
                            break;
                        }
                    }
                    _ => {}
                }
                pos += 1;
            }
            continue;
        }
        return pos.min(v.len());
    }
}

/// A quoted string starting at `pos` (at the `"`): its unquoted content
/// and the position after it.
pub fn quoted(v: &[u8], pos: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut i = pos + 1;
    while i < v.len() {
        match v[i] {
            b'"' => return (out, i + 1),
            b'\\' if i + 1 < v.len() => {
                out.push(v[i + 1]);
                i += 2;
            }
            b'\r' | b'\n' => i += 1,
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    (out, i)
}

/// Parses `value *(; attribute=value)`. The leading value runs to the
/// first `;` (comments and whitespace dropped); parameters with no `=`
/// are skipped.
pub fn structured(raw: &[u8]) -> Structured {
    let mut out = Structured::default();
    let mut pos = skip_cfws(raw, 0);
    while pos < raw.len() && raw[pos] != b';' {
        match raw[pos] {
            b'(' => pos = skip_cfws(raw, pos),
            b' ' | b'\t' | b'\r' | b'\n' => pos += 1,
            c => {
                out.value.push(c);
                pos += 1;
            }
        }
    }
    while pos < raw.len() && out.params.len() < MAX_PARAMS {
        // At a `;` (or junk): skip it.
        pos = skip_cfws(raw, pos + 1);
        let name_start = pos;
        while pos < raw.len()
            && !matches!(raw[pos], b'=' | b';' | b' ' | b'\t' | b'(' | b'\r' | b'\n')
        {
            pos += 1;
        }
        let name = raw[name_start..pos].to_vec();
        pos = skip_cfws(raw, pos);
        if pos >= raw.len() || raw[pos] != b'=' || name.is_empty() {
            // No value: skip to the next `;`.
            while pos < raw.len() && raw[pos] != b';' {
                pos += 1;
            }
            continue;
        }
        pos = skip_cfws(raw, pos + 1);
        let value = if pos < raw.len() && raw[pos] == b'"' {
            let (v, next) = quoted(raw, pos);
            pos = next;
            v
        } else {
            let start = pos;
            while pos < raw.len() && !matches!(raw[pos], b';' | b' ' | b'\t' | b'(' | b'\r' | b'\n')
            {
                pos += 1;
            }
            raw[start..pos].to_vec()
        };
        out.params.push((name, value));
        // Anything up to the next `;` (comments, junk) is ignored.
        while pos < raw.len() && raw[pos] != b';' {
            pos += 1;
        }
    }
    out.value.truncate(MAX_VALUE);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_with_folding_crlf_and_lf() {
        for eol in ["\r\n", "\n"] {
            let text =
                format!("Subject: a{eol} folded{eol}From: x@y{eol}X-Empty:{eol}{eol}body{eol}");
            let h = scan(text.as_bytes());
            assert_eq!(&text[h.len..], format!("body{eol}"));
            assert_eq!(h.value("subject").unwrap(), b"a folded");
            assert_eq!(h.value("FROM").unwrap(), b"x@y");
            assert_eq!(h.value("x-empty").unwrap(), b"");
            assert_eq!(h.fields.len(), 3);
        }
    }

    #[test]
    fn block_edge_cases() {
        // Starts with the blank line: empty header.
        assert_eq!(scan(b"\r\nbody").len, 2);
        // No blank line at all: everything is header.
        assert_eq!(scan(b"A: b\r\nC: d").len, 10);
        // A line that is not a field ends the header; the rest is body.
        let h = scan(b"A: b\r\nnot a header\r\n\r\n");
        assert_eq!(h.len, 6);
        assert_eq!(scan(b"plain text").len, 0);
        assert_eq!(scan(b" leading space: x\r\n").len, 0);
        assert_eq!(scan(b"").len, 0);
        // The first of repeated fields wins; `Name :` is accepted.
        let h = scan(b"Subject : one\r\nSubject: two\r\n\r\n");
        assert_eq!(h.value("subject").unwrap(), b"one");
    }

    #[test]
    fn structured_values() {
        let s = structured(b" text/plain (comment) ; charset=\"utf-8\";\r\n format=flowed ;x");
        assert_eq!(s.value, b"text/plain");
        assert_eq!(
            s.params,
            vec![
                (b"charset".to_vec(), b"utf-8".to_vec()),
                (b"format".to_vec(), b"flowed".to_vec())
            ]
        );
        let s = structured(b"multipart/mixed; boundary=\"a \\\"b\\\" c\"");
        assert_eq!(s.params[0].1, b"a \"b\" c");
        let s = structured(b"attachment; filename=\"r\xc3\xa9sum\xc3\xa9.pdf\"; size=12");
        assert_eq!(s.value, b"attachment");
        assert_eq!(s.params.len(), 2);
        assert_eq!(structured(b"").value, b"");
        assert_eq!(structured(b"(unterminated").value, b"");
        assert_eq!(structured(b";;;=;a=").params, vec![(b"a".to_vec(), vec![])]);
    }
}
