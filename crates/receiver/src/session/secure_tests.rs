//! State machine tests for STARTTLS, AUTH and the submission rules, over
//! the fake backend (no sockets): capabilities per mode, the reset after
//! STARTTLS, every AUTH reply, sender ownership, relaying.

use super::*;
use crate::testing::{FakeBackend, config};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

struct Harness {
    s: Session,
    b: FakeBackend,
}

impl Harness {
    /// A session from 192.0.2.10 in `options`, STARTTLS available.
    fn new(options: SessionOptions) -> Harness {
        Harness::build(config(), "192.0.2.10:40000", options, true)
    }

    fn build(c: Config, peer: &str, options: SessionOptions, tls_available: bool) -> Harness {
        let peer: SocketAddr = peer.parse().expect("addr");
        Harness {
            s: Session::with_options(Arc::new(c), peer, options, tls_available),
            b: FakeBackend::new(),
        }
    }

    async fn cmd(&mut self, line: &str) -> Step {
        let mut l = line.as_bytes().to_vec();
        l.extend_from_slice(b"\r\n");
        self.s.command(&l, &self.b).await
    }

    async fn wire(&mut self, line: &str) -> String {
        let step = self.cmd(line).await;
        wire(&step)
    }

    async fn code(&mut self, line: &str) -> (u16, Option<&'static str>) {
        let step = self.cmd(line).await;
        let r = step.replies.first().expect("a reply");
        (r.code, r.status)
    }

    async fn ehlo_caps(&mut self) -> Vec<String> {
        let step = self.cmd("EHLO client.example.net").await;
        let r = step.replies.first().expect("EHLO reply");
        assert_eq!(r.code, 250);
        r.lines[1..].to_vec()
    }

    /// EHLO and a successful AUTH PLAIN as alice.
    async fn login_alice(&mut self) {
        self.cmd("EHLO laptop").await;
        let ir = plain("", "alice", "alice-pw");
        assert_eq!(
            self.wire(&format!("AUTH PLAIN {ir}")).await,
            "235 2.7.0 Authentication successful\r\n"
        );
    }
}

fn wire(step: &Step) -> String {
    step.replies
        .iter()
        .map(|r| String::from_utf8(r.to_wire()).expect("utf8"))
        .collect()
}

fn b64(s: &str) -> String {
    STANDARD.encode(s.as_bytes())
}

fn plain(authzid: &str, user: &str, password: &str) -> String {
    b64(&format!("{authzid}\0{user}\0{password}"))
}

fn submission_tls() -> Harness {
    Harness::new(SessionOptions::submissions())
}

const AUTH_CAP: &str = "AUTH PLAIN LOGIN";

#[tokio::test]
async fn capabilities_follow_mode_and_tls() {
    // MX without a certificate: the classic list (see tests.rs).
    let mut h = Harness::build(config(), "192.0.2.10:1", SessionOptions::mx(), false);
    let caps = h.ehlo_caps().await;
    assert!(
        !caps
            .iter()
            .any(|c| c == "STARTTLS" || c.starts_with("AUTH"))
    );
    // MX with a certificate: STARTTLS, never AUTH, even over TLS.
    let mut h = Harness::new(SessionOptions::mx());
    let caps = h.ehlo_caps().await;
    assert!(caps.contains(&"STARTTLS".to_string()));
    assert!(!caps.iter().any(|c| c.starts_with("AUTH")));
    h.s.tls_started();
    let caps = h.ehlo_caps().await;
    assert!(
        !caps
            .iter()
            .any(|c| c == "STARTTLS" || c.starts_with("AUTH"))
    );
    // Submission in plaintext from afar: STARTTLS only.
    let mut h = Harness::new(SessionOptions::submission());
    let caps = h.ehlo_caps().await;
    assert!(caps.contains(&"STARTTLS".to_string()));
    assert!(!caps.iter().any(|c| c.starts_with("AUTH")));
    assert!(!h.s.may_auth());
    // After STARTTLS: AUTH, no STARTTLS.
    h.s.tls_started();
    let caps = h.ehlo_caps().await;
    assert!(caps.contains(&AUTH_CAP.to_string()), "{caps:?}");
    assert!(!caps.contains(&"STARTTLS".to_string()));
    // Implicit TLS: the same.
    let mut h = submission_tls();
    let caps = h.ehlo_caps().await;
    assert!(caps.contains(&AUTH_CAP.to_string()));
    assert!(!caps.contains(&"STARTTLS".to_string()));
}

