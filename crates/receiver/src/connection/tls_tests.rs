//! Connection tests for STARTTLS, implicit TLS and AUTH over
//! `tokio::io::duplex`, with the test certificate from `postamt_net` and the
//! fake backend: the upgrade, the injection probe (CVE-2011-0411), failed
//! and stalled handshakes, submission end to end.

use super::tests::Client;
use super::*;
use crate::mode::Mode;
use crate::testing::{FakeBackend, config};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use postamt_net::tls::testing::{TestTls, connector_trusting, self_signed, server_name};
use tokio::io::DuplexStream;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream as ClientTls;

const HOST: &str = "mx.example.org";

fn start(
    cfg: Config,
    backend: Arc<FakeBackend>,
    options: SessionOptions,
    tls: Option<&TestTls>,
    peer: &str,
) -> (Client, JoinHandle<SessionStats>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let peer: SocketAddr = peer.parse().expect("addr");
    let acceptor = tls.map(|t| t.provider.acceptor());
    let task = tokio::spawn(async move {
        serve_with(
            server,
            peer,
            Arc::new(cfg),
            &*backend,
            options,
            acceptor,
            CancellationToken::new(),
        )
        .await
    });
    (Client::new(client), task)
}

/// The client's side of the handshake after `220 Ready to start TLS`.
async fn upgrade(c: Client, tls: &TestTls) -> Client<ClientTls<DuplexStream>> {
    assert!(c.buf.is_empty(), "nothing may follow the 220 in plaintext");
    let stream = connector_trusting(&tls.ca_pem)
        .connect(server_name(HOST), c.io)
        .await
        .expect("TLS handshake");
    Client::new(stream)
}

fn plain(user: &str, password: &str) -> String {
    STANDARD.encode(format!("\0{user}\0{password}"))
}

