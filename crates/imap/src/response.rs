//! Building server responses (pure): status lines with response codes,
//! strings quoted or sent as literals, flag lists, and FETCH data encoded
//! by imap-codec's `ResponseCodec` (which writes literals for message
//! bodies).

use imap_codec::ResponseCodec;
use imap_codec::encode::Encoder;
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::fetch::MessageDataItem;
use imap_codec::imap_types::response::{Data, Response};
use postamt_store::Flags;
use std::fmt::Write;
use std::num::NonZeroU32;

/// Status of a tagged or untagged status response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
        }
    }
}

/// `tag STATUS [code] text\r\n`; `text` is cleaned of CR/LF.
pub fn tagged(tag: &str, status: Status, code: Option<&str>, text: &str) -> Vec<u8> {
    let mut s = String::with_capacity(tag.len() + text.len() + 16);
    s.push_str(tag);
    s.push(' ');
    s.push_str(status.as_str());
    push_code_text(&mut s, code, text);
    s.into_bytes()
}

/// `* STATUS [code] text\r\n`.
pub fn untagged_status(status: Status, code: Option<&str>, text: &str) -> Vec<u8> {
    let mut s = String::from("* ");
    s.push_str(status.as_str());
    push_code_text(&mut s, code, text);
    s.into_bytes()
}

/// `* BYE text\r\n`.
pub fn bye(text: &str) -> Vec<u8> {
    bye_with(None, text)
}

/// `* BYE [code] text\r\n`.
pub fn bye_with(code: Option<&str>, text: &str) -> Vec<u8> {
    let mut s = String::from("* BYE");
    push_code_text(&mut s, code, text);
    s.into_bytes()
}

/// `* data\r\n`.
pub fn untagged(data: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 4);
    v.extend_from_slice(b"* ");
    v.extend_from_slice(data.as_bytes());
    v.extend_from_slice(b"\r\n");
    v
}

/// `+ text\r\n`.
pub fn continuation(text: &str) -> Vec<u8> {
    format!("+ {}\r\n", clean(text)).into_bytes()
}

fn push_code_text(s: &mut String, code: Option<&str>, text: &str) {
    if let Some(code) = code {
        s.push_str(" [");
        s.push_str(&clean(code));
        s.push(']');
    }
    s.push(' ');
    let text = clean(text);
    // Text must not be empty (and must not start with `[` without a code).
    if text.is_empty() || (code.is_none() && text.starts_with('[')) {
        s.push_str("done");
    }
    s.push_str(&text);
    s.push_str("\r\n");
}

fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

/// An IMAP string: quoted when the bytes allow it (`utf8`: 8-bit UTF-8
/// allowed in quoted strings, RFC 6855), else a literal.
pub fn string(bytes: &[u8], utf8: bool) -> Vec<u8> {
    let quotable = bytes.len() <= 1024
        && bytes
            .iter()
            .all(|&b| (0x20..0x7f).contains(&b) || (utf8 && b >= 0x80))
        && (!utf8 || std::str::from_utf8(bytes).is_ok());
    if quotable {
        let mut v = Vec::with_capacity(bytes.len() + 2);
        v.push(b'"');
        for &b in bytes {
            if b == b'"' || b == b'\\' {
                v.push(b'\\');
            }
            v.push(b);
        }
        v.push(b'"');
        v
    } else {
        let mut v = format!("{{{}}}\r\n", bytes.len()).into_bytes();
        v.extend_from_slice(bytes);
        v
    }
}

/// A mailbox name for LIST/STATUS responses: modified UTF-7 (or raw UTF-8
/// with UTF8=ACCEPT), as a string.
pub fn mailbox(name: &str, utf8: bool) -> Vec<u8> {
    string(crate::names::encode(name, utf8).as_bytes(), utf8)
}

/// `(\Seen \Flagged kw ...)`, with `\Recent` when `recent`.
pub fn flag_list(flags: &Flags, recent: bool) -> String {
    let mut s = String::from("(");
    let mut first = true;
    let mut add = |f: &str| {
        if !first {
            s.push(' ');
        }
        first = false;
        s.push_str(f);
    };
    if flags.seen {
        add("\\Seen");
    }
    if flags.answered {
        add("\\Answered");
    }
    if flags.flagged {
        add("\\Flagged");
    }
    if flags.deleted {
        add("\\Deleted");
    }
    if flags.draft {
        add("\\Draft");
    }
    if recent {
        add("\\Recent");
    }
    for k in &flags.keywords {
        add(k);
    }
    s.push(')');
    s
}

