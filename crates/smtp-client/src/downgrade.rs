//! Converting an 8-bit message to 7 bit for a server without 8BITMIME
//! (RFC 6152 §3: the client converts the message or does not deliver it).
//!
//! As Postfix does by default: every leaf part whose body holds 8-bit bytes
//! and is declared `7bit`, `8bit` or nothing is re-encoded as
//! quoted-printable (RFC 2045 §6.7) and its `Content-Transfer-Encoding`
//! set to match; `multipart/*` and `message/rfc822` entities (which allow
//! no other encoding, RFC 2045 §6.4) are walked into instead, and their own
//! `8bit` label becomes `7bit` once their content is. A message without
//! `MIME-Version` gets `MIME-Version: 1.0`, and `Content-Type: text/plain;
//! charset=unknown-8bit` (RFC 1428) when it has no Content-Type. Every byte
//! that is not converted stays as it was: header fields, delimiters,
//! base64 attachments, 7-bit parts are copied, never re-serialised.
//!
//! What cannot be converted is refused ([`Unconvertible`]): 8-bit bytes in
//! a header field (unless the transaction uses SMTPUTF8, RFC 6531), a
//! `binary` part, and a MIME structure too broken to walk.
//!
//! Pure, never panics, bounded: at most [`MAX_DEPTH`] nested entities and
//! [`MAX_PARTS`] body parts; the output is at most about 3.1 times the input
//! (every byte `=XX`, plus soft line breaks).

use postamt_rawmsg::{line_end, mime_delimiter, trim_eol, trim_wsp_end};
use std::borrow::Cow;

/// Nested entities (multipart in multipart, message in message...) walked
/// at most; deeper structures are refused.
pub const MAX_DEPTH: usize = 32;
/// Body parts (all multiparts together) walked at most.
pub const MAX_PARTS: usize = 10_000;
/// Longest quoted-printable line, without its CRLF (RFC 2045 §6.7 rule 5).
pub const QP_LINE: usize = 76;

/// Why a message cannot be converted to 7 bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unconvertible {
    /// 8-bit bytes in a header field, which only SMTPUTF8 may carry.
    #[error("a header field contains 8-bit characters (that needs SMTPUTF8)")]
    EightBitHeader,
    /// A part declared `Content-Transfer-Encoding: binary` holds 8-bit data
    /// (binary data needs BINARYMIME, RFC 3030).
    #[error("a body part has Content-Transfer-Encoding: binary")]
    Binary,
    /// The MIME structure cannot be walked (or holds 8-bit data where no
    /// encoding may be applied).
    #[error("malformed MIME structure ({0})")]
    Malformed(&'static str),
}

/// Whether the bytes need 8BITMIME: any byte >= 0x80, or NUL.
pub fn needs_8bitmime(data: &[u8]) -> bool {
    data.iter().any(|&b| b >= 0x80 || b == 0)
}

/// The message converted to 7 bit, or the unchanged bytes when nothing
/// needs converting. `eight_bit_headers`: the transaction uses SMTPUTF8, so
/// header fields may stay 8-bit (only bodies are converted then).
pub fn to_seven_bit(
    message: &[u8],
    eight_bit_headers: bool,
) -> Result<Cow<'_, [u8]>, Unconvertible> {
    if !needs_8bitmime(message) {
        return Ok(Cow::Borrowed(message));
    }
    let mut walker = Walker {
        eight_bit_headers,
        parts: 0,
    };
    let mut out = Vec::with_capacity(message.len() + message.len() / 2 + 128);
    walker.entity(message, 0, Context::Top, &mut out)?;
    // Every 8-bit body was converted or refused above; this only guards
    // against a gap in that reasoning: never hand 8-bit bytes on.
    if !eight_bit_headers && needs_8bitmime(&out) {
        return Err(Unconvertible::Malformed("8-bit data left after conversion"));
    }
    Ok(Cow::Owned(out))
}

/// Appends the quoted-printable encoding of `data` (RFC 2045 §6.7) to
/// `out`: lines of at most 76 characters with soft line breaks (`=`);
/// every CRLF, and every bare LF, is a hard line break (written as CRLF,
/// as the SMTP client would send it anyway); `=`, control characters (a
/// bare CR too) and bytes >= 0x80 as `=XX`; a space or tab at the end of a
/// line encoded. A line continued after a soft break never starts with
/// `-`, so the encoding cannot forge a multipart boundary delimiter line.
pub fn encode_quoted_printable(data: &[u8], out: &mut Vec<u8>) {
    out.reserve(data.len() + data.len() / 8 + 8);
    let mut rest = data;
    loop {
        match rest.iter().position(|&b| b == b'\n') {
            Some(nl) => {
                let line = &rest[..nl];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                encode_qp_line(line, out);
                out.extend_from_slice(b"\r\n");
                rest = &rest[nl + 1..];
            }
            None => {
                encode_qp_line(rest, out);
                return;
            }
        }
    }
}