#[tokio::test]
async fn starttls_then_ehlo_and_a_message_on_mx() {
    let tls = self_signed(HOST);
    let backend = Arc::new(FakeBackend::new());
    let (mut c, task) = start(
        config(),
        Arc::clone(&backend),
        SessionOptions::mx(),
        Some(&tls),
        "192.0.2.20:5555",
    );
    c.expect("220 mx.example.org ESMTP Postamt\r\n").await;
    c.send(b"EHLO client.example.net\r\n").await;
    let ehlo = c.expect("250-mx.example.org\r\n").await;
    assert!(ehlo.contains("STARTTLS\r\n"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    c.send(b"STARTTLS\r\n").await;
    c.expect("220 2.0.0 Ready to start TLS\r\n").await;
    let mut c = upgrade(c, &tls).await;
    c.send(b"EHLO client.example.net\r\n").await;
    let ehlo = c.expect("250-mx.example.org\r\n").await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "no AUTH on the MX port: {ehlo}");
    c.send(b"STARTTLS\r\n").await;
    c.expect("503 5.5.1").await;
    c.send(b"MAIL FROM:<a@b.net>\r\nRCPT TO:<x@elsewhere.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        .await;
    c.expect("250 2.1.0").await;
    c.expect("554 5.7.1").await;
    c.expect("250 2.1.5").await;
    c.expect("354").await;
    c.send(b"Subject: secret\r\n\r\nhi\r\n.\r\nQUIT\r\n").await;
    c.expect("250 2.0.0 Ok: queued as").await;
    c.expect("221").await;
    c.expect_eof().await;
    task.await.expect("task");
    let q = backend.queued();
    assert_eq!(q.len(), 1);
    assert!(q[0].0.auth_user.is_none());
    let text = String::from_utf8(q[0].1.clone()).expect("utf8");
    assert!(text.contains("with ESMTPS id"), "{text}");
}

#[tokio::test]
async fn starttls_injection_probe_is_not_executed() {
    let tls = self_signed(HOST);
    let backend = Arc::new(FakeBackend::new());
    let (mut c, task) = start(
        config(),
        Arc::clone(&backend),
        SessionOptions::mx(),
        Some(&tls),
        "192.0.2.20:5555",
    );
    c.expect("220").await;
    c.send(b"EHLO c\r\n").await;
    c.expect("250-").await;
    // One write: the MAIL rides in the same packet as STARTTLS.
    c.send(b"STARTTLS\r\nMAIL FROM:<x@y.net>\r\nRCPT TO:<alice@example.org>\r\n")
        .await;
    c.expect("220 2.0.0 Ready to start TLS\r\n").await;
    let mut c = upgrade(c, &tls).await;
    // The first reply over TLS answers NOOP: nothing answered the MAIL.
    c.send(b"NOOP\r\n").await;
    assert_eq!(c.reply().await.as_deref(), Some("250 2.0.0 Ok\r\n"));
    // The session starts over: EHLO is needed before MAIL.
    c.send(b"MAIL FROM:<a@b.net>\r\n").await;
    c.expect("503 5.5.1 Bad sequence of commands: send HELO/EHLO first")
        .await;
    c.send(b"EHLO c\r\nMAIL FROM:<a@b.net>\r\nQUIT\r\n").await;
    c.expect("250-").await;
    c.expect("250 2.1.0").await;
    c.expect("221").await;
    c.expect_eof().await;
    let stats = task.await.expect("task");
    // EHLO STARTTLS | NOOP MAIL EHLO MAIL QUIT: the injected two never ran.
    assert_eq!(stats.commands, 7);
    assert_eq!(stats.recipients_accepted, 0);
    assert!(
        backend.lookups().is_empty(),
        "the injected RCPT was never looked up"
    );
}

#[tokio::test]
async fn failed_handshake_closes_the_connection() {
    let tls = self_signed(HOST);
    let (mut c, task) = start(
        config(),
        Arc::new(FakeBackend::new()),
        SessionOptions::submission(),
        Some(&tls),
        "192.0.2.20:5555",
    );
    c.expect("220").await;
    c.send(b"STARTTLS\r\n").await;
    c.expect("220 2.0.0").await;
    c.send(b"EHLO this is not a TLS ClientHello\r\n\r\n").await;
    let mut rest = Vec::new();
    c.io.read_to_end(&mut rest).await.expect("read to EOF");
    // At most a TLS alert, never an SMTP reply.
    assert!(!rest.windows(3).any(|w| w == b"250"), "{rest:?}");
    let stats = task.await.expect("task");
    assert_eq!(stats.commands, 1);
}

#[tokio::test(start_paused = true)]
async fn stalled_handshake_times_out() {
    let tls = self_signed(HOST);
    let (mut c, task) = start(
        config(),
        Arc::new(FakeBackend::new()),
        SessionOptions::mx(),
        Some(&tls),
        "192.0.2.20:5555",
    );
    c.expect("220").await;
    c.send(b"STARTTLS\r\n").await;
    c.expect("220 2.0.0").await;
    // No ClientHello: paused time jumps to the idle timeout.
    c.expect_eof().await;
    task.await.expect("task");
}

#[tokio::test]
async fn submission_starttls_then_auth_and_relay() {
    let tls = self_signed(HOST);
    let backend = Arc::new(FakeBackend::new());
    let (mut c, task) = start(
        config(),
        Arc::clone(&backend),
        SessionOptions::submission(),
        Some(&tls),
        "192.0.2.20:5555",
    );
    c.expect("220").await;
    c.send(b"EHLO laptop\r\n").await;
    let ehlo = c.expect("250-").await;
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    c.send(format!("AUTH PLAIN {}\r\n", plain("alice", "alice-pw")).as_bytes())
        .await;
    c.expect("538 5.7.11 Encryption required").await;
    c.send(b"MAIL FROM:<alice@example.org>\r\n").await;
    c.expect("530 5.7.0 Authentication required").await;
    c.send(b"STARTTLS\r\n").await;
    c.expect("220 2.0.0").await;
    let mut c = upgrade(c, &tls).await;
    c.send(b"EHLO laptop\r\n").await;
    let ehlo = c.expect("250-").await;
    assert!(ehlo.contains("250-AUTH PLAIN LOGIN\r\n") || ehlo.contains("250 AUTH PLAIN LOGIN\r\n"));
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    c.send(b"AUTH LOGIN\r\n").await;
    c.expect("334 VXNlcm5hbWU6\r\n").await;
    c.send(format!("{}\r\n", STANDARD.encode("alice")).as_bytes())
        .await;
    c.expect("334 UGFzc3dvcmQ6\r\n").await;
    c.send(format!("{}\r\n", STANDARD.encode("alice-pw")).as_bytes())
        .await;
    c.expect("235 2.7.0 Authentication successful\r\n").await;
    c.send(
        b"MAIL FROM:<bob@example.org>\r\nMAIL FROM:<sales@example.org>\r\n\
             RCPT TO:<friend@elsewhere.net>\r\nDATA\r\nSubject: out\r\n\r\nhello\r\n.\r\nQUIT\r\n",
    )
    .await;
    c.expect("553 5.7.1 Sender address not owned by user Alice")
        .await;
    c.expect("250 2.1.0").await;
    c.expect("250 2.1.5").await;
    c.expect("354").await;
    c.expect("250 2.0.0 Ok: queued as").await;
    c.expect("221").await;
    c.expect_eof().await;
    task.await.expect("task");
    let q = backend.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].0.auth_user.as_deref(), Some("Alice"));
    assert_eq!(q[0].0.mail_from, "sales@example.org");
    assert_eq!(q[0].0.recipients, vec!["friend@elsewhere.net"]);
    let text = String::from_utf8(q[0].1.clone()).expect("utf8");
    assert!(text.contains("with ESMTPSA id"), "{text}");
}

