//! Editing the header section of a received message in place: fields added
//! above and below our `Received:` header, and incoming fields that must
//! not survive dropped. Pure: works on the spool buffer, no I/O. The body
//! is moved once inside the buffer, never copied to a second buffer; only
//! the header bytes up to the last dropped field are rebuilt.

use std::ops::Range;

/// The fields of a message's header section, as byte ranges of the
/// message: each field is its first line and its continuation lines (those
/// starting with SP or HTAB), line ends included. The section ends at the
/// first empty line; a bare LF ends a line here as it does for the hop
/// count, so a message cannot hide a field from us by its line ends.
#[derive(Clone, Debug)]
pub struct Fields<'a> {
    message: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    /// The fields of `message` from its start.
    pub fn new(message: &'a [u8]) -> Fields<'a> {
        Fields { message, pos: 0 }
    }
}

impl Iterator for Fields<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        let start = self.pos;
        let first_end = line_end(self.message, start)?;
        let line = &self.message[start..first_end];
        if line == b"\n" || line == b"\r\n" {
            // The empty line: the header section is over.
            self.pos = self.message.len();
            return None;
        }
        let mut end = first_end;
        while matches!(self.message.get(end), Some(b' ' | b'\t')) {
            match line_end(self.message, end) {
                Some(e) => end = e,
                None => break,
            }
        }
        self.pos = end;
        Some(start..end)
    }
}

/// The end (after its LF, or the end of input) of the line starting at
/// `start`; `None` at the end of input.
fn line_end(message: &[u8], start: usize) -> Option<usize> {
    let rest = message.get(start..).filter(|r| !r.is_empty())?;
    Some(match memchr::memchr(b'\n', rest) {
        Some(pos) => start + pos + 1,
        None => message.len(),
    })
}

/// A field's name and its raw value (everything after the colon, folding
/// and line end included), when the field has a well-formed name: printable
/// ASCII without colon (RFC 5322 `ftext`), optionally followed by
/// whitespace before the colon (RFC 5322 obsolete syntax).
pub fn split_field(field: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = memchr::memchr(b':', field)?;
    let name = field[..colon].trim_ascii_end();
    let first_line_break = memchr::memchr(b'\n', field).unwrap_or(field.len());
    if name.is_empty() || colon > first_line_break || !name.iter().all(|&b| (33..=126).contains(&b))
    {
        return None;
    }
    Some((name, &field[colon + 1..]))
}

/// The longest Message-ID logged (RFC 5322 lines are at most 998 bytes).
pub const MAX_MESSAGE_ID: usize = 998;

/// The client's `Message-ID:` for the log (the message trace looks it up):
/// the first such field's value, unfolded, without whitespace or control
/// characters, at most [`MAX_MESSAGE_ID`] bytes; `None` when there is none.
pub fn message_id(message: &[u8]) -> Option<String> {
    let value = Fields::new(message).find_map(|range| {
        let (name, value) = split_field(&message[range])?;
        name.eq_ignore_ascii_case(b"Message-ID").then_some(value)
    })?;
    let text = String::from_utf8_lossy(value);
    let mut id = String::new();
    for c in text
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
    {
        if id.len() + c.len_utf8() > MAX_MESSAGE_ID {
            break;
        }
        id.push(c);
    }
    (!id.is_empty()).then_some(id)
}

/// Rewrites `data` (our trace header, `prefix_len` bytes, followed by the
/// client's message) into `above`, the trace header, `below`, then the
/// message without the header fields for which `drop(name, value)` says
/// true. Returns how many fields were dropped. With nothing to add and
/// nothing to drop, `data` is not touched.
pub fn edit(
    data: &mut Vec<u8>,
    prefix_len: usize,
    above: &[u8],
    below: &[u8],
    mut drop: impl FnMut(&[u8], &[u8]) -> bool,
) -> usize {
    let prefix_len = prefix_len.min(data.len());
    let mut head = Vec::with_capacity(above.len() + prefix_len + below.len());
    head.extend_from_slice(above);
    head.extend_from_slice(&data[..prefix_len]);
    head.extend_from_slice(below);
    // `data[..copied]` is accounted for in `head`.
    let mut copied = prefix_len;
    let mut dropped = 0;
    for range in Fields::new(&data[prefix_len..]) {
        let field = (range.start + prefix_len)..(range.end + prefix_len);
        if let Some((name, value)) = split_field(&data[field.clone()])
            && drop(name, value)
        {
            head.extend_from_slice(&data[copied..field.start]);
            copied = field.end;
            dropped += 1;
        }
    }
    if dropped == 0 && above.is_empty() && below.is_empty() {
        return 0;
    }
    replace_front(data, copied, &head);
    dropped
}

