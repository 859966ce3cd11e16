//! [`MessageMeta`] from a message's bytes, parsed once at delivery or
//! APPEND (or when the index is rebuilt) and kept in the folder index.
//!
//! Our own single-pass structural parser rather than mail-parser's: IMAP
//! needs the raw header values (encoded words left encoded) and exact
//! byte offsets of every part's header and body, and must not pay for
//! decoding bodies or charsets at delivery time (mail-parser decodes
//! everything). Nothing is copied but the header values kept. CRLF and
//! LF-only files give the same structure; offsets are always those of
//! the bytes in the file.
//!
//! Bounded: nesting (multipart and message/rfc822) at [`MAX_DEPTH`]
//! levels, [`MAX_PARTS`] parts per message (deeper or further parts are
//! kept as leaves). Never fails: a message that does not parse is one
//! text/plain part holding whatever follows its header.

mod address;
mod header;

use crate::meta::{Address, BodyPart, Envelope, MessageMeta, PartKind};
use header::Header;
use postamt_rawmsg::mime_delimiter;

/// Deepest nesting of multiparts and encapsulated messages parsed.
pub const MAX_DEPTH: usize = 64;
/// Most MIME parts parsed in one message.
pub const MAX_PARTS: usize = 5_000;
/// Longest multipart boundary accepted (RFC 2046 allows 70).
const MAX_BOUNDARY: usize = 200;

/// The meta of a whole message.
pub fn parse_meta(data: &[u8]) -> MessageMeta {
    let mut budget = MAX_PARTS;
    let (envelope, body) = parse_message(data, 0, data.len(), 0, &mut budget);
    MessageMeta { envelope, body }
}

/// What a part is when its header says nothing usable.
#[derive(Clone, Copy)]
enum Default {
    TextPlain,
    /// Inside multipart/digest (RFC 2046 5.1.5).
    Rfc822,
}

fn parse_message(
    data: &[u8],
    start: usize,
    end: usize,
    depth: usize,
    budget: &mut usize,
) -> (Envelope, BodyPart) {
    let hdr = header::scan(&data[start..end]);
    let envelope = envelope(&hdr);
    let body = parse_part(data, start, end, &hdr, depth, Default::TextPlain, budget);
    (envelope, body)
}

/// The ENVELOPE of a header block (Sender and Reply-To default to From,
/// as RFC 3501 asks).
fn envelope(hdr: &Header<'_>) -> Envelope {
    let list = |name: &str| hdr.raw(name).map(address::parse_list).unwrap_or_default();
    let from = list("from");
    let or_from = |l: Vec<Address>| if l.is_empty() { from.clone() } else { l };
    Envelope {
        date: hdr.value("date"),
        subject: hdr.value("subject"),
        sender: or_from(list("sender")),
        reply_to: or_from(list("reply-to")),
        to: list("to"),
        cc: list("cc"),
        bcc: list("bcc"),
        in_reply_to: hdr.value("in-reply-to"),
        message_id: hdr.value("message-id"),
        from,
    }
}

fn is_token(b: &[u8]) -> bool {
    !b.is_empty()
        && b.iter()
            .all(|&c| (33..=126).contains(&c) && !b"()<>@,;:\\\"/[]?=".contains(&c))
}

/// Lines in `body`: line feeds, plus one for a last line without one.
fn count_lines(body: &[u8]) -> u64 {
    let lf = body.iter().filter(|&&b| b == b'\n').count() as u64;
    lf + u64::from(body.last().is_some_and(|&b| b != b'\n'))
}