#[tokio::test]
async fn starttls_replies() {
    let mut h = Harness::new(SessionOptions::mx());
    assert_eq!(h.code("STARTTLS now").await, (501, Some("5.5.4")));
    let step = h.cmd("starttls").await;
    assert_eq!(wire(&step), "220 2.0.0 Ready to start TLS\r\n");
    assert_eq!(step.next, Next::StartTls);
    h.s.tls_started();
    assert!(h.s.tls_active());
    let step = h.cmd("STARTTLS").await;
    assert_eq!((step.replies[0].code, step.next), (503, Next::Command));
    assert_eq!(step.replies[0].status, Some("5.5.1"));
    // Without a certificate STARTTLS is not implemented at all.
    let mut h = Harness::build(
        config(),
        "192.0.2.10:1",
        SessionOptions::submission(),
        false,
    );
    let step = h.cmd("STARTTLS").await;
    assert_eq!((step.replies[0].code, step.next), (502, Next::Command));
    // Implicit TLS: already active.
    let mut h = submission_tls();
    assert_eq!(h.code("STARTTLS").await, (503, Some("5.5.1")));
}

#[tokio::test]
async fn starttls_forgets_everything_learned_before() {
    let mut c = config();
    c.submission.allow_plaintext_on_loopback = true;
    let mut h = Harness::build(c, "127.0.0.1:1000", SessionOptions::submission(), true);
    h.login_alice().await;
    assert_eq!(h.code("MAIL FROM:<alice@example.org>").await.0, 250);
    assert_eq!(h.cmd("STARTTLS").await.next, Next::StartTls);
    h.s.tls_started();
    assert_eq!(h.s.helo_name(), None);
    assert_eq!(h.s.auth_user(), None);
    // EHLO is needed again, and the transaction and the login are gone.
    assert_eq!(
        h.code("MAIL FROM:<alice@example.org>").await,
        (503, Some("5.5.1"))
    );
    h.cmd("EHLO laptop").await;
    assert_eq!(
        h.code("RCPT TO:<bob@example.org>").await,
        (503, Some("5.5.1"))
    );
    assert_eq!(
        h.code("MAIL FROM:<alice@example.org>").await,
        (530, Some("5.7.0"))
    );
}

#[tokio::test]
async fn auth_needs_tls_on_submission() {
    let mut h = Harness::new(SessionOptions::submission());
    h.cmd("EHLO laptop").await;
    assert_eq!(
        h.wire(&format!("AUTH PLAIN {}", plain("", "alice", "alice-pw")))
            .await,
        "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
    );
    assert_eq!(h.code("AUTH LOGIN").await, (538, Some("5.7.11")));
    assert!(h.b.logins().is_empty(), "no password checked in clear");
    assert_eq!(
        h.code("MAIL FROM:<alice@example.org>").await,
        (530, Some("5.7.0"))
    );
}

