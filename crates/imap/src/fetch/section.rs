//! Body sections: finding a part by its IMAP part number (RFC 3501 6.4.5)
//! in the message's MIME tree from the index, and cutting the section's
//! bytes out of the message file with the offsets the index recorded.
//! Offsets that no longer fit the file (it changed on disk) are clamped.

use postamt_store::{BodyPart, PartKind};
use std::num::NonZeroU32;

/// A byte range `[start, start + len)` in the message file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub len: u64,
}

impl Span {
    /// The bytes of this span in `data`, clamped to its end.
    pub fn slice(self, data: &[u8]) -> &[u8] {
        let len = data.len() as u64;
        let start = self.start.min(len);
        let end = self.start.saturating_add(self.len).min(len);
        // Both bounds are <= data.len() and fit usize by construction.
        &data[start as usize..end as usize]
    }
}

/// The span of a part's MIME header (with its blank line).
pub fn header_span(part: &BodyPart) -> Span {
    Span {
        start: part.offset,
        len: part.header_len,
    }
}

/// The span of a part's body.
pub fn body_span(part: &BodyPart) -> Span {
    Span {
        start: part.offset.saturating_add(part.header_len),
        len: part.body_len,
    }
}

/// The span of a whole part (header and body).
pub fn whole_span(part: &BodyPart) -> Span {
    Span {
        start: part.offset,
        len: part.header_len.saturating_add(part.body_len),
    }
}

/// Part `n` (1-based) of a message whose top-level part is `root`: the
/// n-th child when it is multipart, else (n = 1 only) `root` itself.
fn child_of_message(root: &BodyPart, n: u32) -> Option<&BodyPart> {
    match &root.kind {
        PartKind::Multipart { parts } => parts.get(usize::try_from(n).ok()?.checked_sub(1)?),
        _ if n == 1 => Some(root),
        _ => None,
    }
}

/// Resolves a part number path (`1.2.3`) from the top-level part `root`.
/// `None` when the path names no part.
pub fn resolve<'m>(root: &'m BodyPart, path: &[NonZeroU32]) -> Option<&'m BodyPart> {
    let (first, rest) = path.split_first()?;
    let mut current = child_of_message(root, first.get())?;
    for n in rest {
        current = match &current.kind {
            PartKind::Multipart { parts } => {
                parts.get(usize::try_from(n.get()).ok()?.checked_sub(1)?)?
            }
            PartKind::Message { body, .. } => child_of_message(body, n.get())?,
            PartKind::Single => return None,
        };
    }
    Some(current)
}

/// The top-level part of the message a section's HEADER/TEXT refers to:
/// the whole message (no path), or the message inside a message/rfc822
/// part. `None` when the path names no such part.
pub fn message_root<'m>(root: &'m BodyPart, path: Option<&[NonZeroU32]>) -> Option<&'m BodyPart> {
    match path {
        None => Some(root),
        Some(path) => match &resolve(root, path)?.kind {
            PartKind::Message { body, .. } => Some(body),
            _ => None,
        },
    }
}