/// One line without its line break, with soft breaks as needed.
fn encode_qp_line(line: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut width = 0;
    for (i, &b) in line.iter().enumerate() {
        let last = i + 1 == line.len();
        let mut literal = match b {
            b' ' | b'\t' => !last,
            33..=60 | 62..=126 => true,
            _ => false,
        };
        // The last character may use the 76th column; any other must leave
        // room for the `=` of a soft break.
        let room = if last { QP_LINE } else { QP_LINE - 1 };
        let len = if literal { 1 } else { 3 };
        if width + len > room {
            out.extend_from_slice(b"=\r\n");
            width = 0;
            if b == b'-' {
                literal = false;
            }
        }
        if literal {
            out.push(b);
            width += 1;
        } else {
            out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            width += 3;
        }
    }
}

/// Where an entity sits: its defaults depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Context {
    /// The message itself.
    Top,
    /// The body of a `message/rfc822` part: a message of its own.
    Embedded,
    /// A body part of a multipart (`digest`: of a `multipart/digest`, where
    /// the default type is `message/rfc822`).
    Part { digest: bool },
}

/// The Content-Transfer-Encoding of an entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cte {
    Absent,
    SevenBit,
    EightBit,
    Binary,
    /// quoted-printable or base64: the body must be 7-bit already.
    Encoded,
    Unknown,
}

/// One header field: `start..end` covers its lines with their line
/// breaks; `colon` is the offset of its colon.
#[derive(Clone, Copy, Debug)]
struct Field {
    start: usize,
    end: usize,
    colon: usize,
}

impl Field {
    fn is(&self, entity: &[u8], name: &[u8]) -> bool {
        let raw = entity.get(self.start..self.colon).unwrap_or_default();
        trim_wsp_end(raw).eq_ignore_ascii_case(name)
    }

    fn value<'a>(&self, entity: &'a [u8]) -> &'a [u8] {
        entity.get(self.colon + 1..self.end).unwrap_or_default()
    }
}

/// An entity's header section: its fields, where they end (the start of
/// the empty line) and where the body starts (after it).
struct Header {
    fields: Vec<Field>,
    end: usize,
    body_start: usize,
}

impl Header {
    fn find(&self, entity: &[u8], name: &[u8]) -> Option<Field> {
        self.fields.iter().copied().find(|f| f.is(entity, name))
    }
}

struct Walker {
    eight_bit_headers: bool,
    parts: usize,
}

const CTE_QP: &[u8] = b"Content-Transfer-Encoding: quoted-printable\r\n";
const CTE_7BIT: &[u8] = b"Content-Transfer-Encoding: 7bit\r\n";
const MIME_VERSION: &[u8] = b"MIME-Version: 1.0\r\n";
const UNKNOWN_8BIT: &[u8] = b"Content-Type: text/plain; charset=unknown-8bit\r\n";

impl Walker {
    /// Converts one entity (header section, empty line, body); copies it
    /// unchanged when its body holds no 8-bit byte.
    fn entity(
        &mut self,
        e: &[u8],
        depth: usize,
        ctx: Context,
        out: &mut Vec<u8>,
    ) -> Result<(), Unconvertible> {
        if depth > MAX_DEPTH {
            return Err(Unconvertible::Malformed("MIME parts nested too deeply"));
        }
        let h = split_header(e)?;
        let head = e.get(..h.end).unwrap_or_default();
        if !self.eight_bit_headers && needs_8bitmime(head) {
            return Err(Unconvertible::EightBitHeader);
        }
        let body = e.get(h.body_start..).unwrap_or_default();
        if !needs_8bitmime(body) {
            out.extend_from_slice(e);
            return Ok(());
        }
        let content_type = h
            .find(e, b"content-type")
            .and_then(|f| parse_content_type(&unfold(f.value(e))));
        let (main, sub, boundary) = match content_type {
            Some(ct) => (ct.main, ct.sub, ct.boundary),
            None if ctx == (Context::Part { digest: true }) => {
                (b"message".to_vec(), b"rfc822".to_vec(), None)
            }
            None => (b"text".to_vec(), b"plain".to_vec(), None),
        };
        let cte = h
            .find(e, b"content-transfer-encoding")
            .map_or(Cte::Absent, |f| parse_cte(&unfold(f.value(e))));
        // A part of a multipart is MIME by definition; a message (the top
        // one or an embedded one) only with MIME-Version.
        let add_mime_version =
            !matches!(ctx, Context::Part { .. }) && h.find(e, b"mime-version").is_none();
        match (main.as_slice(), sub.as_slice()) {
            (b"multipart", _) => {
                container_cte(cte)?;
                let boundary = boundary
                    .filter(|b| !b.is_empty() && b.len() <= 200)
                    .ok_or(Unconvertible::Malformed("a multipart without a boundary"))?;
                let mut converted = Vec::with_capacity(body.len() + body.len() / 2);
                self.multipart(body, &boundary, sub == b"digest", depth, &mut converted)?;
                write_container(e, &h, cte, add_mime_version, &converted, out);
                Ok(())
            }
            (b"message", b"rfc822") => {
                container_cte(cte)?;
                let mut converted = Vec::with_capacity(body.len() + body.len() / 2);
                self.entity(body, depth + 1, Context::Embedded, &mut converted)?;
                write_container(e, &h, cte, add_mime_version, &converted, out);
                Ok(())
            }
            // RFC 6532 §3.7 and RFC 6533 allow any encoding for these.
            (b"message", s) if s.starts_with(b"global") => leaf(e, &h, cte, add_mime_version, out),
            // RFC 2045 §6.4: nothing but 7bit/8bit/binary for message/*.
            (b"message", _) => Err(Unconvertible::Malformed(
                "8-bit data in a message part that allows no transfer encoding",
            )),
            _ => leaf(e, &h, cte, add_mime_version, out),
        }
    }

