//! Recipient verdicts for lists and SRS bounces at RCPT, and the lists'
//! own size limits at the end of DATA/BDAT, over the fake backend.

use super::*;
use crate::testing::{FakeBackend, config};

struct Harness {
    s: Session,
    b: FakeBackend,
}

impl Harness {
    fn new() -> Harness {
        let peer: SocketAddr = "192.0.2.10:40000".parse().expect("addr");
        Harness {
            s: Session::new(Arc::new(config()), peer),
            b: FakeBackend::new(),
        }
    }

    async fn cmd(&mut self, line: &str) -> Step {
        let mut l = line.as_bytes().to_vec();
        l.extend_from_slice(b"\r\n");
        self.s.command(&l, &self.b).await
    }

    /// The first reply: code, enhanced status, whole text on the wire.
    async fn reply(&mut self, line: &str) -> (u16, Option<&'static str>, String) {
        let step = self.cmd(line).await;
        let r = step.replies.first().expect("a reply");
        (
            r.code,
            r.status,
            String::from_utf8(r.to_wire()).expect("utf8"),
        )
    }

    async fn code(&mut self, line: &str) -> (u16, Option<&'static str>) {
        let (code, status, _) = self.reply(line).await;
        (code, status)
    }

    async fn mail(&mut self, from: &str) {
        assert_eq!(self.code("EHLO client.example.net").await.0, 250);
        assert_eq!(self.code(&format!("MAIL FROM:<{from}>")).await.0, 250);
    }

    /// DATA with a body of `n` bytes (plus CRLF), the end-of-data reply.
    async fn data(&mut self, n: usize) -> (u16, Option<&'static str>, String) {
        assert_eq!(self.code("DATA").await.0, 354);
        let mut raw = vec![b'a'; n];
        raw.extend_from_slice(b"\r\n.\r\n");
        let p = self.s.feed_body(&raw);
        assert!(p.complete, "body incomplete");
        let step = self.s.finish_body(&self.b).await;
        let r = step.replies.first().expect("a reply");
        (
            r.code,
            r.status,
            String::from_utf8(r.to_wire()).expect("utf8"),
        )
    }
}

#[tokio::test]
async fn list_post_accepted_and_sender_passed_to_the_check() {
    let mut h = Harness::new();
    h.mail("someone@remote.net").await;
    assert_eq!(
        h.code("RCPT TO:<open@example.org>").await,
        (250, Some("2.1.5"))
    );
    assert_eq!(h.b.rcpt_senders(), vec!["someone@remote.net".to_string()]);
    let (code, _, _) = h.data(50).await;
    assert_eq!(code, 250);
    let queued = h.b.queued();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].0.recipients, vec!["open@example.org".to_string()]);
}

#[tokio::test]
async fn null_sender_is_passed_as_empty() {
    let mut h = Harness::new();
    h.mail("").await;
    assert_eq!(
        h.code("RCPT TO:<members@example.org>").await,
        (550, Some("5.7.1"))
    );
    assert_eq!(h.b.rcpt_senders(), vec![String::new()]);
}

#[tokio::test]
async fn non_member_refused_member_accepted() {
    let mut h = Harness::new();
    h.mail("mallory@remote.net").await;
    let (code, status, text) = h.reply("RCPT TO:<members@example.org>").await;
    assert_eq!((code, status), (550, Some("5.7.1")));
    assert_eq!(
        text,
        "550 5.7.1 <members@example.org>: only members may post\r\n"
    );
    assert_eq!(h.s.stats().recipients_rejected, 1);
    // Other recipients of the same transaction are unaffected.
    assert_eq!(h.code("RCPT TO:<alice@example.org>").await.0, 250);

    let mut h = Harness::new();
    h.mail("Alice@example.org").await;
    assert_eq!(
        h.code("RCPT TO:<members@example.org>").await,
        (250, Some("2.1.5"))
    );
}

#[tokio::test]
async fn moderated_list_accepts_anyone() {
    let mut h = Harness::new();
    h.mail("stranger@remote.net").await;
    assert_eq!(
        h.code("RCPT TO:<moderated@example.org>").await,
        (250, Some("2.1.5"))
    );
}

#[tokio::test]
async fn srs_bounce_accepted_bad_srs_refused() {
    let mut h = Harness::new();
    h.mail("").await;
    assert_eq!(
        h.code("RCPT TO:<SRS0=good=AA=remote.net=carol@example.org>")
            .await,
        (250, Some("2.1.5"))
    );
    let (code, status, text) = h
        .reply("RCPT TO:<SRS0=bad=AA=remote.net=carol@example.org>")
        .await;
    assert_eq!((code, status), (550, Some("5.1.1")));
    assert!(text.contains("User unknown"), "{text}");
}

