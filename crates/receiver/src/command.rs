//! Raw command-line parsing that smtp-proto gets wrong: sizes too long for a
//! machine word. smtp-proto 0.2.5 saturates and then restarts counting from
//! the next digit, so `BDAT 99999999999999999999999999` would come out as
//! `BDAT 99999999`; we parse BDAT and the `SIZE=` value ourselves. Also the
//! command line limit, and argument checks for verbs smtp-proto parses
//! leniently (STARTTLS).

/// The longest command line accepted, CRLF included (RFC 5321 4.5.3.1.4
/// asks for 512; extensions make lines longer, so we allow more). AUTH
/// lines may be longer: [`crate::sasl::MAX_AUTH_LINE`].
pub const MAX_LINE: usize = 4096;

/// The first word of a command line (the verb), up to a space, CR or LF.
pub fn verb(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n' || b == b'\t')
        .unwrap_or(line.len());
    &line[..end]
}

/// Whether anything but whitespace follows the verb.
pub fn has_arguments(line: &[u8]) -> bool {
    let v = verb(line).len();
    !line[v..].trim_ascii().is_empty()
}

/// Parses a decimal size of 1 to 20 digits into a u64; `None` on
/// anything else or on overflow.
pub fn parse_size(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// A parsed `BDAT <size> [LAST]` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bdat {
    pub size: u64,
    pub last: bool,
}

/// Parses a BDAT command line (verb already known to be BDAT); `None` on a
/// syntax error or a size that does not fit in 64 bits.
pub fn parse_bdat(line: &[u8]) -> Option<Bdat> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut words = line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty());
    let verb = words.next()?;
    if !verb.eq_ignore_ascii_case(b"BDAT") {
        return None;
    }
    let size = parse_size(words.next()?)?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case(b"LAST") => true,
        Some(_) => return None,
    };
    if words.next().is_some() {
        return None;
    }
    Some(Bdat { size, last })
}

/// The value of a `SIZE=` parameter on a MAIL line, if any, saturating at
/// `u64::MAX` when it does not fit (a size that large is over any limit).
pub fn declared_size(line: &[u8]) -> Option<u64> {
    let params = match memchr::memrchr(b'>', line) {
        Some(pos) => &line[pos + 1..],
        None => line,
    };
    params
        .split(|b| b.is_ascii_whitespace())
        .find_map(|w| match w.get(..5) {
            Some(k) if k.eq_ignore_ascii_case(b"SIZE=") => Some(&w[5..]),
            _ => None,
        })
        .map(|digits| {
            if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
                parse_size(digits).unwrap_or(u64::MAX)
            } else {
                0
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_overflow_care() {
        assert_eq!(parse_size(b"0"), Some(0));
        assert_eq!(parse_size(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_size(b"18446744073709551616"), None);
        assert_eq!(parse_size(b"99999999999999999999999999"), None);
        assert_eq!(parse_size(b""), None);
        assert_eq!(parse_size(b"-1"), None);
        assert_eq!(parse_size(b"1x"), None);
    }

    #[test]
    fn bdat_lines() {
        assert_eq!(
            parse_bdat(b"BDAT 10\r\n"),
            Some(Bdat {
                size: 10,
                last: false
            })
        );
        assert_eq!(
            parse_bdat(b"bdat  0 last\r\n"),
            Some(Bdat {
                size: 0,
                last: true
            })
        );
        assert_eq!(
            parse_bdat(b"BDAT 5 LAST\n"),
            Some(Bdat {
                size: 5,
                last: true
            })
        );
        assert_eq!(parse_bdat(b"BDAT\r\n"), None);
        assert_eq!(parse_bdat(b"BDAT x\r\n"), None);
        assert_eq!(parse_bdat(b"BDAT 5 FIRST\r\n"), None);
        assert_eq!(parse_bdat(b"BDAT 5 LAST x\r\n"), None);
        assert_eq!(parse_bdat(b"BDAT 99999999999999999999999999\r\n"), None);
    }

    #[test]
    fn declared_sizes() {
        assert_eq!(declared_size(b"MAIL FROM:<a@b> SIZE=100\r\n"), Some(100));
        assert_eq!(
            declared_size(b"MAIL FROM:<a@b> body=8bitmime size=7\r\n"),
            Some(7)
        );
        assert_eq!(
            declared_size(b"MAIL FROM:<a@b> SIZE=99999999999999999999999999\r\n"),
            Some(u64::MAX)
        );
        assert_eq!(declared_size(b"MAIL FROM:<size=5@b>\r\n"), None);
        assert_eq!(declared_size(b"MAIL FROM:<a@b>\r\n"), None);
    }

    #[test]
    fn arguments_after_the_verb() {
        assert!(!has_arguments(b"STARTTLS\r\n"));
        assert!(!has_arguments(b"STARTTLS  \r\n"));
        assert!(has_arguments(b"STARTTLS x\r\n"));
        assert!(!has_arguments(b""));
    }

    #[test]
    fn verb_is_first_word() {
        assert_eq!(verb(b"EXPN list\r\n"), b"EXPN");
        assert_eq!(verb(b"expn\r\n"), b"expn");
        assert_eq!(verb(b""), b"");
    }
}