/// `* seq FETCH (FLAGS (...) [UID n] [MODSEQ (m)])` for flag changes.
pub fn fetch_flags(
    seq: u32,
    flags: &Flags,
    recent: bool,
    uid: Option<u32>,
    modseq: Option<u64>,
) -> Vec<u8> {
    let mut s = format!("{seq} FETCH (");
    if let Some(uid) = uid {
        let _ = write!(s, "UID {uid} ");
    }
    s.push_str("FLAGS ");
    s.push_str(&flag_list(flags, recent));
    if let Some(m) = modseq {
        let _ = write!(s, " MODSEQ ({m})");
    }
    s.push(')');
    untagged(&s)
}

/// `* seq FETCH (items)` encoded by imap-codec; `None` when `seq` is 0 or
/// there are no items.
pub fn fetch_data(seq: u32, items: Vec<MessageDataItem<'static>>) -> Option<Vec<u8>> {
    let seq = NonZeroU32::new(seq)?;
    let items = Vec1::try_from(items).ok()?;
    let resp = Response::Data(Data::Fetch { seq, items });
    Some(ResponseCodec::default().encode(&resp).dump())
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::imap_types::core::NString;

    #[test]
    fn status_lines() {
        assert_eq!(
            tagged("a1", Status::Ok, Some("READ-WRITE"), "SELECT completed"),
            b"a1 OK [READ-WRITE] SELECT completed\r\n"
        );
        assert_eq!(
            tagged("a2", Status::Bad, None, "oops\r\nX"),
            b"a2 BAD oops  X\r\n"
        );
        assert_eq!(tagged("a3", Status::No, None, ""), b"a3 NO done\r\n");
        assert_eq!(
            untagged_status(Status::Ok, Some("UIDNEXT 5"), "x"),
            b"* OK [UIDNEXT 5] x\r\n"
        );
        assert_eq!(bye("Logging out"), b"* BYE Logging out\r\n");
        assert_eq!(bye_with(Some("TOOBIG"), "big"), b"* BYE [TOOBIG] big\r\n");
        assert_eq!(continuation("go"), b"+ go\r\n");
    }

    #[test]
    fn strings_quote_or_literal() {
        assert_eq!(string(b"Sent", false), b"\"Sent\"");
        assert_eq!(string(b"a\"b\\c", false), b"\"a\\\"b\\\\c\"");
        assert_eq!(string(b"line\r\nbreak", false), b"{11}\r\nline\r\nbreak");
        assert_eq!(
            string("Entwürfe".as_bytes(), false),
            "{9}\r\nEntwürfe".as_bytes()
        );
        assert_eq!(
            string("Entwürfe".as_bytes(), true),
            "\"Entwürfe\"".as_bytes()
        );
        assert_eq!(mailbox("Entwürfe", false), b"\"Entw&APw-rfe\"");
    }

    #[test]
    fn flags_render_in_a_stable_order() {
        let mut f = Flags {
            seen: true,
            deleted: true,
            ..Default::default()
        };
        f.keywords.insert("$Forwarded".into());
        assert_eq!(
            flag_list(&f, true),
            "(\\Seen \\Deleted \\Recent $Forwarded)"
        );
        assert_eq!(flag_list(&Flags::default(), false), "()");
        assert_eq!(
            fetch_flags(3, &f, false, Some(9), Some(12)),
            b"* 3 FETCH (UID 9 FLAGS (\\Seen \\Deleted $Forwarded) MODSEQ (12))\r\n"
        );
    }

    #[test]
    fn fetch_data_uses_literals_for_bodies() {
        let body = NString::try_from(b"a\r\nb".to_vec()).unwrap();
        let items = vec![
            MessageDataItem::Uid(NonZeroU32::new(7).unwrap()),
            MessageDataItem::Rfc822(body),
        ];
        let out = fetch_data(2, items).unwrap();
        assert_eq!(out, b"* 2 FETCH (UID 7 RFC822 {4}\r\na\r\nb)\r\n");
        assert!(fetch_data(0, vec![]).is_none());
    }
}
