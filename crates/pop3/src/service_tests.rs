//! The public entry points ([`handle_connection`], [`handle_connection_with`])
//! with the real backend: the directory's `Authenticator` (short delays), a
//! Maildir store in a temporary directory, and a throwaway certificate.
//! Clients connect from 192.0.2.1 (TEST-NET-1), never loopback.

use super::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use postamt_directory::Directory;
use postamt_net::tls::testing::{TestTls, connector_trusting, self_signed, server_name};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::task::JoinHandle;

const HOST: &str = "pop.example.org";
const PASSWORD: &str = "correct horse battery";
const MESSAGE: &[u8] = b"Subject: hi\r\n\r\nhello\r\n";
const GREETING: &str = "+OK Postamt POP3 server ready\r\n";
const REFUSED: &str = "-ERR [AUTH] Plaintext authentication disallowed without TLS\r\n";
const FAILED: &str = "-ERR [AUTH] Authentication failed\r\n";

struct Fixture {
    _dir: tempfile::TempDir,
    ctx: Arc<Pop3Context>,
    tls: TestTls,
}

fn remote_peer() -> SocketAddr {
    "192.0.2.1:40000".parse().expect("literal address")
}

/// `alice` with one message; STLS configured when `with_tls`.
fn fixture(with_tls: bool) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let directory = Arc::new(Directory::open_in_memory().expect("in-memory directory"));
    directory
        .add_user("alice", PASSWORD, false)
        .expect("add alice");
    let auth = Arc::new(Authenticator::with_delays(
        directory,
        Duration::from_millis(1),
        Duration::from_millis(4),
    ));
    let template = format!("{}/%u", dir.path().display());
    let store = Arc::new(MailStore::new(&template, "example.org", true));
    store
        .deliver("alice", MESSAGE, "0a1b2c3d")
        .expect("deliver a test message");
    let config = Config {
        hostname: HOST.into(),
        domains: vec!["example.org".into()],
        ..Config::default()
    };
    let tls = self_signed(HOST);
    let ctx = Arc::new(Pop3Context {
        config: Arc::new(config),
        auth,
        store,
        tls: with_tls.then(|| Arc::clone(&tls.provider)),
    });
    Fixture {
        _dir: dir,
        ctx,
        tls,
    }
}

/// A plaintext POP3 connection from 192.0.2.1 (the port-110 path).
fn start_plain(f: &Fixture) -> (DuplexStream, JoinHandle<()>) {
    let (client, server) = duplex(1 << 16);
    let ctx = Arc::clone(&f.ctx);
    let task = tokio::spawn(async move {
        handle_connection(server, remote_peer(), ctx, CancellationToken::new()).await
    });
    (client, task)
}

