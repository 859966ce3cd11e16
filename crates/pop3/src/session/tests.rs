//! State machine tests with the in-memory fake backend.

use super::*;
use crate::fake::{FakeBackend, FakeStore, PASSWORD};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::sync::Arc;
use std::sync::atomic::Ordering;

const M1: &[u8] = b"Subject: one\r\n\r\nfirst\r\n";
const M2: &[u8] = b"Subject: two\r\n\r\n.dot line\r\nsecond\r\nthird\r\n";
const M3: &[u8] = b"Subject: three\r\n\r\nno final crlf";

fn store3() -> Arc<FakeStore> {
    FakeStore::with_messages(&[("u1", M1), ("u2", M2), ("u3", M3)])
}

fn loopback() -> SessionProps {
    SessionProps {
        loopback: true,
        ..Default::default()
    }
}

fn session(store: &Arc<FakeStore>, props: SessionProps) -> Session<FakeBackend> {
    Session::new(
        FakeBackend {
            store: store.clone(),
        },
        props,
        "127.0.0.1:40000",
        20,
    )
}

async fn send(s: &mut Session<FakeBackend>, line: &str) -> String {
    let reply = s.handle_line(line.as_bytes()).await;
    String::from_utf8(reply.to_bytes()).expect("test replies are UTF-8")
}

async fn logged_in(store: &Arc<FakeStore>) -> Session<FakeBackend> {
    let mut s = session(store, loopback());
    assert_eq!(send(&mut s, "USER alice").await, "+OK Send PASS\r\n");
    let r = send(&mut s, &format!("PASS {PASSWORD}")).await;
    assert!(r.starts_with("+OK Logged in"), "{r}");
    assert!(s.is_authenticated());
    s
}

fn plain(raw: &[u8]) -> String {
    STANDARD.encode(raw)
}

// ---- AUTHORIZATION ----

#[tokio::test]
async fn greeting_text() {
    let s = session(&store3(), loopback());
    assert_eq!(
        s.greeting().to_bytes(),
        b"+OK Postamt POP3 server ready\r\n"
    );
}

#[tokio::test]
async fn capa_in_both_states() {
    let store = store3();
    let mut s = session(&store, loopback());
    let before = send(&mut s, "CAPA").await;
    assert!(before.starts_with("+OK"));
    for cap in [
        "TOP",
        "UIDL",
        "USER",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "SASL PLAIN",
        "IMPLEMENTATION Postamt",
    ] {
        assert!(
            before.contains(&format!("\r\n{cap}\r\n")),
            "{cap} in {before}"
        );
    }
    assert!(before.ends_with("\r\n.\r\n"));
    let mut s = logged_in(&store).await;
    assert_eq!(send(&mut s, "capa").await, before);
}

#[tokio::test]
async fn user_pass_login_reports_maildrop() {
    let store = store3();
    let mut s = session(&store, loopback());
    send(&mut s, "USER alice").await;
    let size = M1.len() + M2.len() + M3.len();
    assert_eq!(
        send(&mut s, "PASS secret").await,
        format!("+OK Logged in, 3 messages ({size} octets)\r\n")
    );
    assert!(store.is_locked());
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let store = store3();
    let mut s = session(&store, loopback());
    send(&mut s, "USER alice").await;
    let wrong = send(&mut s, "PASS nope").await;
    send(&mut s, "USER mallory").await;
    let unknown = send(&mut s, "PASS secret").await;
    assert_eq!(wrong, "-ERR [AUTH] Authentication failed\r\n");
    assert_eq!(unknown, wrong);
    assert!(!s.is_authenticated());
    assert!(!store.is_locked());
    assert_eq!(s.errors(), 2);
}

#[tokio::test]
async fn pass_needs_user_first_and_user_is_forgotten_after_pass() {
    let mut s = session(&store3(), loopback());
    assert_eq!(
        send(&mut s, "PASS secret").await,
        "-ERR Send USER first\r\n"
    );
    send(&mut s, "USER alice").await;
    send(&mut s, "PASS wrong").await;
    // The failed PASS consumed the USER.
    assert_eq!(
        send(&mut s, "PASS secret").await,
        "-ERR Send USER first\r\n"
    );
    assert!(!s.is_authenticated());
}

