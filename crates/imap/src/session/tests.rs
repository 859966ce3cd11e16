//! Session state machine tests with the in-memory fake store: every
//! command's happy and error paths, state rules, and sequence numbers
//! across expunges made by this and other sessions.

use super::*;
use crate::fake::{FakeBackend, FakeStore, PASSWORD, USER};
use crate::framer::{Event, Framer};
use base64::Engine;
use postamt_store::Flags;

const MSG: &[u8] = b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: hello\r\nMessage-ID: <1@example.org>\r\n\r\nHello Bob\r\n";

fn loopback() -> SessionProps {
    SessionProps {
        secure: false,
        loopback: true,
        tls_available: true,
    }
}

fn new_session(store: &Arc<FakeStore>, props: SessionProps) -> Session<FakeBackend> {
    Session::new(
        FakeBackend {
            store: store.clone(),
        },
        props,
        "127.0.0.1:40000",
        SessionLimits {
            max_errors: 5,
            max_login_failures: 3,
            max_message_size: 1024 * 1024,
            max_commands: 1000,
        },
    )
}

/// Frames `input` like the connection (literals accepted) and returns
/// everything the session answered.
async fn run(s: &mut Session<FakeBackend>, input: &str) -> String {
    run_bytes(s, input.as_bytes()).await
}