/// Applies `<offset.length>` to section data: an offset beyond the end
/// gives an empty string.
pub fn partial(mut data: Vec<u8>, range: Option<(u32, NonZeroU32)>) -> Vec<u8> {
    let Some((offset, length)) = range else {
        return data;
    };
    let start = (offset as usize).min(data.len());
    let end = start.saturating_add(length.get() as usize).min(data.len());
    data.truncate(end);
    data.drain(..start);
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(v: &[u32]) -> Vec<NonZeroU32> {
        v.iter().filter_map(|&n| NonZeroU32::new(n)).collect()
    }

    fn leaf(sub: &str) -> BodyPart {
        BodyPart {
            media_type: b"text".to_vec(),
            media_subtype: sub.as_bytes().to_vec(),
            ..BodyPart::default()
        }
    }

    fn tree() -> BodyPart {
        // multipart/mixed: 1 text/plain, 2 message/rfc822 (multipart: 2.1, 2.2),
        // 3 message/rfc822 (single text), 4 multipart (4.1)
        let inner_multi = BodyPart {
            kind: PartKind::Multipart {
                parts: vec![leaf("a"), leaf("b")],
            },
            ..BodyPart::default()
        };
        let msg2 = BodyPart {
            media_type: b"message".to_vec(),
            kind: PartKind::Message {
                envelope: Box::default(),
                body: Box::new(inner_multi),
            },
            ..BodyPart::default()
        };
        let msg3 = BodyPart {
            media_type: b"message".to_vec(),
            kind: PartKind::Message {
                envelope: Box::default(),
                body: Box::new(leaf("inner3")),
            },
            ..BodyPart::default()
        };
        let multi4 = BodyPart {
            kind: PartKind::Multipart {
                parts: vec![leaf("4.1")],
            },
            ..BodyPart::default()
        };
        BodyPart {
            kind: PartKind::Multipart {
                parts: vec![leaf("one"), msg2, msg3, multi4],
            },
            ..BodyPart::default()
        }
    }

    fn sub(p: Option<&BodyPart>) -> Option<&[u8]> {
        p.map(|p| p.media_subtype.as_slice())
    }

    #[test]
    fn resolves_nested_paths() {
        let t = tree();
        assert_eq!(sub(resolve(&t, &nz(&[1]))), Some(&b"one"[..]));
        assert_eq!(sub(resolve(&t, &nz(&[2, 1]))), Some(&b"a"[..]));
        assert_eq!(sub(resolve(&t, &nz(&[2, 2]))), Some(&b"b"[..]));
        // A non-multipart encapsulated message: part 1 is its body.
        assert_eq!(sub(resolve(&t, &nz(&[3, 1]))), Some(&b"inner3"[..]));
        assert_eq!(sub(resolve(&t, &nz(&[4, 1]))), Some(&b"4.1"[..]));
        assert!(resolve(&t, &nz(&[3, 2])).is_none());
        assert!(resolve(&t, &nz(&[5])).is_none());
        assert!(resolve(&t, &nz(&[1, 1])).is_none());
        assert!(resolve(&t, &[]).is_none());
    }

    #[test]
    fn single_part_message_has_part_one() {
        let t = leaf("plain");
        assert_eq!(sub(resolve(&t, &nz(&[1]))), Some(&b"plain"[..]));
        assert!(resolve(&t, &nz(&[2])).is_none());
    }

    #[test]
    fn message_roots() {
        let t = tree();
        assert!(message_root(&t, Some(&nz(&[2]))).is_some());
        assert!(message_root(&t, Some(&nz(&[1]))).is_none());
        assert_eq!(sub(message_root(&t, Some(&nz(&[3])))), Some(&b"inner3"[..]));
    }

    #[test]
    fn spans_clamp_to_data() {
        let data = b"0123456789";
        assert_eq!(Span { start: 2, len: 3 }.slice(data), b"234");
        assert_eq!(Span { start: 8, len: 30 }.slice(data), b"89");
        assert_eq!(Span { start: 80, len: 3 }.slice(data), b"");
        assert_eq!(
            Span {
                start: u64::MAX,
                len: u64::MAX
            }
            .slice(data),
            b""
        );
    }

    #[test]
    fn partial_ranges() {
        let d = b"hello world".to_vec();
        let n = |v| NonZeroU32::new(v).unwrap();
        assert_eq!(partial(d.clone(), Some((0, n(5)))), b"hello");
        assert_eq!(partial(d.clone(), Some((6, n(100)))), b"world");
        assert_eq!(partial(d.clone(), Some((11, n(1)))), b"");
        assert_eq!(partial(d.clone(), Some((500, n(1)))), b"");
        assert_eq!(partial(d.clone(), None), d);
    }
}
