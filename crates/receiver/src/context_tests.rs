//! End-to-end tests of [`handle_connection_with`] over the real
//! [`ContextBackend`](crate::ContextBackend): an in-memory directory with
//! argon2 passwords and aliases, the real authenticator (no delays), a
//! spool in a temporary directory, STARTTLS with the test certificate, and
//! the real sender verifier against a nameserver that never answers.

use crate::testing::config;
use crate::{ReceiverContext, SessionOptions, handle_connection_with};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use postamt_directory::Directory;
use postamt_directory::auth::Authenticator;
use postamt_net::tls::testing::{TestTls, connector_trusting, self_signed, server_name};
use postamt_sender_auth::{SenderVerifier, VerifyLimits};
use postamt_spool::Spool;
use postamt_srs::Srs;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

struct Env {
    ctx: Arc<ReceiverContext>,
    tls: TestTls,
    _dir: tempfile::TempDir,
}

fn env() -> Env {
    env_with(None)
}

fn env_with(sender_auth: Option<Arc<SenderVerifier>>) -> Env {
    env_full(sender_auth, None)
}

fn env_full(sender_auth: Option<Arc<SenderVerifier>>, srs: Option<Arc<Srs>>) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let directory = Arc::new(Directory::open_in_memory().expect("directory"));
    directory
        .add_user("alice", "correct horse", false)
        .expect("alice");
    directory
        .add_user("bob", "battery staple", false)
        .expect("bob");
    directory
        .add_alias("sales", &["alice".to_string()])
        .expect("alias");
    let spool = Arc::new(Spool::open(&dir.path().join("spool")).expect("spool"));
    let auth = Arc::new(Authenticator::with_delays(
        Arc::clone(&directory),
        Duration::ZERO,
        Duration::ZERO,
    ));
    let tls = self_signed("mx.example.org");
    let ctx = Arc::new(ReceiverContext {
        config: Arc::new(config()),
        directory,
        spool,
        tls: Some(Arc::clone(&tls.provider)),
        auth,
        sender_auth,
        srs,
    });
    Env {
        ctx,
        tls,
        _dir: dir,
    }
}

/// Reads one complete reply.
async fn reply<T: AsyncRead + Unpin>(io: &mut T) -> String {
    let mut out = Vec::new();
    loop {
        let mut byte = [0u8; 1];
        let n = io.read(&mut byte).await.expect("read");
        assert_eq!(
            n,
            1,
            "EOF inside a reply: {:?}",
            String::from_utf8_lossy(&out)
        );
        out.push(byte[0]);
        if byte[0] == b'\n' {
            let text = String::from_utf8(out.clone()).expect("utf8");
            let last_line = text.lines().last().unwrap_or("");
            if last_line.as_bytes().get(3) == Some(&b' ') {
                return text;
            }
        }
    }
}

async fn say<T: AsyncRead + AsyncWrite + Unpin>(io: &mut T, line: &str, expect: &str) -> String {
    io.write_all(format!("{line}\r\n").as_bytes())
        .await
        .expect("write");
    io.flush().await.expect("flush");
    let r = reply(io).await;
    assert!(
        r.starts_with(expect),
        "{line:?}: expected {expect:?}, got {r:?}"
    );
    r
}

