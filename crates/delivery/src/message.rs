//! Raw message helpers for the mail the agent writes or rewrites itself:
//! splitting the header section into fields (byte-exact, folded lines kept),
//! reading a field's unfolded value, rebuilding a message with fields
//! removed and added, RFC 2047 encoding of a header text, and the common
//! frame (Date, Message-ID, MIME) of a short text/plain message.
//! Pure functions, no I/O.

/// The most header fields looked at; the rest of an absurd header section
/// is treated as body.
pub const MAX_FIELDS: usize = 1000;

/// One header field: its name and the raw bytes of the whole field (name,
/// colon, value and folded continuation lines, with their line ends).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a str,
    pub raw: &'a [u8],
}

impl Field<'_> {
    /// The unfolded value, trimmed (lossy UTF-8).
    pub fn value(&self) -> String {
        let text = String::from_utf8_lossy(self.raw);
        let after = text.split_once(':').map_or("", |(_, v)| v);
        let unfolded: String = after.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        unfolded.trim().to_string()
    }
}

/// A message split into its header fields and its body (the bytes after
/// the blank line, or nothing when there is none).
pub struct Parsed<'a> {
    pub fields: Vec<Field<'a>>,
    pub body: &'a [u8],
}

/// Splits `data` into header fields and body. Lines that are neither a
/// field nor a continuation (no colon) end the header section.
pub fn split(data: &[u8]) -> Parsed<'_> {
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut pos = 0;
    // (start, name end) of the field being read.
    let mut current: Option<(usize, usize)> = None;
    fn close<'d>(
        data: &'d [u8],
        fields: &mut Vec<Field<'d>>,
        cur: Option<(usize, usize)>,
        end: usize,
    ) {
        if let Some((start, name_end)) = cur
            && let Some(Ok(name)) = data.get(start..name_end).map(std::str::from_utf8)
            && let Some(raw) = data.get(start..end)
        {
            fields.push(Field {
                name: name.trim_end(),
                raw,
            });
        }
    }
    while pos < data.len() {
        let line_end = data[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |i| pos + i + 1);
        let line = &data[pos..line_end];
        let content = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if content.is_empty() {
            close(data, &mut fields, current.take(), pos);
            return Parsed {
                fields,
                body: &data[line_end..],
            };
        }
        if (content[0] == b' ' || content[0] == b'\t') && current.is_some() {
            pos = line_end;
            continue;
        }
        close(data, &mut fields, current.take(), pos);
        match content.iter().position(|&b| b == b':') {
            Some(colon) if colon > 0 && fields.len() < MAX_FIELDS => {
                current = Some((pos, pos + colon));
            }
            _ => {
                return Parsed {
                    fields,
                    body: &data[pos..],
                };
            }
        }
        pos = line_end;
    }
    close(data, &mut fields, current.take(), pos);
    Parsed {
        fields,
        body: &data[data.len()..],
    }
}

impl<'a> Parsed<'a> {
    /// The first field called `name` (any case).
    pub fn field(&self, name: &str) -> Option<&Field<'a>> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The unfolded value of the first field called `name`.
    pub fn value(&self, name: &str) -> Option<String> {
        self.field(name).map(Field::value)
    }

    /// Whether a field called `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.field(name).is_some()
    }
}

/// Rebuilds `data` with `added` fields (complete lines, CRLF-terminated)
/// first, then the original fields except those `drop` names (any case),
/// then the body unchanged.
pub fn rewrite(data: &[u8], drop: &[&str], added: &[String]) -> Vec<u8> {
    let parsed = split(data);
    let mut out = Vec::with_capacity(data.len() + added.iter().map(String::len).sum::<usize>());
    for a in added {
        out.extend_from_slice(a.as_bytes());
    }
    for f in &parsed.fields {
        if drop.iter().any(|d| d.eq_ignore_ascii_case(f.name)) {
            continue;
        }
        out.extend_from_slice(f.raw);
        if !f.raw.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(parsed.body);
    out
}

/// A header text as it may appear in a field: unchanged when printable
/// ASCII, else RFC 2047 encoded words (UTF-8, Q encoding), each short
/// enough for a header line.
pub fn encode_text(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.is_ascii() && !clean.contains("=?") {
        return clean;
    }
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in clean.chars() {
        let mut piece = String::new();
        if c.is_ascii_alphanumeric() {
            piece.push(c);
        } else if c == ' ' {
            piece.push('_');
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                piece.push_str(&format!("={b:02X}"));
            }
        }
        if word.len() + piece.len() > 60 {
            words.push(format!("=?UTF-8?Q?{word}?="));
            word.clear();
        }
        word.push_str(&piece);
    }
    if !word.is_empty() {
        words.push(format!("=?UTF-8?Q?{word}?="));
    }
    words.join("\r\n ")
}

