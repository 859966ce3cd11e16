//! The POP3 session state machine fed client lines through the same
//! `LineBuffer` the connection uses, over a fake mailbox in memory. The
//! first byte sets the connection properties (TLS, loopback, STLS
//! available); input up to the first NUL (if any) becomes one of the
//! mailbox's messages, so RETR/TOP stuff fuzzed bodies.
//!
//! Invariants: no panic; every reply is well-formed on the wire (status
//! line with one CRLF at its end, list lines without CR/LF, message bodies
//! dot-stuffed so that an SMTP-style decoder gets back the message with
//! normalised line ends); no login over plaintext unless allowed; a closed
//! session stays closed; the error count stays under the limit while open.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postamt_fuzz::{assert_crlf_only, block_on, dot_decode_complete, normalize_lines};
use postamt_pop3::backend::{AuthFailed, Backend, Mailbox};
use postamt_pop3::line::LineBuffer;
use postamt_pop3::response::Reply;
use postamt_pop3::{Session, SessionProps};
use postamt_store::{MessageInfo, StoreError};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const MAX_ERRORS: u32 = 30;

struct Store {
    messages: Vec<(MessageInfo, Vec<u8>)>,
    locked: AtomicBool,
    fail_delete: bool,
}

struct FakeBackend {
    store: Arc<Store>,
}

struct FakeMailbox {
    store: Arc<Store>,
}

impl Drop for FakeMailbox {
    fn drop(&mut self) {
        self.store.locked.store(false, Ordering::SeqCst);
    }
}

impl Backend for FakeBackend {
    type Mailbox = FakeMailbox;

    async fn authenticate(&self, user: &str, password: &str) -> Result<String, AuthFailed> {
        if user.eq_ignore_ascii_case("alice") && password == "secret" {
            Ok("alice".to_owned())
        } else {
            Err(AuthFailed)
        }
    }

    async fn open_mailbox(
        &self,
        user: &str,
    ) -> Result<(FakeMailbox, Vec<MessageInfo>), StoreError> {
        assert_eq!(user, "alice", "the session opens the canonical account");
        if self.store.locked.swap(true, Ordering::SeqCst) {
            return Err(StoreError::InUse);
        }
        let infos = self.store.messages.iter().map(|(i, _)| i.clone()).collect();
        Ok((
            FakeMailbox {
                store: self.store.clone(),
            },
            infos,
        ))
    }
}

impl Mailbox for FakeMailbox {
    async fn read(&self, msg: &MessageInfo) -> Result<Vec<u8>, StoreError> {
        self.store
            .messages
            .iter()
            .find(|(i, _)| i.uid == msg.uid)
            .map(|(_, d)| d.clone())
            .ok_or_else(|| StoreError::Gone(msg.uid.clone()))
    }

    async fn delete(&self, msgs: &[MessageInfo]) -> Result<(), StoreError> {
        assert!(
            msgs.iter()
                .all(|m| self.store.messages.iter().any(|(i, _)| i == m)),
            "deleting a message the mailbox never listed"
        );
        if self.store.fail_delete {
            Err(StoreError::Io(std::io::Error::other("disk on fire")))
        } else {
            Ok(())
        }
    }
}

fn message(uid: &str, data: &[u8]) -> (MessageInfo, Vec<u8>) {
    (
        MessageInfo {
            uid: uid.into(),
            size: data.len() as u64,
            path: PathBuf::from(format!("/nonexistent/{uid}")),
            queue_id: None,
        },
        data.to_vec(),
    )
}

fn check_reply(r: &Reply) {
    let status = r.status_line();
    assert!(status.ends_with(b"\r\n"), "status line without CRLF");
    let text = &status[..status.len() - 2];
    assert!(
        !text.contains(&b'\r') && !text.contains(&b'\n'),
        "CR/LF inside a status line: {:?}",
        String::from_utf8_lossy(&status)
    );
    assert!(
        text.starts_with(b"+OK") || text.starts_with(b"-ERR") || text.starts_with(b"+ "),
        "bad status indicator: {:?}",
        String::from_utf8_lossy(text)
    );
    if let Reply::Lines { lines, .. } = r {
        for l in lines {
            assert!(!l.contains(['\r', '\n']), "CR/LF inside a list line: {l:?}");
        }
        let head = r.head_bytes();
        assert_crlf_only(&head, "POP3 multi-line reply");
        let list = &head[status.len()..];
        let back = dot_decode_complete(list, "POP3 list");
        let expected: Vec<u8> = lines
            .iter()
            .flat_map(|l| l.bytes().chain(*b"\r\n"))
            .collect();
        assert_eq!(back, expected, "list lines do not round-trip");
    }
    if let Some(body) = r.body() {
        let wire = r.to_bytes();
        let stuffed = &wire[status.len()..];
        let back = dot_decode_complete(stuffed, "POP3 message");
        assert_eq!(
            back,
            normalize_lines(body, false),
            "message body does not round-trip"
        );
    }
}

async fn run(ctl: u8, input: &[u8]) {
    let (custom, commands) = match input.iter().position(|&b| b == 0) {
        Some(nul) => (&input[..nul], &input[nul + 1..]),
        None => (&[][..], input),
    };
    let store = Arc::new(Store {
        messages: vec![
            message("u1", b"Subject: a\r\n\r\nbody\r\n.\r\n..dots\r\n"),
            message("u2", b"no headers\nbare\nlf\n.\nend"),
            message("u3", custom),
            message("u4", b""),
            message("u5", b"From: x\r\n\r\n"),
        ],
        locked: AtomicBool::new(false),
        fail_delete: ctl & 8 != 0,
    });
    let props = SessionProps {
        secure: ctl & 1 != 0,
        loopback: ctl & 2 != 0,
        tls_available: ctl & 4 != 0,
    };
    let backend = FakeBackend {
        store: store.clone(),
    };
    let mut session = Session::new(backend, props, "192.0.2.7:40000", MAX_ERRORS);
    check_reply(&session.greeting());
    let mut lines = LineBuffer::new(postamt_pop3::connection::MAX_LINE);
    lines.extend(commands);
    loop {
        let line = match lines.next_line() {
            Ok(Some(line)) => line,
            Ok(None) | Err(_) => break,
        };
        let was_closed = session.is_closed();
        let reply = session.handle_line(&line).await;
        check_reply(&reply);
        if was_closed {
            assert!(session.is_closed(), "a closed session reopened");
            assert!(reply.is_err(), "a closed session answered +OK");
        }
        if session.is_authenticated() {
            assert!(
                session.props().plaintext_allowed(),
                "logged in over plaintext where it is not allowed"
            );
        }
        if !session.is_closed() {
            assert!(session.errors() < MAX_ERRORS, "error limit not enforced");
        }
        if session.wants_tls() {
            assert!(!session.props().secure, "STLS accepted over TLS");
            assert!(session.props().tls_available, "STLS accepted without TLS");
            assert!(session.tls_established());
            assert!(session.props().secure);
            assert!(!session.is_authenticated());
        }
    }
    session.abort("end of input");
    assert!(session.is_closed());
    drop(session);
    assert!(
        !store.locked.load(Ordering::SeqCst),
        "mailbox lock held after the session ended"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    block_on(run(ctl, input));
});