#[tokio::test]
async fn other_verdicts_unchanged() {
    let mut h = Harness::new();
    h.mail("x@remote.net").await;
    assert_eq!(
        h.code("RCPT TO:<nobody@example.org>").await,
        (550, Some("5.1.1"))
    );
    assert_eq!(
        h.code("RCPT TO:<loop@example.org>").await,
        (550, Some("5.4.6"))
    );
    assert_eq!(
        h.code("RCPT TO:<tmp@example.org>").await,
        (451, Some("4.3.0"))
    );
    assert_eq!(
        h.code("RCPT TO:<alice@example.org>").await,
        (250, Some("2.1.5"))
    );
}

#[tokio::test]
async fn list_size_limit_enforced_at_end_of_data() {
    let mut h = Harness::new();
    h.mail("x@remote.net").await;
    assert_eq!(h.code("RCPT TO:<alice@example.org>").await.0, 250);
    assert_eq!(h.code("RCPT TO:<small@example.org>").await.0, 250);
    let (code, status, text) = h.data(200).await;
    assert_eq!((code, status), (552, Some("5.3.4")));
    assert!(text.contains("<small@example.org>"), "{text}");
    assert!(h.b.queued().is_empty(), "the whole message is refused");
    // The envelope is gone.
    assert_eq!(h.code("RCPT TO:<alice@example.org>").await.0, 503);
}

#[tokio::test]
async fn list_size_limit_lets_small_messages_through() {
    let mut h = Harness::new();
    h.mail("x@remote.net").await;
    assert_eq!(h.code("RCPT TO:<small@example.org>").await.0, 250);
    let (code, _, _) = h.data(90).await;
    assert_eq!(code, 250);
    assert_eq!(h.b.queued().len(), 1);
}

#[tokio::test]
async fn smallest_list_limit_wins() {
    let mut h = Harness::new();
    h.mail("alice@example.org").await;
    assert_eq!(h.code("RCPT TO:<members@example.org>").await.0, 250); // 500
    assert_eq!(h.code("RCPT TO:<small@example.org>").await.0, 250); // 100
    assert_eq!(h.code("RCPT TO:<open@example.org>").await.0, 250); // none
    let (code, _, text) = h.data(300).await;
    assert_eq!(code, 552);
    assert!(text.contains("<small@example.org>"), "{text}");

    // In the other order, too.
    let mut h = Harness::new();
    h.mail("alice@example.org").await;
    assert_eq!(h.code("RCPT TO:<small@example.org>").await.0, 250);
    assert_eq!(h.code("RCPT TO:<members@example.org>").await.0, 250);
    let (code, _, text) = h.data(300).await;
    assert_eq!(code, 552);
    assert!(text.contains("<small@example.org>"), "{text}");
}

#[tokio::test]
async fn list_limit_above_the_servers_changes_nothing() {
    let mut h = Harness::new(); // server: 1000
    h.mail("x@remote.net").await;
    assert_eq!(h.code("RCPT TO:<big@example.org>").await.0, 250); // 5000
    let (code, _, _) = h.data(900).await;
    assert_eq!(code, 250);
    let mut h = Harness::new();
    h.mail("x@remote.net").await;
    assert_eq!(h.code("RCPT TO:<big@example.org>").await.0, 250);
    let (code, _, text) = h.data(1500).await;
    assert_eq!(code, 552);
    assert!(text.contains("fixed maximum"), "the server's limit: {text}");
}

#[tokio::test]
async fn declared_size_over_a_list_limit_refused_at_rcpt() {
    let mut h = Harness::new();
    assert_eq!(h.code("EHLO client.example.net").await.0, 250);
    assert_eq!(h.code("MAIL FROM:<x@remote.net> SIZE=200").await.0, 250);
    let (code, status, text) = h.reply("RCPT TO:<small@example.org>").await;
    assert_eq!((code, status), (552, Some("5.3.4")));
    assert!(text.contains("<small@example.org>"), "{text}");
    // Not for a recipient without a limit.
    assert_eq!(h.code("RCPT TO:<open@example.org>").await.0, 250);
    let (code, _, _) = h.data(150).await;
    assert_eq!(code, 250, "small@ is not a recipient");
}

#[tokio::test]
async fn list_size_limit_applies_to_bdat() {
    let mut h = Harness::new();
    h.mail("x@remote.net").await;
    assert_eq!(h.code("RCPT TO:<small@example.org>").await.0, 250);
    h.cmd("BDAT 80").await;
    let p = h.s.feed_body(&[b'a'; 80]);
    assert!(p.complete);
    let step = h.s.finish_body(&h.b).await;
    assert_eq!(step.replies[0].code, 250);
    h.cmd("BDAT 30 LAST").await;
    let p = h.s.feed_body(&[b'b'; 30]);
    assert!(p.complete);
    let step = h.s.finish_body(&h.b).await;
    let r = &step.replies[0];
    assert_eq!((r.code, r.status), (552, Some("5.3.4")));
    assert!(
        String::from_utf8(r.to_wire())
            .expect("utf8")
            .contains("<small@example.org>")
    );
    assert!(h.b.queued().is_empty());
}