#[tokio::test]
async fn transaction_commands_refused_before_login() {
    let mut s = session(&store3(), loopback());
    for cmd in [
        "STAT", "LIST", "UIDL", "RETR 1", "TOP 1 1", "DELE 1", "RSET", "NOOP",
    ] {
        let r = send(&mut s, cmd).await;
        assert_eq!(r, "-ERR Command not valid before login\r\n", "{cmd}");
    }
    assert!(!s.is_closed());
}

#[tokio::test]
async fn quit_in_authorization_closes_without_update() {
    let store = store3();
    let mut s = session(&store, loopback());
    let r = send(&mut s, "QUIT").await;
    assert!(r.starts_with("+OK"), "{r}");
    assert!(s.is_closed());
    assert!(store.delete_calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn plaintext_refused_without_tls_off_loopback() {
    let store = store3();
    let mut s = session(&store, SessionProps::default());
    let refused = "-ERR [AUTH] Plaintext authentication disallowed without TLS\r\n";
    assert_eq!(send(&mut s, "USER alice").await, refused);
    assert_eq!(send(&mut s, "PASS secret").await, refused);
    assert_eq!(send(&mut s, "AUTH PLAIN").await, refused);
    let creds = plain(b"\0alice\0secret");
    assert_eq!(send(&mut s, &format!("AUTH PLAIN {creds}")).await, refused);
    assert!(!s.is_authenticated());
    let capa = send(&mut s, "CAPA").await;
    assert!(!capa.contains("\r\nUSER\r\n"));
    assert!(!capa.contains("SASL"));
}

#[tokio::test]
async fn plaintext_allowed_over_tls_off_loopback() {
    let store = store3();
    let props = SessionProps {
        secure: true,
        ..Default::default()
    };
    let mut s = session(&store, props);
    send(&mut s, "USER alice").await;
    assert!(send(&mut s, "PASS secret").await.starts_with("+OK"));
}

// ---- STLS (RFC 2595) ----

fn remote_with_tls() -> SessionProps {
    SessionProps {
        tls_available: true,
        ..Default::default()
    }
}

fn has_cap(capa: &str, cap: &str) -> bool {
    capa.contains(&format!("\r\n{cap}\r\n"))
}

#[tokio::test]
async fn stls_upgrades_a_remote_session_to_plaintext_logins() {
    let store = store3();
    let mut s = session(&store, remote_with_tls());
    let before = send(&mut s, "CAPA").await;
    assert!(has_cap(&before, "STLS"), "{before}");
    assert!(!has_cap(&before, "USER"), "{before}");
    assert!(!before.contains("SASL"), "{before}");
    assert_eq!(
        send(&mut s, "USER alice").await,
        "-ERR [AUTH] Plaintext authentication disallowed without TLS\r\n"
    );

    assert_eq!(send(&mut s, "stls").await, "+OK Begin TLS negotiation\r\n");
    assert!(s.wants_tls());
    assert!(!s.is_authenticated());
    // Nothing is executed while the handshake is pending, and it is not
    // counted as a client error either.
    let errors = s.errors();
    assert_eq!(
        send(&mut s, "USER alice").await,
        "-ERR TLS negotiation in progress\r\n"
    );
    assert_eq!(s.errors(), errors);
    assert!(s.wants_tls());

    assert!(s.tls_established());
    assert!(!s.wants_tls());
    assert!(s.props().secure);
    let after = send(&mut s, "CAPA").await;
    assert!(!has_cap(&after, "STLS"), "{after}");
    assert!(has_cap(&after, "USER"), "{after}");
    assert!(has_cap(&after, "SASL PLAIN"), "{after}");
    assert_eq!(send(&mut s, "USER alice").await, "+OK Send PASS\r\n");
    let r = send(&mut s, &format!("PASS {PASSWORD}")).await;
    assert!(r.starts_with("+OK Logged in"), "{r}");
}

#[tokio::test]
async fn stls_then_auth_plain() {
    let mut s = session(&store3(), remote_with_tls());
    send(&mut s, "STLS").await;
    assert!(s.tls_established());
    let r = send(&mut s, &format!("AUTH PLAIN {}", plain(b"\0alice\0secret"))).await;
    assert!(r.starts_with("+OK Logged in"), "{r}");
}

#[tokio::test]
async fn stls_refused_without_tls_configuration() {
    let mut s = session(&store3(), SessionProps::default());
    assert!(!has_cap(&send(&mut s, "CAPA").await, "STLS"));
    assert_eq!(send(&mut s, "STLS").await, "-ERR STLS is not available\r\n");
    assert!(!s.wants_tls());
    assert_eq!(s.errors(), 1);
}

#[tokio::test]
async fn stls_refused_when_tls_is_active() {
    let props = SessionProps {
        secure: true,
        tls_available: true,
        ..Default::default()
    };
    let mut s = session(&store3(), props);
    assert!(!has_cap(&send(&mut s, "CAPA").await, "STLS"));
    assert_eq!(send(&mut s, "STLS").await, "-ERR TLS is already active\r\n");
    assert!(!s.wants_tls());
    // A second upgrade is refused after a first one too.
    let mut s = session(&store3(), remote_with_tls());
    send(&mut s, "STLS").await;
    assert!(s.tls_established());
    assert_eq!(send(&mut s, "STLS").await, "-ERR TLS is already active\r\n");
    assert!(!s.wants_tls());
}

#[tokio::test]
async fn stls_refused_after_login() {
    let store = store3();
    let props = SessionProps {
        loopback: true,
        tls_available: true,
        ..Default::default()
    };
    let mut s = session(&store, props);
    send(&mut s, "USER alice").await;
    assert!(send(&mut s, "PASS secret").await.starts_with("+OK"));
    assert_eq!(
        send(&mut s, "STLS").await,
        "-ERR STLS is not permitted after login\r\n"
    );
    assert!(!s.wants_tls());
    assert!(s.is_authenticated());
    assert!(!s.tls_established(), "no upgrade without an accepted STLS");
    assert!(!s.props().secure);
}

#[tokio::test]
async fn stls_forgets_a_user_given_before_it() {
    let props = SessionProps {
        loopback: true,
        tls_available: true,
        ..Default::default()
    };
    let mut s = session(&store3(), props);
    assert_eq!(send(&mut s, "USER alice").await, "+OK Send PASS\r\n");
    send(&mut s, "STLS").await;
    assert!(s.tls_established());
    assert_eq!(
        send(&mut s, "PASS secret").await,
        "-ERR Send USER first\r\n"
    );
    assert!(!s.is_authenticated());
}

#[tokio::test]
async fn tls_established_without_stls_changes_nothing() {
    let mut s = session(&store3(), remote_with_tls());
    assert!(!s.tls_established());
    assert!(!s.props().secure);
    assert_eq!(
        send(&mut s, "USER alice").await,
        "-ERR [AUTH] Plaintext authentication disallowed without TLS\r\n"
    );
}

// ---- AUTH PLAIN ----

#[tokio::test]
async fn auth_plain_with_initial_response() {
    let store = store3();
    let mut s = session(&store, loopback());
    let r = send(&mut s, &format!("AUTH PLAIN {}", plain(b"\0alice\0secret"))).await;
    assert!(r.starts_with("+OK Logged in"), "{r}");
    assert!(s.is_authenticated());
}

#[tokio::test]
async fn auth_plain_with_continuation() {
    let store = store3();
    let mut s = session(&store, loopback());
    assert_eq!(send(&mut s, "AUTH PLAIN").await, "+ \r\n");
    assert!(s.awaiting_sasl());
    let r = send(&mut s, &plain(b"alice\0alice\0secret")).await;
    assert!(r.starts_with("+OK Logged in"), "{r}");
}

#[tokio::test]
async fn auth_plain_cancel() {
    let mut s = session(&store3(), loopback());
    send(&mut s, "AUTH plain").await;
    assert_eq!(send(&mut s, "*").await, "-ERR AUTH cancelled\r\n");
    assert!(!s.awaiting_sasl());
    // Back to normal commands.
    assert_eq!(send(&mut s, "USER alice").await, "+OK Send PASS\r\n");
}

#[tokio::test]
async fn auth_plain_bad_inputs() {
    let mut s = session(&store3(), loopback());
    assert_eq!(
        send(&mut s, "AUTH PLAIN !!!").await,
        "-ERR Invalid base64 data\r\n"
    );
    send(&mut s, "AUTH PLAIN").await;
    assert_eq!(send(&mut s, "%%%").await, "-ERR Invalid base64 data\r\n");
    assert_eq!(
        send(
            &mut s,
            &format!("AUTH PLAIN {}", plain(b"bob\0alice\0secret"))
        )
        .await,
        "-ERR [AUTH] Authorization identity not permitted\r\n"
    );
    let r = send(&mut s, &format!("AUTH PLAIN {}", plain(b"alice\0secret"))).await;
    assert!(r.starts_with("-ERR Invalid AUTH PLAIN response"), "{r}");
    assert_eq!(
        send(&mut s, "AUTH CRAM-MD5").await,
        "-ERR Unsupported authentication mechanism\r\n"
    );
    assert_eq!(
        send(&mut s, &format!("AUTH PLAIN {}", plain(b"\0alice\0wrong"))).await,
        "-ERR [AUTH] Authentication failed\r\n"
    );
    assert!(!s.is_authenticated());
}

#[tokio::test]
async fn auth_alone_lists_mechanisms() {
    let mut s = session(&store3(), loopback());
    assert_eq!(
        send(&mut s, "AUTH").await,
        "+OK Supported mechanisms follow\r\nPLAIN\r\n.\r\n"
    );
}

// ---- locking and store failures at login ----

#[tokio::test]
async fn second_session_gets_in_use_until_first_quits() {
    let store = store3();
    let mut first = logged_in(&store).await;
    let mut second = session(&store, loopback());
    send(&mut second, "USER alice").await;
    assert_eq!(
        send(&mut second, "PASS secret").await,
        "-ERR [IN-USE] Mailbox is locked by another session\r\n"
    );
    assert!(!second.is_authenticated());
    assert!(!second.is_closed());
    send(&mut first, "QUIT").await;
    assert!(!store.is_locked(), "QUIT releases the lock");
    send(&mut second, "USER alice").await;
    assert!(send(&mut second, "PASS secret").await.starts_with("+OK"));
}

#[tokio::test]
async fn lock_released_when_session_is_dropped() {
    let store = store3();
    let s = logged_in(&store).await;
    assert!(store.is_locked());
    drop(s);
    assert!(!store.is_locked());
}

#[tokio::test]
async fn store_error_at_login_is_temporary() {
    let store = store3();
    store.fail_open.store(true, Ordering::SeqCst);
    let mut s = session(&store, loopback());
    send(&mut s, "USER alice").await;
    let r = send(&mut s, "PASS secret").await;
    assert!(r.starts_with("-ERR [SYS/TEMP] "), "{r}");
    assert!(!s.is_authenticated());
}

// ---- TRANSACTION ----

#[tokio::test]
async fn stat_list_uidl() {
    let store = store3();
    let mut s = logged_in(&store).await;
    let (l1, l2, l3) = (M1.len(), M2.len(), M3.len());
    assert_eq!(
        send(&mut s, "STAT").await,
        format!("+OK 3 {}\r\n", l1 + l2 + l3)
    );
    assert_eq!(
        send(&mut s, "LIST").await,
        format!(
            "+OK 3 messages ({} octets)\r\n1 {l1}\r\n2 {l2}\r\n3 {l3}\r\n.\r\n",
            l1 + l2 + l3
        )
    );
    assert_eq!(send(&mut s, "LIST 2").await, format!("+OK 2 {l2}\r\n"));
    assert_eq!(
        send(&mut s, "UIDL").await,
        "+OK Unique-ID listing follows\r\n1 u1\r\n2 u2\r\n3 u3\r\n.\r\n"
    );
    assert_eq!(send(&mut s, "UIDL 3").await, "+OK 3 u3\r\n");
    assert_eq!(send(&mut s, "NOOP").await, "+OK\r\n");
}

#[tokio::test]
async fn out_of_range_and_bad_arguments() {
    let mut s = logged_in(&store3()).await;
    for cmd in [
        "LIST 0", "LIST 4", "UIDL 9", "RETR 0", "RETR 4", "TOP 4 0", "DELE 4",
    ] {
        assert_eq!(send(&mut s, cmd).await, "-ERR no such message\r\n", "{cmd}");
    }
    assert_eq!(
        send(&mut s, "RETR one").await,
        "-ERR RETR: invalid number `one` (expected a decimal number)\r\n"
    );
    assert_eq!(
        send(&mut s, "DELE").await,
        "-ERR DELE: missing argument\r\n"
    );
    assert_eq!(
        send(&mut s, "STAT 1").await,
        "-ERR STAT: too many arguments\r\n"
    );
    assert_eq!(send(&mut s, "XYZZY").await, "-ERR Unknown command\r\n");
    assert_eq!(send(&mut s, "USER bob").await, "-ERR Already logged in\r\n");
    assert!(s.is_authenticated());
}

#[tokio::test]
async fn retr_streams_stuffed_data_and_terminator() {
    let mut s = logged_in(&store3()).await;
    assert_eq!(
        send(&mut s, "RETR 2").await,
        format!(
            "+OK {} octets\r\nSubject: two\r\n\r\n..dot line\r\nsecond\r\nthird\r\n.\r\n",
            M2.len()
        )
    );
    assert_eq!(
        send(&mut s, "RETR 3").await,
        format!(
            "+OK {} octets\r\nSubject: three\r\n\r\nno final crlf\r\n.\r\n",
            M3.len()
        )
    );
}

#[tokio::test]
async fn top_sends_headers_and_n_lines() {
    let mut s = logged_in(&store3()).await;
    assert_eq!(
        send(&mut s, "TOP 2 0").await,
        "+OK top of message follows\r\nSubject: two\r\n\r\n.\r\n"
    );
    assert_eq!(
        send(&mut s, "TOP 2 2").await,
        "+OK top of message follows\r\nSubject: two\r\n\r\n..dot line\r\nsecond\r\n.\r\n"
    );
    assert_eq!(
        send(&mut s, "TOP 3 5").await,
        "+OK top of message follows\r\nSubject: three\r\n\r\nno final crlf\r\n.\r\n"
    );
}

#[tokio::test]
async fn empty_message_retr() {
    let store = FakeStore::with_messages(&[("e", b"")]);
    let mut s = logged_in(&store).await;
    assert_eq!(send(&mut s, "RETR 1").await, "+OK 0 octets\r\n.\r\n");
    assert_eq!(
        send(&mut s, "TOP 1 3").await,
        "+OK top of message follows\r\n.\r\n"
    );
}

#[tokio::test]
async fn deleted_message_is_invisible() {
    let mut s = logged_in(&store3()).await;
    assert_eq!(send(&mut s, "DELE 2").await, "+OK message 2 deleted\r\n");
    let no = "-ERR no such message\r\n";
    for cmd in ["DELE 2", "RETR 2", "TOP 2 1", "LIST 2", "UIDL 2"] {
        assert_eq!(send(&mut s, cmd).await, no, "{cmd}");
    }
    let (l1, l3) = (M1.len(), M3.len());
    assert_eq!(send(&mut s, "STAT").await, format!("+OK 2 {}\r\n", l1 + l3));
    // Numbers stay fixed: message 3 is still number 3.
    assert_eq!(
        send(&mut s, "LIST").await,
        format!(
            "+OK 2 messages ({} octets)\r\n1 {l1}\r\n3 {l3}\r\n.\r\n",
            l1 + l3
        )
    );
    assert_eq!(
        send(&mut s, "UIDL").await,
        "+OK Unique-ID listing follows\r\n1 u1\r\n3 u3\r\n.\r\n"
    );
}

#[tokio::test]
async fn dele_then_rset_then_quit_deletes_nothing() {
    let store = store3();
    let mut s = logged_in(&store).await;
    send(&mut s, "DELE 1").await;
    send(&mut s, "DELE 3").await;
    let total = M1.len() + M2.len() + M3.len();
    assert_eq!(
        send(&mut s, "RSET").await,
        format!("+OK maildrop has 3 messages ({total} octets)\r\n")
    );
    assert!(send(&mut s, "RETR 1").await.starts_with("+OK"));
    let r = send(&mut s, "QUIT").await;
    assert!(
        r.starts_with("+OK") && r.contains("0 messages deleted"),
        "{r}"
    );
    assert_eq!(store.uids(), vec!["u1", "u2", "u3"]);
}

#[tokio::test]
async fn deletion_happens_only_at_quit() {
    let store = store3();
    let mut s = logged_in(&store).await;
    send(&mut s, "DELE 1").await;
    send(&mut s, "DELE 3").await;
    assert_eq!(store.uids().len(), 3, "nothing removed before UPDATE");
    assert!(store.delete_calls.lock().unwrap().is_empty());
    let r = send(&mut s, "QUIT").await;
    assert_eq!(
        r,
        "+OK Postamt POP3 server signing off (2 messages deleted, 1 left)\r\n"
    );
    assert!(s.is_closed());
    assert_eq!(store.uids(), vec!["u2"]);
    assert_eq!(*store.delete_calls.lock().unwrap(), vec![vec!["u1", "u3"]]);
    assert!(!store.is_locked());
}

#[tokio::test]
async fn abort_deletes_nothing_and_unlocks() {
    let store = store3();
    let mut s = logged_in(&store).await;
    send(&mut s, "DELE 1").await;
    s.abort("connection lost");
    assert!(s.is_closed());
    assert_eq!(store.uids().len(), 3);
    assert!(store.delete_calls.lock().unwrap().is_empty());
    assert!(!store.is_locked());
}

#[tokio::test]
async fn failed_deletion_at_quit_is_reported() {
    let store = store3();
    store.fail_delete.store(true, Ordering::SeqCst);
    let mut s = logged_in(&store).await;
    send(&mut s, "DELE 1").await;
    let r = send(&mut s, "QUIT").await;
    assert!(r.starts_with("-ERR [SYS/TEMP] "), "{r}");
    assert!(s.is_closed());
    assert!(!store.is_locked());
}

#[tokio::test]
async fn snapshot_fixed_at_login() {
    let store = store3();
    let mut s = logged_in(&store).await;
    store.add("u4", b"late\r\n");
    assert!(send(&mut s, "STAT").await.starts_with("+OK 3 "));
    assert_eq!(send(&mut s, "RETR 4").await, "-ERR no such message\r\n");
}

#[tokio::test]
async fn read_failures() {
    let store = store3();
    let mut s = logged_in(&store).await;
    // Removed behind our back (say, by IMAP).
    store.messages.lock().unwrap().remove(0);
    assert_eq!(
        send(&mut s, "RETR 1").await,
        "-ERR Message no longer exists\r\n"
    );
    store.fail_read.store(true, Ordering::SeqCst);
    let r = send(&mut s, "TOP 2 0").await;
    assert!(r.starts_with("-ERR [SYS/TEMP] "), "{r}");
    assert!(s.is_authenticated());
}

// ---- limits ----

#[tokio::test]
async fn too_many_errors_close_the_session() {
    let store = store3();
    let mut s = Session::new(
        FakeBackend {
            store: store.clone(),
        },
        loopback(),
        "peer",
        3,
    );
    send(&mut s, "USER alice").await;
    send(&mut s, "PASS secret").await;
    send(&mut s, "DELE 1").await;
    assert_eq!(send(&mut s, "BOGUS").await, "-ERR Unknown command\r\n");
    assert_eq!(send(&mut s, "RETR 99").await, "-ERR no such message\r\n");
    assert!(!s.is_closed());
    assert_eq!(send(&mut s, "LIST x").await, "-ERR too many errors\r\n");
    assert!(s.is_closed());
    // No UPDATE: the DELE is forgotten, the lock released.
    assert_eq!(store.uids().len(), 3);
    assert!(!store.is_locked());
}

#[tokio::test]
async fn overlong_command_line_is_refused() {
    let mut s = session(&store3(), loopback());
    let long = format!("USER {}", "a".repeat(MAX_COMMAND_LINE));
    assert_eq!(send(&mut s, &long).await, "-ERR Command line too long\r\n");
    // AUTH lines may be longer (initial responses).
    let creds = plain(format!("\0alice\0{}", "x".repeat(1500)).as_bytes());
    let auth = format!("AUTH PLAIN {creds}");
    assert!(auth.len() > MAX_COMMAND_LINE);
    assert_eq!(
        send(&mut s, &auth).await,
        "-ERR [AUTH] Authentication failed\r\n"
    );
}

#[tokio::test]
async fn canonical_user_name_is_used() {
    let store = store3();
    let mut s = session(&store, loopback());
    send(&mut s, "USER ALICE").await;
    // The fake asserts that the mailbox opened is the canonical `alice`.
    assert!(send(&mut s, "PASS secret").await.starts_with("+OK"));
}

// ---- read-ahead ----

fn store5() -> Arc<FakeStore> {
    FakeStore::with_messages(&[
        ("u1", M1),
        ("u2", M2),
        ("u3", M3),
        ("u4", b"Subject: four\r\n\r\n4\r\n"),
        ("u5", b"Subject: five\r\n\r\n5\r\n"),
    ])
}

fn retr_reply(data: &[u8]) -> String {
    let reply = Reply::Message {
        status: format!("{} octets", data.len()),
        data: data.to_vec(),
        end: data.len(),
    };
    String::from_utf8(reply.to_bytes()).expect("test data is UTF-8")
}

#[tokio::test]
async fn sequential_retrieval_reads_ahead_in_one_trip() {
    let store = store5();
    let expected: Vec<Vec<u8>> = store
        .messages
        .lock()
        .unwrap()
        .iter()
        .map(|(_, d)| d.clone())
        .collect();
    let mut s = logged_in(&store).await;
    for (i, data) in expected.iter().enumerate() {
        assert_eq!(
            send(&mut s, &format!("RETR {}", i + 1)).await,
            retr_reply(data)
        );
    }
    assert_eq!(store.trips.load(Ordering::SeqCst), 1);
    assert_eq!(store.read_ahead.load(Ordering::SeqCst), 4);
    // Each message read ahead is used once; asking again reads it anew.
    assert_eq!(send(&mut s, "RETR 2").await, retr_reply(M2));
    assert_eq!(store.trips.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn read_ahead_respects_deletions_and_top() {
    let store = store5();
    let mut s = logged_in(&store).await;
    assert_eq!(send(&mut s, "RETR 1").await, retr_reply(M1));
    assert!(send(&mut s, "DELE 3").await.starts_with("+OK"));
    assert_eq!(send(&mut s, "RETR 3").await, "-ERR no such message\r\n");
    assert_eq!(
        send(&mut s, "TOP 2 0").await,
        "+OK top of message follows\r\nSubject: two\r\n\r\n.\r\n"
    );
    assert_eq!(
        send(&mut s, "RETR 4").await,
        retr_reply(b"Subject: four\r\n\r\n4\r\n")
    );
    assert_eq!(store.trips.load(Ordering::SeqCst), 1);
    // Going back while later messages wait reads just the one asked for.
    assert_eq!(send(&mut s, "RETR 1").await, retr_reply(M1));
    assert_eq!(store.trips.load(Ordering::SeqCst), 2);
    assert_eq!(
        send(&mut s, "RETR 5").await,
        retr_reply(b"Subject: five\r\n\r\n5\r\n")
    );
    assert_eq!(store.trips.load(Ordering::SeqCst), 2);
    // QUIT removes exactly the message marked, read ahead or not.
    assert!(send(&mut s, "QUIT").await.starts_with("+OK"));
    assert_eq!(store.uids(), vec!["u1", "u2", "u4", "u5"]);
}

#[tokio::test]
async fn unreadable_message_ahead_is_reported_when_asked_for() {
    let store = store5();
    let mut s = logged_in(&store).await;
    // u3 vanishes before anything is read: the read-ahead stops there.
    store.messages.lock().unwrap().remove(2);
    assert_eq!(send(&mut s, "RETR 1").await, retr_reply(M1));
    assert_eq!(store.read_ahead.load(Ordering::SeqCst), 1);
    assert_eq!(send(&mut s, "RETR 2").await, retr_reply(M2));
    assert_eq!(
        send(&mut s, "RETR 3").await,
        "-ERR Message no longer exists\r\n"
    );
    assert_eq!(
        send(&mut s, "RETR 4").await,
        retr_reply(b"Subject: four\r\n\r\n4\r\n")
    );
    assert!(s.is_authenticated());
}

#[tokio::test(start_paused = true)]
async fn data_read_ahead_expires() {
    let store = store5();
    let mut s = logged_in(&store).await;
    assert_eq!(send(&mut s, "RETR 1").await, retr_reply(M1));
    // Removed behind our back, long enough ago to be noticed.
    store.messages.lock().unwrap().remove(1);
    tokio::time::advance(READ_AHEAD_MAX_AGE + Duration::from_millis(1)).await;
    assert_eq!(
        send(&mut s, "RETR 2").await,
        "-ERR Message no longer exists\r\n"
    );
    assert_eq!(store.trips.load(Ordering::SeqCst), 2);
}
