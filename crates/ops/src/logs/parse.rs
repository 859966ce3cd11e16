//! Parsing one line of tracing-subscriber's default format (pure): time
//! stamp, level, optional spans, target, message, `key=value` fields.

use super::LogEvent;

/// The levels tracing writes.
const LEVELS: [&str; 5] = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];

/// The start of a line: what the dashboard needs without the fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head<'a> {
    pub time: &'a str,
    pub level: &'a str,
    /// Spans, target, message and fields.
    pub rest: &'a str,
}

/// Splits off the time stamp and the level; `None` for a line that is not
/// an event (a continuation line, garbage).
pub(crate) fn parse_head(line: &str) -> Option<Head<'_>> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (time, rest) = line.split_once(' ')?;
    if time.len() < 10 || !time.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    let rest = rest.trim_start_matches(' ');
    let (level, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if !LEVELS.contains(&level) {
        return None;
    }
    Some(Head { time, level, rest })
}

/// Microseconds since the epoch of an RFC 3339 stamp; 0 when it does not
/// parse.
pub(crate) fn time_micros(time: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(time)
        .map(|t| t.timestamp_micros())
        .unwrap_or(0)
}

/// Parses one line of log `log`; `None` when it is not an event line.
pub fn parse_line(log: &str, line: &str) -> Option<LogEvent> {
    let raw = line.trim_end_matches(['\r', '\n']);
    let head = parse_head(raw)?;
    let mut fields = Vec::new();
    let mut rest = head.rest;
    // Spans (`name{a=1 b=2}:`) come before the target; their fields count
    // as the event's.
    while let Some((segment, after)) = rest.split_once(": ") {
        if let Some(open) = segment.find('{')
            && segment.ends_with('}')
            && is_ident(&segment[..open])
        {
            let (_, span_fields) = split_message(&segment[open + 1..segment.len() - 1]);
            fields.extend(span_fields);
            rest = after;
            continue;
        }
        break;
    }
    // The target: a Rust path, then `: `.
    let body = match rest.split_once(": ") {
        Some((target, body)) if !target.contains(' ') => body,
        _ => rest,
    };
    let (message, event_fields) = split_message(body);
    fields.extend(event_fields);
    let micros = time_micros(head.time);
    Some(LogEvent {
        time: head.time.to_string(),
        unix: micros.div_euclid(1_000_000),
        log: log.to_string(),
        level: head.level.to_string(),
        message,
        fields,
        raw: raw.to_string(),
    })
}

/// A field name: letters, digits, `_` and `.`, not starting with a digit.
fn is_ident(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
}

/// Whether a field `ident=` starts at byte `i` of `s` (at the start or
/// after a space).
fn field_starts_at(s: &str, i: usize) -> bool {
    if i > 0 && s.as_bytes()[i - 1] != b' ' {
        return false;
    }
    // Scan only the identifier's bytes: linear over a line in total.
    let b = &s.as_bytes()[i..];
    let len = b
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.'))
        .unwrap_or(b.len());
    len > 0 && b.get(len) == Some(&b'=') && is_ident(&s[i..i + len])
}

/// The message (everything before the first field) and the fields.
fn split_message(s: &str) -> (String, Vec<(String, String)>) {
    let start = std::iter::once(0)
        .chain(s.match_indices(' ').map(|(i, _)| i + 1))
        .find(|&i| i < s.len() && field_starts_at(s, i));
    let Some(start) = start else {
        return (s.trim_end().to_string(), Vec::new());
    };
    let message = s[..start].trim_end().to_string();
    (message, parse_fields(&s[start..]))
}

/// Parses `key=value key=value ...`.
fn parse_fields(mut s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while !s.is_empty() {
        let Some(eq) = s.find('=') else {
            break;
        };
        let key = &s[..eq];
        let after = &s[eq + 1..];
        let (value, rest) = match after.as_bytes().first() {
            Some(b'"') => match quoted(after) {
                Some((v, len)) if ends_value(after, len) => (v, &after[len..]),
                _ => plain(after),
            },
            Some(b'[' | b'{' | b'(') => match bracketed(after) {
                Some(len) if ends_value(after, len) => (after[..len].to_string(), &after[len..]),
                _ => plain(after),
            },
            _ => plain(after),
        };
        out.push((key.to_string(), value));
        s = rest.trim_start_matches(' ');
    }
    out
}

/// Whether a value of `len` bytes ends where the next field (or the line)
/// starts.
fn ends_value(s: &str, len: usize) -> bool {
    len == s.len() || (s.as_bytes().get(len) == Some(&b' ') && field_or_end(s, len + 1))
}

fn field_or_end(s: &str, i: usize) -> bool {
    i >= s.len() || field_starts_at(s, i)
}

/// A plain value: up to the next ` ident=` or the end.
fn plain(s: &str) -> (String, &str) {
    let mut i = 0;
    while let Some(off) = s[i..].find(' ') {
        let sp = i + off;
        if field_starts_at(s, sp + 1) {
            return (s[..sp].to_string(), &s[sp..]);
        }
        i = sp + 1;
    }
    (s.to_string(), "")
}

