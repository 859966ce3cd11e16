//! Test support: a tiny MIME structurer that builds the store's
//! `MessageMeta` (with part offsets) for synthetic test messages, so
//! FETCH/SEARCH tests do not depend on the store's parser. Only handles
//! the well-formed CRLF messages the tests write.

use super::headers::fields;
use postamt_store::{Address, BodyPart, Envelope, Flags, MessageMeta, MessageRecord, PartKind};
use std::sync::Arc;

fn find(data: &[u8], from: usize, end: usize, pat: &[u8]) -> Option<usize> {
    data.get(from..end)?
        .windows(pat.len())
        .position(|w| w == pat)
        .map(|i| from + i)
}

type Params = Vec<(Vec<u8>, Vec<u8>)>;

fn params_of(value: &[u8]) -> (Vec<u8>, Vec<u8>, Params) {
    let text = String::from_utf8_lossy(value);
    let mut pieces = text.split(';');
    let ty = pieces.next().unwrap_or("").trim().to_owned();
    let (t, s) = ty.split_once('/').unwrap_or(("text", "plain"));
    let params = pieces
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_ascii_lowercase().into_bytes(),
                v.trim().trim_matches('"').as_bytes().to_vec(),
            )
        })
        .collect();
    (t.as_bytes().to_vec(), s.as_bytes().to_vec(), params)
}

fn address(value: &[u8]) -> Vec<Address> {
    let text = String::from_utf8_lossy(value).trim().to_owned();
    if text.is_empty() {
        return Vec::new();
    }
    let (name, addr) = match text.split_once('<') {
        Some((n, rest)) => (
            Some(n.trim().trim_matches('"').to_owned()),
            rest.trim_end_matches('>').to_owned(),
        ),
        None => (None, text.clone()),
    };
    let (mailbox, host) = addr.split_once('@').unwrap_or((addr.as_str(), ""));
    vec![Address {
        name: name.filter(|n| !n.is_empty()).map(String::into_bytes),
        adl: None,
        mailbox: Some(mailbox.as_bytes().to_vec()),
        host: Some(host.as_bytes().to_vec()),
    }]
}

fn envelope(header: &[u8]) -> Envelope {
    let mut env = Envelope::default();
    for f in fields(header) {
        let v = f.value.trim_ascii().to_vec();
        let n = String::from_utf8_lossy(f.name).to_ascii_lowercase();
        match n.as_str() {
            "subject" => env.subject = Some(v),
            "date" => env.date = Some(v),
            "message-id" => env.message_id = Some(v),
            "from" => env.from = address(&v),
            "to" => env.to = address(&v),
            "cc" => env.cc = address(&v),
            "bcc" => env.bcc = address(&v),
            _ => {}
        }
    }
    env
}

/// Structures the part starting at `start` and ending at `end`.
pub fn part(data: &[u8], start: usize, end: usize, digest: bool) -> BodyPart {
    let end = end.min(data.len());
    let start = start.min(end);
    let header_end = find(data, start, end, b"\r\n\r\n").map_or(end, |i| i + 4);
    let header = &data[start..header_end];
    let (mut ty, mut sub, mut params) = if digest {
        (b"message".to_vec(), b"rfc822".to_vec(), Vec::new())
    } else {
        (b"text".to_vec(), b"plain".to_vec(), Vec::new())
    };
    let mut encoding = b"7BIT".to_vec();
    for f in fields(header) {
        if f.name.eq_ignore_ascii_case(b"content-type") {
            (ty, sub, params) = params_of(f.value);
        } else if f.name.eq_ignore_ascii_case(b"content-transfer-encoding") {
            encoding = f.value.trim_ascii().to_vec();
        }
    }
    let body = &data[header_end..end];
    let kind = if ty.eq_ignore_ascii_case(b"multipart") {
        let boundary = params
            .iter()
            .find(|(k, _)| k == b"boundary")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let delim = [b"--".as_slice(), &boundary].concat();
        let mut parts = Vec::new();
        let mut pos = find(data, header_end, end, &delim);
        while let Some(p) = pos {
            let after = p + delim.len();
            if data.get(after..).is_none_or(|rest| rest.starts_with(b"--")) {
                break;
            }
            let part_start = (after + 2).min(end); // CRLF after the delimiter
            let next = find(
                data,
                part_start,
                end,
                &[b"\r\n".as_slice(), &delim].concat(),
            );
            let part_end = next.unwrap_or(end);
            parts.push(part(
                data,
                part_start,
                part_end,
                sub.eq_ignore_ascii_case(b"digest"),
            ));
            pos = next.map(|n| n + 2);
        }
        PartKind::Multipart { parts }
    } else if ty.eq_ignore_ascii_case(b"message") && sub.eq_ignore_ascii_case(b"rfc822") {
        let inner = part(data, header_end, end, false);
        let inner_header = &data[header_end..(header_end + inner.header_len as usize).min(end)];
        PartKind::Message {
            envelope: Box::new(envelope(inner_header)),
            body: Box::new(inner),
        }
    } else {
        PartKind::Single
    };
    BodyPart {
        media_type: ty,
        media_subtype: sub,
        params,
        encoding,
        offset: start as u64,
        header_len: (header_end - start) as u64,
        body_len: body.len() as u64,
        body_lines: (body.iter().filter(|&&b| b == b'\n').count()
            + usize::from(!body.is_empty() && !body.ends_with(b"\n"))) as u64,
        kind,
        ..BodyPart::default()
    }
}

/// The meta of a whole message.
pub fn meta(data: &[u8]) -> MessageMeta {
    let body = part(data, 0, data.len(), false);
    let env = envelope(&data[..(body.header_len as usize).min(data.len())]);
    MessageMeta {
        envelope: env,
        body,
    }
}

/// A record for `data` with uid 1 and the given flags.
pub fn record(data: &[u8]) -> MessageRecord {
    MessageRecord {
        uid: 1,
        modseq: 7,
        flags: Flags::default(),
        size: data.len() as u64,
        internal_date: 1_700_000_000, // 2023-11-14T22:13:20Z
        queue_id: None,
        meta: Arc::new(meta(data)),
    }
}

/// A nested test message:
/// 1 text/plain (QP), 2 image/png (base64), 3 message/rfc822 whose body is
/// multipart/alternative (3.1 text/plain base64, 3.2 text/html).
pub const NESTED: &[u8] = b"From: Alice <alice@example.org>\r\n\
To: bob@example.org\r\n\
Subject: =?UTF-8?B?R3LDvMOfZQ==?= nested\r\n\
Date: Tue, 14 Nov 2023 10:00:00 +0100\r\n\
X-Folded: first\r\n\
\x20second\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
preamble\r\n\
--outer\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Caf=C3=A9 au lait =\r\n\
is hot\r\n\
--outer\r\n\
Content-Type: image/png\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AAECAw==\r\n\
--outer\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: Carol <carol@example.net>\r\n\
Subject: inner\r\n\
Content-Type: multipart/alternative; boundary=\"inner\"\r\n\
\r\n\
--inner\r\n\
Content-Type: text/plain\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
c2VjcmV0IHdvcmQ=\r\n\
--inner\r\n\
Content-Type: text/html\r\n\
\r\n\
<p>html</p>\r\n\
--inner--\r\n\
\r\n\
--outer--\r\n";