#[tokio::test]
async fn implicit_tls_submissions() {
    let tls = self_signed(HOST);
    let backend = Arc::new(FakeBackend::new());
    let (client, server) = tokio::io::duplex(64 * 1024);
    let acceptor = tls.provider.acceptor();
    let peer: SocketAddr = "192.0.2.20:5555".parse().expect("addr");
    let b = Arc::clone(&backend);
    let task = tokio::spawn(async move {
        // What the listener does on port 465 before handing over.
        let stream = acceptor.accept(server).await.expect("server handshake");
        serve_with(
            stream,
            peer,
            Arc::new(config()),
            &*b,
            SessionOptions::submissions(),
            None,
            CancellationToken::new(),
        )
        .await
    });
    let stream = connector_trusting(&tls.ca_pem)
        .connect(server_name(HOST), client)
        .await
        .expect("client handshake");
    let mut c = Client::new(stream);
    c.expect("220 mx.example.org ESMTP Postamt\r\n").await;
    c.send(b"EHLO laptop\r\n").await;
    let ehlo = c.expect("250-").await;
    assert!(
        ehlo.contains("AUTH PLAIN LOGIN") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    c.send(b"STARTTLS\r\nMAIL FROM:<>\r\n").await;
    c.expect("503 5.5.1").await;
    c.expect("530 5.7.0").await;
    c.send(format!("AUTH PLAIN {}\r\n", plain("alice", "wrong")).as_bytes())
        .await;
    c.expect("535 5.7.8 Authentication credentials invalid\r\n")
        .await;
    c.send(b"AUTH PLAIN\r\n").await;
    c.expect("334 \r\n").await;
    c.send(format!("{}\r\n", plain("alice", "alice-pw")).as_bytes())
        .await;
    c.expect("235 2.7.0").await;
    c.send(b"MAIL FROM:<>\r\nRCPT TO:<someone@elsewhere.net>\r\nRCPT TO:<ghost@example.org>\r\nQUIT\r\n")
        .await;
    c.expect("250 2.1.0").await;
    c.expect("250 2.1.5").await;
    c.expect("550 5.1.1").await;
    c.expect("221").await;
    c.expect_eof().await;
    let stats = task.await.expect("task");
    assert_eq!(stats.recipients_accepted, 1);
    assert_eq!(stats.errors, 3, "503, 530 and 535");
}

#[tokio::test]
async fn loopback_plaintext_auth_when_configured_with_long_lines() {
    let mut cfg = config();
    cfg.submission.allow_plaintext_on_loopback = true;
    let backend = Arc::new(FakeBackend::new());
    let (mut c, task) = start(
        cfg,
        Arc::clone(&backend),
        SessionOptions::submission(),
        None,
        "127.0.0.1:40000",
    );
    c.expect("220").await;
    c.send(b"EHLO localhost\r\n").await;
    let ehlo = c.expect("250-").await;
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    // An AUTH line longer than a command line may be (RFC 4954: 12288).
    let long = plain("alice", &"p".repeat(6000));
    assert!(long.len() > MAX_LINE);
    c.send(format!("AUTH PLAIN {long}\r\n").as_bytes()).await;
    c.expect("535 5.7.8").await;
    // Over the AUTH limit it is a line too long.
    let huge = plain("alice", &"p".repeat(10_000));
    c.send(format!("AUTH PLAIN {huge}\r\n").as_bytes()).await;
    c.expect("500 5.5.2 Line too long").await;
    c.send(
        format!(
            "AUTH PLAIN {}\r\nMAIL FROM:<alice@example.org>\r\nQUIT\r\n",
            plain("alice", "alice-pw")
        )
        .as_bytes(),
    )
    .await;
    c.expect("235").await;
    c.expect("250 2.1.0").await;
    c.expect("221").await;
    task.await.expect("task");
    let logins = backend.logins();
    assert_eq!(logins.len(), 2, "the over-long line was never checked");
    assert_eq!(logins[0].1.len(), 6000);
}

#[tokio::test]
async fn mx_from_loopback_with_tls_still_never_relays() {
    let tls = self_signed(HOST);
    let mut cfg = config();
    cfg.submission.allow_plaintext_on_loopback = true;
    let backend = Arc::new(FakeBackend::new());
    let (mut c, task) = start(
        cfg,
        Arc::clone(&backend),
        SessionOptions::mx(),
        Some(&tls),
        "127.0.0.1:40000",
    );
    c.expect("220").await;
    c.send(b"STARTTLS\r\n").await;
    c.expect("220 2.0.0").await;
    let mut c = upgrade(c, &tls).await;
    c.send(b"EHLO localhost\r\n").await;
    let ehlo = c.expect("250-").await;
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    c.send(format!("AUTH PLAIN {}\r\n", plain("alice", "alice-pw")).as_bytes())
        .await;
    c.expect("502 5.5.1").await;
    c.send(b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<x@elsewhere.net>\r\nQUIT\r\n")
        .await;
    c.expect("250 2.1.0").await;
    c.expect("554 5.7.1 <x@elsewhere.net>: Relay access denied")
        .await;
    c.expect("221").await;
    task.await.expect("task");
    assert!(backend.logins().is_empty());
}

#[test]
fn options_name_the_modes() {
    assert_eq!(SessionOptions::default(), SessionOptions::mx());
    assert_eq!(SessionOptions::submissions().mode, Mode::Submission);
    assert!(SessionOptions::submissions().tls_active);
    assert!(!SessionOptions::submission().tls_active);
}
