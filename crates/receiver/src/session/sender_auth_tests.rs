//! State machine tests of the inbound sender checks over the fake backend
//! (a scripted verifier, no sockets, no DNS): where `Authentication-Results`
//! goes, forged results removed, the DMARC actions, the outer time bound,
//! and that submission mail is not checked.

use super::*;
use crate::data::dot_stuff;
use crate::testing::{CheckCall, FakeBackend, config};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use postamt_config::DmarcAction;
use postamt_sender_auth::{AuthResult, DmarcOutcome, DmarcPolicy, Verdict, decide};
use std::sync::atomic::Ordering;

/// What the fake verifier writes.
const AR: &str = "Authentication-Results: mx.example.org;\r\n\
                  \tspf=pass smtp.mailfrom=sender@remote.net;\r\n\
                  \tdkim=none;\r\n\
                  \tdmarc=pass header.from=remote.net\r\n";

const MESSAGE: &str = "From: a@remote.net\r\nSubject: s\r\n\r\nbody\r\n";

/// A verdict with `dmarc` and the action `[sender_auth] dmarc = honor` gives.
fn check(dmarc: DmarcOutcome) -> SenderCheck {
    let verdict = Verdict {
        authentication_results: AR.into(),
        spf: AuthResult::Pass,
        dkim: AuthResult::None,
        dmarc,
        from_domain: Some("remote.net".into()),
    };
    let action = decide(DmarcAction::Honor, &verdict);
    SenderCheck { verdict, action }
}

fn fail(policy: DmarcPolicy) -> DmarcOutcome {
    DmarcOutcome::Fail { policy }
}

struct Harness {
    s: Session,
    b: FakeBackend,
}

impl Harness {
    /// An MX session from 192.0.2.10.
    fn mx() -> Harness {
        Harness::build("192.0.2.10:40000", SessionOptions::mx(), config())
    }

    fn build(peer: &str, options: SessionOptions, c: Config) -> Harness {
        let peer: SocketAddr = peer.parse().expect("addr");
        Harness {
            s: Session::with_options(Arc::new(c), peer, options, false),
            b: FakeBackend::new(),
        }
    }

    async fn cmd(&mut self, line: &str) -> Step {
        let mut l = line.as_bytes().to_vec();
        l.extend_from_slice(b"\r\n");
        self.s.command(&l, &self.b).await
    }

    async fn ok(&mut self, line: &str) {
        let step = self.cmd(line).await;
        let r = step.replies.first().expect("a reply");
        assert!(r.code < 400, "{line}: {r}");
    }

    /// Sends `message` by DATA; the reply to the end of data.
    async fn data(&mut self, message: &[u8]) -> Step {
        let step = self.cmd("DATA").await;
        assert_eq!(step.next, Next::Body);
        let raw = dot_stuff(message);
        let p = self.s.feed_body(&raw);
        assert!(p.complete && p.consumed == raw.len());
        self.s.finish_body(&self.b).await
    }

    /// EHLO, MAIL from sender@remote.net, RCPT to alice, DATA `message`.
    async fn deliver(&mut self, message: &str) -> Step {
        self.ok("EHLO client.example.net").await;
        self.ok("MAIL FROM:<sender@remote.net>").await;
        self.ok("RCPT TO:<alice@example.org>").await;
        self.data(message.as_bytes()).await
    }

    /// The one message queued, as text.
    fn stored(&self) -> String {
        let queued = self.b.queued();
        assert_eq!(queued.len(), 1, "exactly one message queued");
        String::from_utf8(queued[0].1.clone()).expect("utf8")
    }
}

fn wire(step: &Step) -> String {
    step.replies
        .iter()
        .map(|r| String::from_utf8(r.to_wire()).expect("utf8"))
        .collect()
}

/// Splits a stored message into our `Received:` field (which must come
/// first in `text`) and what follows it.
fn split_received(text: &str) -> (&str, &str) {
    assert!(text.starts_with("Received: from "), "{text}");
    // Our field ends at the first line end not followed by a TAB.
    let mut end = 0;
    while let Some(pos) = text[end..].find("\r\n") {
        end += pos + 2;
        if !text[end..].starts_with('\t') {
            break;
        }
    }
    text.split_at(end)
}

#[tokio::test]
async fn results_go_above_our_received_header() {
    let mut h = Harness::mx();
    h.b.set_sender_check(check(DmarcOutcome::Pass));
    let step = h.deliver(MESSAGE).await;
    assert!(wire(&step).starts_with("250 2.0.0 Ok: queued as "));
    let text = h.stored();
    let rest = text.strip_prefix(AR).expect("our results on top");
    let (received, message) = split_received(rest);
    assert!(
        received.contains("by mx.example.org (Postamt) with ESMTP id "),
        "{received}"
    );
    assert_eq!(message, MESSAGE);
    // The verifier saw what the client sent, nothing of ours.
    assert_eq!(
        h.b.checks(),
        vec![CheckCall {
            message: MESSAGE.as_bytes().to_vec(),
            client_ip: "192.0.2.10".parse().expect("ip"),
            helo: "client.example.net".into(),
            mail_from: "sender@remote.net".into(),
        }]
    );
    assert_eq!(h.s.stats().messages, 1);
}

