//! Session state machine tests, over the fake backend (no sockets).

use super::*;
use crate::data::dot_stuff;
use crate::testing::{FakeBackend, config};
use proptest::prelude::*;
use std::sync::atomic::Ordering;

struct Harness {
    s: Session,
    b: FakeBackend,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_config(config())
    }

    fn with_config(c: Config) -> Harness {
        let peer: SocketAddr = "192.0.2.10:40000".parse().expect("addr");
        Harness {
            s: Session::new(Arc::new(c), peer),
            b: FakeBackend::new(),
        }
    }

    async fn cmd(&mut self, line: &str) -> Step {
        let mut l = line.as_bytes().to_vec();
        l.extend_from_slice(b"\r\n");
        self.s.command(&l, &self.b).await
    }

    /// The first reply's code and enhanced status.
    async fn code(&mut self, line: &str) -> (u16, Option<&'static str>) {
        let step = self.cmd(line).await;
        let r = step.replies.first().expect("a reply");
        (r.code, r.status)
    }

    /// Feeds a whole body (must complete) and finishes it.
    async fn body(&mut self, raw: &[u8]) -> (usize, Step) {
        let p = self.s.feed_body(raw);
        assert!(p.complete, "body incomplete");
        let step = self.s.finish_body(&self.b).await;
        (p.consumed, step)
    }

    async fn ready(&mut self) {
        assert_eq!(self.code("EHLO client.example.net").await.0, 250);
        assert_eq!(
            self.code("MAIL FROM:<sender@remote.net>").await,
            (250, Some("2.1.0"))
        );
        assert_eq!(
            self.code("RCPT TO:<alice@example.org>").await,
            (250, Some("2.1.5"))
        );
    }
}

fn wire(step: &Step) -> String {
    step.replies
        .iter()
        .map(|r| String::from_utf8(r.to_wire()).expect("utf8"))
        .collect()
}

#[tokio::test]
async fn greeting_and_ehlo_capabilities() {
    let mut h = Harness::new();
    assert_eq!(
        h.s.greeting().to_wire(),
        b"220 mx.example.org ESMTP Postamt\r\n"
    );
    let step = h.cmd("EHLO client.example.net").await;
    assert_eq!(step.next, Next::Command);
    assert_eq!(
        wire(&step),
        "250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n\
         250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"
    );
}

#[tokio::test]
async fn helo_has_no_extensions() {
    let mut h = Harness::new();
    let step = h.cmd("HELO client").await;
    assert_eq!(wire(&step), "250 mx.example.org\r\n");
    assert_eq!(
        h.code("MAIL FROM:<a@b.net> SIZE=10").await,
        (555, Some("5.5.4"))
    );
    assert_eq!(h.code("MAIL FROM:<a@b.net>").await, (250, Some("2.1.0")));
}

#[tokio::test]
async fn commands_before_helo() {
    let mut h = Harness::new();
    assert_eq!(h.code("MAIL FROM:<a@b.net>").await, (503, Some("5.5.1")));
    assert_eq!(
        h.code("RCPT TO:<alice@example.org>").await,
        (503, Some("5.5.1"))
    );
    assert_eq!(h.code("DATA").await, (503, Some("5.5.1")));
    assert_eq!(h.code("RSET").await, (250, Some("2.0.0")));
    assert_eq!(h.code("NOOP").await, (250, Some("2.0.0")));
    assert_eq!(h.code("VRFY alice").await, (252, Some("2.5.2")));
    assert_eq!(h.code("HELP").await.0, 214);
    assert!(h.b.lookups().is_empty(), "nothing looked up before HELO");
    let step = h.cmd("QUIT").await;
    assert_eq!(wire(&step), "221 2.0.0 Bye\r\n");
    assert_eq!(step.next, Next::Close);
}

#[tokio::test]
async fn expn_discloses_nothing() {
    let mut h = Harness::new();
    h.cmd("EHLO c").await;
    assert_eq!(h.code("EXPN staff").await, (502, Some("5.5.1")));
    assert_eq!(h.code("expn").await, (502, Some("5.5.1")));
    assert!(h.b.lookups().is_empty());
}

