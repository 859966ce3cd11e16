//! Tests of the message structure parser: offsets are checked by slicing
//! the message bytes.

use super::*;
use proptest::prelude::*;

fn slice<'a>(data: &'a [u8], p: &BodyPart) -> (&'a [u8], &'a [u8]) {
    let h = p.offset as usize;
    let b = h + p.header_len as usize;
    (&data[h..b], &data[b..b + p.body_len as usize])
}

fn children(p: &BodyPart) -> &[BodyPart] {
    match &p.kind {
        PartKind::Multipart { parts } => parts,
        other => panic!("not multipart: {other:?}"),
    }
}

fn sample(eol: &str) -> Vec<u8> {
    let text = "From: \"Ann Example\" <ann@example.org>\n\
        To: bob@example.net, team: c@d, e@f;\n\
        Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\n\
        \tfolded\n\
        Date: Mon, 1 Jan 2024 10:00:00 +0000\n\
        Message-ID: <m1@example.org>\n\
        MIME-Version: 1.0\n\
        Content-Type: multipart/mixed; boundary=\"outer\"\n\
        \n\
        preamble\n\
        --outer\n\
        Content-Type: multipart/alternative; boundary=inner\n\
        \n\
        --inner\n\
        \n\
        plain body\n\
        two\n\
        --inner\n\
        Content-Type: text/html; charset=utf-8\n\
        Content-Transfer-Encoding: quoted-printable\n\
        \n\
        <p>hi</p>\n\
        --inner--\n\
        --outer\n\
        Content-Type: message/rfc822\n\
        Content-Disposition: attachment; filename=\"fwd.eml\"\n\
        \n\
        From: carol@example.com\n\
        Subject: inner\n\
        Content-Type: multipart/mixed; boundary=deep\n\
        \n\
        --deep\n\
        Content-Type: application/octet-stream; name=x.bin\n\
        Content-Transfer-Encoding: base64\n\
        Content-ID: <part@x>\n\
        Content-Language: en, de\n\
        \n\
        AAEC\n\
        --deep--\n\
        \n\
        --outer--\n\
        epilogue\n";
    text.replace('\n', eol).into_bytes()
}

#[test]
fn nested_multipart_and_rfc822_offsets_crlf_and_lf() {
    for eol in ["\r\n", "\n"] {
        let data = sample(eol);
        let meta = parse_meta(&data);
        let e = &meta.envelope;
        assert_eq!(
            e.subject.as_deref(),
            Some(&b"=?utf-8?q?Gr=C3=BC=C3=9Fe?=\tfolded"[..])
        );
        assert_eq!(e.from[0].name.as_deref(), Some(&b"Ann Example"[..]));
        assert_eq!(e.sender, e.from, "Sender defaults to From");
        assert_eq!(e.reply_to, e.from);
        assert_eq!(e.to.len(), 5, "{:?}", e.to);
        assert_eq!(e.message_id.as_deref(), Some(&b"<m1@example.org>"[..]));
        assert_eq!(e.cc, vec![]);

        let top = &meta.body;
        assert_eq!(top.offset, 0);
        let (h, b) = slice(&data, top);
        assert!(h.ends_with(format!("{eol}{eol}").as_bytes()));
        assert_eq!(h.len() + b.len(), data.len());
        assert!(b.starts_with(b"preamble"));
        assert_eq!(top.media_subtype, b"mixed");

        let outer = children(top);
        assert_eq!(outer.len(), 2);
        let alt = &outer[0];
        assert_eq!(alt.media_subtype, b"alternative");
        let (h, b) = slice(&data, alt);
        assert!(h.starts_with(b"Content-Type: multipart/alternative"));
        assert!(b.starts_with(b"--inner"));
        assert!(
            b.ends_with(b"--inner--"),
            "{:?}",
            String::from_utf8_lossy(b)
        );
        let alts = children(alt);
        assert_eq!(alts.len(), 2);
        let (h, b) = slice(&data, &alts[0]);
        assert_eq!(h, eol.as_bytes(), "empty header, just the blank line");
        assert_eq!(b, format!("plain body{eol}two").as_bytes());
        assert_eq!(alts[0].media_type, b"text");
        assert_eq!(
            alts[0].params,
            vec![(b"charset".to_vec(), b"us-ascii".to_vec())]
        );
        assert_eq!(alts[0].encoding, b"7BIT");
        assert_eq!(alts[0].body_lines, 2);
        let (_, b) = slice(&data, &alts[1]);
        assert_eq!(b, b"<p>hi</p>");
        assert_eq!(alts[1].encoding, b"quoted-printable");
        assert_eq!(alts[1].body_lines, 1);

        let msg = &outer[1];
        assert_eq!(msg.media_type, b"message");
        let (d, dp) = msg.disposition.clone().unwrap();
        assert_eq!(d, b"attachment");
        assert_eq!(dp, vec![(b"filename".to_vec(), b"fwd.eml".to_vec())]);
        let (_, b) = slice(&data, msg);
        assert!(b.starts_with(b"From: carol@example.com"));
        assert!(b.ends_with(format!("--deep--{eol}").as_bytes()));
        assert_eq!(msg.body_lines, count_lines(b));
        let PartKind::Message { envelope, body } = &msg.kind else {
            panic!("not a message: {:?}", msg.kind)
        };
        assert_eq!(envelope.subject.as_deref(), Some(&b"inner"[..]));
        assert_eq!(envelope.from[0].host.as_deref(), Some(&b"example.com"[..]));
        assert_eq!(body.offset, msg.offset + msg.header_len);
        let deep = children(body);
        assert_eq!(deep.len(), 1);
        let (h, b) = slice(&data, &deep[0]);
        assert!(h.starts_with(b"Content-Type: application/octet-stream"));
        assert_eq!(b, b"AAEC");
        assert_eq!(deep[0].id.as_deref(), Some(&b"<part@x>"[..]));
        assert_eq!(deep[0].language, vec![b"en".to_vec(), b"de".to_vec()]);
        assert_eq!(deep[0].body_lines, 0, "not text");
        assert_eq!(deep[0].params, vec![(b"name".to_vec(), b"x.bin".to_vec())]);
    }
}

