//! Validation of the free texts the directory stores and the delivery agent
//! later puts into mail: auto-reply subjects and bodies, list subject
//! prefixes, and the payload of pending list entries. A header text may
//! never carry CR, LF or another control character (it would inject header
//! lines); a body may carry line breaks and tabs only.
//!
//! Everything here is pure: no I/O, no database.

use crate::DirectoryError;

/// Longest auto-reply subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 200;
/// Longest auto-reply body, in bytes (after line-end normalisation).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest list subject prefix, in characters.
pub const MAX_PREFIX_CHARS: usize = 64;
/// Longest payload of a pending list entry, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 1024;

/// The first control character in `s`, shown escaped, if any.
fn control_char(s: &str) -> Option<String> {
    s.chars()
        .find(|c| c.is_control())
        .map(|c| c.escape_default().to_string())
}

/// Checks an auto-reply subject: 1-200 characters, no CR/LF or other
/// control characters, not only spaces.
pub fn validate_subject(subject: &str) -> Result<(), DirectoryError> {
    let bad = |why: String| DirectoryError::InvalidText("subject", why);
    if subject.trim().is_empty() {
        return Err(bad("the subject is empty".into()));
    }
    if subject.chars().count() > MAX_SUBJECT_CHARS {
        return Err(bad(format!(
            "the subject is longer than {MAX_SUBJECT_CHARS} characters"
        )));
    }
    if let Some(c) = control_char(subject) {
        return Err(bad(format!(
            "the subject contains a line break or control character ({c}); a subject is one line"
        )));
    }
    Ok(())
}

/// Checks a list subject prefix: at most 64 characters, no CR/LF or other
/// control characters. It may be empty (no prefix).
pub fn validate_prefix(prefix: &str) -> Result<(), DirectoryError> {
    let bad = |why: String| DirectoryError::InvalidText("subject prefix", why);
    if prefix.chars().count() > MAX_PREFIX_CHARS {
        return Err(bad(format!(
            "the prefix is longer than {MAX_PREFIX_CHARS} characters"
        )));
    }
    if let Some(c) = control_char(prefix) {
        return Err(bad(format!(
            "the prefix contains a line break or control character ({c})"
        )));
    }
    Ok(())
}

/// Checks an auto-reply body and returns it with LF line ends (CRLF becomes
/// LF; the delivery agent writes CRLF on the wire). Not empty, at most
/// [`MAX_BODY_BYTES`], no control characters other than tab and line breaks,
/// no lone CR.
pub fn normalize_body(body: &str) -> Result<String, DirectoryError> {
    let bad = |why: String| DirectoryError::InvalidText("body", why);
    let body = body.replace("\r\n", "\n");
    if body.trim().is_empty() {
        return Err(bad("the body is empty".into()));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(bad(format!(
            "the body is longer than {} KiB",
            MAX_BODY_BYTES / 1024
        )));
    }
    if let Some(c) = body
        .chars()
        .find(|&c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(bad(format!(
            "the body contains the control character {}",
            c.escape_default()
        )));
    }
    Ok(body)
}

/// Checks the payload of a pending list entry: at most 1024 bytes of
/// printable text (a queue id, a short note).
pub fn validate_payload(payload: &str) -> Result<(), DirectoryError> {
    let bad = |why: String| DirectoryError::InvalidText("payload", why);
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(bad(format!("longer than {MAX_PAYLOAD_BYTES} bytes")));
    }
    if let Some(c) = control_char(payload) {
        return Err(bad(format!("contains the control character {c}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_invalid(r: Result<(), DirectoryError>) -> bool {
        matches!(r, Err(DirectoryError::InvalidText(..)))
    }

    #[test]
    fn subjects() {
        assert!(validate_subject("Out of office").is_ok());
        assert!(validate_subject("Abwesend – zurück am 3. März").is_ok());
        assert!(validate_subject(&"x".repeat(MAX_SUBJECT_CHARS)).is_ok());
        for s in [
            "",
            "   ",
            "a\r\nBcc: victim@example.org",
            "a\nb",
            "a\rb",
            "a\tb",
            "a\0b",
            "a\u{7f}",
        ] {
            assert!(is_invalid(validate_subject(s)), "{s:?}");
        }
        assert!(is_invalid(validate_subject(
            &"x".repeat(MAX_SUBJECT_CHARS + 1)
        )));
        // Counted in characters, not bytes.
        assert!(validate_subject(&"ü".repeat(MAX_SUBJECT_CHARS)).is_ok());
    }

    #[test]
    fn prefixes() {
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("[team] ").is_ok());
        assert!(is_invalid(validate_prefix("[team]\r\nX-Evil: 1")));
        assert!(is_invalid(validate_prefix("a\nb")));
        assert!(is_invalid(validate_prefix(
            &"x".repeat(MAX_PREFIX_CHARS + 1)
        )));
    }

    #[test]
    fn bodies() {
        assert_eq!(
            normalize_body("Hello,\r\n\r\n\tI am away.\r\n").expect("ok"),
            "Hello,\n\n\tI am away.\n"
        );
        assert_eq!(normalize_body("one\ntwo").expect("ok"), "one\ntwo");
        for b in ["", " \r\n ", "a\rb", "a\0b", "a\u{1b}[31m"] {
            assert!(
                matches!(normalize_body(b), Err(DirectoryError::InvalidText(..))),
                "{b:?}"
            );
        }
        assert!(normalize_body(&"x".repeat(MAX_BODY_BYTES)).is_ok());
        assert!(normalize_body(&"x".repeat(MAX_BODY_BYTES + 1)).is_err());
    }

    #[test]
    fn payloads() {
        assert!(validate_payload("").is_ok());
        assert!(validate_payload("0123456789abcdef").is_ok());
        assert!(is_invalid(validate_payload("a\nb")));
        assert!(is_invalid(validate_payload(
            &"x".repeat(MAX_PAYLOAD_BYTES + 1)
        )));
    }
}