#[tokio::test]
async fn loopback_plaintext_auth_only_when_configured() {
    // Loopback, not configured: refused like anyone else.
    let mut h = Harness::build(
        config(),
        "127.0.0.1:1000",
        SessionOptions::submission(),
        true,
    );
    assert!(!h.ehlo_caps().await.iter().any(|c| c.starts_with("AUTH")));
    assert_eq!(h.code("AUTH LOGIN").await, (538, Some("5.7.11")));
    // Configured, from a remote address: still refused.
    let mut c = config();
    c.submission.allow_plaintext_on_loopback = true;
    let mut h = Harness::build(
        c.clone(),
        "192.0.2.10:1",
        SessionOptions::submission(),
        true,
    );
    assert_eq!(h.code("EHLO x").await.0, 250);
    assert_eq!(h.code("AUTH LOGIN").await, (538, Some("5.7.11")));
    // Configured, from loopback (v4, v6, v4-mapped): offered and accepted.
    for peer in ["127.0.0.1:1000", "[::1]:1000", "[::ffff:127.0.0.1]:1000"] {
        let mut h = Harness::build(c.clone(), peer, SessionOptions::submission(), true);
        assert!(
            h.ehlo_caps().await.contains(&AUTH_CAP.to_string()),
            "{peer}"
        );
        let ir = plain("", "alice", "alice-pw");
        assert_eq!(
            h.code(&format!("AUTH PLAIN {ir}")).await,
            (235, Some("2.7.0"))
        );
    }
}

#[tokio::test]
async fn auth_plain_success_and_failure() {
    let mut h = submission_tls();
    h.cmd("EHLO laptop").await;
    let bad = h
        .wire(&format!("AUTH PLAIN {}", plain("", "alice", "wrong")))
        .await;
    assert_eq!(bad, "535 5.7.8 Authentication credentials invalid\r\n");
    let unknown = h
        .wire(&format!("AUTH PLAIN {}", plain("", "nobody", "alice-pw")))
        .await;
    assert_eq!(
        unknown, bad,
        "unknown user and wrong password look the same"
    );
    assert_eq!(h.s.stats().errors, 2, "failed logins count as errors");
    assert_eq!(h.s.auth_user(), None);
    let ok = h
        .wire(&format!("AUTH PLAIN {}", plain("", "ALICE", "alice-pw")))
        .await;
    assert_eq!(ok, "235 2.7.0 Authentication successful\r\n");
    // The stored spelling of the account name.
    assert_eq!(h.s.auth_user(), Some("Alice"));
    let logins = h.b.logins();
    assert_eq!(logins.len(), 3);
    assert_eq!(logins[2].0, "ALICE");
    assert_eq!(logins[2].1, "alice-pw");
    assert_eq!(
        logins[2].2,
        "192.0.2.10".parse::<std::net::IpAddr>().expect("ip")
    );
    // AUTH twice.
    assert_eq!(h.code("AUTH PLAIN =").await, (503, Some("5.5.1")));
}

#[tokio::test]
async fn auth_plain_with_empty_challenge() {
    let mut h = submission_tls();
    h.cmd("EHLO laptop").await;
    assert_eq!(h.wire("AUTH PLAIN").await, "334 \r\n");
    // The response line is not parsed as a command.
    assert_eq!(
        h.wire(&plain("", "bob", "bob-pw")).await,
        "235 2.7.0 Authentication successful\r\n"
    );
    assert_eq!(h.s.auth_user(), Some("bob"));
}

#[tokio::test]
async fn auth_plain_with_other_authzid_is_refused_unchecked() {
    let mut h = submission_tls();
    h.cmd("EHLO laptop").await;
    let ir = plain("bob", "alice", "alice-pw");
    assert_eq!(
        h.code(&format!("AUTH PLAIN {ir}")).await,
        (535, Some("5.7.8"))
    );
    assert!(h.b.logins().is_empty());
    // The same identity twice is fine.
    let ir = plain("alice", "alice", "alice-pw");
    assert_eq!(
        h.code(&format!("AUTH PLAIN {ir}")).await,
        (235, Some("2.7.0"))
    );
}