async fn read_until<R: AsyncRead + Unpin>(r: &mut R, end: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(end.as_bytes()) {
        let n = r.read(&mut buf).await.expect("read from server");
        assert!(
            n > 0,
            "server closed; got {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).expect("server replies are UTF-8")
}

async fn ask<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, cmd: &str, multi: bool) -> String {
    s.write_all(format!("{cmd}\r\n").as_bytes())
        .await
        .expect("write to server");
    read_until(s, if multi { "\r\n.\r\n" } else { "\r\n" }).await
}

fn has_cap(capa: &str, cap: &str) -> bool {
    capa.contains(&format!("\r\n{cap}\r\n"))
}

fn plain(user: &str, password: &str) -> String {
    STANDARD.encode(format!("\0{user}\0{password}"))
}

async fn client_tls(
    tls: &TestTls,
    stream: DuplexStream,
) -> tokio_rustls::client::TlsStream<DuplexStream> {
    connector_trusting(&tls.ca_pem)
        .connect(server_name(HOST), stream)
        .await
        .expect("client TLS handshake")
}

#[tokio::test]
async fn stls_then_login_from_a_remote_address() {
    let f = fixture(true);
    let (mut client, task) = start_plain(&f);
    assert_eq!(read_until(&mut client, "\r\n").await, GREETING);
    let capa = ask(&mut client, "CAPA", true).await;
    assert!(has_cap(&capa, "STLS"), "{capa}");
    assert!(!has_cap(&capa, "USER") && !capa.contains("SASL"), "{capa}");
    assert_eq!(ask(&mut client, "USER alice", false).await, REFUSED);
    assert_eq!(
        ask(
            &mut client,
            &format!("AUTH PLAIN {}", plain("alice", PASSWORD)),
            false
        )
        .await,
        REFUSED
    );
    // Refused before the password was even looked at: nothing counted.
    assert_eq!(f.ctx.auth.failures(remote_peer().ip(), "alice"), (0, 0));

    assert_eq!(
        ask(&mut client, "STLS", false).await,
        "+OK Begin TLS negotiation\r\n"
    );
    let mut tls = client_tls(&f.tls, client).await;
    let capa = ask(&mut tls, "CAPA", true).await;
    assert!(!has_cap(&capa, "STLS"), "{capa}");
    assert!(
        has_cap(&capa, "USER") && has_cap(&capa, "SASL PLAIN"),
        "{capa}"
    );
    assert_eq!(
        ask(&mut tls, "USER alice", false).await,
        "+OK Send PASS\r\n"
    );
    assert_eq!(
        ask(&mut tls, &format!("PASS {PASSWORD}"), false).await,
        format!("+OK Logged in, 1 messages ({} octets)\r\n", MESSAGE.len())
    );
    let retr = ask(&mut tls, "RETR 1", true).await;
    assert!(retr.ends_with("\r\nhello\r\n.\r\n"), "{retr}");
    let bye = ask(&mut tls, "QUIT", false).await;
    assert!(bye.starts_with("+OK"), "{bye}");
    task.await.expect("server task");
}

#[tokio::test]
async fn injection_probe_with_the_real_backend() {
    let f = fixture(true);
    let (mut client, task) = start_plain(&f);
    read_until(&mut client, GREETING).await;
    client
        .write_all(b"STLS\r\nUSER x\r\n")
        .await
        .expect("write probe");
    assert_eq!(
        read_until(&mut client, "\r\n").await,
        "+OK Begin TLS negotiation\r\n"
    );
    let mut tls = client_tls(&f.tls, client).await;
    // USER x was dropped: PASS finds no user, the session is not logged in.
    assert_eq!(
        ask(&mut tls, "PASS whatever", false).await,
        "-ERR Send USER first\r\n"
    );
    assert_eq!(
        ask(&mut tls, "STAT", false).await,
        "-ERR Command not valid before login\r\n"
    );
    ask(&mut tls, "QUIT", false).await;
    task.await.expect("server task");
}

#[tokio::test]
async fn no_stls_without_a_tls_configuration() {
    let f = fixture(false);
    let (mut client, task) = start_plain(&f);
    read_until(&mut client, GREETING).await;
    let capa = ask(&mut client, "CAPA", true).await;
    assert!(!has_cap(&capa, "STLS"), "{capa}");
    assert_eq!(
        ask(&mut client, "STLS", false).await,
        "-ERR STLS is not available\r\n"
    );
    assert_eq!(ask(&mut client, "USER alice", false).await, REFUSED);
    ask(&mut client, "QUIT", false).await;
    task.await.expect("server task");
}

/// The pop3s (995) path: the caller runs the handshake, then hands the TLS
/// stream over with `secure: true`.
fn start_implicit_tls(f: &Fixture) -> (DuplexStream, JoinHandle<()>) {
    let (client, server) = duplex(1 << 16);
    let ctx = Arc::clone(&f.ctx);
    let acceptor = f.tls.provider.acceptor();
    let task = tokio::spawn(async move {
        let stream = acceptor.accept(server).await.expect("server TLS handshake");
        let props = SessionProps {
            secure: true,
            loopback: false,
            tls_available: true,
        };
        handle_connection_with(stream, remote_peer(), ctx, props, CancellationToken::new()).await
    });
    (client, task)
}

#[tokio::test]
async fn implicit_tls_allows_plaintext_logins_and_offers_no_stls() {
    let f = fixture(true);
    let (client, task) = start_implicit_tls(&f);
    let mut tls = client_tls(&f.tls, client).await;
    assert_eq!(read_until(&mut tls, "\r\n").await, GREETING);
    let capa = ask(&mut tls, "CAPA", true).await;
    assert!(!has_cap(&capa, "STLS"), "{capa}");
    assert!(
        has_cap(&capa, "USER") && has_cap(&capa, "SASL PLAIN"),
        "{capa}"
    );
    assert_eq!(
        ask(&mut tls, "STLS", false).await,
        "-ERR TLS is already active\r\n"
    );
    let r = ask(
        &mut tls,
        &format!("AUTH PLAIN {}", plain("alice", PASSWORD)),
        false,
    )
    .await;
    assert!(r.starts_with("+OK Logged in, 1 messages"), "{r}");
    assert_eq!(
        ask(&mut tls, "STLS", false).await,
        "-ERR STLS is not permitted after login\r\n"
    );
    ask(&mut tls, "QUIT", false).await;
    task.await.expect("server task");
}

#[tokio::test]
async fn every_failed_login_goes_through_the_authenticator_and_looks_the_same() {
    let f = fixture(true);
    let (client, task) = start_implicit_tls(&f);
    let mut tls = client_tls(&f.tls, client).await;
    read_until(&mut tls, GREETING).await;
    let ip = remote_peer().ip();

    // Wrong password and unknown user, over USER/PASS.
    ask(&mut tls, "USER alice", false).await;
    let wrong = ask(&mut tls, "PASS not the password", false).await;
    ask(&mut tls, "USER nobody", false).await;
    let unknown = ask(&mut tls, &format!("PASS {PASSWORD}"), false).await;
    // The same over AUTH PLAIN, with an initial response and with a
    // continuation line.
    let wrong_plain = ask(
        &mut tls,
        &format!("AUTH PLAIN {}", plain("alice", "nope")),
        false,
    )
    .await;
    let unknown_plain = ask(
        &mut tls,
        &format!("AUTH PLAIN {}", plain("nobody", PASSWORD)),
        false,
    )
    .await;
    assert_eq!(ask(&mut tls, "AUTH PLAIN", false).await, "+ \r\n");
    let wrong_continued = ask(&mut tls, &plain("alice", "still wrong"), false).await;

    for reply in [
        &wrong,
        &unknown,
        &wrong_plain,
        &unknown_plain,
        &wrong_continued,
    ] {
        assert_eq!(reply, FAILED);
    }
    // Every failure was counted by the Authenticator (which applies the
    // delays): five for the address, three for alice, two for `nobody`.
    assert_eq!(f.ctx.auth.failures(ip, "alice"), (5, 3));
    assert_eq!(f.ctx.auth.failures(ip, "nobody"), (5, 2));

    // The right password still works afterwards.
    let r = ask(
        &mut tls,
        &format!("AUTH PLAIN {}", plain("alice", PASSWORD)),
        false,
    )
    .await;
    assert!(r.starts_with("+OK Logged in"), "{r}");
    ask(&mut tls, "QUIT", false).await;
    task.await.expect("server task");
}

/// Failed logins and retrieved bytes show in the process metrics. Other
/// tests bump the same counters at the same time: the checks are "grew".
#[tokio::test]
async fn logins_sessions_and_bytes_are_counted_in_the_metrics() {
    use postamt_metrics::{Protocol, global};
    let pop3 = Protocol::ALL
        .iter()
        .position(|p| *p == Protocol::Pop3)
        .expect("pop3 is a protocol");
    let before = global().snapshot();
    let f = fixture(true);
    let (client, task) = start_implicit_tls(&f);
    let mut tls = client_tls(&f.tls, client).await;
    read_until(&mut tls, GREETING).await;
    ask(&mut tls, "USER alice", false).await;
    assert_eq!(ask(&mut tls, "PASS not the password", false).await, FAILED);
    let after_failure = global().snapshot();
    assert!(after_failure.login_failures[pop3] > before.login_failures[pop3]);
    assert!(after_failure.sessions_active[pop3] >= 1);
    let r = ask(
        &mut tls,
        &format!("AUTH PLAIN {}", plain("alice", PASSWORD)),
        false,
    )
    .await;
    assert!(r.starts_with("+OK"), "{r}");
    let message = ask(&mut tls, "RETR 1", true).await;
    assert!(message.starts_with("+OK"), "{message}");
    ask(&mut tls, "QUIT", false).await;
    task.await.expect("server task");
    let after = global().snapshot();
    assert!(after.sessions_total[pop3] > before.sessions_total[pop3]);
    assert!(after.bytes_sent[pop3] > before.bytes_sent[pop3]);
}
