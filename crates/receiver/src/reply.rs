//! SMTP replies: a code, an optional enhanced status code (RFC 3463, as
//! advertised by ENHANCEDSTATUSCODES, RFC 2034) and one or more text lines,
//! with the fixed texts of every reply the receiver sends.

use std::fmt;

/// One (possibly multi-line) SMTP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// The enhanced status code (`"5.1.1"`), put at the start of every line.
    pub status: Option<&'static str>,
    /// The text lines (at least one; never containing CR or LF).
    pub lines: Vec<String>,
}

impl Reply {
    /// A single-line reply with an enhanced status code.
    pub fn new(code: u16, status: &'static str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: Some(status),
            lines: vec![clean(text.into())],
        }
    }

    /// A single-line reply without an enhanced status code (220, 354, EHLO).
    pub fn plain(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: None,
            lines: vec![clean(text.into())],
        }
    }

    /// A multi-line reply without enhanced status codes (EHLO).
    pub fn multiline(code: u16, lines: Vec<String>) -> Reply {
        let mut lines: Vec<String> = lines.into_iter().map(clean).collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
        Reply {
            code,
            status: None,
            lines,
        }
    }

    /// Whether this is a permanent or transient failure (4xx/5xx).
    pub fn is_failure(&self) -> bool {
        self.code >= 400
    }

    /// Whether this reply marks a bad command (unknown, syntax, sequence,
    /// unimplemented, unsupported parameter): these count towards
    /// `limits.max_errors`.
    /// Failed or out-of-place authentication (530, 535, 538) counts too,
    /// so password guessing is bounded per connection.
    pub fn is_command_error(&self) -> bool {
        matches!(self.code, 500..=504 | 530 | 535 | 538 | 555)
    }

    /// The reply as sent on the wire, every line ending in CRLF.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.lines.iter().map(|l| l.len() + 12).sum());
        self.write_to(&mut out);
        out
    }

    /// Appends the wire form to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let head = match self.status {
                Some(status) => format!("{}{sep}{status}", self.code),
                None => format!("{}{sep}", self.code),
            };
            out.extend_from_slice(head.as_bytes());
            if self.status.is_some() && !line.is_empty() {
                out.push(b' ');
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl fmt::Display for Reply {
    /// The reply without line ends, lines joined by ` / ` (for logs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                f.write_str(" / ")?;
            }
            match self.status {
                Some(status) => write!(f, "{} {status} {line}", self.code)?,
                None => write!(f, "{} {line}", self.code)?,
            }
        }
        Ok(())
    }
}

/// Replaces control characters (CR and LF above all) so that text taken
/// from the client can never break a reply into two.
fn clean(s: String) -> String {
    if s.chars().any(char::is_control) {
        s.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    } else {
        s
    }
}

/// `220 <hostname> ESMTP Postamt`
pub fn greeting(hostname: &str) -> Reply {
    Reply::plain(220, format!("{hostname} ESMTP Postamt"))
}

/// `250 <hostname>` (HELO)
pub fn helo(hostname: &str) -> Reply {
    Reply::plain(250, hostname.to_string())
}

/// The EHLO reply: our name, then one capability per line.
pub fn ehlo(hostname: &str, capabilities: Vec<String>) -> Reply {
    let mut lines = Vec::with_capacity(capabilities.len() + 1);
    lines.push(hostname.to_string());
    lines.extend(capabilities);
    Reply::multiline(250, lines)
}

/// `250 2.0.0 Ok` (RSET, NOOP)
pub fn ok() -> Reply {
    Reply::new(250, "2.0.0", "Ok")
}

/// `250 2.1.0 Ok` (MAIL)
pub fn sender_ok() -> Reply {
    Reply::new(250, "2.1.0", "Ok")
}

/// `250 2.1.5 Ok` (RCPT)
pub fn recipient_ok() -> Reply {
    Reply::new(250, "2.1.5", "Ok")
}

/// `354` (DATA)
pub fn start_data() -> Reply {
    Reply::plain(354, "End data with <CR><LF>.<CR><LF>")
}

/// `250 2.0.0 Ok: queued as <id>`: only once the spool has the message fsynced.
pub fn queued(id: &str) -> Reply {
    Reply::new(250, "2.0.0", format!("Ok: queued as {id}"))
}