#[tokio::test]
async fn auth_login_exchange() {
    let mut h = submission_tls();
    h.cmd("EHLO laptop").await;
    assert_eq!(h.wire("AUTH LOGIN").await, "334 VXNlcm5hbWU6\r\n");
    assert_eq!(h.wire(&b64("alice")).await, "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(
        h.wire(&b64("nope")).await,
        "535 5.7.8 Authentication credentials invalid\r\n"
    );
    // With the user name as initial response.
    assert_eq!(
        h.wire(&format!("AUTH LOGIN {}", b64("alice"))).await,
        "334 UGFzc3dvcmQ6\r\n"
    );
    assert_eq!(
        h.wire(&b64("alice-pw")).await,
        "235 2.7.0 Authentication successful\r\n"
    );
    assert_eq!(h.s.auth_user(), Some("Alice"));
}

#[tokio::test]
async fn auth_cancel_bad_base64_unknown_mechanism() {
    let mut h = submission_tls();
    h.cmd("EHLO laptop").await;
    assert_eq!(h.wire("AUTH LOGIN").await, "334 VXNlcm5hbWU6\r\n");
    assert_eq!(h.wire("*").await, "501 5.0.0 Authentication cancelled\r\n");
    // The exchange is over: NOOP is a command again.
    assert_eq!(h.code("NOOP").await, (250, Some("2.0.0")));
    assert_eq!(h.wire("AUTH PLAIN").await, "334 \r\n");
    assert_eq!(h.code("%%%not-base64").await, (501, Some("5.5.2")));
    assert_eq!(h.code("AUTH PLAIN !!!!").await, (501, Some("5.5.2")));
    assert_eq!(h.code("AUTH PLAIN =").await, (501, Some("5.5.2")));
    assert_eq!(h.code("AUTH CRAM-MD5").await, (504, Some("5.5.4")));
    assert_eq!(h.code("AUTH SCRAM-SHA-256").await, (504, Some("5.5.4")));
    assert_eq!(h.code("AUTH").await, (501, Some("5.5.4")));
    assert!(h.b.logins().is_empty());
    assert_eq!(h.s.auth_user(), None);
}

#[tokio::test]
async fn auth_sequence_errors() {
    let mut h = submission_tls();
    // Before EHLO, and after HELO only.
    assert_eq!(h.code("AUTH LOGIN").await, (503, Some("5.5.1")));
    h.cmd("HELO laptop").await;
    assert_eq!(h.code("AUTH LOGIN").await, (503, Some("5.5.1")));
    // During a transaction.
    h.login_alice().await;
    assert_eq!(h.code("MAIL FROM:<alice@example.org>").await.0, 250);
    let step = h.cmd("AUTH LOGIN").await;
    assert_eq!(
        wire(&step),
        "503 5.5.1 Bad sequence of commands: AUTH during a mail transaction\r\n"
    );
    h.cmd("RSET").await;
    // Still authenticated after RSET and EHLO; AUTH again is refused.
    h.cmd("EHLO laptop").await;
    assert_eq!(h.s.auth_user(), Some("Alice"));
    assert_eq!(
        h.wire("AUTH LOGIN").await,
        "503 5.5.1 Bad sequence of commands: already authenticated\r\n"
    );
}

#[tokio::test]
async fn no_auth_on_the_mx_port() {
    for options in [
        SessionOptions::mx(),
        SessionOptions {
            mode: Mode::Mx,
            tls_active: true,
        },
    ] {
        let mut c = config();
        c.submission.allow_plaintext_on_loopback = true;
        let mut h = Harness::build(c, "127.0.0.1:1", options, true);
        h.cmd("EHLO c").await;
        let ir = plain("", "alice", "alice-pw");
        assert_eq!(
            h.code(&format!("AUTH PLAIN {ir}")).await,
            (502, Some("5.5.1"))
        );
        assert!(h.b.logins().is_empty());
        // So a relay attempt from loopback stays refused.
        assert_eq!(h.code("MAIL FROM:<alice@example.org>").await.0, 250);
        assert_eq!(
            h.wire("RCPT TO:<someone@elsewhere.net>").await,
            "554 5.7.1 <someone@elsewhere.net>: Relay access denied\r\n"
        );
    }
}