/// Replaces `data[..old_len]` with `new`, moving the rest once.
fn replace_front(data: &mut Vec<u8>, old_len: usize, new: &[u8]) {
    let len = data.len();
    if new.len() >= old_len {
        let grow = new.len() - old_len;
        data.reserve_exact(grow);
        data.resize(len + grow, 0);
        data.copy_within(old_len..len, new.len());
    } else {
        data.copy_within(old_len..len, new.len());
        data.truncate(len - (old_len - new.len()));
    }
    data[..new.len()].copy_from_slice(new);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_is_found_unfolded_and_bounded() {
        let m = b"Subject: hi\r\nmessage-id:\r\n <abc.123@example.org>\r\nMessage-ID: <second@x>\r\n\r\nMessage-ID: <body@x>\r\n";
        assert_eq!(message_id(m).as_deref(), Some("<abc.123@example.org>"));
        assert_eq!(
            message_id(b"Subject: x\r\n\r\nMessage-ID: <body@x>\r\n"),
            None
        );
        assert_eq!(message_id(b"Message-ID: \r\n\r\n"), None);
        let long = format!("Message-ID: <{}@x>\r\n\r\n", "a".repeat(5000));
        assert_eq!(message_id(long.as_bytes()).unwrap().len(), MAX_MESSAGE_ID);
        assert_eq!(
            message_id(b"Message-ID: <a b\x01c@x>\n\n").as_deref(),
            Some("<abc@x>")
        );
    }

    fn fields(m: &[u8]) -> Vec<&[u8]> {
        Fields::new(m).map(|r| &m[r]).collect()
    }

    #[test]
    fn fields_with_folding_up_to_the_empty_line() {
        let m = b"A: 1\r\nB: 2\r\n\tmore\r\n  again\r\nC:3\r\n\r\nD: body\r\n";
        assert_eq!(
            fields(m),
            vec![
                &b"A: 1\r\n"[..],
                b"B: 2\r\n\tmore\r\n  again\r\n",
                b"C:3\r\n"
            ]
        );
    }

    #[test]
    fn fields_with_bare_lf_and_without_body() {
        assert_eq!(
            fields(b"A: 1\nB: 2\n x\n\nC: 3\n"),
            vec![&b"A: 1\n"[..], b"B: 2\n x\n"]
        );
        assert_eq!(fields(b"A: 1\r\nB: 2"), vec![&b"A: 1\r\n"[..], b"B: 2"]);
        assert!(fields(b"").is_empty());
        assert!(fields(b"\r\nA: 1\r\n").is_empty());
        // A folded last line without a line end.
        assert_eq!(fields(b"A: 1\r\n x"), vec![&b"A: 1\r\n x"[..]]);
    }

    #[test]
    fn split_names_and_values() {
        assert_eq!(
            split_field(b"Subject: hi\r\n"),
            Some((&b"Subject"[..], &b" hi\r\n"[..]))
        );
        assert_eq!(
            split_field(b"Received \t: x\r\n"),
            Some((&b"Received"[..], &b" x\r\n"[..]))
        );
        assert_eq!(split_field(b" leading: ws\r\n"), None);
        assert_eq!(split_field(b"no colon\r\n"), None);
        assert_eq!(split_field(b"two words: x\r\n"), None);
        assert_eq!(split_field(b": empty name\r\n"), None);
        assert_eq!(split_field(b"Name\r\n :colon on the next line\r\n"), None);
    }

    #[test]
    fn adds_above_and_below_the_prefix_and_drops_fields() {
        let mut data = b"Received: ours\r\nX-Bad: 1\r\nSubject: s\r\nx-bad : 2\r\n\tfolded\r\nTo: t\r\n\r\nX-Bad: body\r\n".to_vec();
        let dropped = edit(&mut data, 16, b"Top: a\r\n", b"Mark: b\r\n", |name, _| {
            name.eq_ignore_ascii_case(b"X-Bad")
        });
        assert_eq!(dropped, 2);
        assert_eq!(
            String::from_utf8(data).expect("utf8"),
            "Top: a\r\nReceived: ours\r\nMark: b\r\nSubject: s\r\nTo: t\r\n\r\nX-Bad: body\r\n"
        );
    }

    #[test]
    fn drop_sees_the_raw_value() {
        let mut data = b"P\r\nA: keep\r\nA: drop\r\n me\r\n\r\n".to_vec();
        let mut seen = Vec::new();
        edit(&mut data, 3, b"", b"", |_, v| {
            seen.push(v.to_vec());
            v.starts_with(b" drop")
        });
        assert_eq!(
            seen,
            vec![b" keep\r\n".to_vec(), b" drop\r\n me\r\n".to_vec()]
        );
        assert_eq!(data, b"P\r\nA: keep\r\n\r\n");
    }

    #[test]
    fn shrinking_edit_and_message_without_body() {
        let mut data = b"R\r\nX: 1234567890\r\nY: 2".to_vec();
        assert_eq!(edit(&mut data, 3, b"", b"", |n, _| n == b"X"), 1);
        assert_eq!(data, b"R\r\nY: 2");
        let mut data = b"R\r\nX: only".to_vec();
        assert_eq!(edit(&mut data, 3, b"T\r\n", b"", |n, _| n == b"X"), 1);
        assert_eq!(data, b"T\r\nR\r\n");
    }

    #[test]
    fn nothing_to_do_leaves_the_buffer_alone() {
        let mut data = Vec::with_capacity(64);
        data.extend_from_slice(b"R\r\nA: 1\r\n\r\nbody");
        let ptr = data.as_ptr();
        assert_eq!(edit(&mut data, 3, b"", b"", |_, _| false), 0);
        assert_eq!(data, b"R\r\nA: 1\r\n\r\nbody");
        assert_eq!(ptr, data.as_ptr());
    }

    #[test]
    fn body_is_never_scanned() {
        let mut data = b"R\r\n\r\nX: in body\r\n".to_vec();
        assert_eq!(edit(&mut data, 3, b"", b"", |_, _| true), 0);
        assert_eq!(data, b"R\r\n\r\nX: in body\r\n");
    }

    #[test]
    fn replace_front_moves_the_tail() {
        let mut v = b"abcdef".to_vec();
        replace_front(&mut v, 2, b"XYZW");
        assert_eq!(v, b"XYZWcdef");
        replace_front(&mut v, 4, b"Q");
        assert_eq!(v, b"Qcdef");
        replace_front(&mut v, 5, b"");
        assert_eq!(v, b"");
    }
}