    /// The body of a multipart: preamble, parts, epilogue. Each delimiter
    /// line and the line break before it are copied as they are; a part
    /// with 8-bit bytes is converted, the others copied. A missing close
    /// delimiter is tolerated (the last part runs to the end); no
    /// delimiter at all is not.
    fn multipart(
        &mut self,
        body: &[u8],
        boundary: &[u8],
        digest: bool,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), Unconvertible> {
        // Start of the current part; `None` while in the preamble.
        let mut part_start: Option<usize> = None;
        let mut pos = 0;
        while pos < body.len() {
            let line_end = line_end(body, pos);
            let line = body.get(pos..line_end).unwrap_or_default();
            if let Some(close) = mime_delimiter(line, boundary) {
                match part_start {
                    None => opaque(body.get(..pos).unwrap_or_default(), out),
                    Some(s) => {
                        self.part(body.get(s..pos).unwrap_or_default(), depth, digest, out)?
                    }
                }
                out.extend_from_slice(line);
                if close {
                    opaque(body.get(line_end..).unwrap_or_default(), out);
                    return Ok(());
                }
                part_start = Some(line_end);
            }
            pos = line_end;
        }
        match part_start {
            None => Err(Unconvertible::Malformed(
                "no boundary delimiter in a multipart body",
            )),
            Some(s) => self.part(body.get(s..).unwrap_or_default(), depth, digest, out),
        }
    }

    /// One body part between two delimiter lines; the line break before
    /// the next delimiter belongs to that delimiter (RFC 2046 §5.1.1) and
    /// is copied as it is.
    fn part(
        &mut self,
        region: &[u8],
        depth: usize,
        digest: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), Unconvertible> {
        self.parts += 1;
        if self.parts > MAX_PARTS {
            return Err(Unconvertible::Malformed("too many MIME parts"));
        }
        let content = trim_eol(region);
        if needs_8bitmime(content) {
            self.entity(content, depth + 1, Context::Part { digest }, out)?;
        } else {
            out.extend_from_slice(content);
        }
        out.extend_from_slice(region.get(content.len()..).unwrap_or_default());
        Ok(())
    }
}

/// A leaf entity: its body re-encoded as quoted-printable, its
/// Content-Transfer-Encoding field replaced (or added); a message without
/// MIME-Version gets one, and a Content-Type when it has none.
fn leaf(
    e: &[u8],
    h: &Header,
    cte: Cte,
    add_mime_version: bool,
    out: &mut Vec<u8>,
) -> Result<(), Unconvertible> {
    match cte {
        Cte::Absent | Cte::SevenBit | Cte::EightBit => {}
        Cte::Binary => return Err(Unconvertible::Binary),
        Cte::Encoded => {
            return Err(Unconvertible::Malformed(
                "8-bit data in a base64 or quoted-printable body",
            ));
        }
        Cte::Unknown => {
            return Err(Unconvertible::Malformed(
                "8-bit data under an unknown transfer encoding",
            ));
        }
    }
    let mut added: Vec<&[u8]> = Vec::new();
    if add_mime_version {
        added.push(MIME_VERSION);
        if h.find(e, b"content-type").is_none() {
            added.push(UNKNOWN_8BIT);
        }
    }
    write_fields(e, h, Some(CTE_QP), &added, out);
    out.extend_from_slice(e.get(h.end..h.body_start).unwrap_or_default());
    encode_quoted_printable(e.get(h.body_start..).unwrap_or_default(), out);
    Ok(())
}