#[tokio::test]
async fn too_many_failed_logins_close_the_session() {
    let mut h = submission_tls(); // max_errors = 5
    h.cmd("EHLO laptop").await;
    for _ in 0..4 {
        let step = h
            .cmd(&format!("AUTH PLAIN {}", plain("", "alice", "guess")))
            .await;
        assert_eq!(step.next, Next::Command);
    }
    let step = h
        .cmd(&format!("AUTH PLAIN {}", plain("", "alice", "guess")))
        .await;
    assert_eq!(step.next, Next::Close);
    assert_eq!(step.replies.last().map(|r| r.code), Some(421));
}

#[tokio::test]
async fn mail_requires_auth_on_submission() {
    let mut h = submission_tls();
    h.cmd("EHLO laptop").await;
    assert_eq!(
        h.wire("MAIL FROM:<alice@example.org>").await,
        "530 5.7.0 Authentication required\r\n"
    );
    assert_eq!(h.code("MAIL FROM:<>").await, (530, Some("5.7.0")));
    assert_eq!(
        h.code("RCPT TO:<bob@example.org>").await,
        (503, Some("5.5.1"))
    );
}

#[tokio::test]
async fn sender_must_be_owned_by_the_user() {
    let mut h = submission_tls();
    h.login_alice().await;
    // Foreign address at a local domain.
    assert_eq!(
        h.wire("MAIL FROM:<bob@example.org>").await,
        "553 5.7.1 Sender address not owned by user Alice\r\n"
    );
    // Foreign domain: refused without asking the directory.
    let before = h.b.lookups().len();
    assert_eq!(
        h.code("MAIL FROM:<alice@gmail.com>").await,
        (553, Some("5.7.1"))
    );
    assert_eq!(h.b.lookups().len(), before);
    // Unknown local address, and an alias that resolves to nobody local.
    assert_eq!(
        h.code("MAIL FROM:<ghost@example.org>").await,
        (553, Some("5.7.1"))
    );
    assert_eq!(
        h.code("MAIL FROM:<fwd@example.org>").await,
        (553, Some("5.7.1"))
    );
    // Directory failure: try later.
    assert_eq!(
        h.code("MAIL FROM:<tmp@example.org>").await,
        (451, Some("4.3.0"))
    );
    // The own address (any case), an alias to self, a shared alias.
    for own in [
        "alice@example.org",
        "ALICE@Example.ORG",
        "sales@example.org",
        "team@example.org",
    ] {
        assert_eq!(
            h.code(&format!("MAIL FROM:<{own}>")).await,
            (250, Some("2.1.0")),
            "{own}"
        );
        h.cmd("RSET").await;
    }
    // The null sender (MDNs, bounces from clients).
    assert_eq!(h.code("MAIL FROM:<>").await, (250, Some("2.1.0")));
    h.cmd("RSET").await;
    // MAIL's AUTH= parameter is accepted (and ignored) where AUTH is offered.
    assert_eq!(
        h.code("MAIL FROM:<alice@example.org> AUTH=<>").await,
        (250, Some("2.1.0"))
    );
    assert_eq!(
        h.s.stats().errors,
        0,
        "ownership refusals are not syntax errors"
    );
}

#[tokio::test]
async fn bob_may_not_use_alices_alias() {
    let mut h = submission_tls();
    h.cmd("EHLO laptop").await;
    let ir = plain("", "bob", "bob-pw");
    assert_eq!(h.code(&format!("AUTH PLAIN {ir}")).await.0, 235);
    assert_eq!(
        h.code("MAIL FROM:<sales@example.org>").await,
        (553, Some("5.7.1"))
    );
    assert_eq!(h.code("MAIL FROM:<team@example.org>").await.0, 250);
}