/// `250 2.0.0 <n> octets received` (a BDAT chunk that is not the last)
pub fn chunk_received(octets: u64) -> Reply {
    Reply::new(250, "2.0.0", format!("{octets} octets received"))
}

/// `221 2.0.0 Bye` (QUIT)
pub fn bye() -> Reply {
    Reply::new(221, "2.0.0", "Bye")
}

/// `252 2.5.2` (VRFY: we disclose nothing but accept mail)
pub fn vrfy() -> Reply {
    Reply::new(
        252,
        "2.5.2",
        "Cannot VRFY user, but will accept message and attempt delivery",
    )
}

/// `214 2.0.0` (HELP)
pub fn help() -> Reply {
    Reply::new(
        214,
        "2.0.0",
        "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP (RFC 5321)",
    )
}

/// `502 5.5.1` (EXPN: lists and aliases are not disclosed)
pub fn expn() -> Reply {
    Reply::new(502, "5.5.1", "EXPN not available")
}

/// `502 5.5.1` for commands we recognise but do not offer here.
pub fn not_implemented(command: &str) -> Reply {
    Reply::new(502, "5.5.1", format!("{command} not implemented"))
}

/// `500 5.5.2` unknown command
pub fn unknown_command() -> Reply {
    Reply::new(500, "5.5.2", "Syntax error, command unrecognized")
}

/// `500 5.5.2` command line over the limit
pub fn line_too_long() -> Reply {
    Reply::new(500, "5.5.2", "Line too long")
}

/// `501 5.5.2` a command line that is not UTF-8
pub fn not_utf8() -> Reply {
    Reply::new(
        501,
        "5.5.2",
        "Syntax error, command line is not valid UTF-8",
    )
}

/// `501 5.5.4` syntax error in the arguments
pub fn syntax(usage: &str) -> Reply {
    Reply::new(501, "5.5.4", format!("Syntax: {usage}"))
}

/// `501 5.5.4` an invalid parameter value
pub fn invalid_parameter(param: &str) -> Reply {
    Reply::new(501, "5.5.4", format!("Invalid {param} parameter"))
}

/// `555 5.5.4` a MAIL/RCPT parameter we do not support
pub fn unsupported_parameter(param: &str) -> Reply {
    Reply::new(
        555,
        "5.5.4",
        format!("Unsupported parameter {}", truncate(param, 64)),
    )
}

/// `501 5.1.7` bad sender address
pub fn bad_sender() -> Reply {
    Reply::new(501, "5.1.7", "Bad sender address syntax")
}

/// `501 5.1.3` bad recipient address
pub fn bad_recipient() -> Reply {
    Reply::new(501, "5.1.3", "Bad recipient address syntax")
}

/// `503 5.5.1` bad sequence of commands
pub fn bad_sequence(why: &str) -> Reply {
    Reply::new(503, "5.5.1", format!("Bad sequence of commands: {why}"))
}

/// `554 5.5.1` DATA/BDAT when every RCPT was refused
pub fn no_valid_recipients() -> Reply {
    Reply::new(554, "5.5.1", "No valid recipients")
}

/// `552 5.3.4` over `limits.max_message_size`
pub fn message_too_big() -> Reply {
    Reply::new(
        552,
        "5.3.4",
        "Message size exceeds fixed maximum message size",
    )
}

/// `553 5.6.7` a non-ASCII address without SMTPUTF8
pub fn utf8_required() -> Reply {
    Reply::new(
        553,
        "5.6.7",
        "Non-ASCII address requires the SMTPUTF8 parameter",
    )
}

/// `550 5.1.1` no such local user or alias
pub fn unknown_user(rcpt: &str) -> Reply {
    Reply::new(
        550,
        "5.1.1",
        format!(
            "<{}>: Recipient address rejected: User unknown",
            truncate(rcpt, 256)
        ),
    )
}

/// `550 5.4.6` the recipient's aliases loop or nest too deeply
pub fn alias_loop(rcpt: &str) -> Reply {
    Reply::new(
        550,
        "5.4.6",
        format!(
            "<{}>: Recipient address rejected: alias or forwarding loop",
            truncate(rcpt, 256)
        ),
    )
}

/// `550 5.7.1` a members-only list and the sender is not a member
pub fn not_list_member(list: &str) -> Reply {
    Reply::new(
        550,
        "5.7.1",
        format!("<{}>: only members may post", truncate(list, 256)),
    )
}