#[allow(clippy::too_many_arguments)]
fn parse_part(
    data: &[u8],
    start: usize,
    end: usize,
    hdr: &Header<'_>,
    depth: usize,
    default: Default,
    budget: &mut usize,
) -> BodyPart {
    *budget = budget.saturating_sub(1);
    let body_start = (start + hdr.len).min(end);
    let ct = hdr.raw("content-type").map(header::structured);
    let typed = ct.as_ref().and_then(|ct| {
        let mut it = ct.value.splitn(2, |&b| b == b'/');
        let t = it.next()?;
        let s = it.next()?;
        (is_token(t) && is_token(s)).then(|| (t.to_vec(), s.to_vec(), ct.params.clone()))
    });
    let (mut media_type, mut media_subtype, mut params) = match (typed, default) {
        (Some(t), _) => t,
        (None, Default::Rfc822) => (b"message".to_vec(), b"rfc822".to_vec(), Vec::new()),
        (None, Default::TextPlain) => text_plain(),
    };
    let encoding = hdr
        .value("content-transfer-encoding")
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| b"7BIT".to_vec());
    let disposition = hdr.raw("content-disposition").and_then(|raw| {
        let d = header::structured(raw);
        (!d.value.is_empty()).then_some((d.value, d.params))
    });
    let language = hdr
        .value("content-language")
        .map(|v| {
            v.split(|&b| b == b',')
                .map(|l| l.trim_ascii().to_vec())
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default();

    let body = &data[body_start..end];
    let can_nest = depth < MAX_DEPTH && *budget > 0;
    let mut kind = PartKind::Single;
    if media_type.eq_ignore_ascii_case(b"multipart") {
        let boundary = params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(b"boundary"))
            .map(|(_, v)| v.clone())
            .filter(|b| !b.is_empty() && b.len() <= MAX_BOUNDARY);
        let spans = match (&boundary, can_nest) {
            (Some(b), true) => split_multipart(data, body_start, end, b, *budget),
            _ => Vec::new(),
        };
        if spans.is_empty() {
            // No usable boundary or no part: a plain text leaf.
            (media_type, media_subtype, params) = text_plain();
        } else {
            let child_default = if media_subtype.eq_ignore_ascii_case(b"digest") {
                Default::Rfc822
            } else {
                Default::TextPlain
            };
            let mut parts = Vec::with_capacity(spans.len());
            for (cs, ce) in spans {
                if *budget == 0 {
                    break;
                }
                let child_hdr = header::scan(&data[cs..ce]);
                parts.push(parse_part(
                    data,
                    cs,
                    ce,
                    &child_hdr,
                    depth + 1,
                    child_default,
                    budget,
                ));
            }
            kind = PartKind::Multipart { parts };
        }
    } else if media_type.eq_ignore_ascii_case(b"message")
        && (media_subtype.eq_ignore_ascii_case(b"rfc822")
            || media_subtype.eq_ignore_ascii_case(b"global"))
        && is_identity(&encoding)
        && can_nest
    {
        let (env, inner) = parse_message(data, body_start, end, depth + 1, budget);
        kind = PartKind::Message {
            envelope: Box::new(env),
            body: Box::new(inner),
        };
    }
    let lines =
        media_type.eq_ignore_ascii_case(b"text") || matches!(kind, PartKind::Message { .. });
    BodyPart {
        media_type,
        media_subtype,
        params,
        id: hdr.value("content-id"),
        description: hdr.value("content-description"),
        encoding,
        md5: hdr.value("content-md5"),
        disposition,
        language,
        location: hdr.value("content-location"),
        offset: start as u64,
        header_len: (body_start - start) as u64,
        body_len: body.len() as u64,
        body_lines: if lines { count_lines(body) } else { 0 },
        kind,
    }
}

/// RFC 2045's default type.
fn text_plain() -> (Vec<u8>, Vec<u8>, crate::meta::Params) {
    (
        b"text".to_vec(),
        b"plain".to_vec(),
        vec![(b"charset".to_vec(), b"us-ascii".to_vec())],
    )
}

/// Whether a message/rfc822 body with this encoding can be parsed as is.
fn is_identity(encoding: &[u8]) -> bool {
    [&b"7bit"[..], b"8bit", b"binary"]
        .iter()
        .any(|e| encoding.eq_ignore_ascii_case(e))
}

/// The (start, end) of each part of a multipart body in `data[start..end]`:
/// from after a delimiter line to before the line break that precedes the
/// next delimiter (that break belongs to the delimiter, RFC 2046 5.1.1).
/// Preamble and epilogue are skipped; a missing close delimiter ends the
/// last part at `end`.
fn split_multipart(
    data: &[u8],
    start: usize,
    end: usize,
    boundary: &[u8],
    max_parts: usize,
) -> Vec<(usize, usize)> {
    let mut parts = Vec::new();
    let mut current: Option<usize> = None;
    let mut pos = start;
    while pos < end {
        let line_end = data[pos..end]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(end, |i| pos + i + 1);
        let line = &data[pos..line_end];
        if let Some(close) = mime_delimiter(line, boundary) {
            if let Some(cs) = current {
                let mut pe = pos;
                if pe > cs && data[pe - 1] == b'\n' {
                    pe -= 1;
                    if pe > cs && data[pe - 1] == b'\r' {
                        pe -= 1;
                    }
                }
                parts.push((cs, pe));
                if parts.len() >= max_parts {
                    return parts;
                }
            }
            if close {
                return parts;
            }
            current = Some(line_end);
        }
        pos = line_end;
    }
    if let Some(cs) = current {
        parts.push((cs, end.max(cs)));
    }
    parts
}

#[cfg(test)]
mod tests;
