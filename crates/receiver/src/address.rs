//! Envelope address checks the smtp-proto parser leaves to us: the bare
//! `<postmaster>` (RFC 5321 4.5.1) versus the null path `<>` (smtp-proto
//! returns the empty string for both), and splitting `local@domain`.

/// The text between the first `<` and the next `>` of a command line, trimmed.
///
/// smtp-proto returns the empty string both for `<>` and for `<postmaster>`
/// (RFC 5321 4.5.1's bare postmaster), so the raw line tells them apart.
pub fn bracket_content(line: &[u8]) -> Option<&[u8]> {
    let open = memchr::memchr(b'<', line)?;
    let rest = &line[open + 1..];
    let close = memchr::memchr(b'>', rest)?;
    Some(rest[..close].trim_ascii())
}

/// Whether the path of a MAIL/RCPT line is the bare `<postmaster>`
/// (case-insensitive).
pub fn is_bare_postmaster(line: &[u8]) -> bool {
    bracket_content(line).is_some_and(|c| c.eq_ignore_ascii_case(b"postmaster"))
}

/// Whether the path of a MAIL/RCPT line is the null path `<>`.
pub fn is_null_path(line: &[u8]) -> bool {
    bracket_content(line).is_some_and(<[u8]>::is_empty)
}

/// Splits `local@domain` at the last `@`; `None` unless both parts are
/// non-empty.
pub fn split(address: &str) -> Option<(&str, &str)> {
    let (local, domain) = address.rsplit_once('@')?;
    (!local.is_empty() && !domain.is_empty() && !domain.starts_with('.')).then_some((local, domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_postmaster_from_null() {
        assert!(is_bare_postmaster(b"RCPT TO:<PostMaster>\r\n"));
        assert!(is_bare_postmaster(b"RCPT TO: < postmaster >\r\n"));
        assert!(!is_bare_postmaster(b"RCPT TO:<>\r\n"));
        assert!(!is_bare_postmaster(b"RCPT TO:<postmaster@x>\r\n"));
        assert!(is_null_path(b"MAIL FROM:<>\r\n"));
        assert!(!is_null_path(b"MAIL FROM:<postmaster>\r\n"));
        assert!(!is_null_path(b"MAIL FROM:\r\n"));
    }

    #[test]
    fn splits_at_last_at() {
        assert_eq!(split("a@b@example.org"), Some(("a@b", "example.org")));
        assert_eq!(split("a@"), None);
        assert_eq!(split("@b"), None);
        assert_eq!(split("a@.b"), None);
        assert_eq!(split("postmaster"), None);
    }
}
