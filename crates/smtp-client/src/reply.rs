//! Reading SMTP replies (RFC 5321 §4.2) from received bytes: splits lines,
//! assembles multi-line replies, extracts enhanced status codes (RFC 2034)
//! and enforces bounds on line length, line count and reply size. Pure: the
//! caller feeds bytes read from the socket.

use crate::Reply;

/// Longest reply line accepted, without its line ending. RFC 5321 allows
/// 512; real servers send longer ones, so be generous but bounded.
pub const MAX_LINE: usize = 4096;
/// Most lines in one (multi-line) reply.
pub const MAX_LINES: usize = 100;
/// Most bytes in one reply, line endings included.
pub const MAX_REPLY: usize = 64 * 1024;

/// Longest server text kept in a [`ReplyError::Malformed`] message.
const SNIPPET: usize = 40;

/// Why received bytes are not a valid reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("reply has more than {MAX_LINES} lines")]
    TooManyLines,
    #[error("reply longer than {MAX_REPLY} bytes")]
    TooLong,
    #[error("malformed reply line {0:?}")]
    Malformed(String),
    #[error("multi-line reply changes its code from {0} to {1}")]
    CodeMismatch(u16, u16),
}

/// One reply line, split.
#[derive(Debug, PartialEq, Eq)]
struct Line<'a> {
    code: u16,
    last: bool,
    text: &'a [u8],
}

/// Splits one line (without its line ending): three digits, the first 2–5,
/// then `' '` (last line), `'-'` (more follow) or nothing (a bare last line).
fn parse_line(line: &[u8]) -> Result<Line<'_>, ReplyError> {
    let malformed = || ReplyError::Malformed(snippet(line));
    let (digits, rest) = line.split_at_checked(3).ok_or_else(malformed)?;
    let [d0, d1, d2] = digits else {
        return Err(malformed());
    };
    if !(b'2'..=b'5').contains(d0) || !d1.is_ascii_digit() || !d2.is_ascii_digit() {
        return Err(malformed());
    }
    let code = u16::from(d0 - b'0') * 100 + u16::from(d1 - b'0') * 10 + u16::from(d2 - b'0');
    match rest.split_first() {
        None => Ok(Line {
            code,
            last: true,
            text: &[],
        }),
        Some((b' ', text)) => Ok(Line {
            code,
            last: true,
            text,
        }),
        Some((b'-', text)) => Ok(Line {
            code,
            last: false,
            text,
        }),
        Some(_) => Err(malformed()),
    }
}

/// A short, printable prefix of a bad line for the error message.
fn snippet(line: &[u8]) -> String {
    let end = line.len().min(SNIPPET);
    sanitize(&line[..end])
}