/// A multipart or message/rfc822 entity around its converted body: its
/// `8bit` label becomes `7bit` when the body is 7-bit now (it may still
/// hold 8-bit header fields under SMTPUTF8).
fn write_container(
    e: &[u8],
    h: &Header,
    cte: Cte,
    add_mime_version: bool,
    converted: &[u8],
    out: &mut Vec<u8>,
) {
    let relabel = cte == Cte::EightBit && !needs_8bitmime(converted);
    let added: &[&[u8]] = if add_mime_version {
        &[MIME_VERSION]
    } else {
        &[]
    };
    write_fields(e, h, relabel.then_some(CTE_7BIT), added, out);
    out.extend_from_slice(e.get(h.end..h.body_start).unwrap_or_default());
    out.extend_from_slice(converted);
}

/// Copies the header fields, then appends the `added` ones; with `cte`,
/// the first Content-Transfer-Encoding field is replaced by it (further
/// ones dropped), or it is added at the end.
fn write_fields(e: &[u8], h: &Header, cte: Option<&[u8]>, added: &[&[u8]], out: &mut Vec<u8>) {
    let mut written = false;
    for f in &h.fields {
        if let Some(new) = cte
            && f.is(e, b"content-transfer-encoding")
        {
            if !written {
                out.extend_from_slice(new);
                written = true;
            }
            continue;
        }
        out.extend_from_slice(e.get(f.start..f.end).unwrap_or_default());
    }
    for field in added {
        out.extend_from_slice(field);
    }
    if let Some(new) = cte
        && !written
    {
        out.extend_from_slice(new);
    }
}

/// A multipart or message/rfc822 entity takes no encoding but 7bit, 8bit
/// or binary (RFC 2045 §6.4).
fn container_cte(cte: Cte) -> Result<(), Unconvertible> {
    match cte {
        Cte::Absent | Cte::SevenBit | Cte::EightBit => Ok(()),
        Cte::Binary => Err(Unconvertible::Binary),
        Cte::Encoded | Cte::Unknown => Err(Unconvertible::Malformed(
            "a multipart or message/rfc822 part with a transfer encoding",
        )),
    }
}

/// Preamble and epilogue: MIME readers ignore them, so 8-bit text there is
/// simply encoded (it cannot change what any reader shows).
fn opaque(data: &[u8], out: &mut Vec<u8>) {
    if needs_8bitmime(data) {
        encode_quoted_printable(data, out);
    } else {
        out.extend_from_slice(data);
    }
}

/// Splits the header section off: fields (with their folded lines) up to
/// the first empty line. Without an empty line everything is header.
fn split_header(e: &[u8]) -> Result<Header, Unconvertible> {
    let mut fields: Vec<Field> = Vec::new();
    let mut pos = 0;
    while pos < e.len() {
        let end = line_end(e, pos);
        let content = trim_eol(e.get(pos..end).unwrap_or_default());
        match content.first() {
            None => {
                return Ok(Header {
                    fields,
                    end: pos,
                    body_start: end,
                });
            }
            Some(b' ' | b'\t') => match fields.last_mut() {
                Some(f) => f.end = end,
                None => {
                    return Err(Unconvertible::Malformed(
                        "a header section starting with a folded line",
                    ));
                }
            },
            Some(_) => {
                let colon = content
                    .iter()
                    .position(|&b| b == b':')
                    .ok_or(Unconvertible::Malformed("a header line without a colon"))?;
                fields.push(Field {
                    start: pos,
                    end,
                    colon: pos + colon,
                });
            }
        }
        pos = end;
    }
    Ok(Header {
        fields,
        end: e.len(),
        body_start: e.len(),
    })
}

/// A field value without its line breaks (the folding whitespace stays).
fn unfold(value: &[u8]) -> Vec<u8> {
    value
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect()
}

struct ContentType {
    main: Vec<u8>,
    sub: Vec<u8>,
    boundary: Option<Vec<u8>>,
}

/// `type/subtype; params` (RFC 2045 §5.1, comments allowed), types in
/// lower case; `None` when there is no readable type (RFC 2045 §5.2: then
/// the default applies). Only the boundary parameter is kept. An unquoted
/// value is taken up to `;` or whitespace (boundaries like `----=_Part`
/// are often left unquoted although `=` is not a token character).
fn parse_content_type(value: &[u8]) -> Option<ContentType> {
    let mut lx = Lexer { s: value, i: 0 };
    let main = lx.token()?.to_ascii_lowercase();
    lx.expect(b'/')?;
    let sub = lx.token()?.to_ascii_lowercase();
    let mut boundary = None;
    while lx.expect(b';').is_some() {
        let Some(name) = lx.token() else { break };
        if lx.expect(b'=').is_none() {
            break;
        }
        let Some(v) = lx.value() else { break };
        if boundary.is_none() && name.eq_ignore_ascii_case(b"boundary") {
            boundary = Some(v);
        }
    }
    Some(ContentType {
        main,
        sub,
        boundary,
    })
}