#[tokio::test]
async fn unknown_and_unimplemented_commands() {
    let mut h = Harness::new();
    assert_eq!(h.code("FOO bar").await, (500, Some("5.5.2")));
    assert_eq!(h.code("").await, (500, Some("5.5.2")));
    assert_eq!(h.code("STARTTLS").await, (502, Some("5.5.1")));
    assert_eq!(h.code("AUTH PLAIN AGFAAGI=").await, (502, Some("5.5.1")));
}

#[tokio::test]
async fn syntax_errors() {
    let mut h = Harness::new();
    h.cmd("EHLO c").await;
    assert_eq!(h.code("MAIL FROM:a@b.net").await, (501, Some("5.5.4")));
    assert_eq!(h.code("MAIL TO:<a@b.net>").await, (501, Some("5.5.4")));
    assert_eq!(h.code("MAIL FROM:<no-at-sign>").await, (501, Some("5.1.7")));
    assert_eq!(h.code("MAIL FROM:<a@>").await.0, 501);
    assert_eq!(h.code("MAIL FROM:<postmaster>").await, (501, Some("5.1.7")));
    assert_eq!(h.code("EHLO").await, (501, Some("5.5.4")));
    assert_eq!(h.code("BDAT x").await, (501, Some("5.5.4")));
    assert_eq!(
        h.code("BDAT 99999999999999999999999999").await,
        (501, Some("5.5.4"))
    );
    assert_eq!(h.code("BDAT -1").await, (501, Some("5.5.4")));
    assert_eq!(h.code("BDAT 1 NOTLAST").await, (501, Some("5.5.4")));
    h.cmd("MAIL FROM:<a@b.net>").await;
    assert_eq!(h.code("RCPT TO:<no-at-sign>").await, (501, Some("5.1.3")));
    assert_eq!(h.code("RCPT TO:<>").await, (501, Some("5.1.3")));
    assert_eq!(h.code("RCPT TO:<a@>").await, (501, Some("5.1.3")));
    assert!(h.b.lookups().is_empty());
}

#[tokio::test]
async fn non_utf8_line_is_refused() {
    let mut h = Harness::new();
    let step = h.s.command(b"EHLO \xff\xfe\r\n", &h.b).await;
    assert_eq!(step.replies[0].code, 501);
}

#[tokio::test]
async fn sequence_errors() {
    let mut h = Harness::new();
    h.cmd("EHLO c").await;
    assert_eq!(
        h.code("RCPT TO:<alice@example.org>").await,
        (503, Some("5.5.1"))
    );
    assert_eq!(h.code("DATA").await, (503, Some("5.5.1")));
    assert_eq!(h.code("MAIL FROM:<a@b.net>").await.0, 250);
    assert_eq!(h.code("MAIL FROM:<a@b.net>").await, (503, Some("5.5.1")));
    assert_eq!(h.code("DATA").await, (503, Some("5.5.1")), "no RCPT yet");
    assert_eq!(h.code("RCPT TO:<nobody@example.org>").await.0, 550);
    assert_eq!(
        h.code("DATA").await,
        (554, Some("5.5.1")),
        "no valid recipients"
    );
}

#[tokio::test]
async fn null_sender_is_allowed() {
    let mut h = Harness::new();
    h.cmd("EHLO c").await;
    assert_eq!(h.code("MAIL FROM:<>").await, (250, Some("2.1.0")));
    h.cmd("RCPT TO:<alice@example.org>").await;
    h.cmd("DATA").await;
    let (_, step) = h.body(b"Subject: bounce\r\n\r\nx\r\n.\r\n").await;
    assert_eq!(step.replies[0].code, 250);
    assert_eq!(h.b.queued()[0].0.mail_from, "");
}