/// Server text as a printable string: invalid UTF-8 replaced, control
/// characters (which could forge log lines or headers) turned into spaces.
pub(crate) fn sanitize(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// An enhanced status code (`class.subject.detail`, RFC 3463) at the start
/// of `text` whose class matches the reply code, and the text after it.
fn split_enhanced(code: u16, text: &str) -> Option<(&str, &str)> {
    let (candidate, rest) = match text.find(' ') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    };
    let mut parts = candidate.split('.');
    let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let class_ok = class.len() == 1 && class.as_bytes().first().copied() == char_digit(code / 100);
    let number = |s: &str| (1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    (class_ok && number(subject) && number(detail)).then_some((candidate, rest))
}

fn char_digit(d: u16) -> Option<u8> {
    u8::try_from(d).ok().filter(|d| *d < 10).map(|d| b'0' + d)
}

/// Collects the lines of one reply until its last line.
#[derive(Debug, Default)]
struct Assembler {
    code: Option<u16>,
    lines: Vec<String>,
    bytes: usize,
}

impl Assembler {
    /// Adds a line (`raw_len` counts its line ending); returns the reply
    /// when this was its last line.
    fn push(&mut self, line: &[u8], raw_len: usize) -> Result<Option<Reply>, ReplyError> {
        if line.len() > MAX_LINE {
            return Err(ReplyError::LineTooLong);
        }
        self.bytes = self.bytes.saturating_add(raw_len);
        if self.bytes > MAX_REPLY {
            return Err(ReplyError::TooLong);
        }
        if self.lines.len() >= MAX_LINES {
            return Err(ReplyError::TooManyLines);
        }
        let parsed = parse_line(line)?;
        match self.code {
            Some(code) if code != parsed.code => {
                return Err(ReplyError::CodeMismatch(code, parsed.code));
            }
            _ => self.code = Some(parsed.code),
        }
        self.lines.push(sanitize(parsed.text));
        if !parsed.last {
            return Ok(None);
        }
        let code = parsed.code;
        let lines = std::mem::take(&mut self.lines);
        *self = Assembler::default();
        Ok(Some(build_reply(code, lines)))
    }
}

/// Builds a [`Reply`]: the enhanced code comes from the first line and is
/// stripped from every line that repeats it.
fn build_reply(code: u16, lines: Vec<String>) -> Reply {
    let enhanced = lines
        .first()
        .and_then(|l| split_enhanced(code, l))
        .map(|(e, _)| e.to_string());
    let texts: Vec<&str> = lines
        .iter()
        .map(|l| match (&enhanced, split_enhanced(code, l)) {
            (Some(e), Some((found, rest))) if found == e => rest,
            _ => l.as_str(),
        })
        .collect();
    Reply {
        code,
        enhanced,
        text: texts.join("\n"),
    }
}

/// Received bytes not yet consumed, turned into replies one at a time.
///
/// Feed everything read from the socket with [`ReplyBuffer::feed`] and take
/// replies with [`ReplyBuffer::next_reply`]; read more only when it returns
/// `Ok(None)`. Then at most one partial line (under [`MAX_LINE`]) stays
/// buffered, so memory stays bounded by that plus one read. After an error
/// the buffer is unusable (so is the connection).
#[derive(Debug, Default)]
pub struct ReplyBuffer {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    partial: Assembler,
}

impl ReplyBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete reply, `Ok(None)` when more bytes are needed.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        loop {
            let rest = &self.buf[self.pos..];
            let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
                // A partial line: bounded (a CR may still precede the LF).
                if rest.len() > MAX_LINE + 1 {
                    return Err(ReplyError::LineTooLong);
                }
                return Ok(None);
            };
            let raw = &rest[..lf];
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            let reply = self.partial.push(line, lf + 1)?;
            self.pos += lf + 1;
            if reply.is_some() {
                return Ok(reply);
            }
        }
    }

    /// Whether received bytes (or part of a reply) are waiting: after a
    /// STARTTLS 220 this means the server (or someone in between) pipelined
    /// data that must not be trusted.
    pub fn has_pending(&self) -> bool {
        self.pos < self.buf.len() || self.partial.code.is_some()
    }
}