/// The Content-Transfer-Encoding mechanism (RFC 2045 §6.1, case-insensitive).
fn parse_cte(value: &[u8]) -> Cte {
    let mut lx = Lexer { s: value, i: 0 };
    let Some(token) = lx.token() else {
        return Cte::Unknown;
    };
    match token.to_ascii_lowercase().as_slice() {
        b"7bit" => Cte::SevenBit,
        b"8bit" => Cte::EightBit,
        b"binary" => Cte::Binary,
        b"quoted-printable" | b"base64" => Cte::Encoded,
        _ => Cte::Unknown,
    }
}

/// A tokenizer for structured MIME field values: tokens, specials,
/// quoted strings; whitespace and (nested) comments skipped.
struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Skips whitespace and comments; an unclosed comment runs to the end.
    fn skip_cfws(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.i += 1,
                b'(' => {
                    let mut depth = 0usize;
                    while let Some(c) = self.peek() {
                        self.i += 1;
                        match c {
                            b'\\' => self.i += 1,
                            b'(' => depth += 1,
                            b')' => {
                                depth = depth.saturating_sub(1);
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => return,
            }
        }
    }

    /// An RFC 2045 token (no specials, no controls, no spaces).
    fn token(&mut self) -> Option<Vec<u8>> {
        self.skip_cfws();
        let start = self.i;
        while let Some(b) = self.peek() {
            if b <= b' ' || b >= 0x7f || b"()<>@,;:\\\"/[]?=".contains(&b) {
                break;
            }
            self.i += 1;
        }
        let t = self.s.get(start..self.i).unwrap_or_default();
        (!t.is_empty()).then(|| t.to_vec())
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.skip_cfws();
        (self.peek() == Some(c)).then(|| self.i += 1)
    }

    /// A parameter value: a quoted string (unescaped; `None` when it is not
    /// closed) or the bytes up to `;` or whitespace.
    fn value(&mut self) -> Option<Vec<u8>> {
        self.skip_cfws();
        if self.peek() == Some(b'"') {
            self.i += 1;
            let mut v = Vec::new();
            while let Some(b) = self.peek() {
                self.i += 1;
                match b {
                    b'"' => return Some(v),
                    b'\\' => {
                        if let Some(c) = self.peek() {
                            v.push(c);
                            self.i += 1;
                        }
                    }
                    b'\r' | b'\n' => {}
                    _ => v.push(b),
                }
            }
            return None;
        }
        let start = self.i;
        while let Some(b) = self.peek() {
            if b == b';' || b == b' ' || b == b'\t' || b == b'\r' || b == b'\n' {
                break;
            }
            self.i += 1;
        }
        let v = self.s.get(start..self.i).unwrap_or_default();
        (!v.is_empty()).then(|| v.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn convert(m: &str) -> String {
        let out = to_seven_bit(m.as_bytes(), false).expect("convertible");
        assert!(!needs_8bitmime(&out), "8-bit bytes left: {out:?}");
        String::from_utf8(out.into_owned()).expect("ASCII")
    }

    fn qp(data: &[u8]) -> String {
        let mut out = Vec::new();
        encode_quoted_printable(data, &mut out);
        String::from_utf8(out).expect("ASCII")
    }

    /// RFC 2045 §6.7 decoding (of what the encoder writes: no trailing
    /// whitespace to strip).
    fn decode_qp(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            if s[i] == b'=' {
                if s[i + 1..].starts_with(b"\r\n") {
                    i += 3;
                    continue;
                }
                let hex = std::str::from_utf8(&s[i + 1..i + 3]).expect("hex");
                out.push(u8::from_str_radix(hex, 16).expect("hex digits"));
                i += 3;
            } else {
                out.push(s[i]);
                i += 1;
            }
        }
        out
    }

    /// Every bare LF as CRLF (what the encoder's hard breaks stand for).
    fn crlf(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, &b) in data.iter().enumerate() {
            if b == b'\n' && (i == 0 || data[i - 1] != b'\r') {
                out.push(b'\r');
            }
            out.push(b);
        }
        out
    }

    #[test]
    fn detection() {
        assert!(!needs_8bitmime(b"Subject: x\r\n\r\nplain ASCII\r\n"));
        assert!(needs_8bitmime("caf\u{e9}".as_bytes()));
        assert!(needs_8bitmime(b"nul \0 byte"));
        assert!(matches!(
            to_seven_bit(b"Subject: x\r\n\r\nhi\r\n", false),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn plain_text_without_mime() {
        let out = convert("From: a@b.example\r\nSubject: x\r\n\r\nGr\u{fc}\u{df}e\r\nBye\r\n");
        assert_eq!(
            out,
            "From: a@b.example\r\nSubject: x\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=unknown-8bit\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\
             \r\nGr=C3=BC=C3=9Fe\r\nBye\r\n"
        );
        // A Content-Type is kept; a Content-Transfer-Encoding replaced.
        let out = convert(
            "Subject: x\r\nContent-Type: text/plain; charset=latin1\r\n\
             Content-Transfer-Encoding: 8bit\r\n\r\n\u{e9}",
        );
        assert_eq!(
            out,
            "Subject: x\r\nContent-Type: text/plain; charset=latin1\r\n\
             Content-Transfer-Encoding: quoted-printable\r\nMIME-Version: 1.0\r\n\r\n=C3=A9"
        );
    }

    #[test]
    fn mime_text_part_in_place() {
        let out = convert(
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
             content-transfer-encoding:  8BIT (sic)\r\nSubject: s\r\n\r\n\
             na\u{ef}ve = caf\u{e9}\r\n",
        );
        assert_eq!(
            out,
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\nSubject: s\r\n\r\n\
             na=C3=AFve =3D caf=C3=A9\r\n"
        );
    }

    const ATTACHMENT: &str = "Content-Type: application/octet-stream; name=\"a.bin\"\r\n\
        Content-Transfer-Encoding: base64\r\n\r\n\
        AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g\r\nISIjJCUmJygp\r\n";

    #[test]
    fn multipart_converts_the_8bit_part_and_keeps_the_rest() {
        let m = format!(
            "MIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed;\r\n boundary=\"==b1 x\"\r\n\r\n\
             This is a multi-part message in MIME format.\r\n\
             --==b1 x\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\n\r\n\
             Gr\u{fc}\u{df}e   \r\n\
             --==b1 x\r\n\
             {ATTACHMENT}\
             --==b1 x--  \r\n\
             epilogue\r\n"
        );
        let out = convert(&m);
        let expected = format!(
            "MIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed;\r\n boundary=\"==b1 x\"\r\n\r\n\
             This is a multi-part message in MIME format.\r\n\
             --==b1 x\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n\
             Gr=C3=BC=C3=9Fe  =20\r\n\
             --==b1 x\r\n\
             {ATTACHMENT}\
             --==b1 x--  \r\n\
             epilogue\r\n"
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn nested_message_rfc822() {
        let m = "MIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=outer\r\n\r\n\
             --outer\r\n\
             Content-Type: text/plain\r\n\r\n\
             seven bit\r\n\
             --outer\r\n\
             Content-Type: message/rfc822\r\n\
             Content-Transfer-Encoding: 8bit\r\n\r\n\
             Subject: inner\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n\
             --inner\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n\
             \u{e9}t\u{e9}\r\n\
             --inner\r\n\
             Content-Type: text/html; charset=utf-8\r\n\
             Content-Transfer-Encoding: 7bit\r\n\r\n\
             <p>\u{e9}t\u{e9}</p>\r\n\
             --inner--\r\n\
             --outer--\r\n";
        let out = convert(m);
        assert_eq!(
            out,
            "MIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=outer\r\n\r\n\
             --outer\r\n\
             Content-Type: text/plain\r\n\r\n\
             seven bit\r\n\
             --outer\r\n\
             Content-Type: message/rfc822\r\n\
             Content-Transfer-Encoding: 7bit\r\n\r\n\
             Subject: inner\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n\
             --inner\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n\
             =C3=A9t=C3=A9\r\n\
             --inner\r\n\
             Content-Type: text/html; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n\
             <p>=C3=A9t=C3=A9</p>\r\n\
             --inner--\r\n\
             --outer--\r\n"
        );
    }

    #[test]
    fn digest_parts_default_to_message_rfc822() {
        let out = convert(
            "MIME-Version: 1.0\r\nContent-Type: multipart/digest; boundary=d\r\n\r\n\
             --d\r\n\r\nSubject: one\r\n\r\n\u{e9}\r\n--d--\r\n",
        );
        assert_eq!(
            out,
            "MIME-Version: 1.0\r\nContent-Type: multipart/digest; boundary=d\r\n\r\n\
             --d\r\n\r\nSubject: one\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=unknown-8bit\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9\r\n--d--\r\n"
        );
    }

    #[test]
    fn unquoted_boundary_with_equals_and_missing_close_delimiter() {
        let out = convert(
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=----=_Part_1\r\n\r\n\
             ------=_Part_1\r\nContent-Type: text/plain\r\n\r\n\u{e9}\r\n",
        );
        assert!(out.ends_with("------=_Part_1\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9\r\n"), "{out}");
    }

    #[test]
    fn bare_lf_messages() {
        let out = convert("Subject: x\nContent-Transfer-Encoding: 8bit\n\n\u{e9}\nz\n");
        assert_eq!(
            out,
            "Subject: x\nContent-Transfer-Encoding: quoted-printable\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=unknown-8bit\r\n\
             \n=C3=A9\r\nz\r\n"
        );
    }

    #[test]
    fn soft_line_breaks_at_76() {
        let a = |n| "a".repeat(n);
        assert_eq!(
            qp(a(76).as_bytes()),
            a(76),
            "a line of exactly 76 stays whole"
        );
        assert_eq!(
            qp(format!("{}\r\n", a(76)).as_bytes()),
            format!("{}\r\n", a(76))
        );
        assert_eq!(qp(a(77).as_bytes()), format!("{}=\r\n{}", a(75), a(2)));
        assert_eq!(
            qp(a(200).as_bytes()),
            format!("{}=\r\n{}=\r\n{}", a(75), a(75), a(50))
        );
        // An =XX is never split; the last one may end in column 76.
        let s = format!("{}\u{e9}", a(70));
        assert_eq!(qp(s.as_bytes()), format!("{}=C3=A9", a(70)));
        let s = format!("{}\u{e9}", a(71));
        assert_eq!(qp(s.as_bytes()), format!("{}=C3=\r\n=A9", a(71)));
        let s = format!("{}\u{e9}x", a(73));
        assert_eq!(qp(s.as_bytes()), format!("{}=\r\n=C3=A9x", a(73)));
    }

    #[test]
    fn trailing_whitespace_equals_and_controls() {
        assert_eq!(qp(b"abc  \r\nd\t\r\n"), "abc =20\r\nd=09\r\n");
        assert_eq!(qp(b"end "), "end=20");
        assert_eq!(qp(b"a=b"), "a=3Db");
        assert_eq!(qp(b"a\rb\0c\x7f"), "a=0Db=00c=7F");
        assert_eq!(qp(b"\r\n\r\n"), "\r\n\r\n");
        // Whitespace before a soft break stays literal (the `=` follows it).
        let s = format!("{} {}", "a".repeat(74), "b".repeat(5));
        assert_eq!(
            qp(s.as_bytes()),
            format!("{} =\r\n{}", "a".repeat(74), "b".repeat(5))
        );
    }

    #[test]
    fn a_continued_line_never_starts_with_a_dash() {
        let s = format!("{}--boundary", "x".repeat(75));
        assert_eq!(
            qp(s.as_bytes()),
            format!("{}=\r\n=2D-boundary", "x".repeat(75))
        );
        // At the start of a real line a dash stays (that line was no
        // delimiter before, and is none now).
        assert_eq!(qp("--b \u{e9}".as_bytes()), "--b =C3=A9");
    }

    #[test]
    fn binary_is_refused() {
        let m = "MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n\
             Content-Transfer-Encoding: binary\r\n\r\n\u{ff}\0\u{80}";
        assert_eq!(
            to_seven_bit(m.as_bytes(), false),
            Err(Unconvertible::Binary)
        );
        let m = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\
             Content-Transfer-Encoding: binary\r\n\r\n--b\r\n\r\n\u{e9}\r\n--b--\r\n";
        assert_eq!(
            to_seven_bit(m.as_bytes(), false),
            Err(Unconvertible::Binary)
        );
        // Binary parts without 8-bit bytes need nothing.
        let m = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
             --b\r\nContent-Transfer-Encoding: binary\r\n\r\nascii\r\n\
             --b\r\n\r\n\u{e9}\r\n--b--\r\n";
        assert!(to_seven_bit(m.as_bytes(), false).is_ok());
    }

    #[test]
    fn eight_bit_headers_are_refused_unless_smtputf8() {
        let m = "Subject: Gr\u{fc}\u{df}e\r\n\r\nbody \u{e9}\r\n";
        assert_eq!(
            to_seven_bit(m.as_bytes(), false),
            Err(Unconvertible::EightBitHeader)
        );
        let m2 = "Subject: Gr\u{fc}\u{df}e\r\n\r\nbody\r\n";
        assert_eq!(
            to_seven_bit(m2.as_bytes(), false),
            Err(Unconvertible::EightBitHeader)
        );
        // Under SMTPUTF8 the header stays, the body is converted.
        let out = to_seven_bit(m.as_bytes(), true).expect("SMTPUTF8");
        assert!(out.ends_with(b"\r\n\r\nbody =C3=A9\r\n"));
        assert!(out.starts_with("Subject: Gr\u{fc}\u{df}e\r\n".as_bytes()));
        assert_eq!(
            to_seven_bit(m2.as_bytes(), true)
                .expect("nothing to do")
                .as_ref(),
            m2.as_bytes()
        );
        // In an inner part too.
        let m = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
             --b\r\nContent-Disposition: attachment; filename=\"\u{e9}.txt\"\r\n\r\nx\r\n--b--\r\n";
        assert_eq!(
            to_seven_bit(m.as_bytes(), false),
            Err(Unconvertible::EightBitHeader)
        );
    }

    #[test]
    fn malformed_structures_are_refused() {
        let malformed = |m: &str| {
            let r = to_seven_bit(m.as_bytes(), false);
            assert!(
                matches!(r, Err(Unconvertible::Malformed(_))),
                "{m:?}: {r:?}"
            );
        };
        malformed("MIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\n\u{e9}\r\n");
        malformed(
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\u{e9}\r\n--c--\r\n",
        );
        malformed("MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\n\u{e9}\r\n");
        malformed("MIME-Version: 1.0\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n\u{e9}\r\n");
        malformed(
            "MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nSubject: x\r\n\r\n\u{e9}\r\n",
        );
        malformed(
            "MIME-Version: 1.0\r\nContent-Type: message/partial; id=1; number=1\r\n\r\n\u{e9}\r\n",
        );
        malformed("no colon here\r\n\r\n\u{e9}\r\n");
        malformed(" folded first\r\n\r\n\u{e9}\r\n");
        malformed(
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nheaderless body \u{e9}\r\n--b--\r\n",
        );
        // Nested too deeply.
        let mut m = "Subject: x\r\n\r\n\u{e9}\r\n".to_string();
        for _ in 0..MAX_DEPTH + 2 {
            m = format!("MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n{m}");
        }
        malformed(&m);
        // Too many parts.
        let mut m =
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n".to_string();
        for _ in 0..=MAX_PARTS {
            m.push_str("--b\r\n\r\nx\r\n");
        }
        m.push_str("--b\r\n\r\n\u{e9}\r\n--b--\r\n");
        malformed(&m);
    }

    #[test]
    fn message_global_is_encoded_as_a_leaf() {
        let out = convert(
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
             --b\r\nContent-Type: message/global\r\n\r\nSubject: \u{e9}\r\n\r\nx\r\n--b--\r\n",
        );
        assert!(out.contains("Content-Type: message/global\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nSubject: =C3=A9\r\n\r\nx\r\n--b--"), "{out}");
    }

    #[test]
    fn an_8bit_preamble_is_encoded() {
        let out = convert(
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
             pr\u{e9}amble\r\n--b\r\n\r\nx\r\n--b--\r\n\u{e9}pilogue",
        );
        assert!(
            out.contains("\r\n\r\npr=C3=A9amble\r\n--b\r\n\r\nx\r\n--b--\r\n=C3=A9pilogue"),
            "{out}"
        );
    }

    /// Messages made of MIME-ish pieces, to walk odd structures.
    fn mime_pieces() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"MIME-Version: 1.0\r\n".to_vec()),
            Just(b"Content-Type: multipart/mixed; boundary=b\r\n".to_vec()),
            Just(b"Content-Type: message/rfc822\r\n".to_vec()),
            Just(b"Content-Type: multipart/digest; boundary=\"b\"\r\n".to_vec()),
            Just(b"Content-Transfer-Encoding: 8bit\r\n".to_vec()),
            Just(b"Content-Transfer-Encoding: base64\r\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"--b\r\n".to_vec()),
            Just(b"--b--\r\n".to_vec()),
            Just(b" folded\r\n".to_vec()),
            Just("caf\u{e9} ".as_bytes().to_vec()),
            Just(b"X: y\r\n".to_vec()),
            prop::collection::vec(any::<u8>(), 0..20),
        ];
        prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn quoted_printable_round_trips(data in prop::collection::vec(any::<u8>(), 0..600)) {
            let mut out = Vec::new();
            encode_quoted_printable(&data, &mut out);
            prop_assert_eq!(decode_qp(&out), crlf(&data));
            for line in out.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                prop_assert!(line.len() <= QP_LINE, "line of {}", line.len());
                prop_assert!(line.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b)));
                prop_assert!(!line.ends_with(b" ") && !line.ends_with(b"\t"));
            }
            prop_assert!(!out.windows(4).any(|w| w == b"=\r\n-"));
        }

        #[test]
        fn crlf_text_round_trips_exactly(lines in prop::collection::vec("[ -~\u{e0}-\u{ff}\t]{0,200}", 0..8)) {
            let data = lines.join("\r\n");
            let mut out = Vec::new();
            encode_quoted_printable(data.as_bytes(), &mut out);
            prop_assert_eq!(decode_qp(&out), data.as_bytes());
        }

        #[test]
        fn conversion_never_panics_and_leaves_no_8bit(m in mime_pieces()) {
            if let Ok(out) = to_seven_bit(&m, false) {
                prop_assert!(!needs_8bitmime(&out));
            }
            let _ = to_seven_bit(&m, true);
        }

        #[test]
        fn arbitrary_bytes_never_panic(m in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = to_seven_bit(&m, false);
            let _ = to_seven_bit(&m, true);
        }
    }
}