const FORGED: &str = "Authentication-Results: mx.example.org; dkim=pass header.d=bank.example\r\n\
     Received: from relay.other.net by other.example.net\r\n\
     authentication-results : (forged) \"MX.Example.ORG.\" 1;\r\n\tdmarc=pass\r\n\
     Authentication-Results: other.example.net; spf=pass smtp.mailfrom=remote.net\r\n\
     Authentication-Results: mx.example.org.evil.net; spf=pass\r\n\
     X-Postamt-Quarantine: dmarc (nobody policy quarantine)\r\n\
     From: a@remote.net\r\n\
     Subject: s\r\n\
     \r\n\
     Authentication-Results: mx.example.org; this is the body\r\n";

/// [`FORGED`] without the fields that claim to be ours.
const CLEANED: &str = "Received: from relay.other.net by other.example.net\r\n\
     Authentication-Results: other.example.net; spf=pass smtp.mailfrom=remote.net\r\n\
     Authentication-Results: mx.example.org.evil.net; spf=pass\r\n\
     From: a@remote.net\r\n\
     Subject: s\r\n\
     \r\n\
     Authentication-Results: mx.example.org; this is the body\r\n";

#[tokio::test]
async fn forged_results_claiming_our_hostname_are_removed() {
    let mut h = Harness::mx();
    h.b.set_sender_check(check(DmarcOutcome::Pass));
    let step = h.deliver(FORGED).await;
    assert_eq!(step.replies[0].code, 250);
    let text = h.stored();
    let rest = text.strip_prefix(AR).expect("our results on top");
    let (_, message) = split_received(rest);
    assert_eq!(message, CLEANED);
    // Checked as received: DKIM may cover the fields removed afterwards.
    assert_eq!(h.b.checks()[0].message, FORGED.as_bytes());
}

#[tokio::test]
async fn with_checks_off_nothing_is_added_but_forgeries_still_go() {
    let mut h = Harness::mx();
    let step = h.deliver(FORGED).await;
    assert_eq!(step.replies[0].code, 250);
    let text = h.stored();
    assert!(!text.starts_with("Authentication-Results"), "{text}");
    let (_, message) = split_received(&text);
    assert_eq!(message, CLEANED);
    assert!(h.b.checks().is_empty(), "no check when off");
}

#[tokio::test]
async fn with_checks_off_a_clean_message_is_untouched() {
    let mut h = Harness::mx();
    h.deliver(MESSAGE).await;
    let text = h.stored();
    let (_, message) = split_received(&text);
    assert_eq!(message, MESSAGE);
}

#[tokio::test]
async fn dmarc_reject_refuses_the_message_and_queues_nothing() {
    let mut h = Harness::mx();
    h.b.set_sender_check(check(fail(DmarcPolicy::Reject)));
    let step = h.deliver(MESSAGE).await;
    assert_eq!(
        wire(&step),
        "550 5.7.1 Message rejected: it fails the DMARC policy of remote.net\r\n"
    );
    assert_eq!(step.next, Next::Command);
    assert!(h.b.queued().is_empty());
    assert_eq!(h.s.stats().messages, 0);
    assert_eq!(h.s.stats().errors, 0, "not a command error");
    // The transaction is over; the session goes on.
    assert_eq!(
        h.cmd("RCPT TO:<alice@example.org>").await.replies[0].code,
        503
    );
    h.b.set_sender_check(check(DmarcOutcome::Pass));
    h.ok("MAIL FROM:<other@remote.net>").await;
    h.ok("RCPT TO:<bob@example.org>").await;
    assert_eq!(h.data(MESSAGE.as_bytes()).await.replies[0].code, 250);
    assert_eq!(h.b.queued().len(), 1);
}

#[tokio::test]
async fn dmarc_quarantine_marks_the_message_below_our_received() {
    let mut h = Harness::mx();
    h.b.set_sender_check(check(fail(DmarcPolicy::Quarantine)));
    let step = h.deliver(FORGED).await;
    assert_eq!(step.replies[0].code, 250);
    let text = h.stored();
    let rest = text.strip_prefix(AR).expect("our results on top");
    let (_, after) = split_received(rest);
    let expected =
        format!("X-Postamt-Quarantine: dmarc (remote.net policy quarantine)\r\n{CLEANED}");
    assert_eq!(after, expected, "our mark only, the forged one gone");
}

#[tokio::test]
async fn report_mode_records_a_failure_without_acting() {
    let mut h = Harness::mx();
    let verdict = check(fail(DmarcPolicy::Reject)).verdict;
    let action = decide(DmarcAction::Report, &verdict);
    h.b.set_sender_check(SenderCheck { verdict, action });
    let step = h.deliver(MESSAGE).await;
    assert_eq!(step.replies[0].code, 250);
    let text = h.stored();
    assert!(text.starts_with(AR));
    assert!(!text.contains("X-Postamt-Quarantine"));
}

