//! Byte-level helpers over raw RFC 5322 / MIME messages, shared by the
//! store's parser, IMAP's header fetches and the SMTP client's 8BITMIME
//! downgrade: walking lines by offset, trimming line ends and trailing
//! whitespace, and recognising MIME delimiter lines. No allocation, no
//! panics on any input.

/// The offset just after the line starting at `pos` (after its LF), or the
/// end of `data` when the line has no LF (or `pos` is past the end).
pub fn line_end(data: &[u8], pos: usize) -> usize {
    data.get(pos..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
        .map_or(data.len(), |i| pos + i + 1)
}

/// `line` without its line break (a final LF, or CRLF).
pub fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `s` without trailing spaces and tabs.
pub fn trim_wsp_end(s: &[u8]) -> &[u8] {
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    s.get(..end).unwrap_or_default()
}

/// Whether `line` (with or without its line break) is a delimiter line of
/// `boundary` (RFC 2046 §5.1.1: `--boundary`, or `--boundary--` for the
/// close delimiter, then only spaces and tabs): `Some(true)` for the close
/// delimiter, `Some(false)` for a part delimiter, `None` otherwise.
pub fn mime_delimiter(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = trim_eol(line).strip_prefix(b"--")?.strip_prefix(boundary)?;
    let (close, rest) = match rest.strip_prefix(b"--") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    rest.iter()
        .all(|&b| b == b' ' || b == b'\t')
        .then_some(close)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_by_offset() {
        let d = b"a\r\nbc\nlast";
        assert_eq!(line_end(d, 0), 3);
        assert_eq!(line_end(d, 3), 6);
        assert_eq!(line_end(d, 6), d.len());
        assert_eq!(line_end(d, d.len()), d.len());
        assert_eq!(line_end(d, d.len() + 5), d.len(), "past the end: no panic");
    }

    #[test]
    fn trims() {
        assert_eq!(trim_eol(b"x\r\n"), b"x");
        assert_eq!(trim_eol(b"x\n"), b"x");
        assert_eq!(trim_eol(b"x\r"), b"x");
        assert_eq!(trim_eol(b"x\r\r\n"), b"x\r", "one line break only");
        assert_eq!(trim_wsp_end(b"a b \t "), b"a b");
        assert_eq!(trim_wsp_end(b" \t"), b"");
        assert_eq!(trim_wsp_end(b""), b"");
    }

    #[test]
    fn delimiter_lines() {
        assert_eq!(mime_delimiter(b"--b\r\n", b"b"), Some(false));
        assert_eq!(mime_delimiter(b"--b--", b"b"), Some(true));
        assert_eq!(mime_delimiter(b"--b-- \t\r\n", b"b"), Some(true));
        assert_eq!(mime_delimiter(b"--b \n", b"b"), Some(false));
        assert_eq!(mime_delimiter(b"--bc\r\n", b"b"), None, "another boundary");
        assert_eq!(mime_delimiter(b"-b\r\n", b"b"), None);
        assert_eq!(mime_delimiter(b"--b x", b"b"), None);
        assert_eq!(
            mime_delimiter(b"--b\r\r\n", b"b"),
            None,
            "a bare CR is no padding"
        );
    }
}