#[tokio::test]
async fn submission_with_the_real_directory_and_spool() {
    let env = env();
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let peer: SocketAddr = "198.51.100.7:40000".parse().expect("addr");
    let ctx = Arc::clone(&env.ctx);
    let task = tokio::spawn(handle_connection_with(
        server,
        peer,
        ctx,
        SessionOptions::submission(),
        CancellationToken::new(),
    ));
    assert!(reply(&mut client).await.starts_with("220 "));
    let ehlo = say(&mut client, "EHLO laptop", "250-").await;
    assert!(ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"));
    say(&mut client, "STARTTLS", "220 2.0.0").await;
    let mut c = connector_trusting(&env.tls.ca_pem)
        .connect(server_name("mx.example.org"), client)
        .await
        .expect("handshake");
    let ehlo = say(&mut c, "EHLO laptop", "250-").await;
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    let wrong = STANDARD.encode("\0alice\0wrong");
    let unknown = STANDARD.encode("\0mallory\0correct horse");
    let a = say(&mut c, &format!("AUTH PLAIN {wrong}"), "535 5.7.8").await;
    let b = say(&mut c, &format!("AUTH PLAIN {unknown}"), "535 5.7.8").await;
    assert_eq!(a, b);
    let good = STANDARD.encode("\0alice\0correct horse");
    say(&mut c, &format!("AUTH PLAIN {good}"), "235 2.7.0").await;
    say(
        &mut c,
        "MAIL FROM:<bob@example.org>",
        "553 5.7.1 Sender address not owned by user alice",
    )
    .await;
    say(&mut c, "MAIL FROM:<someone@elsewhere.net>", "553 5.7.1").await;
    say(&mut c, "MAIL FROM:<Sales@Example.org>", "250 2.1.0").await;
    say(&mut c, "RCPT TO:<friend@elsewhere.net>", "250 2.1.5").await;
    say(&mut c, "RCPT TO:<nobody@example.org>", "550 5.1.1").await;
    say(&mut c, "RCPT TO:<bob@example.org>", "250 2.1.5").await;
    say(&mut c, "DATA", "354").await;
    let queued = say(
        &mut c,
        "Subject: hi\r\n\r\nhello\r\n.",
        "250 2.0.0 Ok: queued as ",
    )
    .await;
    say(&mut c, "QUIT", "221").await;
    drop(c);
    task.await.expect("task");
    let list = env.ctx.spool.list().expect("spool list");
    assert_eq!(list.len(), 1);
    let envelope = &list[0];
    assert!(queued.contains(&envelope.id.0));
    assert_eq!(envelope.auth_user.as_deref(), Some("alice"));
    assert_eq!(envelope.mail_from, "Sales@Example.org");
    assert_eq!(envelope.recipients.len(), 2);
    let message = env.ctx.spool.read_message(&envelope.id).expect("message");
    let text = String::from_utf8(message).expect("utf8");
    assert!(text.contains("with ESMTPSA id"), "{text}");
    assert_eq!(
        env.ctx.auth.failures(peer.ip(), "alice").1,
        0,
        "reset by the success"
    );
}

#[tokio::test]
async fn mx_port_through_the_real_context_refuses_auth_and_relay() {
    let env = env();
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    let task = tokio::spawn(crate::handle_connection(
        server,
        peer,
        Arc::clone(&env.ctx),
        CancellationToken::new(),
    ));
    assert!(reply(&mut client).await.starts_with("220 "));
    let ehlo = say(&mut client, "EHLO localhost", "250-").await;
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    let good = STANDARD.encode("\0alice\0correct horse");
    say(&mut client, &format!("AUTH PLAIN {good}"), "502 5.5.1").await;
    say(&mut client, "MAIL FROM:<alice@example.org>", "250 2.1.0").await;
    say(&mut client, "RCPT TO:<x@elsewhere.net>", "554 5.7.1").await;
    say(&mut client, "QUIT", "221").await;
    task.await.expect("task");
    assert_eq!(env.ctx.auth.stats().hash_checks, 0, "no login attempted");
}

#[tokio::test]
async fn mx_mail_is_accepted_with_temperror_when_dns_is_silent() {
    // A nameserver that never answers: every lookup times out.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    let mut cfg = config();
    cfg.dns.nameservers = vec![silent.local_addr().expect("addr").to_string()];
    // Short bounds keep the test quick; the path is the production one.
    let limits = VerifyLimits {
        query_timeout: Duration::from_millis(200),
        spf_timeout: Duration::from_secs(1),
        dkim_timeout: Duration::from_secs(1),
        dmarc_timeout: Duration::from_secs(1),
    };
    let verifier = SenderVerifier::with_limits(&cfg, limits).expect("verifier");
    let env = env_with(Some(Arc::new(verifier)));
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let peer: SocketAddr = "198.51.100.7:40000".parse().expect("addr");
    let task = tokio::spawn(crate::handle_connection(
        server,
        peer,
        Arc::clone(&env.ctx),
        CancellationToken::new(),
    ));
    assert!(reply(&mut client).await.starts_with("220 "));
    say(&mut client, "EHLO mail.remote.net", "250-").await;
    say(&mut client, "MAIL FROM:<a@remote.net>", "250 2.1.0").await;
    say(&mut client, "RCPT TO:<alice@example.org>", "250 2.1.5").await;
    say(&mut client, "DATA", "354").await;
    say(
        &mut client,
        "Authentication-Results: mx.example.org; dmarc=pass\r\nFrom: a@remote.net\r\nSubject: hi\r\n\r\nhello\r\n.",
        "250 2.0.0 Ok: queued as ",
    )
    .await;
    say(&mut client, "QUIT", "221").await;
    task.await.expect("task");
    drop(silent);

    let list = env.ctx.spool.list().expect("spool list");
    assert_eq!(list.len(), 1);
    let message = env.ctx.spool.read_message(&list[0].id).expect("message");
    let text = String::from_utf8(message).expect("utf8");
    assert!(
        text.starts_with("Authentication-Results: mx.example.org;"),
        "{text}"
    );
    let received = text
        .find("\r\nReceived: from mail.remote.net")
        .expect("our Received");
    let results = &text[..received];
    assert!(results.contains("spf=temperror"), "{results}");
    assert!(results.contains("dkim=none"), "{results}");
    assert!(results.contains("dmarc=temperror"), "{results}");
    assert_eq!(
        text.matches("Authentication-Results:").count(),
        1,
        "the forged one is gone: {text}"
    );
    assert!(text.ends_with("\r\nFrom: a@remote.net\r\nSubject: hi\r\n\r\nhello\r\n"));
}

#[tokio::test]
async fn lists_and_srs_bounces_with_the_real_directory() {
    let srs = Arc::new(Srs::with_key([5u8; 32], "example.org"));
    let env = env_full(None, Some(Arc::clone(&srs)));
    let d = &env.ctx.directory;
    d.create_list(
        "team",
        &postamt_directory::ListOptions {
            owner: Some("alice@example.org".into()),
            max_message_size: Some(200),
            ..Default::default()
        },
    )
    .expect("list");
    d.add_list_member("team", "alice@example.org")
        .expect("member");
    d.add_list_member("team", "carol@elsewhere.net")
        .expect("member");
    let now = chrono::Utc::now().timestamp();
    let good = srs.forward("carol@elsewhere.net", now);
    let forged = good.replacen("=carol@", "=mallory@", 1);

    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let peer: SocketAddr = "192.0.2.1:40000".parse().expect("addr");
    let task = tokio::spawn(crate::handle_connection(
        server,
        peer,
        Arc::clone(&env.ctx),
        CancellationToken::new(),
    ));
    assert!(reply(&mut client).await.starts_with("220 "));
    say(&mut client, "EHLO mx.elsewhere.net", "250-").await;
    // A non-member may not post to the members-only list.
    say(&mut client, "MAIL FROM:<mallory@elsewhere.net>", "250").await;
    say(
        &mut client,
        "RCPT TO:<team@example.org>",
        "550 5.7.1 <team@example.org>: only members may post",
    )
    .await;
    // Its service addresses take mail from anyone.
    say(
        &mut client,
        "RCPT TO:<team-request@example.org>",
        "250 2.1.5",
    )
    .await;
    say(&mut client, "RSET", "250").await;
    // A member may, within the list's size limit.
    say(&mut client, "MAIL FROM:<Carol@elsewhere.net>", "250").await;
    say(&mut client, "RCPT TO:<team@example.org>", "250 2.1.5").await;
    say(&mut client, "DATA", "354").await;
    let big = format!("Subject: big\r\n\r\n{}\r\n.", "x".repeat(300));
    say(&mut client, &big, "552 5.3.4 <team@example.org>").await;
    say(&mut client, "MAIL FROM:<carol@elsewhere.net>", "250").await;
    say(&mut client, "RCPT TO:<team@example.org>", "250 2.1.5").await;
    say(&mut client, "DATA", "354").await;
    say(&mut client, "Subject: hi\r\n\r\nhello\r\n.", "250 2.0.0").await;
    // A bounce to one of our SRS addresses is accepted, a forged one not.
    say(&mut client, "MAIL FROM:<>", "250").await;
    say(&mut client, &format!("RCPT TO:<{forged}>"), "550 5.1.1").await;
    say(&mut client, &format!("RCPT TO:<{good}>"), "250 2.1.5").await;
    say(&mut client, "DATA", "354").await;
    say(
        &mut client,
        "Subject: bounce\r\n\r\nfailed\r\n.",
        "250 2.0.0",
    )
    .await;
    say(&mut client, "QUIT", "221").await;
    task.await.expect("task");

    let mut queued = env.ctx.spool.list().expect("spool list");
    queued.sort_by(|a, b| a.mail_from.cmp(&b.mail_from));
    assert_eq!(queued.len(), 2);
    assert_eq!(queued[0].mail_from, "");
    let addresses = |i: usize| -> Vec<String> {
        queued[i]
            .recipients
            .iter()
            .map(|r| r.address.clone())
            .collect()
    };
    assert_eq!(addresses(0), vec![good]);
    assert_eq!(queued[1].mail_from, "carol@elsewhere.net");
    assert_eq!(addresses(1), vec!["team@example.org".to_string()]);
}