/// `552 5.3.4` over a mailing list's own size limit
pub fn list_message_too_big(list: &str) -> Reply {
    Reply::new(
        552,
        "5.3.4",
        format!(
            "<{}>: Message size exceeds the list's maximum message size",
            truncate(list, 256)
        ),
    )
}

/// `451 4.3.0` the directory could not be asked
pub fn lookup_failed(rcpt: &str) -> Reply {
    Reply::new(
        451,
        "4.3.0",
        format!(
            "<{}>: Temporary lookup failure, try again later",
            truncate(rcpt, 256)
        ),
    )
}

/// `554 5.7.1` a recipient outside our domains (we never relay here)
pub fn relay_denied(rcpt: &str) -> Reply {
    Reply::new(
        554,
        "5.7.1",
        format!("<{}>: Relay access denied", truncate(rcpt, 256)),
    )
}

/// `452 4.5.3` over `limits.max_recipients`
pub fn too_many_recipients() -> Reply {
    Reply::new(452, "4.5.3", "Too many recipients")
}

/// `554 5.4.6` too many `Received:` headers: a mail loop
pub fn too_many_hops() -> Reply {
    Reply::new(554, "5.4.6", "Too many hops (mail loop?)")
}

/// `550 5.7.1 <text>` the message fails the sender domain's DMARC
/// policy: `text` is the verifier's reply (`550 5.7.1 Message rejected:
/// ...`); its code and enhanced status, when present, are not repeated.
pub fn sender_rejected(text: &str) -> Reply {
    let text = text.trim();
    let text = text.strip_prefix("550").map_or(text, str::trim_start);
    let text = text.strip_prefix("5.7.1").map_or(text, str::trim_start);
    let text = if text.is_empty() {
        "Message rejected by the sender domain's policy"
    } else {
        text
    };
    Reply::new(550, "5.7.1", text)
}

/// `451 4.3.0` the spool could not store the message
pub fn queue_failed() -> Reply {
    Reply::new(
        451,
        "4.3.0",
        "Error: queue file write error, try again later",
    )
}

/// `421 4.7.0` after `limits.max_errors` bad commands
pub fn too_many_errors(hostname: &str) -> Reply {
    Reply::new(421, "4.7.0", format!("{hostname} Too many errors"))
}

/// `421 4.4.2` idle timeout
pub fn timeout(hostname: &str) -> Reply {
    Reply::new(421, "4.4.2", format!("{hostname} Timeout"))
}

/// `421 4.3.2` the server is shutting down
pub fn shutting_down(hostname: &str) -> Reply {
    Reply::new(421, "4.3.2", format!("{hostname} Service shutting down"))
}

/// `220 2.0.0` the answer to STARTTLS, before the handshake (RFC 3207)
pub fn starttls_ready() -> Reply {
    Reply::new(220, "2.0.0", "Ready to start TLS")
}

/// `334 <challenge>` an AUTH continuation (base64, possibly empty)
pub fn auth_challenge(challenge: &str) -> Reply {
    Reply::plain(334, challenge.to_string())
}

/// `235 2.7.0` AUTH succeeded
pub fn auth_ok() -> Reply {
    Reply::new(235, "2.7.0", "Authentication successful")
}

/// `535 5.7.8` AUTH failed: the same for an unknown user and a wrong password
pub fn auth_failed() -> Reply {
    Reply::new(535, "5.7.8", "Authentication credentials invalid")
}

/// `501 5.0.0` the client cancelled the AUTH exchange with `*`
pub fn auth_cancelled() -> Reply {
    Reply::new(501, "5.0.0", "Authentication cancelled")
}

/// `501 5.5.2` an AUTH response that is not valid base64
pub fn auth_bad_base64() -> Reply {
    Reply::new(501, "5.5.2", "Invalid base64 data")
}

/// `501 5.5.2` an AUTH response that does not fit the mechanism
pub fn auth_malformed() -> Reply {
    Reply::new(501, "5.5.2", "Malformed authentication data")
}

/// `504 5.5.4` a SASL mechanism we do not offer
pub fn auth_unknown_mechanism() -> Reply {
    Reply::new(504, "5.5.4", "Unrecognized authentication mechanism")
}

