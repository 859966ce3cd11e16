//! The text SEARCH compares: header fields with RFC 2047 words decoded
//! (from the envelope when it holds the field, else from the header
//! bytes), and the decoded text of the body's text parts (transfer
//! encoding and charset undone), all lowercased for case-insensitive
//! substring matching.

use crate::fetch::decode::{Cte, to_text, transfer_decode};
use crate::fetch::headers::{decode_value, fields};
use crate::fetch::section::{body_span, header_span};
use crate::limits::MAX_MIME_DEPTH;
use postamt_store::{Address, BodyPart, Envelope, PartKind};

/// Folds case for case-insensitive comparison: Unicode lowercase, with
/// `ß` folded to `ss` as full case folding does (so `STRASSE` finds
/// `Straße`).
pub fn fold(text: &str) -> String {
    let lower = text.to_lowercase();
    if lower.contains('ß') {
        lower.replace('ß', "ss")
    } else {
        lower
    }
}

/// An address list as text: `Name <mailbox@host>, ...` (names decoded),
/// groups as `group: ...;`.
pub fn addresses(list: &[Address]) -> String {
    let mut out = String::new();
    for a in list {
        let name = a.name.as_deref().map(decode_value).unwrap_or_default();
        match (&a.mailbox, &a.host) {
            (Some(group), None) => {
                out.push_str(&String::from_utf8_lossy(group));
                out.push_str(": ");
                continue;
            }
            (None, None) => {
                out.push_str("; ");
                continue;
            }
            _ => {}
        }
        let mailbox = a
            .mailbox
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let host = a
            .host
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        if !name.is_empty() {
            out.push_str(&name);
            out.push(' ');
        }
        out.push('<');
        out.push_str(&mailbox);
        out.push('@');
        out.push_str(&host);
        out.push_str(">, ");
    }
    out
}

/// What the envelope says about a header field, when it can answer for
/// it: `Some(None)` = the message has no such field, `Some(Some(text))` =
/// its decoded text; `None` = the envelope cannot tell (read the header).
pub fn from_envelope(env: &Envelope, field: &[u8]) -> Option<Option<String>> {
    let list = |l: &[Address]| (!l.is_empty()).then(|| addresses(l));
    let raw = |v: &Option<Vec<u8>>| v.as_deref().map(decode_value);
    let f = |name: &str| field.eq_ignore_ascii_case(name.as_bytes());
    if f("subject") {
        Some(raw(&env.subject))
    } else if f("from") {
        Some(list(&env.from))
    } else if f("to") {
        Some(list(&env.to))
    } else if f("cc") {
        Some(list(&env.cc))
    } else if f("bcc") {
        Some(list(&env.bcc))
    } else if f("message-id") {
        Some(raw(&env.message_id))
    } else if f("in-reply-to") {
        Some(raw(&env.in_reply_to))
    } else if f("date") {
        Some(raw(&env.date))
    } else {
        // Sender and Reply-To default to From in the envelope: it cannot
        // tell whether the header exists.
        None
    }
}

/// The decoded values of every `name` field of a header block.
pub fn header_values(header: &[u8], name: &[u8]) -> Vec<String> {
    fields(header)
        .into_iter()
        .filter(|f| f.name.eq_ignore_ascii_case(name))
        .map(|f| decode_value(f.value))
        .collect()
}

/// A whole header block as decoded text, one `Name: value` per line.
pub fn header_text(header: &[u8]) -> String {
    let mut out = String::new();
    for f in fields(header) {
        out.push_str(&String::from_utf8_lossy(f.name));
        out.push_str(": ");
        out.push_str(&decode_value(f.value));
        out.push('\n');
    }
    out
}

/// The decoded text of the body of the message whose top-level part is
/// `root`: text parts decoded, encapsulated messages' headers and bodies
/// included, other leaves (images, applications) skipped.
pub fn body_text(root: &BodyPart, data: &[u8]) -> String {
    let mut out = String::new();
    // Explicit stack: (part, depth). The depth bound keeps a hostile tree
    // from costing more than MAX_MIME_DEPTH levels of work per branch.
    let mut stack: Vec<(&BodyPart, usize)> = vec![(root, 0)];
    while let Some((part, depth)) = stack.pop() {
        match &part.kind {
            PartKind::Multipart { parts } => {
                if depth < MAX_MIME_DEPTH {
                    stack.extend(parts.iter().rev().map(|p| (p, depth + 1)));
                }
            }
            PartKind::Message { body, .. } => {
                if depth < MAX_MIME_DEPTH {
                    out.push_str(&header_text(header_span(body).slice(data)));
                    stack.push((body, depth + 1));
                }
            }
            PartKind::Single => {
                if is_text(part) {
                    let raw = body_span(part).slice(data);
                    // An unknown encoding is searched as written.
                    let decoded = transfer_decode(raw, Cte::parse(&part.encoding))
                        .unwrap_or_else(|| raw.to_vec());
                    let charset = part
                        .params
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(b"charset"))
                        .map(|(_, v)| v.as_slice());
                    out.push_str(&to_text(&decoded, charset));
                    out.push('\n');
                }
            }
        }
    }
    out
}

fn is_text(part: &BodyPart) -> bool {
    part.media_type.is_empty() || part.media_type.eq_ignore_ascii_case(b"text")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(name: Option<&str>, mailbox: &str, host: &str) -> Address {
        Address {
            name: name.map(|n| n.as_bytes().to_vec()),
            adl: None,
            mailbox: Some(mailbox.as_bytes().to_vec()),
            host: Some(host.as_bytes().to_vec()),
        }
    }

    #[test]
    fn folding() {
        assert_eq!(fold("GRÜSSE"), fold("grüße"));
        assert_eq!(fold("ÉCOLE"), "école");
    }

    #[test]
    fn address_lists_decode_names() {
        let list = vec![
            addr(Some("=?UTF-8?Q?J=C3=BCrg?="), "juerg", "example.ch"),
            addr(None, "bob", "example.org"),
        ];
        let text = addresses(&list);
        assert!(text.contains("Jürg <juerg@example.ch>"), "{text}");
        assert!(text.contains("<bob@example.org>"), "{text}");
    }

    #[test]
    fn envelope_answers_only_for_its_fields() {
        let env = Envelope {
            subject: Some(b"=?UTF-8?B?R3LDvMOfZQ==?=".to_vec()),
            ..Envelope::default()
        };
        assert_eq!(
            from_envelope(&env, b"SUBJECT"),
            Some(Some("Grüße".to_owned()))
        );
        assert_eq!(from_envelope(&env, b"to"), Some(None));
        assert_eq!(from_envelope(&env, b"reply-to"), None);
        assert_eq!(from_envelope(&env, b"x-spam"), None);
    }

    #[test]
    fn header_values_by_name() {
        let h = b"X-A: one\r\nx-a: =?UTF-8?Q?tw=C3=B6?=\r\nX-B: three\r\n\r\n";
        assert_eq!(
            header_values(h, b"X-A"),
            vec!["one".to_owned(), "twö".to_owned()]
        );
        assert!(header_text(h).contains("X-B: three"));
    }
}
