//! SEARCH tests: every key on constructed records, text keys on decoded
//! headers and bodies, NOT/OR nesting, sequence sets with `*`, the loader
//! discipline, and a proptest that nothing panics.

use super::*;
use crate::fetch::testutil::{NESTED, record};
use imap_codec::imap_types::core::{Atom, Vec1};
use imap_codec::imap_types::datetime::NaiveDate as ImapDate;
use imap_codec::imap_types::sequence::SequenceSet;
use postamt_store::{MessageRecord, StoreError};

fn s(v: &str) -> AString<'static> {
    AString::try_from(v.to_owned()).expect("valid astring")
}

fn date(y: i32, m: u32, d: u32) -> ImapDate {
    ImapDate::try_from(chrono::NaiveDate::from_ymd_opt(y, m, d).expect("valid date"))
        .expect("imap date")
}

fn set(v: &str) -> SequenceSet {
    SequenceSet::try_from(v).expect("valid set")
}

const CTX: SearchContext = SearchContext {
    max_seq: 10,
    max_uid: 100,
};

/// Evaluates `key` on `rec` (seq 3, not recent) with `data` as the file,
/// returning the verdict and the number of loads.
fn eval_on(key: &SearchKey<'_>, rec: &MessageRecord, data: &[u8], recent: bool) -> (bool, usize) {
    let mut calls = 0;
    let mut load = || {
        calls += 1;
        Ok(data.to_vec())
    };
    let view = MessageView {
        seq: 3,
        record: rec,
        recent,
    };
    let r = matches(key, &view, &CTX, &mut load).expect("search succeeds");
    (r, calls)
}

fn hit(key: SearchKey<'_>) -> bool {
    let rec = record(NESTED);
    let (r, calls) = eval_on(&key, &rec, NESTED, false);
    if !needs_data(&key) {
        assert_eq!(calls, 0, "{key:?} loaded the message");
    }
    r
}

#[test]
fn flag_keys() {
    let mut rec = record(NESTED);
    rec.flags.answered = true;
    rec.flags.draft = true;
    rec.flags.keywords.insert("$Junk".to_owned());
    let t = |k: SearchKey<'_>| eval_on(&k, &rec, NESTED, false).0;
    assert!(t(SearchKey::All));
    assert!(t(SearchKey::Answered) && !t(SearchKey::Unanswered));
    assert!(t(SearchKey::Draft) && !t(SearchKey::Undraft));
    assert!(!t(SearchKey::Deleted) && t(SearchKey::Undeleted));
    assert!(!t(SearchKey::Flagged) && t(SearchKey::Unflagged));
    assert!(!t(SearchKey::Seen) && t(SearchKey::Unseen));
    assert!(t(SearchKey::Keyword(Atom::try_from("$junk").unwrap())));
    assert!(!t(SearchKey::Unkeyword(Atom::try_from("$JUNK").unwrap())));
    assert!(!t(SearchKey::Keyword(Atom::try_from("other").unwrap())));
    assert!(t(SearchKey::Unkeyword(Atom::try_from("other").unwrap())));
}

#[test]
fn recent_new_old() {
    let mut rec = record(NESTED);
    let t = |k: SearchKey<'_>, rec: &MessageRecord, recent| eval_on(&k, rec, NESTED, recent).0;
    assert!(t(SearchKey::Recent, &rec, true));
    assert!(!t(SearchKey::Recent, &rec, false));
    assert!(t(SearchKey::New, &rec, true));
    assert!(!t(SearchKey::Old, &rec, true));
    assert!(t(SearchKey::Old, &rec, false));
    rec.flags.seen = true;
    assert!(!t(SearchKey::New, &rec, true));
}

#[test]
fn size_keys() {
    let n = NESTED.len() as u32;
    assert!(hit(SearchKey::Larger(n - 1)));
    assert!(!hit(SearchKey::Larger(n)));
    assert!(hit(SearchKey::Smaller(n + 1)));
    assert!(!hit(SearchKey::Smaller(n)));
}

#[test]
fn internal_date_keys() {
    // INTERNALDATE 2023-11-14T22:13:20Z.
    assert!(hit(SearchKey::On(date(2023, 11, 14))));
    assert!(!hit(SearchKey::On(date(2023, 11, 15))));
    assert!(hit(SearchKey::Before(date(2023, 11, 15))));
    assert!(!hit(SearchKey::Before(date(2023, 11, 14))));
    assert!(hit(SearchKey::Since(date(2023, 11, 14))));
    assert!(!hit(SearchKey::Since(date(2023, 11, 15))));
}

