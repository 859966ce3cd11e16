//! `STLS` over the wire (`tokio::io::duplex`, the fake backend, a throwaway
//! self-signed certificate): the upgrade, logins after it from a remote
//! address, the injection probe, refusals and failed handshakes.

use super::*;
use crate::capability::SessionProps;
use crate::fake::{FakeBackend, FakeStore};
use postamt_net::tls::testing::{TestTls, connector_trusting, self_signed, server_name};
use std::sync::Arc;
use tokio::io::{DuplexStream, duplex};
use tokio::task::JoinHandle;

const HOST: &str = "pop.example.org";
const GREETING: &str = "+OK Postamt POP3 server ready\r\n";
const BEGIN_TLS: &str = "+OK Begin TLS negotiation\r\n";
const REFUSED: &str = "-ERR [AUTH] Plaintext authentication disallowed without TLS\r\n";

fn limits() -> ConnectionLimits {
    ConnectionLimits {
        idle_timeout: Duration::from_secs(30),
        transaction_timeout: Duration::from_secs(600),
        write_timeout: Duration::from_secs(30),
        max_line: MAX_LINE,
        handshake_timeout: Duration::from_secs(30),
    }
}

/// A remote client (192.0.2.1, TEST-NET-1) on a server that offers STLS.
fn remote() -> SessionProps {
    SessionProps {
        tls_available: true,
        ..Default::default()
    }
}

/// A loopback client on a server that offers STLS: plaintext USER would
/// work here, which makes the injection probe meaningful.
fn local() -> SessionProps {
    SessionProps {
        loopback: true,
        tls_available: true,
        ..Default::default()
    }
}

/// Starts a server with `props` on one end of a pipe; returns the other end.
fn start(
    store: &Arc<FakeStore>,
    props: SessionProps,
    tls: Option<&TestTls>,
    limits: ConnectionLimits,
) -> (DuplexStream, JoinHandle<End>) {
    let (client, server) = duplex(1 << 16);
    let peer = if props.loopback {
        "127.0.0.1:40000"
    } else {
        "192.0.2.1:40000"
    };
    let session = Session::new(
        FakeBackend {
            store: store.clone(),
        },
        props,
        peer,
        20,
    );
    let acceptor = tls.map(|t| t.provider.acceptor());
    let task = tokio::spawn(async move {
        serve_with_tls(
            server,
            session,
            &limits,
            acceptor.as_ref(),
            CancellationToken::new(),
        )
        .await
    });
    (client, task)
}

/// Reads until what was received ends with `end`; returns all of it.
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

/// Sends one command, returns its reply (multi-line when `multi`).
async fn ask<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, cmd: &str, multi: bool) -> String {
    s.write_all(format!("{cmd}\r\n").as_bytes())
        .await
        .expect("write to server");
    read_until(s, if multi { "\r\n.\r\n" } else { "\r\n" }).await
}

fn has_cap(capa: &str, cap: &str) -> bool {
    capa.contains(&format!("\r\n{cap}\r\n"))
}

async fn handshake(
    tls: &TestTls,
    client: DuplexStream,
) -> tokio_rustls::client::TlsStream<DuplexStream> {
    connector_trusting(&tls.ca_pem)
        .connect(server_name(HOST), client)
        .await
        .expect("client TLS handshake")
}

#[tokio::test]
async fn stls_then_login_from_a_remote_address() {
    let tls = self_signed(HOST);
    let store = FakeStore::with_messages(&[("u1", b"x\r\n")]);
    let (mut client, task) = start(&store, remote(), Some(&tls), limits());
    assert_eq!(read_until(&mut client, "\r\n").await, GREETING);

    // In plaintext from 192.0.2.1: STLS offered, logins neither offered nor
    // accepted.
    let capa = ask(&mut client, "CAPA", true).await;
    assert!(has_cap(&capa, "STLS"), "{capa}");
    assert!(!has_cap(&capa, "USER"), "{capa}");
    assert!(!capa.contains("SASL"), "{capa}");
    assert_eq!(ask(&mut client, "USER alice", false).await, REFUSED);
    assert_eq!(ask(&mut client, "AUTH PLAIN", false).await, REFUSED);

    assert_eq!(ask(&mut client, "STLS", false).await, BEGIN_TLS);
    let mut tls_client = handshake(&tls, client).await;

    let capa = ask(&mut tls_client, "CAPA", true).await;
    assert!(!has_cap(&capa, "STLS"), "{capa}");
    assert!(has_cap(&capa, "USER"), "{capa}");
    assert!(has_cap(&capa, "SASL PLAIN"), "{capa}");
    assert_eq!(
        ask(&mut tls_client, "STLS", false).await,
        "-ERR TLS is already active\r\n"
    );
    assert_eq!(
        ask(&mut tls_client, "USER alice", false).await,
        "+OK Send PASS\r\n"
    );
    assert_eq!(
        ask(&mut tls_client, "PASS secret", false).await,
        "+OK Logged in, 1 messages (3 octets)\r\n"
    );
    assert_eq!(
        ask(&mut tls_client, "RETR 1", true).await,
        "+OK 3 octets\r\nx\r\n.\r\n"
    );
    let bye = ask(&mut tls_client, "QUIT", false).await;
    assert!(
        bye.starts_with("+OK Postamt POP3 server signing off"),
        "{bye}"
    );
    let end = task.await.expect("server task");
    assert!(matches!(end, End::Closed), "{end:?}");
    assert!(!store.is_locked());
}