/// A Rust-escaped quoted string at the start of `s`: its value and the
/// bytes it takes (quotes included).
fn quoted(s: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                '0' => out.push('\0'),
                'u' => {
                    // \u{XXXX}
                    if chars.next()?.1 != '{' {
                        return None;
                    }
                    let mut hex = String::new();
                    loop {
                        let (_, h) = chars.next()?;
                        if h == '}' {
                            break;
                        }
                        if hex.len() >= 6 {
                            return None;
                        }
                        hex.push(h);
                    }
                    let code = u32::from_str_radix(&hex, 16).ok()?;
                    out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// The length of a balanced `[...]`, `{...}` or `(...)` at the start of
/// `s`, quotes respected.
fn bracketed(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_quote {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_quote = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_quote = true,
            '[' | '{' | '(' => depth += 1,
            ']' | '}' | ')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(e: &LogEvent) -> Vec<(&str, &str)> {
        e.fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn a_default_format_line_parses() {
        let line = "2026-03-01T10:20:30.123456Z  INFO postamt_receiver::session: message queued queue_id=0192f8a4c3b17e5a from=alice@example.org size=1234 nrcpt=2 peer=192.0.2.1:4567 helo=client.example.net auth_user= tls=true quarantine=false\n";
        let e = parse_line("receiver", line).unwrap();
        assert_eq!(e.time, "2026-03-01T10:20:30.123456Z");
        assert_eq!(e.unix, 1772360430);
        assert_eq!(e.level, "INFO");
        assert_eq!(e.log, "receiver");
        assert_eq!(e.message, "message queued");
        assert_eq!(
            fields(&e),
            vec![
                ("queue_id", "0192f8a4c3b17e5a"),
                ("from", "alice@example.org"),
                ("size", "1234"),
                ("nrcpt", "2"),
                ("peer", "192.0.2.1:4567"),
                ("helo", "client.example.net"),
                ("auth_user", ""),
                ("tls", "true"),
                ("quarantine", "false"),
            ]
        );
        assert_eq!(e.raw, line.trim_end());
    }

    #[test]
    fn values_with_spaces_quotes_and_lists() {
        let line = r#"2026-03-01T10:20:30Z  WARN postamt_delivery::attempt: delivery failed queue_id=q1 to=bob@example.net reason=550 5.1.1 <bob@example.net>: user unknown status=bounced quoted="a \"b\" c=d" list=["x@y", "z w@v"] delay=3"#;
        let e = parse_line("delivery", line).unwrap();
        assert_eq!(e.level, "WARN");
        assert_eq!(e.message, "delivery failed");
        assert_eq!(
            fields(&e),
            vec![
                ("queue_id", "q1"),
                ("to", "bob@example.net"),
                ("reason", "550 5.1.1 <bob@example.net>: user unknown"),
                ("status", "bounced"),
                ("quoted", "a \"b\" c=d"),
                ("list", "[\"x@y\", \"z w@v\"]"),
                ("delay", "3"),
            ]
        );
    }

    #[test]
    fn events_without_message_or_fields_and_with_spans() {
        let e = parse_line(
            "delivery",
            "2026-03-01T10:20:30Z ERROR t::m: only a message",
        )
        .unwrap();
        assert_eq!((e.message.as_str(), e.fields.len()), ("only a message", 0));
        let e = parse_line("delivery", "2026-03-01T10:20:30Z DEBUG t::m: a=1 b=two").unwrap();
        assert_eq!(e.message, "");
        assert_eq!(fields(&e), vec![("a", "1"), ("b", "two")]);
        let e = parse_line(
            "retrieval",
            "2026-03-01T10:20:30Z  INFO conn{peer=1.2.3.4:5}: postamt_pop3::session: login user=bob",
        )
        .unwrap();
        assert_eq!(e.message, "login");
        assert_eq!(fields(&e), vec![("peer", "1.2.3.4:5"), ("user", "bob")]);
    }

    #[test]
    fn garbage_is_not_an_event() {
        for bad in [
            "",
            "hello world",
            "   at foo.rs:12",
            "2026-03-01T10:20:30Z LOUD x: y",
        ] {
            assert!(parse_line("receiver", bad).is_none(), "{bad}");
        }
        // A bad stamp still parses, with time 0.
        let e = parse_line("receiver", "20260301-garbage  INFO x: y").unwrap();
        assert_eq!(e.unix, 0);
    }

    #[test]
    fn odd_quoting_never_panics() {
        for s in [
            "2026-03-01T10:20:30Z  INFO x: m a=\"unterminated",
            "2026-03-01T10:20:30Z  INFO x: m a=[unbalanced b=1",
            "2026-03-01T10:20:30Z  INFO x: m a=\"\\u{zz}\" b=]",
            "2026-03-01T10:20:30Z  INFO x: m a=\"\\u{1F600}\" ü=ö é",
            "2026-03-01T10:20:30Z  INFO x: m =x",
        ] {
            let e = parse_line("receiver", s).unwrap();
            assert_eq!(e.raw, s);
        }
        let e = parse_line(
            "receiver",
            "2026-03-01T10:20:30Z  INFO x: m a=\"\\u{1F600}\"",
        )
        .unwrap();
        assert_eq!(fields(&e), vec![("a", "\u{1F600}")]);
    }
}