#[test]
fn sent_date_keys_use_the_date_header() {
    // Date: Tue, 14 Nov 2023 10:00:00 +0100; set INTERNALDATE far away.
    let mut rec = record(NESTED);
    rec.internal_date = 0;
    let t = |k: SearchKey<'_>| eval_on(&k, &rec, NESTED, false).0;
    assert!(t(SearchKey::SentOn(date(2023, 11, 14))));
    assert!(!t(SearchKey::SentOn(date(1970, 1, 1))));
    assert!(t(SearchKey::SentBefore(date(2023, 11, 15))));
    assert!(!t(SearchKey::SentBefore(date(2023, 11, 14))));
    assert!(t(SearchKey::SentSince(date(2023, 11, 14))));
    assert!(!t(SearchKey::SentSince(date(2023, 11, 15))));
    assert!(t(SearchKey::On(date(1970, 1, 1))));
}

#[test]
fn address_and_subject_keys_use_the_envelope() {
    assert!(hit(SearchKey::From(s("ALICE"))));
    assert!(hit(SearchKey::From(s("alice@example.org"))));
    assert!(!hit(SearchKey::From(s("carol"))));
    assert!(hit(SearchKey::To(s("bob@"))));
    assert!(!hit(SearchKey::Cc(s("bob"))));
    assert!(!hit(SearchKey::Bcc(s(""))));
    // Encoded-word subject matched decoded, case-insensitively.
    assert!(hit(SearchKey::Subject(s("GRÜßE"))));
    assert!(hit(SearchKey::Subject(s("GRÜßE nested"))));
    assert!(!hit(SearchKey::Subject(s("R3LDvMOfZQ"))));
}

#[test]
fn header_key() {
    // A field outside the envelope needs the bytes; folded lines unfolded.
    let key = SearchKey::Header(s("X-Folded"), s("first second"));
    assert!(needs_data(&key));
    assert!(hit(key));
    assert!(hit(SearchKey::Header(s("x-folded"), s(""))));
    assert!(!hit(SearchKey::Header(s("X-Missing"), s(""))));
    assert!(!hit(SearchKey::Header(s("X-Folded"), s("third"))));
    // Fields of the envelope do not.
    let key = SearchKey::Header(s("subject"), s("nested"));
    assert!(!needs_data(&key));
    assert!(hit(key));
    // No Message-ID header: not even the empty string matches.
    assert!(!hit(SearchKey::Header(s("Message-ID"), s(""))));
}

#[test]
fn body_key_searches_decoded_text_parts() {
    // Quoted-printable part 1, decoded.
    assert!(hit(SearchKey::Body(s("café au lait is hot"))));
    // Base64 text part inside the encapsulated message.
    assert!(hit(SearchKey::Body(s("SECRET WORD"))));
    assert!(!hit(SearchKey::Body(s("c2VjcmV0"))));
    // HTML part text and the inner message's header are in the body.
    assert!(hit(SearchKey::Body(s("<p>html"))));
    assert!(hit(SearchKey::Body(s("carol@example.net"))));
    // The top-level header is not.
    assert!(!hit(SearchKey::Body(s("alice@example.org"))));
    // Non-text parts are not searched.
    assert!(!hit(SearchKey::Body(s("AAECAw"))));
}

#[test]
fn text_key_covers_header_and_body() {
    assert!(hit(SearchKey::Text(s("alice@example.org"))));
    assert!(hit(SearchKey::Text(s("secret word"))));
    assert!(hit(SearchKey::Text(s("grüße nested"))));
    assert!(!hit(SearchKey::Text(s("nowhere to be found"))));
}

#[test]
fn base64_body_of_a_single_part_message() {
    let msg = b"Subject: b64\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: base64\r\n\r\nQ2Fm6SBjcuhtZQ==\r\n";
    let rec = record(msg);
    let (r, calls) = eval_on(&SearchKey::Body(s("CAFÉ CRÈME")), &rec, msg, false);
    assert!(r);
    assert_eq!(calls, 1);
}

#[test]
fn sequence_and_uid_sets() {
    // seq 3 of 10, uid 1 of max 100.
    assert!(hit(SearchKey::SequenceSet(set("1:3"))));
    assert!(!hit(SearchKey::SequenceSet(set("4:*"))));
    assert!(hit(SearchKey::SequenceSet(set("*:2"))));
    assert!(hit(SearchKey::Uid(set("1"))));
    assert!(!hit(SearchKey::Uid(set("2:*"))));
    let mut rec = record(NESTED);
    rec.uid = 100;
    assert!(eval_on(&SearchKey::Uid(set("*")), &rec, NESTED, false).0);
    assert!(eval_on(&SearchKey::Uid(set("500:*")), &rec, NESTED, false).0);
}