#[test]
fn plain_message_defaults() {
    let data = b"Subject: hi\r\n\r\nline1\r\nline2\r\n";
    let m = parse_meta(data);
    assert_eq!(m.body.media_type, b"text");
    assert_eq!(m.body.media_subtype, b"plain");
    assert_eq!(m.body.encoding, b"7BIT");
    assert_eq!(m.body.header_len, 15);
    assert_eq!(m.body.body_len, 14);
    assert_eq!(m.body.body_lines, 2);
    assert_eq!(m.envelope.from, vec![]);
    assert_eq!(m.envelope.date, None);
}

#[test]
fn digest_children_default_to_rfc822() {
    let data = b"Content-Type: multipart/digest; boundary=b\r\n\r\n--b\r\n\r\nSubject: d1\r\n\r\nx\r\n--b--\r\n";
    let m = parse_meta(data);
    let kids = children(&m.body);
    assert_eq!(kids[0].media_type, b"message");
    let PartKind::Message { envelope, .. } = &kids[0].kind else {
        panic!("{:?}", kids[0].kind)
    };
    assert_eq!(envelope.subject.as_deref(), Some(&b"d1"[..]));
}

#[test]
fn broken_multiparts_become_text() {
    // No boundary parameter.
    let m = parse_meta(b"Content-Type: multipart/mixed\r\n\r\nbody");
    assert_eq!(m.body.media_type, b"text");
    assert_eq!(m.body.kind, PartKind::Single);
    // Boundary never appears.
    let m = parse_meta(b"Content-Type: multipart/mixed; boundary=zz\r\n\r\nbody");
    assert_eq!(m.body.kind, PartKind::Single);
    assert_eq!(m.body.body_len, 4);
    // No close delimiter: the last part runs to the end.
    let data = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n\r\nabc";
    let m = parse_meta(data);
    let kids = children(&m.body);
    assert_eq!(slice(data, &kids[0]).1, b"abc");
    // Garbage Content-Type.
    let m = parse_meta(b"Content-Type: ???\r\n\r\nx");
    assert_eq!(m.body.media_subtype, b"plain");
    // base64 message/rfc822 is not parsed inside.
    let m = parse_meta(
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA",
    );
    assert_eq!(m.body.kind, PartKind::Single);
}

#[test]
fn no_header_at_all() {
    let m = parse_meta(b"just text\nmore");
    assert_eq!(m.body.header_len, 0);
    assert_eq!(m.body.body_len, 14);
    assert_eq!(m.body.body_lines, 2);
    let m = parse_meta(b"");
    assert_eq!(m.body.body_len, 0);
    assert_eq!(m.body.body_lines, 0);
}

#[test]
fn nesting_is_bounded() {
    let mut data = Vec::new();
    for i in 0..200 {
        data.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n").as_bytes(),
        );
    }
    data.extend_from_slice(b"\r\nleaf\r\n");
    let m = parse_meta(&data);
    let mut depth = 0;
    let mut p = &m.body;
    while let PartKind::Multipart { parts } = &p.kind {
        depth += 1;
        p = &parts[0];
    }
    assert!(depth <= MAX_DEPTH, "{depth}");
    assert!(depth >= MAX_DEPTH - 1, "{depth}");

    let mut many = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
    for _ in 0..(MAX_PARTS + 100) {
        many.extend_from_slice(b"--b\r\n\r\nx\r\n");
    }
    let m = parse_meta(&many);
    assert!(children(&m.body).len() < MAX_PARTS);
}

fn check_offsets(p: &BodyPart, len: u64) {
    assert!(p.offset + p.header_len + p.body_len <= len, "{p:?}");
    match &p.kind {
        PartKind::Single => {}
        PartKind::Message { body, .. } => check_offsets(body, len),
        PartKind::Multipart { parts } => parts.iter().for_each(|c| check_offsets(c, len)),
    }
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let m = parse_meta(&data);
        check_offsets(&m.body, data.len() as u64);
    }

    #[test]
    fn never_panics_on_mime_like_text(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("--b".to_string()), Just("--b--".to_string()), Just("".to_string()),
                Just("Content-Type: multipart/mixed; boundary=b".to_string()),
                Just("Content-Type: message/rfc822".to_string()),
                Just("From: \"x <y@z>, (a".to_string()),
                "[ -~]{0,30}",
            ],
            0..60,
        ),
        crlf in any::<bool>(),
    ) {
        let data = lines.join(if crlf { "\r\n" } else { "\n" }).into_bytes();
        let m = parse_meta(&data);
        check_offsets(&m.body, data.len() as u64);
    }
}