#[tokio::test]
async fn bdat_last_is_checked_like_data() {
    let mut h = Harness::mx();
    h.b.set_sender_check(check(fail(DmarcPolicy::Reject)));
    h.ok("EHLO client.example.net").await;
    h.ok("MAIL FROM:<sender@remote.net>").await;
    h.ok("RCPT TO:<alice@example.org>").await;
    let (first, second) = MESSAGE.split_at(10);
    h.cmd(&format!("BDAT {}", first.len())).await;
    assert!(h.s.feed_body(first.as_bytes()).complete);
    assert_eq!(h.s.finish_body(&h.b).await.replies[0].code, 250);
    h.cmd(&format!("BDAT {} LAST", second.len())).await;
    assert!(h.s.feed_body(second.as_bytes()).complete);
    let step = h.s.finish_body(&h.b).await;
    assert!(wire(&step).starts_with("550 5.7.1 "), "{}", wire(&step));
    assert!(h.b.queued().is_empty());
    assert_eq!(h.b.checks()[0].message, MESSAGE.as_bytes());

    h.b.set_sender_check(check(DmarcOutcome::Pass));
    h.ok("MAIL FROM:<sender@remote.net>").await;
    h.ok("RCPT TO:<alice@example.org>").await;
    h.cmd(&format!("BDAT {} LAST", MESSAGE.len())).await;
    assert!(h.s.feed_body(MESSAGE.as_bytes()).complete);
    assert_eq!(h.s.finish_body(&h.b).await.replies[0].code, 250);
    assert!(h.stored().starts_with(AR));
}

#[tokio::test(start_paused = true)]
async fn checks_that_never_answer_time_out_to_temperror() {
    let mut h = Harness::mx();
    h.b.sender_check_hangs.store(true, Ordering::Relaxed);
    let started = tokio::time::Instant::now();
    let step = h.deliver(MESSAGE).await;
    assert_eq!(step.replies[0].code, 250, "accepted without a verdict");
    assert!(started.elapsed() >= crate::authres::CHECK_TIMEOUT);
    let text = h.stored();
    let rest = text
        .strip_prefix(crate::authres::timed_out("mx.example.org").as_str())
        .expect("the timed-out results on top");
    let (_, message) = split_received(rest);
    assert_eq!(message, MESSAGE);
    assert_eq!(h.b.checks().len(), 1);
}

#[tokio::test]
async fn submission_mail_is_not_checked() {
    let mut h = Harness::build("192.0.2.10:40000", SessionOptions::submissions(), config());
    // Would refuse everything, were it asked.
    h.b.set_sender_check(check(fail(DmarcPolicy::Reject)));
    h.ok("EHLO laptop").await;
    let ir = STANDARD.encode("\0alice\0alice-pw");
    let step = h.cmd(&format!("AUTH PLAIN {ir}")).await;
    assert_eq!(step.replies[0].code, 235);
    h.ok("MAIL FROM:<alice@example.org>").await;
    h.ok("RCPT TO:<bob@example.org>").await;
    let step = h.data(FORGED.as_bytes()).await;
    assert_eq!(step.replies[0].code, 250);
    assert!(h.b.checks().is_empty(), "submission is never checked");
    let text = h.stored();
    assert!(!text.starts_with("Authentication-Results"), "{text}");
    // A submission client is no trusted MTA: results claiming to be ours go.
    let (received, message) = split_received(&text);
    assert!(received.contains("with ESMTPSA id"), "{received}");
    assert_eq!(message, CLEANED);
}

#[tokio::test]
async fn the_size_limit_counts_what_the_client_sent() {
    let mut h = Harness::mx(); // max_message_size = 1000
    h.b.set_sender_check(check(fail(DmarcPolicy::Quarantine)));
    let mut message = "Subject: big\r\n\r\n".to_string();
    while message.len() < 998 {
        message.push('a');
    }
    message.push_str("\r\n");
    assert_eq!(message.len(), 1000);
    let step = h.deliver(&message).await;
    assert_eq!(step.replies[0].code, 250, "{}", wire(&step));
    let text = h.stored();
    assert!(text.len() > 1000 + AR.len());
    assert!(text.ends_with(&message));
}

#[tokio::test]
async fn a_mapped_ipv6_peer_is_checked_as_ipv4() {
    let mut h = Harness::build("[::ffff:192.0.2.99]:40000", SessionOptions::mx(), config());
    h.b.set_sender_check(check(DmarcOutcome::Pass));
    h.deliver(MESSAGE).await;
    let ip: std::net::IpAddr = "192.0.2.99".parse().expect("ip");
    assert_eq!(h.b.checks()[0].client_ip, ip);
}

#[tokio::test]
async fn the_null_sender_is_checked_with_an_empty_mail_from() {
    let mut h = Harness::mx();
    h.b.set_sender_check(check(DmarcOutcome::None));
    h.ok("HELO bounce.remote.net").await;
    h.ok("MAIL FROM:<>").await;
    h.ok("RCPT TO:<alice@example.org>").await;
    assert_eq!(h.data(MESSAGE.as_bytes()).await.replies[0].code, 250);
    let call = &h.b.checks()[0];
    assert_eq!(call.mail_from, "");
    assert_eq!(call.helo, "bounce.remote.net");
}