/// `538 5.7.11` AUTH before TLS (RFC 4954 6)
pub fn encryption_required() -> Reply {
    Reply::new(
        538,
        "5.7.11",
        "Encryption required for requested authentication mechanism",
    )
}

/// `530 5.7.0` MAIL on the submission port before AUTH
pub fn auth_required() -> Reply {
    Reply::new(530, "5.7.0", "Authentication required")
}

/// `553 5.7.1` an authenticated user sending from an address not theirs
pub fn sender_not_owned(user: &str) -> Reply {
    Reply::new(
        553,
        "5.7.1",
        format!("Sender address not owned by user {}", truncate(user, 64)),
    )
}

/// `451 4.3.0` the directory could not say who owns the sender address
pub fn sender_lookup_failed() -> Reply {
    Reply::new(
        451,
        "4.3.0",
        "Temporary lookup failure for the sender address, try again later",
    )
}

/// At most `max` characters of `s` (client text echoed in replies).
fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_rejection_keeps_one_code() {
        let r = sender_rejected("550 5.7.1 Message rejected: it fails the DMARC policy of x.net");
        assert_eq!(
            r.to_wire(),
            b"550 5.7.1 Message rejected: it fails the DMARC policy of x.net\r\n"
        );
        assert_eq!(
            sender_rejected("no code\r\nhere").to_wire(),
            b"550 5.7.1 no code??here\r\n"
        );
        assert_eq!(
            sender_rejected("550 5.7.1").to_wire(),
            b"550 5.7.1 Message rejected by the sender domain's policy\r\n"
        );
        assert!(!sender_rejected("550 x").is_command_error());
    }

    #[test]
    fn single_line_with_status() {
        assert_eq!(queued("abc").to_wire(), b"250 2.0.0 Ok: queued as abc\r\n");
        assert_eq!(
            unknown_user("x@example.org").to_wire(),
            b"550 5.1.1 <x@example.org>: Recipient address rejected: User unknown\r\n"
        );
    }

    #[test]
    fn plain_replies_have_no_status() {
        assert_eq!(
            greeting("mx.example.org").to_wire(),
            b"220 mx.example.org ESMTP Postamt\r\n"
        );
        assert_eq!(
            start_data().to_wire(),
            b"354 End data with <CR><LF>.<CR><LF>\r\n"
        );
    }

    #[test]
    fn multiline_uses_dashes_except_last() {
        let r = ehlo("mx", vec!["PIPELINING".into(), "CHUNKING".into()]);
        assert_eq!(r.to_wire(), b"250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
    }

    #[test]
    fn client_text_cannot_inject_lines() {
        let r = relay_denied("a\r\n250 ok@x");
        let wire = r.to_wire();
        assert_eq!(wire.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(wire.ends_with(b"\r\n"));
    }

    #[test]
    fn command_errors_are_classified() {
        assert!(unknown_command().is_command_error());
        assert!(bad_sequence("x").is_command_error());
        assert!(unsupported_parameter("X").is_command_error());
        assert!(!unknown_user("x").is_command_error());
        assert!(!message_too_big().is_command_error());
        assert!(!ok().is_command_error());
        assert!(auth_failed().is_command_error());
        assert!(encryption_required().is_command_error());
        assert!(auth_required().is_command_error());
        assert!(auth_unknown_mechanism().is_command_error());
        assert!(!auth_ok().is_command_error());
        assert!(!sender_not_owned("a").is_command_error());
    }

    #[test]
    fn auth_replies_on_the_wire() {
        assert_eq!(auth_challenge("").to_wire(), b"334 \r\n");
        assert_eq!(
            auth_challenge("VXNlcm5hbWU6").to_wire(),
            b"334 VXNlcm5hbWU6\r\n"
        );
        assert_eq!(
            auth_ok().to_wire(),
            b"235 2.7.0 Authentication successful\r\n"
        );
        assert_eq!(
            encryption_required().to_wire(),
            b"538 5.7.11 Encryption required for requested authentication mechanism\r\n"
        );
        assert_eq!(
            starttls_ready().to_wire(),
            b"220 2.0.0 Ready to start TLS\r\n"
        );
    }

    #[test]
    fn long_client_text_is_truncated() {
        let long = "a".repeat(10_000);
        assert!(relay_denied(&long).to_wire().len() < 400);
    }
}