#[tokio::test]
async fn authenticated_submission_relays_and_records_the_user() {
    let mut h = submission_tls();
    h.login_alice().await;
    assert_eq!(h.code("MAIL FROM:<alice@example.org>").await.0, 250);
    let lookups = h.b.lookups().len();
    assert_eq!(
        h.code("RCPT TO:<friend@elsewhere.net>").await,
        (250, Some("2.1.5"))
    );
    assert_eq!(
        h.b.lookups().len(),
        lookups,
        "remote recipients are not looked up"
    );
    // Local recipients are still checked.
    assert_eq!(
        h.wire("RCPT TO:<ghost@example.org>").await,
        "550 5.1.1 <ghost@example.org>: Recipient address rejected: User unknown\r\n"
    );
    assert_eq!(h.code("RCPT TO:<bob@example.org>").await.0, 250);
    assert_eq!(h.cmd("DATA").await.next, Next::Body);
    let p = h.s.feed_body(b"Subject: hi\r\n\r\nx\r\n.\r\n");
    assert!(p.complete);
    let step = h.s.finish_body(&h.b).await;
    assert_eq!(step.replies[0].code, 250);
    let q = h.b.queued();
    let (msg, data) = &q[0];
    assert_eq!(msg.auth_user.as_deref(), Some("Alice"));
    assert_eq!(
        msg.recipients,
        vec!["friend@elsewhere.net", "bob@example.org"]
    );
    let text = String::from_utf8(data.clone()).expect("utf8");
    assert!(text.contains("(Postamt) with ESMTPSA id "), "{text}");
}

#[tokio::test]
async fn received_says_esmtps_over_tls_without_auth() {
    let mut h = Harness::new(SessionOptions::mx());
    h.s.tls_started();
    h.cmd("EHLO c").await;
    h.cmd("MAIL FROM:<a@b.net>").await;
    h.cmd("RCPT TO:<alice@example.org>").await;
    h.cmd("DATA").await;
    assert!(h.s.feed_body(b"x\r\n.\r\n").complete);
    h.s.finish_body(&h.b).await;
    let q = h.b.queued();
    assert!(q[0].0.auth_user.is_none());
    let text = String::from_utf8(q[0].1.clone()).expect("utf8");
    assert!(text.contains("(Postamt) with ESMTPS id "), "{text}");
}

#[tokio::test]
async fn mx_never_relays_from_loopback() {
    let mut c = config();
    c.submission.allow_plaintext_on_loopback = true;
    let mut h = Harness::build(c, "127.0.0.1:25000", SessionOptions::mx(), false);
    h.cmd("EHLO localhost").await;
    assert_eq!(h.code("MAIL FROM:<alice@example.org>").await.0, 250);
    assert_eq!(
        h.code("RCPT TO:<x@elsewhere.net>").await,
        (554, Some("5.7.1"))
    );
    assert_eq!(h.code("RCPT TO:<x@[127.0.0.1]>").await.0 / 100, 5);
    assert_eq!(h.code("RCPT TO:<alice@example.org>").await.0, 250);
    assert!(h.b.lookups().iter().all(|l| l == "alice@example.org"));
}

#[tokio::test]
async fn line_limits() {
    let mut h = submission_tls();
    assert_eq!(h.s.line_limit(b"AUTH PLAIN xxxx"), MAX_AUTH_LINE);
    assert_eq!(h.s.line_limit(b"auth"), MAX_AUTH_LINE);
    assert_eq!(h.s.line_limit(b"MAIL FROM:<"), MAX_LINE);
    h.cmd("EHLO x").await;
    h.cmd("AUTH LOGIN").await;
    assert_eq!(h.s.line_limit(b"dXNlcg=="), MAX_AUTH_LINE);
    // An over-long response ends the exchange.
    let step = h.s.line_too_long();
    assert_eq!(step.replies[0].code, 500);
    assert_eq!(h.s.line_limit(b"dXNlcg=="), MAX_LINE);
    assert_eq!(h.code("NOOP").await, (250, Some("2.0.0")));
    // The MX port has no long lines.
    let h = Harness::new(SessionOptions::mx());
    assert_eq!(h.s.line_limit(b"AUTH PLAIN xxxx"), MAX_LINE);
}
