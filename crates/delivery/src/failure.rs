//! A failed delivery to one destination: temporary or permanent, with its
//! RFC 3463 enhanced status code and a one-line text. Its `line()` form
//! (`"4.2.0 text"`) is what `Recipient::last_error` stores, so a bounce built
//! later (after a crash) can still recover the status code.

/// Whether a failure is worth retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Retried on the schedule; permanent once the message is too old.
    Temporary,
    /// Bounced at once.
    Permanent,
}

/// Longest failure text kept (logs, queue listing, bounces).
pub const MAX_TEXT: usize = 400;

/// One destination's failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub severity: Severity,
    /// Enhanced status code, `class.subject.detail` (e.g. `5.1.1`).
    pub status: String,
    /// Human-readable reason (one line, bounded).
    pub text: String,
    /// A local delivery failure (store or directory), as opposed to a
    /// remote one: decides the postmaster copy of the bounce.
    pub local: bool,
}

impl Failure {
    pub fn temporary(status: &str, text: &str, local: bool) -> Failure {
        Failure::new(Severity::Temporary, status, text, local)
    }

    pub fn permanent(status: &str, text: &str, local: bool) -> Failure {
        Failure::new(Severity::Permanent, status, text, local)
    }

    fn new(severity: Severity, status: &str, text: &str, local: bool) -> Failure {
        Failure {
            severity,
            status: status.to_string(),
            text: clean_text(text),
            local,
        }
    }

    pub fn is_permanent(&self) -> bool {
        self.severity == Severity::Permanent
    }

    /// `"<status> <text>"`, the form stored in `Recipient::last_error`.
    pub fn line(&self) -> String {
        format!("{} {}", self.status, self.text)
    }
}

/// Makes `s` one printable line of at most `MAX_TEXT` characters: control
/// characters (CR, LF, TAB...) become spaces, runs of spaces collapse.
pub fn clean_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_TEXT));
    let mut count = 0;
    let mut last_space = false;
    for c in s.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if c == ' ' && last_space {
            continue;
        }
        if count == MAX_TEXT {
            break;
        }
        last_space = c == ' ';
        out.push(c);
        count += 1;
    }
    out.trim().to_string()
}

/// Whether `s` is an enhanced status code: class 2, 4 or 5, then subject and
/// detail of 1-3 digits each.
pub fn is_status_code(s: &str) -> bool {
    let mut parts = s.split('.');
    let (Some(class), Some(subject), Some(detail), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits = |p: &str| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit());
    matches!(class, "2" | "4" | "5") && digits(subject) && digits(detail)
}

/// The status code a stored `last_error` line starts with, if any.
pub fn status_of(line: &str) -> Option<&str> {
    let first = line.split_whitespace().next()?;
    is_status_code(first).then_some(first)
}

/// The remote server's part of a stored failure line written by remote
/// delivery (`"5.1.1 mx.example.net said: 550 5.1.1 no such user (in reply
/// to RCPT TO)"`): the host and the reply (`"550 5.1.1 no such user"`).
pub fn remote_reply(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix(status_of(line)?)?.trim_start();
    let (host, reply) = rest.split_once(" said: ")?;
    if host.is_empty() || host.contains(' ') {
        return None;
    }
    if !reply.bytes().take(3).all(|b| b.is_ascii_digit()) || reply.len() < 3 {
        return None;
    }
    let reply = match reply.rfind(" (in reply to ") {
        Some(i) => &reply[..i],
        None => reply,
    };
    Some((host, reply.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_joins_status_and_text() {
        let f = Failure::permanent("5.1.1", "no such user", true);
        assert_eq!(f.line(), "5.1.1 no such user");
        assert!(f.is_permanent());
        assert!(!Failure::temporary("4.2.0", "x", true).is_permanent());
    }

    #[test]
    fn text_is_one_bounded_line() {
        let f = Failure::temporary("4.2.0", "a\r\nb\tc   d", true);
        assert_eq!(f.text, "a b c d");
        let long = "x".repeat(5000);
        assert_eq!(clean_text(&long).chars().count(), MAX_TEXT);
    }

    #[test]
    fn status_codes_are_recognised() {
        assert!(is_status_code("5.1.1"));
        assert!(is_status_code("4.4.0"));
        assert!(is_status_code("2.0.0"));
        assert!(is_status_code("5.123.999"));
        assert!(!is_status_code("3.1.1"));
        assert!(!is_status_code("5.1"));
        assert!(!is_status_code("5.1.1.1"));
        assert!(!is_status_code("5.a.1"));
        assert!(!is_status_code("5.1234.1"));
        assert_eq!(status_of("5.2.1 mailbox unavailable"), Some("5.2.1"));
        assert_eq!(status_of("mailbox unavailable"), None);
        assert_eq!(status_of(""), None);
    }

    #[test]
    fn remote_replies_are_read_back() {
        assert_eq!(
            remote_reply("5.1.1 mx.example.net said: 550 5.1.1 no such user (in reply to RCPT TO)"),
            Some(("mx.example.net", "550 5.1.1 no such user"))
        );
        assert_eq!(
            remote_reply("4.0.0 mx said: 451 try later"),
            Some(("mx", "451 try later"))
        );
        assert_eq!(remote_reply("5.1.1 no such user"), None);
        assert_eq!(
            remote_reply("5.4.7 delivery time expired; last error: 4.4.1 mx said: 451 x"),
            None
        );
        assert_eq!(remote_reply("4.4.1 mx said: soon"), None);
    }
}