#[tokio::test]
async fn mail_parameters() {
    let mut h = Harness::new();
    h.cmd("EHLO c").await;
    assert_eq!(
        h.code("MAIL FROM:<a@b.net> SIZE=1001").await,
        (552, Some("5.3.4"))
    );
    assert_eq!(
        h.code("MAIL FROM:<a@b.net> SIZE=99999999999999999999999999")
            .await,
        (552, Some("5.3.4")),
        "a size beyond 64 bits is over the limit, not wrapped"
    );
    assert_eq!(
        h.code("MAIL FROM:<a@b.net> BODY=BINARYMIME").await,
        (555, Some("5.5.4"))
    );
    assert_eq!(
        h.code("MAIL FROM:<a@b.net> RET=FULL").await,
        (555, Some("5.5.4"))
    );
    assert_eq!(
        h.code("MAIL FROM:<a@b.net> ENVID=x").await,
        (555, Some("5.5.4"))
    );
    assert_eq!(
        h.code("MAIL FROM:<a@b.net> FOO=bar").await,
        (555, Some("5.5.4"))
    );
    assert_eq!(
        h.code("MAIL FROM:<a@b.net> BODY=9BIT").await,
        (501, Some("5.5.4"))
    );
    assert_eq!(
        h.code("MAIL FROM:<a@b.net> SIZE=1000 BODY=8BITMIME").await,
        (250, Some("2.1.0"))
    );
    h.cmd("RCPT TO:<alice@example.org>").await;
    h.cmd("DATA").await;
    h.body(b"x\r\n.\r\n").await;
    let (msg, _) = &h.b.queued()[0];
    assert!(msg.eight_bit);
    assert!(!msg.smtputf8);
    assert_eq!(
        h.code("MAIL FROM:<a@b.net> BODY=7BIT").await,
        (250, Some("2.1.0"))
    );
}

#[tokio::test]
async fn smtputf8_addresses() {
    let mut h = Harness::new();
    h.cmd("EHLO c").await;
    assert_eq!(
        h.code("MAIL FROM:<jörg@bücher.de>").await,
        (553, Some("5.6.7"))
    );
    assert_eq!(h.code("MAIL FROM:<a@b.net>").await.0, 250);
    assert_eq!(
        h.code("RCPT TO:<jörg@example.org>").await,
        (553, Some("5.6.7"))
    );
    h.cmd("RSET").await;
    assert_eq!(h.code("MAIL FROM:<jörg@bücher.de> SMTPUTF8").await.0, 250);
    assert_eq!(
        h.code("RCPT TO:<jörg@example.org>").await,
        (250, Some("2.1.5"))
    );
    h.cmd("DATA").await;
    h.body(b"x\r\n.\r\n").await;
    let (msg, _) = &h.b.queued()[0];
    assert!(msg.smtputf8);
    assert_eq!(msg.mail_from, "jörg@bücher.de");
    assert_eq!(msg.recipients, vec!["jörg@example.org"]);
}

#[tokio::test]
async fn recipient_verdicts() {
    let mut h = Harness::new();
    h.cmd("EHLO c").await;
    h.cmd("MAIL FROM:<a@b.net>").await;
    assert_eq!(
        h.code("RCPT TO:<alice@example.org>").await,
        (250, Some("2.1.5"))
    );
    let step = h.cmd("RCPT TO:<nobody@example.org>").await;
    assert_eq!(
        wire(&step),
        "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown\r\n"
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
        h.code("RCPT TO:<Bob@EXAMPLE.ORG.>").await,
        (250, Some("2.1.5"))
    );
    assert_eq!(
        h.b.lookups().last().map(String::as_str),
        Some("Bob@EXAMPLE.ORG")
    );
    assert_eq!(h.s.stats().recipients_rejected, 3);
    assert_eq!(h.s.stats().recipients_accepted, 2);
    assert_eq!(
        h.s.stats().errors,
        0,
        "rejected recipients are not bad commands"
    );
}