#[tokio::test]
async fn same_login_without_tls_is_refused() {
    let tls = self_signed(HOST);
    let store = FakeStore::with_messages(&[]);
    let (mut client, task) = start(&store, remote(), Some(&tls), limits());
    read_until(&mut client, GREETING).await;
    assert_eq!(ask(&mut client, "USER alice", false).await, REFUSED);
    assert_eq!(ask(&mut client, "PASS secret", false).await, REFUSED);
    let creds = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(b"\0alice\0secret")
    };
    assert_eq!(
        ask(&mut client, &format!("AUTH PLAIN {creds}"), false).await,
        REFUSED
    );
    assert_eq!(
        ask(&mut client, "STAT", false).await,
        "-ERR Command not valid before login\r\n"
    );
    ask(&mut client, "QUIT", false).await;
    assert!(matches!(task.await.unwrap(), End::Closed));
    assert!(!store.is_locked());
}

/// The STARTTLS injection probe (CVE-2011-0411 class): a command pipelined
/// in the same packet as STLS must never be executed, neither in plaintext
/// nor after the handshake.
#[tokio::test]
async fn commands_pipelined_after_stls_are_dropped() {
    let tls = self_signed(HOST);
    let store = FakeStore::with_messages(&[("u1", b"x\r\n")]);
    let (mut client, task) = start(&store, local(), Some(&tls), limits());
    read_until(&mut client, GREETING).await;
    client
        .write_all(b"STLS\r\nUSER alice\r\n")
        .await
        .expect("write probe");
    // Exactly the STLS reply: no plaintext reply to the USER line.
    assert_eq!(read_until(&mut client, "\r\n").await, BEGIN_TLS);
    let mut tls_client = handshake(&tls, client).await;
    // Had USER been executed (before or after the handshake), this PASS
    // would log in.
    assert_eq!(
        ask(&mut tls_client, "PASS secret", false).await,
        "-ERR Send USER first\r\n"
    );
    assert_eq!(
        ask(&mut tls_client, "STAT", false).await,
        "-ERR Command not valid before login\r\n"
    );
    assert!(!store.is_locked(), "nobody logged in");
    ask(&mut tls_client, "QUIT", false).await;
    let end = task.await.unwrap();
    assert!(matches!(end, End::Closed), "{end:?}");
}

#[tokio::test]
async fn stls_after_login_is_refused_and_the_session_goes_on() {
    let tls = self_signed(HOST);
    let store = FakeStore::with_messages(&[("u1", b"x\r\n")]);
    let (mut client, task) = start(&store, local(), Some(&tls), limits());
    read_until(&mut client, GREETING).await;
    ask(&mut client, "USER alice", false).await;
    let r = ask(&mut client, "PASS secret", false).await;
    assert!(r.starts_with("+OK Logged in"), "{r}");
    assert_eq!(
        ask(&mut client, "STLS", false).await,
        "-ERR STLS is not permitted after login\r\n"
    );
    // Still plaintext, still logged in.
    assert_eq!(ask(&mut client, "STAT", false).await, "+OK 1 3\r\n");
    ask(&mut client, "QUIT", false).await;
    assert!(matches!(task.await.unwrap(), End::Closed));
}

#[tokio::test]
async fn failed_handshake_closes_the_connection() {
    let tls = self_signed(HOST);
    let store = FakeStore::with_messages(&[]);
    let (mut client, task) = start(&store, local(), Some(&tls), limits());
    read_until(&mut client, GREETING).await;
    assert_eq!(ask(&mut client, "STLS", false).await, BEGIN_TLS);
    // Plaintext where a ClientHello should be.
    client
        .write_all(b"USER alice\r\nPASS secret\r\n")
        .await
        .unwrap();
    let end = task.await.unwrap();
    assert!(
        matches!(end, End::StartTls(StartTlsError::Handshake(_))),
        "{end:?}"
    );
    // No plaintext reply after the STLS one (at most a TLS alert record).
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(!rest.starts_with(b"+OK") && !rest.starts_with(b"-ERR"));
    assert!(!store.is_locked());
}

#[tokio::test]
async fn silent_client_after_stls_times_out() {
    let tls = self_signed(HOST);
    let store = FakeStore::with_messages(&[]);
    let short = ConnectionLimits {
        handshake_timeout: Duration::from_millis(50),
        ..limits()
    };
    let (mut client, task) = start(&store, remote(), Some(&tls), short);
    read_until(&mut client, GREETING).await;
    assert_eq!(ask(&mut client, "STLS", false).await, BEGIN_TLS);
    let end = task.await.unwrap();
    assert!(
        matches!(end, End::StartTls(StartTlsError::Timeout(_))),
        "{end:?}"
    );
}

#[tokio::test]
async fn stls_is_withdrawn_without_an_acceptor() {
    // The props claim TLS, but the connection has no acceptor: STLS must be
    // neither advertised nor answered with +OK.
    let store = FakeStore::with_messages(&[]);
    let (mut client, task) = start(&store, local(), None, limits());
    read_until(&mut client, GREETING).await;
    let capa = ask(&mut client, "CAPA", true).await;
    assert!(!has_cap(&capa, "STLS"), "{capa}");
    assert_eq!(
        ask(&mut client, "STLS", false).await,
        "-ERR STLS is not available\r\n"
    );
    assert_eq!(
        ask(&mut client, "USER alice", false).await,
        "+OK Send PASS\r\n"
    );
    ask(&mut client, "QUIT", false).await;
    assert!(matches!(task.await.unwrap(), End::Closed));
}