/// The frame of a short message the agent writes (auto-replies, list
/// answers): the given header lines, then Date, Message-ID, MIME headers
/// and the text/plain UTF-8 body with CRLF line ends (lines longer than
/// 900 bytes broken, so no line exceeds the SMTP limit).
pub fn text_message(headers: &[String], date: &str, message_id: &str, body: &str) -> Vec<u8> {
    let mut out = String::new();
    for h in headers {
        out.push_str(h);
    }
    out.push_str(&format!("Date: {date}\r\n"));
    out.push_str(&format!("Message-ID: <{message_id}>\r\n"));
    out.push_str("MIME-Version: 1.0\r\n");
    out.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    let enc = if body.is_ascii() { "7bit" } else { "8bit" };
    out.push_str(&format!("Content-Transfer-Encoding: {enc}\r\n\r\n"));
    for line in body.lines() {
        let mut rest = line;
        while rest.len() > 900 {
            let mut cut = 900;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push_str(&rest[..cut]);
            out.push_str("\r\n");
            rest = &rest[cut..];
        }
        out.push_str(rest);
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// The addresses of the `To:` and `Cc:` fields, lowercased.
pub fn direct_recipients(data: &[u8]) -> Vec<String> {
    let Some(m) = mail_parser::MessageParser::new().parse_headers(data) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for a in [m.to(), m.cc()].into_iter().flatten() {
        for addr in a.iter() {
            if let Some(x) = addr.address() {
                out.push(x.to_ascii_lowercase());
            }
        }
    }
    out
}

/// The decoded subject, if any.
pub fn subject(data: &[u8]) -> Option<String> {
    mail_parser::MessageParser::new()
        .parse_headers(data)
        .and_then(|m| m.subject().map(str::to_string))
}

/// The first text part of the body, decoded, at most `limit` bytes.
pub fn body_text(data: &[u8], limit: usize) -> String {
    let Some(m) = mail_parser::MessageParser::new().parse(data) else {
        return String::new();
    };
    let mut text = m.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
    if text.len() > limit {
        let mut cut = limit;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// The Message-ID of the message, with its angle brackets, if it has one.
pub fn message_id(parsed: &Parsed<'_>) -> Option<String> {
    let v = parsed.value("message-id")?;
    let start = v.find('<')?;
    let end = v[start..].find('>')? + start;
    let id = &v[start..=end];
    (id.len() > 2 && id.len() <= 998 && !id.contains(char::is_whitespace)).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: a@x.org\r\nSubject: Hello\r\n  world\r\nTo: b@y.org, C <c@z.org>\r\nCc: d@w.org\r\nMessage-ID: <abc@x.org>\r\n\r\nBody line\r\n";

    #[test]
    fn split_keeps_folded_fields_and_the_body() {
        let p = split(MSG);
        let names: Vec<&str> = p.fields.iter().map(|f| f.name).collect();
        assert_eq!(names, ["From", "Subject", "To", "Cc", "Message-ID"]);
        assert_eq!(p.value("subject").as_deref(), Some("Hello  world"));
        assert_eq!(p.body, b"Body line\r\n");
        assert_eq!(message_id(&p).as_deref(), Some("<abc@x.org>"));
    }

    #[test]
    fn split_handles_bare_lf_and_no_body() {
        let p = split(b"A: 1\nB: 2\n");
        assert_eq!(p.fields.len(), 2);
        assert!(p.body.is_empty());
        assert_eq!(p.value("b").as_deref(), Some("2"));
    }

    #[test]
    fn rewrite_drops_adds_and_keeps_the_body() {
        let out = rewrite(MSG, &["subject", "CC"], &["X-New: 1\r\n".into()]);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("X-New: 1\r\nFrom: a@x.org\r\nTo:"),
            "{text}"
        );
        assert!(!text.contains("Subject"));
        assert!(!text.contains("Cc:"));
        assert!(text.ends_with("\r\n\r\nBody line\r\n"), "{text}");
    }

    #[test]
    fn encode_text_leaves_ascii_and_encodes_the_rest() {
        assert_eq!(encode_text("Out of office"), "Out of office");
        let e = encode_text("Büro zu");
        assert_eq!(e, "=?UTF-8?Q?B=C3=BCro_zu?=");
        assert!(encode_text(&"é".repeat(100)).contains("\r\n "));
    }

    #[test]
    fn direct_recipients_are_to_and_cc() {
        assert_eq!(direct_recipients(MSG), ["b@y.org", "c@z.org", "d@w.org"]);
    }

    #[test]
    fn text_message_has_the_frame_and_crlf() {
        let m = text_message(&["To: x@y\r\n".into()], "D", "id@h", "a\nb");
        let t = String::from_utf8(m).unwrap();
        assert!(t.contains("Message-ID: <id@h>\r\n"));
        assert!(t.contains("Content-Type: text/plain; charset=utf-8\r\n"));
        assert!(t.ends_with("\r\n\r\na\r\nb\r\n"), "{t}");
        let long = String::from_utf8(text_message(&[], "D", "i", &"x".repeat(2000))).unwrap();
        assert!(long.lines().all(|l| l.len() <= 900));
    }
}