#[tokio::test]
async fn relay_is_denied_without_lookup() {
    let mut h = Harness::new();
    h.cmd("EHLO c").await;
    h.cmd("MAIL FROM:<alice@example.org>").await;
    let step = h.cmd("RCPT TO:<someone@elsewhere.net>").await;
    assert_eq!(
        wire(&step),
        "554 5.7.1 <someone@elsewhere.net>: Relay access denied\r\n"
    );
    assert_eq!(
        h.code("RCPT TO:<postmaster@elsewhere.net>").await,
        (554, Some("5.7.1"))
    );
    assert_eq!(
        h.code("RCPT TO:<x@example.org.evil.net>").await,
        (554, Some("5.7.1"))
    );
    assert_eq!(h.code("RCPT TO:<x@[127.0.0.1]>").await.0 / 100, 5);
    assert!(h.b.lookups().is_empty());
}

#[tokio::test]
async fn hostname_is_a_local_domain() {
    let mut h = Harness::new();
    h.cmd("EHLO c").await;
    h.cmd("MAIL FROM:<a@b.net>").await;
    // Looked up (the fake does not know it: 550, not 554).
    assert_eq!(
        h.code("RCPT TO:<alice@mx.example.org>").await,
        (550, Some("5.1.1"))
    );
    assert_eq!(h.b.lookups(), vec!["alice@mx.example.org"]);
}

#[tokio::test]
async fn bare_postmaster_is_always_accepted() {
    let mut h = Harness::new();
    h.cmd("EHLO c").await;
    h.cmd("MAIL FROM:<a@b.net>").await;
    assert_eq!(h.code("RCPT TO:<PostMaster>").await, (250, Some("2.1.5")));
    assert_eq!(h.b.lookups(), vec!["postmaster"]);
    h.cmd("DATA").await;
    h.body(b"x\r\n.\r\n").await;
    assert_eq!(h.b.queued()[0].0.recipients, vec!["postmaster"]);
}

#[tokio::test]
async fn recipient_limit_and_duplicates() {
    let mut h = Harness::new(); // max_recipients = 3
    h.cmd("EHLO c").await;
    h.cmd("MAIL FROM:<a@b.net>").await;
    assert_eq!(h.code("RCPT TO:<alice@example.org>").await.0, 250);
    assert_eq!(
        h.code("RCPT TO:<ALICE@example.org>").await.0,
        250,
        "duplicate"
    );
    assert_eq!(h.code("RCPT TO:<bob@example.org>").await.0, 250);
    assert_eq!(h.code("RCPT TO:<postmaster>").await.0, 250);
    assert_eq!(
        h.code("RCPT TO:<postmaster@example.org>").await,
        (452, Some("4.5.3"))
    );
    assert_eq!(
        h.code("RCPT TO:<bob@example.org>").await.0,
        250,
        "duplicate at the limit"
    );
    h.cmd("DATA").await;
    h.body(b"x\r\n.\r\n").await;
    assert_eq!(
        h.b.queued()[0].0.recipients,
        vec!["alice@example.org", "bob@example.org", "postmaster"]
    );
}

#[tokio::test]
async fn rcpt_parameters_are_unsupported() {
    let mut h = Harness::new();
    h.cmd("EHLO c").await;
    h.cmd("MAIL FROM:<a@b.net>").await;
    assert_eq!(
        h.code("RCPT TO:<alice@example.org> NOTIFY=NEVER").await,
        (555, Some("5.5.4"))
    );
    assert_eq!(
        h.code("RCPT TO:<alice@example.org> XYZ").await,
        (555, Some("5.5.4"))
    );
}

