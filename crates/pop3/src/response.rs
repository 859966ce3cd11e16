//! Server replies: status lines, multi-line lists and message bodies, and
//! their wire encoding (message bodies are streamed by the connection through
//! [`crate::dot_stuff::DotStuffed`]).

/// One reply to one command (or the greeting).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK text`
    Ok(String),
    /// `-ERR text`
    Err(String),
    /// `+ text`: a SASL continuation request.
    Continue(String),
    /// `+OK status`, then each line (dot-stuffed), then `.`.
    Lines { status: String, lines: Vec<String> },
    /// `+OK status`, then `data[..end]` dot-stuffed, then `.` (RETR, TOP).
    Message {
        status: String,
        data: Vec<u8>,
        end: usize,
    },
}

impl Reply {
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply::Ok(text.into())
    }
    pub fn err(text: impl Into<String>) -> Reply {
        Reply::Err(text.into())
    }
    /// True for `-ERR` replies.
    pub fn is_err(&self) -> bool {
        matches!(self, Reply::Err(_))
    }

    /// The first line, CRLF included.
    pub fn status_line(&self) -> Vec<u8> {
        let (prefix, text) = match self {
            Reply::Ok(t) => ("+OK", t.as_str()),
            Reply::Err(t) => ("-ERR", t.as_str()),
            Reply::Continue(t) => ("+", t.as_str()),
            Reply::Lines { status, .. } | Reply::Message { status, .. } => ("+OK", status.as_str()),
        };
        let mut out = Vec::with_capacity(prefix.len() + text.len() + 3);
        out.extend_from_slice(prefix.as_bytes());
        // `+ ` keeps its space even with an empty challenge (RFC 5034).
        if !text.is_empty() || matches!(self, Reply::Continue(_)) {
            out.push(b' ');
            out.extend_from_slice(text.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    /// The whole reply in one buffer, except a message body's data, which
    /// [`Reply::body`] gives separately so it can be streamed.
    pub fn head_bytes(&self) -> Vec<u8> {
        let mut out = self.status_line();
        if let Reply::Lines { lines, .. } = self {
            for line in lines {
                if line.starts_with('.') {
                    out.push(b'.');
                }
                out.extend_from_slice(line.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b".\r\n");
        }
        out
    }

    /// The message data to dot-stuff after the head, for `Message` replies.
    pub fn body(&self) -> Option<&[u8]> {
        match self {
            Reply::Message { data, end, .. } => Some(&data[..(*end).min(data.len())]),
            _ => None,
        }
    }

    /// The complete wire form (tests and small replies).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.head_bytes();
        if let Some(body) = self.body() {
            out.extend_from_slice(&crate::dot_stuff::dot_stuff_to_vec(body));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(Reply::ok("ready").to_bytes(), b"+OK ready\r\n");
        assert_eq!(Reply::ok("").to_bytes(), b"+OK\r\n");
        assert_eq!(
            Reply::err("no such message").to_bytes(),
            b"-ERR no such message\r\n"
        );
        assert_eq!(Reply::Continue(String::new()).to_bytes(), b"+ \r\n");
    }

    #[test]
    fn lines_are_terminated_and_stuffed() {
        let r = Reply::Lines {
            status: "2 messages".into(),
            lines: vec!["1 10".into(), ".odd".into()],
        };
        assert_eq!(r.to_bytes(), b"+OK 2 messages\r\n1 10\r\n..odd\r\n.\r\n");
        let empty = Reply::Lines {
            status: "0 messages".into(),
            lines: vec![],
        };
        assert_eq!(empty.to_bytes(), b"+OK 0 messages\r\n.\r\n");
    }

    #[test]
    fn message_body_is_cut_and_stuffed() {
        let r = Reply::Message {
            status: "message follows".into(),
            data: b"A: 1\r\n\r\n.x\r\nrest\r\n".to_vec(),
            end: 12,
        };
        assert_eq!(r.body(), Some(&b"A: 1\r\n\r\n.x\r\n"[..]));
        assert_eq!(
            r.to_bytes(),
            b"+OK message follows\r\nA: 1\r\n\r\n..x\r\n.\r\n"
        );
        assert_eq!(r.head_bytes(), b"+OK message follows\r\n");
    }
}
