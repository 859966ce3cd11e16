//! A minimal, bounded reader of a message's header section: the field names
//! present, and the From domain. Only what signing and checking need.

/// The names of the header fields in `message`, in order (as written, not
/// normalised). Stops at the blank line ending the header section, at the end
/// of the input, or after `max_fields` fields.
pub fn header_names(message: &[u8], max_fields: usize) -> Vec<&[u8]> {
    let mut names = Vec::new();
    let mut rest = message;
    while !rest.is_empty() && names.len() < max_fields {
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if !matches!(line[0], b' ' | b'\t')
            && let Some(colon) = line.iter().position(|&b| b == b':')
        {
            let name = trim_ascii_end(&line[..colon]);
            if !name.is_empty() {
                names.push(name);
            }
        }
        rest = next;
    }
    names
}

fn trim_ascii_end(s: &[u8]) -> &[u8] {
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_up_to_the_blank_line() {
        let m = b"From: a@b\r\nSubject: x\r\n  continued: not a field\r\nTo : c@d\nX-Y:z\r\n\r\nBody: not a header\r\n";
        let names = header_names(m, 100);
        assert_eq!(names, [&b"From"[..], b"Subject", b"To", b"X-Y"]);
    }

    #[test]
    fn bounded_and_tolerant() {
        assert!(header_names(b"", 10).is_empty());
        assert_eq!(header_names(b"A: 1\r\nB: 2\r\nC: 3\r\n", 2).len(), 2);
        assert_eq!(header_names(b"no colon line\r\nA: 1", 10), [&b"A"[..]]);
    }
}