#[tokio::test]
async fn data_is_queued_with_received_header() {
    let mut h = Harness::new();
    h.ready().await;
    let step = h.cmd("DATA").await;
    assert_eq!(wire(&step), "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_eq!(step.next, Next::Body);
    assert!(h.s.in_body());
    let raw = b"Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n";
    let (consumed, step) = h.body(raw).await;
    assert_eq!(consumed, raw.len() - 6, "pipelined QUIT is left");
    let queued = h.b.queued();
    assert_eq!(queued.len(), 1);
    let (msg, data) = &queued[0];
    let id = msg.id.clone().expect("receiver names the id");
    assert_eq!(wire(&step), format!("250 2.0.0 Ok: queued as {id}\r\n"));
    assert_eq!(msg.mail_from, "sender@remote.net");
    assert_eq!(msg.recipients, vec!["alice@example.org"]);
    assert_eq!(msg.client.as_deref(), Some("192.0.2.10"));
    assert_eq!(msg.helo.as_deref(), Some("client.example.net"));
    assert!(msg.auth_user.is_none());
    let text = String::from_utf8(data.clone()).expect("utf8");
    let expected_start = format!(
        "Received: from client.example.net ([192.0.2.10])\r\n\tby mx.example.org (Postamt) \
         with ESMTP id {id}\r\n\tfor <alice@example.org>; "
    );
    assert!(text.starts_with(&expected_start), "{text}");
    assert!(
        text.ends_with("\r\nSubject: hi\r\n\r\n.dot\r\nbody\r\n"),
        "{text}"
    );
    assert!(!h.s.in_body());
    assert_eq!(h.s.stats().messages, 1);
    // The envelope is reset: a new transaction can start.
    assert_eq!(
        h.code("RCPT TO:<alice@example.org>").await,
        (503, Some("5.5.1"))
    );
    assert_eq!(h.code("MAIL FROM:<b@c.net>").await.0, 250);
}

#[tokio::test]
async fn received_header_without_for_and_with_helo() {
    let mut h = Harness::new();
    h.cmd("HELO old.client").await;
    h.cmd("MAIL FROM:<a@b.net>").await;
    h.cmd("RCPT TO:<alice@example.org>").await;
    h.cmd("RCPT TO:<bob@example.org>").await;
    h.cmd("DATA").await;
    h.body(b"x\r\n.\r\n").await;
    let (msg, data) = &h.b.queued()[0];
    let id = msg.id.clone().expect("id");
    let text = String::from_utf8(data.clone()).expect("utf8");
    assert!(text.starts_with(&format!(
        "Received: from old.client ([192.0.2.10])\r\n\tby mx.example.org (Postamt) with SMTP id {id};\r\n\t"
    )));
    assert!(!text.contains("for <"));
}

#[tokio::test]
async fn oversized_data_is_read_then_refused() {
    let mut h = Harness::new(); // max_message_size = 1000
    h.ready().await;
    h.cmd("DATA").await;
    let mut raw = vec![b'a'; 1500];
    raw.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
    let (consumed, step) = h.body(&raw).await;
    assert_eq!(consumed, raw.len() - 6, "read to the end of data");
    assert_eq!(
        wire(&step),
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    );
    assert!(h.b.queued().is_empty());
    assert_eq!(
        h.code("RCPT TO:<alice@example.org>").await.0,
        503,
        "envelope reset"
    );
}

#[tokio::test]
async fn exactly_the_limit_is_accepted() {
    let mut h = Harness::new();
    h.ready().await;
    h.cmd("DATA").await;
    let mut raw = vec![b'a'; 998];
    raw.extend_from_slice(b"\r\n.\r\n");
    let (_, step) = h.body(&raw).await;
    assert_eq!(step.replies[0].code, 250);
}

fn with_hops(n: usize) -> Vec<u8> {
    let mut m = Vec::new();
    for i in 0..n {
        m.extend_from_slice(format!("Received: from h{i}\r\n").as_bytes());
    }
    m.extend_from_slice(b"Subject: loop\r\n\r\nbody\r\n.\r\n");
    m
}

#[tokio::test]
async fn too_many_hops_is_a_loop() {
    let mut c = config();
    c.limits.max_message_size = 100_000;
    let mut h = Harness::with_config(c);
    h.ready().await;
    h.cmd("DATA").await;
    let (_, step) = h.body(&with_hops(MAX_HOPS)).await;
    assert_eq!(wire(&step), "554 5.4.6 Too many hops (mail loop?)\r\n");
    assert!(h.b.queued().is_empty());

    h.cmd("MAIL FROM:<a@b.net>").await;
    h.cmd("RCPT TO:<alice@example.org>").await;
    h.cmd("DATA").await;
    let (_, step) = h.body(&with_hops(MAX_HOPS - 1)).await;
    assert_eq!(
        step.replies[0].code, 250,
        "49 earlier hops plus ours are fine"
    );
}

#[tokio::test]
async fn enqueue_failure_acknowledges_nothing() {
    let mut h = Harness::new();
    h.b.fail_enqueue.store(true, Ordering::Relaxed);
    h.ready().await;
    h.cmd("DATA").await;
    let (_, step) = h.body(b"x\r\n.\r\n").await;
    assert_eq!(step.replies[0].code, 451);
    assert_eq!(step.replies[0].status, Some("4.3.0"));
    assert_eq!(h.s.stats().messages, 0);
    assert_eq!(h.code("MAIL FROM:<a@b.net>").await.0, 250, "envelope reset");
}

#[tokio::test]
async fn rset_and_ehlo_reset_the_envelope() {
    let mut h = Harness::new();
    h.ready().await;
    assert_eq!(h.code("RSET").await, (250, Some("2.0.0")));
    assert_eq!(h.code("DATA").await.0, 503);
    h.cmd("MAIL FROM:<a@b.net>").await;
    h.cmd("EHLO again").await;
    assert_eq!(h.code("RCPT TO:<alice@example.org>").await.0, 503);
}

#[tokio::test]
async fn bdat_chunks_are_queued() {
    let mut h = Harness::new();
    h.ready().await;
    let step = h.cmd("BDAT 7").await;
    assert!(step.replies.is_empty());
    assert_eq!(step.next, Next::Body);
    let (n, step) = h.body(b"Sub\r\n.xBDAT").await;
    assert_eq!(n, 7);
    assert_eq!(wire(&step), "250 2.0.0 7 octets received\r\n");
    assert_eq!(
        h.code("DATA").await,
        (503, Some("5.5.1")),
        "DATA after BDAT"
    );
    assert_eq!(
        h.code("RCPT TO:<bob@example.org>").await,
        (503, Some("5.5.1"))
    );
    h.cmd("BDAT 3 LAST").await;
    let (_, step) = h.body(b"\n\r\n").await;
    let (msg, data) = &h.b.queued()[0];
    let id = msg.id.clone().expect("id");
    assert_eq!(wire(&step), format!("250 2.0.0 Ok: queued as {id}\r\n"));
    assert!(
        data.ends_with(b"Sub\r\n.x\n\r\n"),
        "bytes verbatim, no dot handling"
    );
}

#[tokio::test]
async fn bdat_zero_last() {
    let mut h = Harness::new();
    h.ready().await;
    h.cmd("BDAT 0 LAST").await;
    let (n, step) = h.body(b"").await;
    assert_eq!(n, 0);
    assert_eq!(step.replies[0].code, 250);
    let (_, data) = &h.b.queued()[0];
    assert!(data.starts_with(b"Received: ") && data.ends_with(b"\r\n"));
}

#[tokio::test]
async fn bdat_without_recipient_is_consumed_and_refused() {
    let mut h = Harness::new();
    h.cmd("EHLO c").await;
    h.cmd("BDAT 5").await;
    let (n, step) = h.body(b"RSET\nNOOP\r\n").await;
    assert_eq!(n, 5, "the chunk bytes are consumed");
    assert_eq!(step.replies[0].code, 503);
    h.cmd("MAIL FROM:<a@b.net>").await;
    h.cmd("RCPT TO:<nobody@example.org>").await;
    h.cmd("BDAT 4 LAST").await;
    let (n, step) = h.body(b"abcd").await;
    assert_eq!(n, 4);
    assert_eq!(
        (step.replies[0].code, step.replies[0].status),
        (554, Some("5.5.1"))
    );
    assert!(h.b.queued().is_empty());
}

#[tokio::test]
async fn bdat_over_the_limit_fails_the_transaction() {
    let mut h = Harness::new(); // max 1000
    h.ready().await;
    h.cmd("BDAT 600").await;
    let (_, step) = h.body(&[b'a'; 600]).await;
    assert_eq!(step.replies[0].code, 250);
    h.cmd("BDAT 401").await;
    let (n, step) = h.body(&[b'b'; 401]).await;
    assert_eq!(n, 401, "read and discarded");
    assert_eq!(
        (step.replies[0].code, step.replies[0].status),
        (552, Some("5.3.4"))
    );
    h.cmd("BDAT 1 LAST").await;
    let (_, step) = h.body(b"c").await;
    assert_eq!(step.replies[0].code, 503, "the transaction is gone");
    assert!(h.b.queued().is_empty());
}

#[tokio::test]
async fn bdat_huge_size_does_not_overflow() {
    let mut h = Harness::new();
    h.ready().await;
    let step = h.cmd(&format!("BDAT {}", u64::MAX - 1)).await;
    assert_eq!(step.next, Next::Body);
    let p = h.s.feed_body(b"abc");
    assert_eq!((p.consumed, p.complete), (3, false));
}

#[tokio::test]
async fn too_many_errors_closes() {
    let mut h = Harness::new(); // max_errors = 5
    for _ in 0..4 {
        let step = h.cmd("BOGUS").await;
        assert_eq!(step.next, Next::Command);
    }
    let step = h.s.line_too_long();
    assert_eq!(step.next, Next::Close);
    assert_eq!(
        wire(&step),
        "500 5.5.2 Line too long\r\n421 4.7.0 mx.example.org Too many errors\r\n"
    );
}

#[tokio::test]
async fn good_commands_do_not_count_as_errors() {
    let mut h = Harness::new();
    for _ in 0..20 {
        assert_eq!(h.cmd("NOOP").await.next, Next::Command);
        assert_eq!(h.cmd("VRFY x").await.next, Next::Command);
    }
    assert_eq!(h.s.stats().errors, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random chunk splits of random bytes reassemble exactly, fed in random
    /// pieces; and the same bytes through DATA give the same message.
    #[test]
    fn bdat_chunks_reassemble(
        data in proptest::collection::vec(any::<u8>(), 0..900),
        splits in proptest::collection::vec(any::<usize>(), 0..6),
        feed in 1usize..50,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(async {
            let mut h = Harness::new();
            h.ready().await;
            let mut cuts: Vec<usize> = splits.iter().map(|s| s % (data.len() + 1)).collect();
            cuts.sort_unstable();
            cuts.push(data.len());
            let mut start = 0;
            for (i, &cut) in cuts.iter().enumerate() {
                let last = i + 1 == cuts.len();
                let chunk = &data[start..cut];
                let line = if last {
                    format!("BDAT {} LAST", chunk.len())
                } else {
                    format!("BDAT {}", chunk.len())
                };
                let step = h.cmd(&line).await;
                prop_assert_eq!(step.next, Next::Body);
                let mut pos = 0;
                loop {
                    let end = (pos + feed).min(chunk.len());
                    let p = h.s.feed_body(&chunk[pos..end]);
                    pos += p.consumed;
                    if p.complete {
                        break;
                    }
                    prop_assert_eq!(pos, end);
                }
                prop_assert_eq!(pos, chunk.len());
                let step = h.s.finish_body(&h.b).await;
                prop_assert_eq!(step.replies[0].code, 250);
                start = cut;
            }
            let queued = h.b.queued();
            prop_assert_eq!(queued.len(), 1);
            let bdat_bytes = queued[0].1.clone();
            prop_assert!(bdat_bytes.ends_with(&data));

            // The same message by DATA (data made to end in CRLF).
            let mut crlf_data = data.clone();
            if !crlf_data.ends_with(b"\r\n") && !crlf_data.is_empty() {
                crlf_data.extend_from_slice(b"\r\n");
            }
            h.cmd("MAIL FROM:<a@b.net>").await;
            h.cmd("RCPT TO:<alice@example.org>").await;
            h.cmd("DATA").await;
            let (_, step) = h.body(&dot_stuff(&crlf_data)).await;
            prop_assert_eq!(step.replies[0].code, 250);
            let data_bytes = h.b.queued()[1].1.clone();
            prop_assert!(data_bytes.ends_with(&crlf_data));
            Ok(())
        })?;
    }
}