#[test]
fn not_or_and_nesting() {
    let yes = || SearchKey::From(s("alice"));
    let no = || SearchKey::From(s("mallory"));
    assert!(hit(SearchKey::Not(Box::new(no()))));
    assert!(!hit(SearchKey::Not(Box::new(yes()))));
    assert!(hit(SearchKey::Or(Box::new(no()), Box::new(yes()))));
    assert!(!hit(SearchKey::Or(Box::new(no()), Box::new(no()))));
    assert!(hit(SearchKey::And(
        Vec1::try_from(vec![yes(), SearchKey::All]).unwrap()
    )));
    assert!(!hit(SearchKey::And(
        Vec1::try_from(vec![yes(), no()]).unwrap()
    )));
    // NOT (OR (NOT yes) no) == yes AND NOT no
    let nested = SearchKey::Not(Box::new(SearchKey::Or(
        Box::new(SearchKey::Not(Box::new(yes()))),
        Box::new(no()),
    )));
    assert!(hit(nested));
    let deep = SearchKey::Or(
        Box::new(no()),
        Box::new(SearchKey::Not(Box::new(SearchKey::Or(
            Box::new(no()),
            Box::new(SearchKey::Body(s("secret"))),
        )))),
    );
    assert!(needs_data(&deep));
    assert!(!hit(deep));
}

#[test]
fn modseq_key() {
    let rec = record(NESTED); // modseq 7
    let t = |m| {
        eval_on(
            &SearchKey::ModSequence {
                entry: None,
                modseq: m,
            },
            &rec,
            NESTED,
            false,
        )
        .0
    };
    assert!(t(7));
    assert!(t(1));
    assert!(!t(8));
}

#[test]
fn loads_once_for_many_text_keys() {
    let rec = record(NESTED);
    let key = SearchKey::And(
        Vec1::try_from(vec![
            SearchKey::Body(s("secret")),
            SearchKey::Text(s("alice")),
            SearchKey::Header(s("x-folded"), s("first")),
            SearchKey::Body(s("html")),
        ])
        .unwrap(),
    );
    let (r, calls) = eval_on(&key, &rec, NESTED, false);
    assert!(r);
    assert_eq!(calls, 1);
}

#[test]
fn needs_data_rules() {
    assert!(!needs_data(&SearchKey::Subject(s("x"))));
    assert!(!needs_data(&SearchKey::From(s("x"))));
    assert!(needs_data(&SearchKey::Body(s("x"))));
    assert!(needs_data(&SearchKey::Text(s("x"))));
    assert!(needs_data(&SearchKey::Header(s("Reply-To"), s("x"))));
    assert!(needs_data(&SearchKey::Not(Box::new(SearchKey::Text(s(
        "x"
    ))))));
    assert!(!needs_data(&SearchKey::Or(
        Box::new(SearchKey::Seen),
        Box::new(SearchKey::All)
    )));
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
    let r = matches(&SearchKey::Body(s("x")), &view, &CTX, &mut load);
    assert!(matches!(r, Err(FetchError::Store(_))));
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn leaf() -> impl Strategy<Value = SearchKey<'static>> {
        let word = prop_oneof![
            Just(""),
            Just("secret"),
            Just("é"),
            Just("alice"),
            Just("=?")
        ];
        prop_oneof![
            Just(SearchKey::All),
            Just(SearchKey::Seen),
            Just(SearchKey::New),
            word.clone().prop_map(|w| SearchKey::Body(s(w))),
            word.clone().prop_map(|w| SearchKey::Text(s(w))),
            word.clone().prop_map(|w| SearchKey::Subject(s(w))),
            word.clone().prop_map(|w| SearchKey::From(s(w))),
            word.prop_map(|w| SearchKey::Header(s("content-type"), s(w))),
            Just(SearchKey::SentOn(date(2023, 11, 14))),
            Just(SearchKey::SequenceSet(set("2:*"))),
        ]
    }

    fn key() -> impl Strategy<Value = SearchKey<'static>> {
        leaf().prop_recursive(4, 16, 3, |inner| {
            prop_oneof![
                inner.clone().prop_map(|k| SearchKey::Not(Box::new(k))),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| SearchKey::Or(Box::new(a), Box::new(b))),
                proptest::collection::vec(inner, 1..3)
                    .prop_map(|v| SearchKey::And(Vec1::try_from(v).expect("non-empty"))),
            ]
        })
    }

    fn message_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
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
        fn search_never_panics(data in message_bytes(), other in message_bytes(), key in key(), consistent in any::<bool>()) {
            let rec = record(if consistent { &data } else { &other });
            let _ = eval_on(&key, &rec, &data, true);
        }
    }
}