/// Parses `bytes` as exactly one complete reply (for tests and tools).
pub fn parse_reply(bytes: &[u8]) -> Result<Option<Reply>, ReplyError> {
    let mut buffer = ReplyBuffer::new();
    buffer.feed(bytes);
    buffer.next_reply()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, enhanced: Option<&str>, text: &str) -> Reply {
        Reply {
            code,
            enhanced: enhanced.map(str::to_string),
            text: text.to_string(),
        }
    }

    #[test]
    fn single_line() {
        assert_eq!(
            parse_reply(b"220 mx.example ESMTP ready\r\n"),
            Ok(Some(reply(220, None, "mx.example ESMTP ready")))
        );
    }

    #[test]
    fn bare_code_and_bare_lf() {
        assert_eq!(parse_reply(b"250\n"), Ok(Some(reply(250, None, ""))));
        assert_eq!(parse_reply(b"250 \r\n"), Ok(Some(reply(250, None, ""))));
    }

    #[test]
    fn multi_line_joined_and_enhanced_stripped() {
        let got = parse_reply(b"550-5.1.1 no such user\r\n550-5.1.1 really\r\n550 5.1.1 bye\r\n");
        assert_eq!(
            got,
            Ok(Some(reply(550, Some("5.1.1"), "no such user\nreally\nbye")))
        );
    }

    #[test]
    fn enhanced_code_must_match_class() {
        assert_eq!(
            parse_reply(b"250 5.1.1 odd\r\n"),
            Ok(Some(reply(250, None, "5.1.1 odd")))
        );
        assert_eq!(
            parse_reply(b"250 2.0.0\r\n"),
            Ok(Some(reply(250, Some("2.0.0"), "")))
        );
        assert_eq!(
            parse_reply(b"250 2.0.0000 x\r\n"),
            Ok(Some(reply(250, None, "2.0.0000 x")))
        );
        assert_eq!(
            parse_reply(b"250 2.1.5.4 x\r\n"),
            Ok(Some(reply(250, None, "2.1.5.4 x")))
        );
    }

    #[test]
    fn incomplete_needs_more() {
        let mut b = ReplyBuffer::new();
        b.feed(b"250-first\r\n250 sec");
        assert_eq!(b.next_reply(), Ok(None));
        assert!(b.has_pending());
        b.feed(b"ond\r\n");
        assert_eq!(b.next_reply(), Ok(Some(reply(250, None, "first\nsecond"))));
        assert!(!b.has_pending());
    }

    #[test]
    fn pipelined_replies_come_one_at_a_time() {
        let mut b = ReplyBuffer::new();
        b.feed(b"250 2.1.0 ok\r\n550 5.1.1 no\r\n250 2.1.5 ok\r\n");
        assert_eq!(b.next_reply(), Ok(Some(reply(250, Some("2.1.0"), "ok"))));
        assert_eq!(b.next_reply(), Ok(Some(reply(550, Some("5.1.1"), "no"))));
        assert!(b.has_pending());
        assert_eq!(b.next_reply(), Ok(Some(reply(250, Some("2.1.5"), "ok"))));
        assert_eq!(b.next_reply(), Ok(None));
        assert!(!b.has_pending());
    }

    #[test]
    fn malformed_lines() {
        for bad in [
            &b"2x0 hi\r\n"[..],
            b"250hi\r\n",
            b"25\r\n",
            b"\r\n",
            b"650 no\r\n",
            b"150 no\r\n",
            b" 250 x\r\n",
            b"250_x\r\n",
        ] {
            assert!(
                matches!(parse_reply(bad), Err(ReplyError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn code_change_inside_a_reply_is_an_error() {
        assert_eq!(
            parse_reply(b"250-a\r\n550 b\r\n"),
            Err(ReplyError::CodeMismatch(250, 550))
        );
    }

    #[test]
    fn too_many_lines() {
        let mut b = ReplyBuffer::new();
        for _ in 0..10_000 {
            b.feed(b"250-x\r\n");
        }
        assert_eq!(b.next_reply(), Err(ReplyError::TooManyLines));
        // Exactly MAX_LINES is fine.
        let mut ok = Vec::new();
        for _ in 0..MAX_LINES - 1 {
            ok.extend_from_slice(b"250-x\r\n");
        }
        ok.extend_from_slice(b"250 y\r\n");
        let r = parse_reply(&ok).expect("valid").expect("complete");
        assert_eq!(r.text.lines().count(), MAX_LINES);
    }

    #[test]
    fn too_many_bytes() {
        let line = format!("250-{}\r\n", "a".repeat(MAX_LINE - 4));
        let mut b = ReplyBuffer::new();
        for _ in 0..20 {
            b.feed(line.as_bytes());
        }
        assert_eq!(b.next_reply(), Err(ReplyError::TooLong));
    }

    #[test]
    fn long_lines() {
        let ok = format!("250 {}\r\n", "a".repeat(MAX_LINE - 4));
        assert!(parse_reply(ok.as_bytes()).expect("valid").is_some());
        let long = format!("250 {}\r\n", "a".repeat(MAX_LINE - 3));
        assert_eq!(parse_reply(long.as_bytes()), Err(ReplyError::LineTooLong));
        // Without a line end: detected without waiting for one.
        let mut b = ReplyBuffer::new();
        b.feed(format!("250 {}", "a".repeat(MAX_LINE)).as_bytes());
        assert_eq!(b.next_reply(), Err(ReplyError::LineTooLong));
        // A partial line at the limit still waits for more.
        let mut b = ReplyBuffer::new();
        b.feed(format!("250 {}", "a".repeat(MAX_LINE - 4)).as_bytes());
        assert_eq!(b.next_reply(), Ok(None));
    }

    #[test]
    fn control_characters_and_bad_utf8_are_neutralised() {
        let r = parse_reply(b"554 evil\x1b[31m\rX-Header: y \xff\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(r.text, "evil [31m X-Header: y \u{fffd}");
    }

    #[test]
    fn buffer_stays_bounded_while_waiting() {
        let mut b = ReplyBuffer::new();
        b.feed(b"250-a\r\n250-b\r\n");
        assert_eq!(b.next_reply(), Ok(None));
        b.feed(b"250 c\r\n");
        // Consumed bytes are dropped on the next feed.
        assert_eq!(b.next_reply(), Ok(Some(reply(250, None, "a\nb\nc"))));
        b.feed(b"");
        assert!(b.buf.is_empty());
    }
}
