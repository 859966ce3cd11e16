//! The quarantine mark: the header field the receiver adds to a message
//! that fails DMARC under a `p=quarantine` policy (with `dmarc = "honor"`),
//! and its test at delivery, which files such a message as junk. The
//! receiver removes the field from every incoming message first, on the MX
//! and the submission ports, so a mark on a queued message is always ours.

/// The mark's field name.
pub const QUARANTINE_FIELD: &str = "X-Postamt-Quarantine";

/// Longest header section searched for the mark (the receiver puts it
/// near the top, above the message's own header).
const MAX_HEADER_SCAN: usize = 256 * 1024;

/// Whether `message`'s header section carries the quarantine mark (a
/// field of that name at the start of a line, before the first empty
/// line).
pub fn is_quarantined(message: &[u8]) -> bool {
    let header = &message[..message.len().min(MAX_HEADER_SCAN)];
    let name = QUARANTINE_FIELD.as_bytes();
    for line in header.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return false;
        }
        if line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
            && line[name.len()..].trim_ascii_start().starts_with(b":")
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_mark_in_the_header_only() {
        assert!(is_quarantined(
            b"Received: x\r\nX-Postamt-Quarantine: dmarc (a.example policy quarantine)\r\nFrom: a\r\n\r\nbody"
        ));
        assert!(is_quarantined(b"x-postamt-quarantine : y\n\nb"));
        assert!(!is_quarantined(
            b"From: a\r\nSubject: X-Postamt-Quarantine: no\r\n\r\nX-Postamt-Quarantine: body\r\n"
        ));
        assert!(!is_quarantined(
            b"X-Postamt-Quarantined: other field\r\n\r\n"
        ));
        assert!(!is_quarantined(b"From: a\r\n\r\n"));
        assert!(!is_quarantined(b""));
    }
}
