//! FETCH tests: every item, section paths in nested messages, partials,
//! BINARY decoding, the loader discipline, damaged metas, and a proptest
//! that nothing panics.

use super::testutil::{NESTED, record};
use super::*;
use imap_codec::ResponseCodec;
use imap_codec::encode::Encoder;
use imap_codec::imap_types::fetch::MacroOrMessageDataItemNames;
use imap_codec::imap_types::response::{Data, Response};
use postamt_store::{BodyPart, MessageMeta, PartKind};
use std::sync::Arc;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("test part numbers are non-zero")
}

fn part(path: &[u32]) -> Part {
    Part(Vec1::try_from(path.iter().map(|&n| nz(n)).collect::<Vec<_>>()).expect("non-empty path"))
}

fn names(list: &[&str]) -> Vec1<AString<'static>> {
    let v: Vec<AString<'static>> = list
        .iter()
        .map(|s| AString::try_from(s.to_string()).expect("atom"))
        .collect();
    Vec1::try_from(v).expect("non-empty")
}

fn body(section: Option<Section<'static>>) -> MessageDataItemName<'static> {
    MessageDataItemName::BodyExt {
        section,
        partial: None,
        peek: true,
    }
}

/// Encodes FETCH items as the server would send them.
fn wire(items: Vec<MessageDataItem<'static>>) -> String {
    let resp = Response::Data(Data::Fetch {
        seq: nz(1),
        items: Vec1::try_from(items).expect("at least one item"),
    });
    String::from_utf8_lossy(&ResponseCodec::new().encode(&resp).dump()).into_owned()
}

/// Fetches `items` of `data` (meta built by the test structurer), counting
/// loader calls.
fn fetch_with(
    data: &[u8],
    rec: &MessageRecord,
    items: &[MessageDataItemName<'_>],
) -> (Result<Vec<MessageDataItem<'static>>, FetchError>, usize) {
    let mut calls = 0;
    let mut load = || {
        calls += 1;
        Ok(data.to_vec())
    };
    let view = MessageView {
        seq: 1,
        record: rec,
        recent: false,
    };
    let r = fetch_items(&view, items, &mut load);
    (r, calls)
}

fn fetch(data: &[u8], items: &[MessageDataItemName<'_>]) -> Vec<MessageDataItem<'static>> {
    let rec = record(data);
    fetch_with(data, &rec, items).0.expect("fetch succeeds")
}

/// The data of the single BODY[...] item fetched.
fn section_data(data: &[u8], section: Option<Section<'static>>) -> Option<Vec<u8>> {
    match fetch(data, &[body(section)]).pop() {
        Some(MessageDataItem::BodyExt { data, .. }) => data.into_option().map(|c| c.into_owned()),
        other => panic!("unexpected {other:?}"),
    }
}

fn text(bytes: Option<Vec<u8>>) -> String {
    String::from_utf8(bytes.expect("not NIL")).expect("utf-8 test data")
}

#[test]
fn flags_include_recent_and_keywords() {
    let mut rec = record(NESTED);
    rec.flags.seen = true;
    rec.flags.flagged = true;
    rec.flags.keywords.insert("$Forwarded".to_owned());
    let view = MessageView {
        seq: 1,
        record: &rec,
        recent: true,
    };
    let mut load = || -> Result<Vec<u8>, StoreError> { panic!("FLAGS must not load") };
    let items = fetch_items(&view, &[MessageDataItemName::Flags], &mut load).unwrap();
    let w = wire(items);
    assert!(
        w.contains("FLAGS (\\Seen \\Flagged $Forwarded \\Recent)"),
        "{w}"
    );
}

#[test]
fn index_items_never_load_the_message() {
    let rec = record(NESTED);
    let items = [
        MessageDataItemName::Uid,
        MessageDataItemName::Flags,
        MessageDataItemName::InternalDate,
        MessageDataItemName::Rfc822Size,
        MessageDataItemName::Envelope,
        MessageDataItemName::Body,
        MessageDataItemName::BodyStructure,
        MessageDataItemName::ModSeq,
    ];
    assert!(!needs_data(&items));
    let (r, calls) = fetch_with(NESTED, &rec, &items);
    assert_eq!(calls, 0);
    let w = wire(r.unwrap());
    assert!(w.contains("UID 1 "), "{w}");
    assert!(
        w.contains("INTERNALDATE \"14-Nov-2023 22:13:20 +0000\""),
        "{w}"
    );
    assert!(w.contains(&format!("RFC822.SIZE {}", NESTED.len())), "{w}");
    assert!(w.contains("MODSEQ (7)"), "{w}");
    assert!(
        w.contains("ENVELOPE (\"Tue, 14 Nov 2023 10:00:00 +0100\" \"=?UTF-8?B?R3LDvMOfZQ==?= nested\" ((\"Alice\" NIL \"alice\" \"example.org\"))"),
        "{w}"
    );
}

#[test]
fn bodystructure_has_nested_parts_and_extension_data() {
    let w = wire(fetch(NESTED, &[MessageDataItemName::BodyStructure]));
    // Part 1: text/plain QP with charset, extension data (md5 NIL, no disposition...).
    assert!(w.contains("(\"TEXT\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 27 2 NIL NIL NIL NIL)"), "{w}");
    // Part 2: a basic part.
    assert!(
        w.contains("(\"image\" \"png\" NIL NIL NIL \"base64\" 8 NIL NIL NIL NIL)"),
        "{w}"
    );
    // Part 3: message/rfc822 with the inner envelope and multipart/alternative.
    assert!(
        w.contains("\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\""),
        "{w}"
    );
    assert!(
        w.contains("\"inner\" ((\"Carol\" NIL \"carol\" \"example.net\"))"),
        "{w}"
    );
    assert!(
        w.contains("\"alternative\" (\"boundary\" \"inner\") NIL NIL NIL)"),
        "{w}"
    );
    assert!(
        w.contains("\"mixed\" (\"boundary\" \"outer\") NIL NIL NIL))"),
        "{w}"
    );
}

#[test]
fn body_has_no_extension_data() {
    let w = wire(fetch(NESTED, &[MessageDataItemName::Body]));
    assert!(
        w.contains(
            "BODY ((\"TEXT\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 27 2)"
        ),
        "{w}"
    );
    assert!(w.ends_with("\"mixed\"))\r\n"), "{w}");
}

#[test]
fn whole_header_and_text() {
    assert_eq!(section_data(NESTED, None).unwrap(), NESTED);
    let header = text(section_data(NESTED, Some(Section::Header(None))));
    assert!(header.starts_with("From: Alice"));
    assert!(header.ends_with("boundary=\"outer\"\r\n\r\n"));
    let body_text = text(section_data(NESTED, Some(Section::Text(None))));
    assert!(body_text.starts_with("preamble\r\n--outer"));
    assert_eq!(header.len() + body_text.len(), NESTED.len());
}

#[test]
fn rfc822_items() {
    let items = fetch(
        NESTED,
        &[
            MessageDataItemName::Rfc822Header,
            MessageDataItemName::Rfc822Text,
            MessageDataItemName::Rfc822,
        ],
    );
    let w = wire(items);
    assert!(w.contains("RFC822.HEADER {"), "{w}");
    assert!(w.contains("RFC822.TEXT {"), "{w}");
    assert!(
        w.contains(&format!("RFC822 {{{}}}\r\nFrom: Alice", NESTED.len())),
        "{w}"
    );
}

#[test]
fn numeric_parts_and_nested_messages() {
    assert_eq!(
        text(section_data(NESTED, Some(Section::Part(part(&[1]))))),
        "Caf=C3=A9 au lait =\r\nis hot"
    );
    assert_eq!(
        text(section_data(NESTED, Some(Section::Part(part(&[2]))))),
        "AAECAw=="
    );
    let encapsulated = text(section_data(NESTED, Some(Section::Part(part(&[3])))));
    assert!(encapsulated.starts_with("From: Carol"));
    assert!(encapsulated.ends_with("--inner--\r\n"));
    assert_eq!(
        text(section_data(NESTED, Some(Section::Part(part(&[3, 1]))))),
        "c2VjcmV0IHdvcmQ="
    );
    assert_eq!(
        text(section_data(NESTED, Some(Section::Part(part(&[3, 2]))))),
        "<p>html</p>"
    );
    let inner_header = text(section_data(
        NESTED,
        Some(Section::Header(Some(part(&[3])))),
    ));
    assert!(inner_header.starts_with("From: Carol") && inner_header.ends_with("\r\n\r\n"));
    let inner_text = text(section_data(NESTED, Some(Section::Text(Some(part(&[3]))))));
    assert!(inner_text.starts_with("--inner\r\n"));
    // MIME headers of parts.
    assert_eq!(
        text(section_data(NESTED, Some(Section::Mime(part(&[1]))))),
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    );
    assert_eq!(
        text(section_data(NESTED, Some(Section::Mime(part(&[3, 2]))))),
        "Content-Type: text/html\r\n\r\n"
    );
    // Parts that do not exist are NIL.
    assert_eq!(section_data(NESTED, Some(Section::Part(part(&[4])))), None);
    assert_eq!(
        section_data(NESTED, Some(Section::Part(part(&[1, 1])))),
        None
    );
    // HEADER of a part that is not a message is NIL.
    assert_eq!(
        section_data(NESTED, Some(Section::Header(Some(part(&[1]))))),
        None
    );
}

#[test]
fn single_part_message_part_one_is_its_body() {
    let msg = b"Subject: hi\r\nContent-Type: text/plain\r\n\r\nhello\r\n";
    assert_eq!(
        text(section_data(msg, Some(Section::Part(part(&[1]))))),
        "hello\r\n"
    );
    assert_eq!(
        text(section_data(msg, Some(Section::Mime(part(&[1]))))),
        "Subject: hi\r\nContent-Type: text/plain\r\n\r\n"
    );
    assert_eq!(section_data(msg, Some(Section::Part(part(&[2])))), None);
}

#[test]
fn message_rfc822_top_level() {
    let msg = b"Subject: outer\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n";
    assert_eq!(
        text(section_data(msg, Some(Section::Header(Some(part(&[1])))))),
        "Subject: inner\r\n\r\n"
    );
    assert_eq!(
        text(section_data(msg, Some(Section::Part(part(&[1, 1]))))),
        "inner body\r\n"
    );
}

#[test]
fn header_fields_keep_folded_lines() {
    let got = text(section_data(
        NESTED,
        Some(Section::HeaderFields(None, names(&["x-FOLDED", "Subject"]))),
    ));
    assert_eq!(
        got,
        "Subject: =?UTF-8?B?R3LDvMOfZQ==?= nested\r\nX-Folded: first\r\n second\r\n\r\n"
    );
    let not = text(section_data(
        NESTED,
        Some(Section::HeaderFieldsNot(
            None,
            names(&[
                "from",
                "to",
                "subject",
                "date",
                "mime-version",
                "content-type",
            ]),
        )),
    ));
    assert_eq!(not, "X-Folded: first\r\n second\r\n\r\n");
    let inner = text(section_data(
        NESTED,
        Some(Section::HeaderFields(Some(part(&[3])), names(&["SUBJECT"]))),
    ));
    assert_eq!(inner, "Subject: inner\r\n\r\n");
}

#[test]
fn header_fields_echo_the_names_asked() {
    let w = wire(fetch(
        NESTED,
        &[body(Some(Section::HeaderFields(
            None,
            names(&["Subject", "X-Folded"]),
        )))],
    ));
    assert!(
        w.contains("BODY[HEADER.FIELDS (Subject X-Folded)] {"),
        "{w}"
    );
}

#[test]
fn partial_fetches() {
    let item = |section, offset, len| MessageDataItemName::BodyExt {
        section,
        partial: Some((offset, nz(len))),
        peek: false,
    };
    let w = wire(fetch(NESTED, &[item(None, 0, 4)]));
    assert!(w.contains("BODY[]<0> {4}\r\nFrom"), "{w}");
    let w = wire(fetch(
        NESTED,
        &[item(Some(Section::Part(part(&[3, 2]))), 3, 4)],
    ));
    assert!(w.contains("BODY[3.2]<3> {4}\r\nhtml"), "{w}");
    // Beyond the end: an empty string, origin still echoed.
    let w = wire(fetch(
        NESTED,
        &[item(Some(Section::Part(part(&[1]))), 10_000, 10)],
    ));
    assert!(w.contains("BODY[1]<10000> {0}\r\n"), "{w}");
    // Truncated at the end.
    let w = wire(fetch(
        NESTED,
        &[item(Some(Section::Part(part(&[2]))), 4, 100)],
    ));
    assert!(w.contains("BODY[2]<4> {4}\r\nAw=="), "{w}");
    // Partial of HEADER.FIELDS is taken after subsetting.
    let w = wire(fetch(
        NESTED,
        &[item(
            Some(Section::HeaderFields(None, names(&["x-folded"]))),
            3,
            6,
        )],
    ));
    assert!(w.contains("{6}\r\nolded:"), "{w}");
}

fn binary(path: &[u32]) -> MessageDataItemName<'static> {
    MessageDataItemName::Binary {
        section: path.iter().map(|&n| nz(n)).collect(),
        partial: None,
        peek: true,
    }
}

#[test]
fn binary_decodes_qp_and_base64() {
    let w = wire(fetch(NESTED, &[binary(&[1])]));
    assert!(w.contains("BINARY[1] {20}\r\nCafé au lait is hot"), "{w}");
    let w = wire(fetch(NESTED, &[binary(&[3, 1])]));
    assert!(w.contains("BINARY[3.1] {11}\r\nsecret word"), "{w}");
    // Binary content with NUL goes as literal8.
    let w = wire(fetch(NESTED, &[binary(&[2])]));
    assert!(w.contains("BINARY[2] ~{4}\r\n\x00\x01\x02\x03"), "{w:?}");
    let w = wire(fetch(
        NESTED,
        &[
            MessageDataItemName::BinarySize {
                section: vec![nz(2)],
            },
            MessageDataItemName::BinarySize {
                section: vec![nz(1)],
            },
        ],
    ));
    assert!(w.contains("BINARY.SIZE[2] 4"), "{w}");
    assert!(w.contains("BINARY.SIZE[1] 20"), "{w}");
}

#[test]
fn binary_partial_and_missing_part() {
    let item = MessageDataItemName::Binary {
        section: vec![nz(3), nz(1)],
        partial: Some((7, nz(100))),
        peek: true,
    };
    let w = wire(fetch(NESTED, &[item, binary(&[9])]));
    assert!(w.contains("{4}\r\nword"), "{w}");
    assert!(w.contains("BINARY[9] NIL"), "{w}");
}

#[test]
fn binary_of_unknown_encoding_fails() {
    let msg =
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 f\r\n";
    let rec = record(msg);
    let (r, _) = fetch_with(msg, &rec, &[binary(&[1])]);
    assert!(matches!(r, Err(FetchError::UnknownCte)));
    // BODY[1] of the same part is fine.
    assert!(section_data(msg, Some(Section::Part(part(&[1])))).is_some());
}

#[test]
fn seen_and_data_rules() {
    let peek = body(None);
    let read = MessageDataItemName::BodyExt {
        section: None,
        partial: None,
        peek: false,
    };
    assert!(!implies_seen(&[
        peek.clone(),
        MessageDataItemName::Rfc822Header
    ]));
    assert!(implies_seen(&[read]));
    assert!(implies_seen(&[MessageDataItemName::Rfc822]));
    assert!(implies_seen(&[MessageDataItemName::Rfc822Text]));
    assert!(implies_seen(&[MessageDataItemName::Binary {
        section: vec![],
        partial: None,
        peek: false
    }]));
    assert!(!implies_seen(&[MessageDataItemName::BinarySize {
        section: vec![]
    }]));
    assert!(needs_data(&[MessageDataItemName::Uid, peek]));
    assert!(needs_data(&[MessageDataItemName::BinarySize {
        section: vec![]
    }]));
    assert!(!needs_data(&[MessageDataItemName::Envelope]));
    let MacroOrMessageDataItemNames::Macro(m) =
        MacroOrMessageDataItemNames::Macro(imap_codec::imap_types::fetch::Macro::Full)
    else {
        unreachable!()
    };
    assert!(!needs_data(&m.expand()));
}

#[test]
fn loads_at_most_once() {
    let rec = record(NESTED);
    let items = [
        body(None),
        body(Some(Section::Part(part(&[1])))),
        MessageDataItemName::Rfc822Size,
        binary(&[2]),
        MessageDataItemName::Rfc822Header,
    ];
    let (r, calls) = fetch_with(NESTED, &rec, &items);
    assert_eq!(r.unwrap().len(), 5);
    assert_eq!(calls, 1);
}

#[test]
fn loader_errors_surface() {
    let rec = record(NESTED);
    let view = MessageView {
        seq: 1,
        record: &rec,
        recent: false,
    };
    let mut load = || Err(StoreError::Gone("1".into()));
    let r = fetch_items(&view, &[body(None)], &mut load);
    assert!(matches!(r, Err(FetchError::Store(StoreError::Gone(_)))));
}

#[test]
fn file_shorter_than_the_index_says() {
    // The index describes NESTED, the file on disk is now 40 bytes.
    let rec = record(NESTED);
    let short = &NESTED[..40];
    let items = [
        body(None),
        body(Some(Section::Part(part(&[3, 2])))),
        body(Some(Section::Text(None))),
        body(Some(Section::HeaderFields(
            Some(part(&[3])),
            names(&["subject"]),
        ))),
        binary(&[1]),
        MessageDataItemName::BinarySize {
            section: vec![nz(3), nz(1)],
        },
    ];
    let (r, _) = fetch_with(short, &rec, &items);
    let w = wire(r.unwrap());
    assert!(w.contains("BODY[] {40}"), "{w}");
    assert!(w.contains("BODY[3.2] {0}"), "{w}");
    assert!(w.contains("BINARY.SIZE[3.1] 0"), "{w}");
}

#[test]
fn odd_metas_render() {
    // A multipart without parts, NUL in a header value, absurd offsets.
    let meta = MessageMeta {
        envelope: postamt_store::Envelope {
            subject: Some(b"a\0b\r\nc".to_vec()),
            ..Default::default()
        },
        body: BodyPart {
            offset: u64::MAX - 1,
            header_len: u64::MAX,
            body_len: u64::MAX,
            body_lines: u64::MAX,
            kind: PartKind::Multipart { parts: vec![] },
            ..BodyPart::default()
        },
    };
    let mut rec = record(b"x");
    rec.meta = Arc::new(meta);
    rec.uid = 0;
    rec.modseq = 0;
    rec.internal_date = i64::MAX;
    let items = [
        MessageDataItemName::BodyStructure,
        MessageDataItemName::Envelope,
        MessageDataItemName::Uid,
        MessageDataItemName::ModSeq,
        MessageDataItemName::InternalDate,
        body(Some(Section::Part(part(&[1])))),
        body(Some(Section::Header(None))),
    ];
    let (r, _) = fetch_with(b"x", &rec, &items);
    let w = wire(r.unwrap());
    assert!(
        w.contains("INTERNALDATE \"01-Jan-1970 00:00:00 +0000\""),
        "{w}"
    );
    assert!(
        w.contains("{6}\r\na\u{80}b\r\nc") || w.contains("a\u{FFFD}b"),
        "{w}"
    );
}

#[test]
fn deep_nesting_is_bounded() {
    let mut part = BodyPart::default();
    for _ in 0..10_000 {
        part = BodyPart {
            kind: PartKind::Multipart { parts: vec![part] },
            ..BodyPart::default()
        };
    }
    let mut rec = record(b"x");
    rec.meta = Arc::new(MessageMeta {
        envelope: Default::default(),
        body: part,
    });
    let (r, _) = fetch_with(b"x", &rec, &[MessageDataItemName::BodyStructure]);
    assert_eq!(r.unwrap().len(), 1);
    // Dropping a 10,000-deep tree recursively is the store's concern; keep
    // the test's own stack safe by leaking it.
    std::mem::forget(rec);
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn any_items() -> impl Strategy<Value = Vec<MessageDataItemName<'static>>> {
        let path = proptest::collection::vec(1u32..5, 0..4);
        let item = prop_oneof![
            Just(MessageDataItemName::Body),
            Just(MessageDataItemName::BodyStructure),
            Just(MessageDataItemName::Envelope),
            Just(MessageDataItemName::Rfc822),
            Just(MessageDataItemName::Rfc822Header),
            Just(MessageDataItemName::Rfc822Text),
            (
                path.clone(),
                0u32..6,
                proptest::option::of((0u32..300, 1u32..300))
            )
                .prop_map(|(p, kind, partial)| {
                    let part = Vec1::try_from(p.iter().map(|&n| nz(n)).collect::<Vec<_>>())
                        .ok()
                        .map(Part);
                    let section = match kind {
                        0 => part.map(Section::Part),
                        1 => Some(Section::Header(part)),
                        2 => Some(Section::Text(part)),
                        3 => part.map(Section::Mime),
                        4 => Some(Section::HeaderFields(
                            part,
                            names(&["subject", "content-type"]),
                        )),
                        _ => Some(Section::HeaderFieldsNot(part, names(&["from"]))),
                    };
                    MessageDataItemName::BodyExt {
                        section,
                        partial: partial.map(|(o, l)| (o, nz(l))),
                        peek: true,
                    }
                }),
            path.clone().prop_map(|p| MessageDataItemName::Binary {
                section: p.iter().map(|&n| nz(n)).collect(),
                partial: None,
                peek: true
            }),
            path.prop_map(|p| MessageDataItemName::BinarySize {
                section: p.iter().map(|&n| nz(n)).collect()
            }),
        ];
        proptest::collection::vec(item, 1..8)
    }

    fn message_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
            // Mutated real messages reach the interesting paths.
            (0usize..NESTED.len(), any::<u8>(), 0usize..NESTED.len()).prop_map(|(i, b, cut)| {
                let mut v = NESTED.to_vec();
                v[i] = b;
                v.truncate(cut.max(i + 1));
                v
            }),
        ]
    }

    proptest! {
        #[test]
        fn fetch_never_panics(data in message_bytes(), other in message_bytes(), items in any_items(), consistent in any::<bool>()) {
            // The meta is built from `data` (consistent) or from other bytes.
            let rec = record(if consistent { &data } else { &other });
            let (r, _) = fetch_with(&data, &rec, &items);
            match r {
                Ok(items) => { let _ = wire(items); }
                Err(FetchError::UnknownCte) => {}
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }
    }
}