async fn run_bytes(s: &mut Session<FakeBackend>, input: &[u8]) -> String {
    let mut framer = Framer::new(16 * 1024 * 1024, 64 * 1024);
    framer.feed(input);
    let mut out = Vec::new();
    loop {
        match framer.poll() {
            Event::Message => {
                s.handle_message(framer.message(), &mut out).await.unwrap();
                framer.finish();
            }
            Event::Literal { .. } => {}
            Event::NeedMore => break,
            Event::TooLong => panic!("too long"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn logged_in(store: &Arc<FakeStore>) -> Session<FakeBackend> {
    let mut s = new_session(store, loopback());
    let out = run(&mut s, &format!("a LOGIN {USER} {PASSWORD}\r\n")).await;
    assert!(out.contains("a OK [CAPABILITY "), "{out}");
    s
}

async fn selected(store: &Arc<FakeStore>) -> Session<FakeBackend> {
    let mut s = logged_in(store).await;
    let out = run(&mut s, "s SELECT INBOX\r\n").await;
    assert!(out.contains("s OK [READ-WRITE]"), "{out}");
    s
}

fn store_with(n: usize) -> Arc<FakeStore> {
    let store = FakeStore::new();
    for _ in 0..n {
        store.deliver("INBOX", MSG);
    }
    store
}

fn line_with<'a>(out: &'a str, needle: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{out}"))
}

// ---- not authenticated

#[tokio::test]
async fn greeting_and_capability_follow_the_login_rules() {
    let store = FakeStore::new();
    let s = new_session(&store, loopback());
    let g = String::from_utf8(s.greeting()).unwrap();
    assert!(g.starts_with("* OK [CAPABILITY IMAP4rev1 "), "{g}");
    assert!(g.contains("AUTH=PLAIN") && g.contains("STARTTLS"), "{g}");

    let remote = SessionProps {
        secure: false,
        loopback: false,
        tls_available: true,
    };
    let mut s = new_session(&store, remote);
    let out = run(&mut s, "a CAPABILITY\r\n").await;
    let caps = line_with(&out, "* CAPABILITY");
    assert!(
        caps.contains("LOGINDISABLED") && !caps.contains("AUTH=PLAIN"),
        "{caps}"
    );
    assert!(out.contains("a OK"), "{out}");
}

#[tokio::test]
async fn plaintext_login_needs_tls_or_loopback() {
    let store = FakeStore::new();
    let remote = SessionProps {
        secure: false,
        loopback: false,
        tls_available: true,
    };
    let mut s = new_session(&store, remote);
    let out = run(&mut s, "a LOGIN alice secret\r\nb AUTHENTICATE PLAIN\r\n").await;
    assert!(out.contains("a NO [PRIVACYREQUIRED]"), "{out}");
    assert!(out.contains("b NO [PRIVACYREQUIRED]"), "{out}");
    assert!(!s.is_authenticated());

    let secure = SessionProps {
        secure: true,
        loopback: false,
        tls_available: false,
    };
    let mut s = new_session(&store, secure);
    let out = run(&mut s, "a LOGIN alice secret\r\n").await;
    assert!(out.contains("a OK"), "{out}");
    assert_eq!(s.user(), Some(USER));
}

#[tokio::test]
async fn login_failures_are_counted_and_end_the_connection() {
    let store = FakeStore::new();
    let mut s = new_session(&store, loopback());
    let out = run(&mut s, "a LOGIN alice wrong\r\nb LOGIN bob secret\r\n").await;
    assert!(out.contains("a NO [AUTHENTICATIONFAILED]"), "{out}");
    assert!(out.contains("b NO [AUTHENTICATIONFAILED]"), "{out}");
    assert!(!s.is_closed());
    let out = run(&mut s, "c LOGIN alice nope\r\n").await;
    assert!(out.contains("c NO [AUTHENTICATIONFAILED]"), "{out}");
    assert!(out.contains("* BYE"), "{out}");
    assert!(s.is_closed());
    assert_eq!(run(&mut s, "d NOOP\r\n").await, "", "nothing after close");
}

#[tokio::test]
async fn login_with_a_literal_password() {
    let store = FakeStore::new();
    let mut s = new_session(&store, loopback());
    let out = run(&mut s, "a LOGIN {5}\r\nalice {6}\r\nsecret\r\n").await;
    assert!(out.contains("a OK"), "{out}");
}

#[tokio::test]
async fn authenticate_plain_with_initial_response_and_continuation() {
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let store = FakeStore::new();
    let mut s = new_session(&store, loopback());
    let out = run(
        &mut s,
        &format!("a AUTHENTICATE PLAIN {}\r\n", b64(b"\0alice\0secret")),
    )
    .await;
    assert!(out.contains("a OK [CAPABILITY"), "{out}");

    let mut s = new_session(&store, loopback());
    let out = run(&mut s, "a AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(out, "+ \r\n");
    assert!(s.awaiting_sasl());
    let out = run(&mut s, &format!("{}\r\n", b64(b"alice\0alice\0secret"))).await;
    assert!(out.starts_with("a OK"), "{out}");

    let mut s = new_session(&store, loopback());
    let out = run(&mut s, "a AUTHENTICATE PLAIN\r\n*\r\n").await;
    assert!(out.contains("a BAD"), "{out}");
    let out = run(
        &mut s,
        &format!("b AUTHENTICATE PLAIN {}\r\n", b64(b"bob\0alice\0secret")),
    )
    .await;
    assert!(out.contains("b NO [AUTHENTICATIONFAILED]"), "{out}");
    let out = run(&mut s, "c AUTHENTICATE CRAM-MD5\r\n").await;
    assert!(out.contains("c NO"), "{out}");
    assert!(!s.is_authenticated());
}

#[tokio::test]
async fn starttls_rules() {
    let store = FakeStore::new();
    let mut s = new_session(&store, loopback());
    let out = run(&mut s, "a STARTTLS\r\n").await;
    assert_eq!(out, "a OK Begin TLS negotiation now\r\n");
    assert!(s.wants_tls());
    // Pipelined plaintext is never executed.
    assert_eq!(run(&mut s, "b LOGIN alice secret\r\n").await, "");
    assert!(s.tls_established());
    assert!(s.props().secure);
    let out = run(&mut s, "c STARTTLS\r\n").await;
    assert!(out.contains("c BAD"), "{out}");

    let mut s = new_session(
        &store,
        SessionProps {
            tls_available: false,
            ..loopback()
        },
    );
    let out = run(&mut s, "a STARTTLS\r\n").await;
    assert!(out.contains("a BAD"), "{out}");
}

#[tokio::test]
async fn state_rules_and_error_limit() {
    let store = store_with(1);
    let mut s = new_session(&store, loopback());
    let out = run(&mut s, "a SELECT INBOX\r\nb FETCH 1 FLAGS\r\n").await;
    assert!(out.contains("a BAD") && out.contains("b BAD"), "{out}");
    let out = run(&mut s, "c NOOP\r\nd BLURB\r\n* NOOP\r\n").await;
    assert!(out.contains("c OK"), "{out}");
    assert!(out.contains("d BAD"), "{out}");
    assert!(!s.is_closed());
    let out = run(&mut s, "e X\r\nf Y\r\n").await;
    assert!(out.contains("* BYE Too many invalid commands"), "{out}");
    assert!(s.is_closed());

    let mut s = logged_in(&store).await;
    let out = run(&mut s, "a FETCH 1 FLAGS\r\nb EXPUNGE\r\nc LOGIN a b\r\n").await;
    assert!(
        out.contains("a BAD") && out.contains("b BAD") && out.contains("c BAD"),
        "{out}"
    );
}

#[tokio::test]
async fn logout_says_bye_then_ok() {
    let store = FakeStore::new();
    let mut s = logged_in(&store).await;
    let out = run(&mut s, "z LOGOUT\r\n").await;
    assert_eq!(out, "* BYE Logging out\r\nz OK LOGOUT completed\r\n");
    assert!(s.is_closed());
}

#[tokio::test]
async fn id_namespace_enable() {
    let store = FakeStore::new();
    let mut s = new_session(&store, loopback());
    let out = run(&mut s, "a ID (\"name\" \"test\")\r\nb ENABLE CONDSTORE\r\n").await;
    assert!(out.contains("* ID (\"name\" \"Postamt\""), "{out}");
    assert!(out.contains("b BAD"), "ENABLE needs login: {out}");
    let mut s = logged_in(&store).await;
    let out = run(
        &mut s,
        "a NAMESPACE\r\nb ENABLE QRESYNC UTF8=ACCEPT X-FOO\r\nc ENABLE CONDSTORE\r\n",
    )
    .await;
    assert!(out.contains("* NAMESPACE ((\"\" \"/\")) NIL NIL"), "{out}");
    assert!(out.contains("* ENABLED QRESYNC UTF8=ACCEPT\r\n"), "{out}");
    assert!(
        out.contains("* ENABLED\r\n"),
        "CONDSTORE came with QRESYNC: {out}"
    );
    assert!(s.enabled().condstore && s.enabled().qresync && s.enabled().utf8);
}

// ---- authenticated: folders

#[tokio::test]
async fn select_reports_the_folder() {
    let store = store_with(3);
    store.set_flags(
        "INBOX",
        1,
        Flags {
            seen: true,
            ..Default::default()
        },
    );
    let mut s = logged_in(&store).await;
    let out = run(&mut s, "a SELECT inbox\r\n").await;
    assert!(
        out.contains("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)"),
        "{out}"
    );
    assert!(out.contains("* OK [PERMANENTFLAGS ("), "{out}");
    assert!(out.contains("* 3 EXISTS"), "{out}");
    assert!(out.contains("* 3 RECENT"), "{out}");
    assert!(out.contains("* OK [UNSEEN 2]"), "{out}");
    assert!(out.contains("* OK [UIDVALIDITY 1000]"), "{out}");
    assert!(out.contains("* OK [UIDNEXT 4]"), "{out}");
    assert!(out.contains("* OK [HIGHESTMODSEQ"), "{out}");
    assert!(out.contains("a OK [READ-WRITE]"), "{out}");

    // A second session sees no recent messages (the first claimed them).
    let mut s2 = logged_in(&store).await;
    let out = run(&mut s2, "b EXAMINE INBOX\r\n").await;
    assert!(out.contains("* 0 RECENT"), "{out}");
    assert!(out.contains("b OK [READ-ONLY]"), "{out}");
    assert!(out.contains("* OK [PERMANENTFLAGS ()]"), "{out}");
}

#[tokio::test]
async fn select_errors() {
    let store = FakeStore::new();
    let mut s = logged_in(&store).await;
    let out = run(
        &mut s,
        "a SELECT Nowhere\r\nb SELECT \"../etc\"\r\nc SELECT \"~root\"\r\nd SELECT \"/abs\"\r\n",
    )
    .await;
    assert!(out.contains("a NO [NONEXISTENT]"), "{out}");
    assert!(out.contains("b NO [CANNOT]"), "{out}");
    assert!(out.contains("c NO [CANNOT]"), "{out}");
    assert!(out.contains("d NO [CANNOT]"), "{out}");
    // A failed SELECT leaves nothing selected.
    run(&mut s, "e SELECT INBOX\r\n").await;
    let out = run(&mut s, "f SELECT Nowhere\r\ng NOOP\r\nh FETCH 1 FLAGS\r\n").await;
    assert!(out.contains("h BAD"), "{out}");
}

#[tokio::test]
async fn create_delete_rename_subscribe() {
    let store = FakeStore::new();
    let mut s = logged_in(&store).await;
    let out = run(
        &mut s,
        "a CREATE Projects/\r\nb CREATE Projects\r\nc CREATE INBOX\r\n",
    )
    .await;
    assert!(out.contains("a OK"), "{out}");
    assert!(store.exists("Projects"));
    assert!(out.contains("b NO [ALREADYEXISTS]"), "{out}");
    assert!(out.contains("c NO [ALREADYEXISTS]"), "{out}");

    let out = run(
        &mut s,
        "d RENAME Projects Archive2026\r\ne RENAME Nope X\r\n",
    )
    .await;
    assert!(out.contains("d OK"), "{out}");
    assert!(store.exists("Archive2026") && !store.exists("Projects"));
    assert!(out.contains("e NO [NONEXISTENT]"), "{out}");

    let out = run(&mut s, "f SUBSCRIBE Archive2026\r\ng UNSUBSCRIBE Sent\r\n").await;
    assert!(out.contains("f OK") && out.contains("g OK"), "{out}");
    let out = run(&mut s, "h LSUB \"\" \"*\"\r\n").await;
    assert!(out.contains("* LSUB () \"/\" \"Archive2026\""), "{out}");
    assert!(!out.contains("\"Sent\""), "{out}");

    let out = run(
        &mut s,
        "i DELETE Archive2026\r\nj DELETE INBOX\r\nk DELETE Nope\r\n",
    )
    .await;
    assert!(out.contains("i OK"), "{out}");
    assert!(!store.exists("Archive2026"));
    assert!(out.contains("j NO [CANNOT]"), "{out}");
    assert!(out.contains("k NO [NONEXISTENT]"), "{out}");

    let out = run(
        &mut s,
        "l CREATE \"a/../b\"\r\nm CREATE \"x~y\"\r\nn CREATE \"&Jjo\"\r\n",
    )
    .await;
    assert!(out.contains("l NO [CANNOT]"), "{out}");
    assert!(out.contains("m NO [CANNOT]"), "{out}");
    assert!(out.contains("n NO [CANNOT]"), "bad UTF-7: {out}");

    run(&mut s, "o SELECT Sent\r\n").await;
    let out = run(&mut s, "p DELETE Sent\r\n").await;
    assert!(out.contains("p NO [INUSE]"), "{out}");
}

#[tokio::test]
async fn modified_utf7_names_round_trip() {
    let store = FakeStore::new();
    let mut s = logged_in(&store).await;
    let out = run(
        &mut s,
        "a CREATE \"Entw&APw-rfe\"\r\nb LIST \"\" \"Entw*\"\r\n",
    )
    .await;
    assert!(out.contains("a OK"), "{out}");
    assert!(store.exists("Entwürfe"));
    assert!(
        out.contains("* LIST (\\HasNoChildren) \"/\" \"Entw&APw-rfe\""),
        "{out}"
    );
    // With UTF8=ACCEPT names are raw UTF-8.
    let out = run(&mut s, "c ENABLE UTF8=ACCEPT\r\nd LIST \"\" \"Entw*\"\r\n").await;
    assert!(out.contains("\"/\" \"Entwürfe\""), "{out}");
}

#[tokio::test]
async fn list_attributes_and_patterns() {
    let store = FakeStore::new();
    store.make("Work", None);
    store.make("Work/2026", None);
    let mut s = logged_in(&store).await;
    let out = run(&mut s, "a LIST \"\" \"*\"\r\n").await;
    let inbox = out.find("\"INBOX\"").expect("INBOX listed");
    let sent = out.find("\"Sent\"").expect("Sent listed");
    assert!(inbox < sent, "INBOX first: {out}");
    assert!(
        out.contains("* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\""),
        "{out}"
    );
    assert!(
        out.contains("* LIST (\\HasChildren) \"/\" \"Work\""),
        "{out}"
    );
    assert!(out.contains("\"Work/2026\""), "{out}");

    let out = run(&mut s, "b LIST \"\" \"%\"\r\n").await;
    assert!(!out.contains("Work/2026"), "{out}");
    let out = run(&mut s, "c LIST Work %\r\n").await;
    assert!(
        out.contains("\"Work/2026\"") && !out.contains("\"Sent\""),
        "{out}"
    );
    let out = run(&mut s, "d LIST \"\" \"\"\r\n").await;
    assert_eq!(
        out,
        "* LIST (\\Noselect) \"/\" \"\"\r\nd OK LIST completed\r\n"
    );

    let out = run(&mut s, "e LIST (SPECIAL-USE) \"\" \"*\"\r\n").await;
    assert!(
        out.contains("\"Sent\"") && out.contains("\"Trash\""),
        "{out}"
    );
    assert!(
        !out.contains("\"INBOX\"") && !out.contains("\"Work\""),
        "{out}"
    );

    store.deliver("INBOX", MSG);
    let out = run(
        &mut s,
        "f LIST \"\" (INBOX Drafts) RETURN (SUBSCRIBED STATUS (MESSAGES UIDNEXT))\r\n",
    )
    .await;
    assert!(
        out.contains("* LIST (\\HasNoChildren \\Subscribed) \"/\" \"INBOX\""),
        "{out}"
    );
    assert!(
        out.contains("* STATUS \"INBOX\" (MESSAGES 1 UIDNEXT 2)"),
        "{out}"
    );
    assert!(out.contains("\\Drafts"), "{out}");
    assert!(!out.contains("\"Sent\""), "{out}");

    let out = run(&mut s, "g LIST (BOGUS) \"\" *\r\n").await;
    assert!(out.contains("g BAD"), "{out}");

    store
        .fail_list
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let out = run(&mut s, "h LIST \"\" *\r\n").await;
    assert!(out.contains("h NO [SERVERBUG]"), "{out}");
}

#[tokio::test]
async fn status_items() {
    let store = store_with(2);
    store.set_flags(
        "INBOX",
        1,
        Flags {
            seen: true,
            ..Default::default()
        },
    );
    let mut s = logged_in(&store).await;
    let out = run(
        &mut s,
        "a STATUS INBOX (MESSAGES UNSEEN UIDNEXT UIDVALIDITY HIGHESTMODSEQ SIZE)\r\nb STATUS Nope (MESSAGES)\r\n",
    )
    .await;
    let line = line_with(&out, "* STATUS");
    assert!(
        line.starts_with(
            "* STATUS \"INBOX\" (MESSAGES 2 UNSEEN 1 UIDNEXT 3 UIDVALIDITY 1000 HIGHESTMODSEQ "
        ),
        "{line}"
    );
    assert!(line.contains(&format!("SIZE {}", 2 * MSG.len())), "{line}");
    assert!(out.contains("b NO [NONEXISTENT]"), "{out}");
}

#[tokio::test]
async fn append_with_flags_and_errors() {
    let store = FakeStore::new();
    let mut s = logged_in(&store).await;
    let input = format!(
        "a APPEND Drafts (\\Draft \\Seen) \"14-Nov-2023 10:00:00 +0100\" {{{}}}\r\n",
        MSG.len()
    );
    let mut bytes = input.into_bytes();
    bytes.extend_from_slice(MSG);
    bytes.extend_from_slice(b"\r\n");
    let out = run_bytes(&mut s, &bytes).await;
    assert!(out.contains("a OK [APPENDUID 1002 1]"), "{out}");
    let f = store.flags("Drafts", 1).unwrap();
    assert!(f.draft && f.seen && !f.deleted);

    let out = run(&mut s, "b APPEND Nope {5+}\r\nhello\r\n").await;
    assert!(out.contains("b NO [TRYCREATE]"), "{out}");
    let out = run(&mut s, "c APPEND \"../x\" {5+}\r\nhello\r\n").await;
    assert!(out.contains("c NO [CANNOT]"), "{out}");
    let out = run(&mut s, "d APPEND INBOX (\\Recent) {5+}\r\nhello\r\n").await;
    assert!(out.contains("d BAD"), "{out}");
    assert!(store.uids("INBOX").is_empty());
}

#[tokio::test]
async fn append_to_the_selected_folder_shows_exists() {
    let store = store_with(1);
    let mut s = selected(&store).await;
    let out = run(&mut s, "a APPEND INBOX {5+}\r\nhello\r\n").await;
    assert!(out.contains("* 2 EXISTS"), "{out}");
    assert!(out.find("* 2 EXISTS").unwrap() < out.find("a OK").unwrap());
}

// ---- selected

#[tokio::test]
async fn fetch_flags_uid_and_seen() {
    let store = store_with(2);
    let mut s = selected(&store).await;
    let out = run(&mut s, "a FETCH 1:* (FLAGS RFC822.SIZE)\r\n").await;
    assert!(
        out.contains(&format!(
            "* 1 FETCH (FLAGS (\\Recent) RFC822.SIZE {})",
            MSG.len()
        )),
        "{out}"
    );
    assert!(out.contains("* 2 FETCH"), "{out}");

    let out = run(&mut s, "b UID FETCH 2 FLAGS\r\n").await;
    assert!(out.contains("* 2 FETCH (UID 2 FLAGS (\\Recent))"), "{out}");

    let out = run(&mut s, "c FETCH 1 BODY.PEEK[]\r\n").await;
    assert!(out.contains("Hello Bob"), "{out}");
    assert!(!store.flags("INBOX", 1).unwrap().seen, "PEEK sets nothing");

    let out = run(&mut s, "d FETCH 1 BODY[]\r\n").await;
    assert!(store.flags("INBOX", 1).unwrap().seen, "BODY[] sets \\Seen");
    assert!(out.contains("\\Seen"), "FLAGS reported: {out}");

    let out = run(&mut s, "e FETCH 3 FLAGS\r\nf FETCH 0 FLAGS\r\n").await;
    assert!(out.contains("e BAD"), "{out}");
    assert!(out.contains("f BAD"), "{out}");
    let out = run(&mut s, "g UID FETCH 99 FLAGS\r\n").await;
    assert_eq!(out, "g OK FETCH completed\r\n");
}

#[tokio::test]
async fn examine_never_sets_seen() {
    let store = store_with(1);
    let mut s = logged_in(&store).await;
    run(&mut s, "a EXAMINE INBOX\r\n").await;
    let out = run(
        &mut s,
        "b FETCH 1 BODY[TEXT]\r\nc STORE 1 +FLAGS (\\Seen)\r\n",
    )
    .await;
    assert!(out.contains("Hello Bob"), "{out}");
    assert!(out.contains("c NO [READ-ONLY]"), "{out}");
    assert!(!store.flags("INBOX", 1).unwrap().seen);
}

#[tokio::test]
async fn fetch_with_condstore_and_changedsince() {
    let store = store_with(3);
    let mut s = selected(&store).await;
    run(&mut s, "a STORE 2 +FLAGS (\\Flagged)\r\n").await;
    let ms = store.flags("INBOX", 2).unwrap();
    assert!(ms.flagged);
    let out = run(&mut s, "b FETCH 1:* (FLAGS) (CHANGEDSINCE 4)\r\n").await;
    assert!(
        out.contains("* 2 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ ("),
        "{out}"
    );
    assert!(
        !out.contains("* 1 FETCH") && !out.contains("* 3 FETCH"),
        "{out}"
    );
    assert!(s.enabled().condstore, "CHANGEDSINCE enables CONDSTORE");
    let out = run(&mut s, "c FETCH 1 UID\r\n").await;
    assert!(
        out.contains("MODSEQ ("),
        "MODSEQ added once CONDSTORE is on: {out}"
    );
}

#[tokio::test]
async fn store_variants() {
    let store = store_with(3);
    let mut s = selected(&store).await;
    let out = run(&mut s, "a STORE 1:2 +FLAGS (\\Flagged $Work)\r\n").await;
    assert!(
        out.contains("* 1 FETCH (FLAGS (\\Flagged \\Recent $Work))"),
        "{out}"
    );
    assert!(out.contains("* 2 FETCH"), "{out}");
    assert!(store.flags("INBOX", 2).unwrap().keywords.contains("$Work"));

    let out = run(&mut s, "b STORE 1 -FLAGS.SILENT (\\Flagged)\r\n").await;
    assert_eq!(out, "b OK STORE completed\r\n");
    assert!(!store.flags("INBOX", 1).unwrap().flagged);

    let out = run(&mut s, "c UID STORE 3 FLAGS (\\Deleted)\r\n").await;
    assert!(
        out.contains("* 3 FETCH (UID 3 FLAGS (\\Deleted \\Recent))"),
        "{out}"
    );

    // UNCHANGEDSINCE: message 2 changed after modseq 2.
    let out = run(
        &mut s,
        "d STORE 1:2 (UNCHANGEDSINCE 2) +FLAGS (\\Answered)\r\n",
    )
    .await;
    assert!(
        out.contains("d OK [MODIFIED 1:2]") || out.contains("d OK [MODIFIED 2]"),
        "{out}"
    );
    assert!(!store.flags("INBOX", 2).unwrap().answered);
    let out = run(
        &mut s,
        "e UID STORE 1 (UNCHANGEDSINCE 1000) +FLAGS (\\Answered)\r\n",
    )
    .await;
    assert!(out.contains("e OK STORE completed"), "{out}");
    assert!(out.contains("MODSEQ ("), "{out}");
    assert!(store.flags("INBOX", 1).unwrap().answered);

    let out = run(&mut s, "f STORE 1 +FLAGS (\\Bogus)\r\n").await;
    assert!(out.contains("f BAD"), "{out}");
}

#[tokio::test]
async fn expunge_numbers_and_uid_expunge() {
    let store = store_with(5);
    let mut s = selected(&store).await;
    run(&mut s, "a STORE 2,4 +FLAGS.SILENT (\\Deleted)\r\n").await;
    let out = run(&mut s, "b EXPUNGE\r\n").await;
    assert_eq!(
        out,
        "* 4 EXPUNGE\r\n* 2 EXPUNGE\r\nb OK EXPUNGE completed\r\n"
    );
    assert_eq!(store.uids("INBOX"), vec![1, 3, 5]);

    run(&mut s, "c STORE 1:* +FLAGS.SILENT (\\Deleted)\r\n").await;
    let out = run(&mut s, "d UID EXPUNGE 3:4\r\n").await;
    assert_eq!(out, "* 2 EXPUNGE\r\nd OK EXPUNGE completed\r\n");
    assert_eq!(store.uids("INBOX"), vec![1, 5]);
    let out = run(&mut s, "e FETCH 2 UID\r\n").await;
    assert!(
        out.contains("* 2 FETCH (UID 5)"),
        "numbers follow the expunges: {out}"
    );
}

#[tokio::test]
async fn others_changes_are_announced_but_no_expunge_during_fetch() {
    let store = store_with(3);
    let mut s = selected(&store).await;
    store.remove("INBOX", 2);
    store.deliver("INBOX", MSG);
    store.set_flags(
        "INBOX",
        3,
        Flags {
            flagged: true,
            ..Default::default()
        },
    );

    let out = run(&mut s, "a FETCH 1:3 UID\r\n").await;
    assert!(!out.contains("EXPUNGE"), "no EXPUNGE during FETCH: {out}");
    assert!(out.contains("* 4 EXISTS"), "{out}");
    assert!(
        out.contains("* 3 FETCH (FLAGS (\\Flagged \\Recent))"),
        "{out}"
    );
    assert!(
        out.contains("* 1 FETCH (UID 1)") && out.contains("* 3 FETCH (UID 3)"),
        "{out}"
    );

    let out = run(&mut s, "b SEARCH ALL\r\n").await;
    assert!(!out.contains("EXPUNGE"), "{out}");
    assert!(
        out.contains("* SEARCH 1 3 4"),
        "message 2 keeps its number but matches nothing: {out}"
    );

    let out = run(&mut s, "c NOOP\r\n").await;
    assert_eq!(out, "* 2 EXPUNGE\r\nc OK NOOP completed\r\n");
    let out = run(&mut s, "d FETCH 3 UID\r\n").await;
    assert!(out.contains("* 3 FETCH (UID 4)"), "{out}");
}

#[tokio::test]
async fn uid_commands_may_announce_expunges() {
    let store = store_with(2);
    let mut s = selected(&store).await;
    store.remove("INBOX", 1);
    let out = run(&mut s, "a UID FETCH 1:* FLAGS\r\n").await;
    assert!(out.contains("* 1 EXPUNGE"), "{out}");
}

#[tokio::test]
async fn copy_and_move() {
    let store = store_with(3);
    let mut s = selected(&store).await;
    let out = run(
        &mut s,
        "a COPY 1:2 Trash\r\nb COPY 1 Nope\r\nc COPY 1 \"..\"\r\n",
    )
    .await;
    assert!(out.contains("a OK [COPYUID 1003 1:2 1:2]"), "{out}");
    assert_eq!(store.uids("Trash"), vec![1, 2]);
    assert!(out.contains("b NO [TRYCREATE]"), "{out}");
    assert!(out.contains("c NO [CANNOT]"), "{out}");

    let out = run(&mut s, "d UID MOVE 2:3 Sent\r\n").await;
    let copyuid = out.find("* OK [COPYUID 1001 2:3 1:2]").expect(&out);
    let exp = out.find("* 3 EXPUNGE").expect(&out);
    assert!(copyuid < exp, "{out}");
    assert!(out.contains("* 2 EXPUNGE"), "{out}");
    assert!(out.ends_with("d OK MOVE completed\r\n"), "{out}");
    assert_eq!(store.uids("INBOX"), vec![1]);
    assert_eq!(store.uids("Sent"), vec![1, 2]);
}

#[tokio::test]
async fn search_and_esearch() {
    let store = store_with(4);
    store.set_flags(
        "INBOX",
        2,
        Flags {
            seen: true,
            ..Default::default()
        },
    );
    let mut s = selected(&store).await;
    let out = run(&mut s, "a SEARCH UNSEEN\r\nb UID SEARCH SEEN\r\n").await;
    assert!(out.contains("* SEARCH 1 3 4\r\n"), "{out}");
    assert!(out.contains("* SEARCH 2\r\n"), "{out}");
    let out = run(&mut s, "c SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN\r\n").await;
    assert!(
        out.contains("* ESEARCH (TAG \"c\") MIN 1 MAX 4 COUNT 3 ALL 1,3:4"),
        "{out}"
    );
    let out = run(&mut s, "d UID SEARCH RETURN () SUBJECT hello\r\n").await;
    assert!(out.contains("* ESEARCH (TAG \"d\") UID ALL 1:4"), "{out}");
    let out = run(
        &mut s,
        "e SEARCH CHARSET UTF-8 SUBJECT hello\r\nf SEARCH CHARSET KOI8-R ALL\r\n",
    )
    .await;
    assert!(out.contains("* SEARCH 1 2 3 4"), "{out}");
    assert!(out.contains("f NO [BADCHARSET (UTF-8 US-ASCII)]"), "{out}");
    let out = run(&mut s, "g SEARCH RETURN (SAVE) ALL\r\nh FETCH 1 RETURN\r\n").await;
    assert!(out.contains("g BAD") && out.contains("h BAD"), "{out}");
    let out = run(&mut s, "i SEARCH MODSEQ 1\r\n").await;
    assert!(out.contains("* SEARCH 1 2 3 4 (MODSEQ "), "{out}");
}

#[tokio::test]
async fn close_expunges_silently_unselect_does_not() {
    let store = store_with(2);
    let mut s = selected(&store).await;
    run(&mut s, "a STORE 1 +FLAGS.SILENT (\\Deleted)\r\n").await;
    let out = run(&mut s, "b UNSELECT\r\n").await;
    assert_eq!(out, "b OK UNSELECT completed\r\n");
    assert_eq!(store.uids("INBOX"), vec![1, 2]);
    run(&mut s, "c SELECT INBOX\r\n").await;
    let out = run(&mut s, "d CLOSE\r\n").await;
    assert_eq!(out, "d OK CLOSE completed\r\n");
    assert_eq!(store.uids("INBOX"), vec![2]);
    let out = run(&mut s, "e FETCH 1 FLAGS\r\n").await;
    assert!(out.contains("e BAD"), "{out}");

    run(&mut s, "f EXAMINE INBOX\r\n").await;
    let out = run(&mut s, "g EXPUNGE\r\n").await;
    assert!(out.contains("g NO [READ-ONLY]"), "{out}");
}

#[tokio::test]
async fn qresync_vanished_and_select() {
    let store = store_with(4);
    let mut s = logged_in(&store).await;
    run(&mut s, "a ENABLE QRESYNC\r\nb SELECT INBOX\r\n").await;
    let modseq_before = 5;
    store.remove("INBOX", 2);
    let out = run(&mut s, "c NOOP\r\n").await;
    assert_eq!(out, "* VANISHED 2\r\nc OK NOOP completed\r\n");

    run(&mut s, "d UID STORE 3 +FLAGS.SILENT (\\Deleted)\r\n").await;
    let out = run(&mut s, "e EXPUNGE\r\n").await;
    assert_eq!(out, "* VANISHED 3\r\ne OK EXPUNGE completed\r\n");
    store.set_flags(
        "INBOX",
        4,
        Flags {
            flagged: true,
            ..Default::default()
        },
    );

    // A client resynchronising from an old state.
    let mut s2 = logged_in(&store).await;
    run(&mut s2, "a ENABLE QRESYNC\r\n").await;
    let out = run(
        &mut s2,
        &format!("b SELECT INBOX (QRESYNC (1000 {modseq_before} 1:4))\r\n"),
    )
    .await;
    assert!(out.contains("* VANISHED (EARLIER) 2:3"), "{out}");
    assert!(
        out.contains("* 2 FETCH (UID 4 FLAGS (\\Flagged) MODSEQ ("),
        "{out}"
    );
    assert!(out.contains("b OK [READ-WRITE]"), "{out}");
    // Selecting again announces the close of the previous folder.
    let out = run(&mut s2, "c SELECT Sent\r\n").await;
    assert!(out.starts_with("* OK [CLOSED]"), "{out}");
    // QRESYNC without ENABLE is a BAD.
    let mut s3 = logged_in(&store).await;
    let out = run(&mut s3, "a SELECT INBOX (QRESYNC (1000 1))\r\n").await;
    assert!(out.contains("a BAD"), "{out}");

    let out = run(
        &mut s,
        "f UID FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)\r\n",
    )
    .await;
    assert!(out.contains("* VANISHED (EARLIER) 2:3"), "{out}");
    assert!(out.contains("UID 4"), "{out}");
}

#[tokio::test]
async fn idle_reports_new_mail_and_ends_with_done() {
    let store = store_with(1);
    let mut s = selected(&store).await;
    let out = run(&mut s, "a IDLE\r\n").await;
    assert_eq!(out, "+ idling\r\n");
    assert!(s.is_idling());
    let (signal, seen) = s.idle_signal().expect("signal");
    let mut buf = Vec::new();
    s.idle_poll(&mut buf, false).await.unwrap();
    assert!(buf.is_empty(), "nothing changed");
    store.deliver("INBOX", MSG);
    assert_ne!(signal.generation(), seen);
    s.idle_poll(&mut buf, false).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&buf),
        "* 2 EXISTS\r\n* 2 RECENT\r\n"
    );
    store.remove("INBOX", 1);
    let mut buf = Vec::new();
    s.idle_poll(&mut buf, false).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&buf), "* 1 EXPUNGE\r\n");
    let out = run(&mut s, "DONE\r\n").await;
    assert_eq!(out, "a OK IDLE terminated\r\n");
    assert!(!s.is_idling());

    run(&mut s, "b IDLE\r\n").await;
    let out = run(&mut s, "c NOOP\r\n").await;
    assert!(out.contains("a BAD") || out.contains("b BAD"), "{out}");
}

#[tokio::test]
async fn command_count_is_bounded() {
    let store = FakeStore::new();
    let mut s = new_session(&store, loopback());
    s.limits.max_commands = 3;
    let out = run(&mut s, "a NOOP\r\nb NOOP\r\nc NOOP\r\nd NOOP\r\n").await;
    assert!(
        out.contains("c OK") && out.contains("* BYE Too many commands"),
        "{out}"
    );
    assert!(!out.contains("d OK"));
    assert!(s.is_closed());
}
