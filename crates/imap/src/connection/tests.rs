//! Connection tests over `tokio::io::duplex` with the fake backend:
//! literals and continuation requests, input bounds, timeouts, shutdown,
//! IDLE pushes and the STARTTLS upgrade.

use super::*;
use crate::SessionProps;
use crate::fake::{FakeBackend, FakeStore};
use crate::session::SessionLimits;
use postamt_net::tls::testing::{connector_trusting, self_signed, server_name};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, BufReader, DuplexStream, duplex};

fn limits() -> ConnectionLimits {
    ConnectionLimits {
        idle_timeout: Duration::from_secs(30),
        authenticated_timeout: Duration::from_secs(1800),
        write_timeout: Duration::from_secs(30),
        handshake_timeout: Duration::from_secs(30),
        max_line: 1024,
        max_preauth_literal: 100,
        max_message_size: 4096,
    }
}

fn session(store: &Arc<FakeStore>, props: SessionProps) -> Session<FakeBackend> {
    Session::new(
        FakeBackend {
            store: store.clone(),
        },
        props,
        "127.0.0.1:40000",
        SessionLimits::default(),
    )
}

fn loopback() -> SessionProps {
    SessionProps {
        secure: false,
        loopback: true,
        tls_available: true,
    }
}

/// Writes `input`, closes the client side, runs the server to the end.
async fn transcript(
    store: &Arc<FakeStore>,
    input: &[u8],
    limits: ConnectionLimits,
) -> (String, End) {
    let (mut client, server) = duplex(1 << 20);
    client.write_all(input).await.unwrap();
    client.shutdown().await.unwrap();
    let s = session(store, loopback());
    let end = serve_with_tls(server, s, &limits, None, CancellationToken::new()).await;
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    (String::from_utf8_lossy(&out).into_owned(), end)
}

struct Client {
    r: BufReader<tokio::io::ReadHalf<DuplexStream>>,
    w: tokio::io::WriteHalf<DuplexStream>,
}

impl Client {
    async fn line(&mut self) -> String {
        let mut l = String::new();
        let n = tokio::time::timeout(Duration::from_secs(20), self.r.read_line(&mut l))
            .await
            .expect("server answered")
            .unwrap();
        assert!(n > 0, "connection closed");
        l
    }
    async fn send(&mut self, s: &str) {
        self.w.write_all(s.as_bytes()).await.unwrap();
    }
    /// Reads lines until one starts with `prefix`; returns them all.
    async fn until(&mut self, prefix: &str) -> String {
        let mut all = String::new();
        loop {
            let l = self.line().await;
            all.push_str(&l);
            if l.starts_with(prefix) {
                return all;
            }
        }
    }
}

fn spawn_server(
    store: &Arc<FakeStore>,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> (Client, tokio::task::JoinHandle<End>) {
    let (client, server) = duplex(1 << 20);
    let s = session(store, loopback());
    let task =
        tokio::spawn(async move { serve_with_tls(server, s, &limits, None, shutdown).await });
    let (r, w) = tokio::io::split(client);
    (
        Client {
            r: BufReader::new(r),
            w,
        },
        task,
    )
}

#[tokio::test]
async fn greeting_pipelining_and_logout() {
    let store = FakeStore::new();
    let (out, end) = transcript(
        &store,
        b"a NOOP\r\nb LOGIN alice secret\r\nc LOGOUT\r\nd NOOP\r\n",
        limits(),
    )
    .await;
    assert!(out.starts_with("* OK [CAPABILITY IMAP4rev1"), "{out}");
    assert!(
        out.contains("a OK") && out.contains("b OK") && out.contains("c OK"),
        "{out}"
    );
    assert!(!out.contains("d OK"), "nothing after LOGOUT: {out}");
    assert!(matches!(end, End::Closed), "{end:?}");
}

#[tokio::test]
async fn synchronising_literal_gets_a_continuation() {
    let store = FakeStore::new();
    let (mut c, task) = spawn_server(&store, limits(), CancellationToken::new());
    c.line().await;
    c.send("a LOGIN {5}\r\n").await;
    assert!(c.line().await.starts_with("+ "), "continuation request");
    c.send("alice \"secret\"\r\n").await;
    assert!(c.line().await.starts_with("a OK"));
    c.send("b LOGOUT\r\n").await;
    c.until("b OK").await;
    assert!(matches!(task.await.unwrap(), End::Closed));
}

#[tokio::test]
async fn big_literal_before_login_is_bye() {
    let store = FakeStore::new();
    let (out, end) = transcript(&store, b"a LOGIN {5000}\r\n", limits()).await;
    assert!(out.contains("* BYE [TOOBIG]"), "{out}");
    assert!(!out.contains("\r\n+ "), "no continuation for it: {out}");
    assert!(matches!(end, End::LiteralTooLarge), "{end:?}");
    let (out, end) = transcript(&store, b"a LOGIN {5000+}\r\nxxxx", limits()).await;
    assert!(out.contains("* BYE [TOOBIG]"), "{out}");
    assert!(matches!(end, End::LiteralTooLarge), "{end:?}");
}

#[tokio::test]
async fn big_synchronising_literal_after_login_is_refused_alone() {
    let store = FakeStore::new();
    let (out, end) = transcript(
        &store,
        b"a LOGIN alice secret\r\nb APPEND INBOX {999999}\r\nc NOOP\r\n",
        limits(),
    )
    .await;
    assert!(out.contains("b NO [TOOBIG]"), "{out}");
    assert!(out.contains("c OK"), "the session goes on: {out}");
    assert!(matches!(end, End::Eof), "{end:?}");
}

#[tokio::test]
async fn long_line_is_bye() {
    let store = FakeStore::new();
    let mut input = b"a NOOP ".to_vec();
    input.extend(std::iter::repeat_n(b'x', 5000));
    let (out, end) = transcript(&store, &input, limits()).await;
    assert!(out.contains("* BYE Input line too long"), "{out}");
    assert!(matches!(end, End::LineTooLong), "{end:?}");
}

#[tokio::test]
async fn deep_nesting_is_bad_not_a_crash() {
    let store = FakeStore::new();
    let mut input = b"a LOGIN alice secret\r\nb SELECT INBOX\r\nc SEARCH ".to_vec();
    input.extend(std::iter::repeat_n(b'(', 900));
    input.extend_from_slice(b"\r\nd NOOP\r\n");
    let (out, _) = transcript(&store, &input, limits()).await;
    assert!(out.contains("c BAD"), "{out}");
    assert!(out.contains("d OK"), "{out}");
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_before_login() {
    let store = FakeStore::new();
    let (mut c, task) = spawn_server(&store, limits(), CancellationToken::new());
    c.line().await;
    let end = task.await.unwrap();
    assert!(matches!(end, End::Timeout), "{end:?}");
    assert!(c.line().await.starts_with("* BYE"));
}

#[tokio::test]
async fn shutdown_says_bye() {
    let store = FakeStore::new();
    let token = CancellationToken::new();
    let (mut c, task) = spawn_server(&store, limits(), token.clone());
    c.line().await;
    c.send("a LOGIN alice secret\r\nb SELECT INBOX\r\nc IDLE\r\n")
        .await;
    c.until("+ idling").await;
    token.cancel();
    let l = c.line().await;
    assert!(l.starts_with("* BYE"), "{l}");
    assert!(matches!(task.await.unwrap(), End::Shutdown));
}

#[tokio::test]
async fn idle_pushes_new_mail() {
    let store = FakeStore::new();
    let (mut c, task) = spawn_server(&store, limits(), CancellationToken::new());
    c.line().await;
    c.send("a LOGIN alice secret\r\nb SELECT INBOX\r\nc IDLE\r\n")
        .await;
    c.until("+ idling").await;
    store.deliver("INBOX", b"Subject: x\r\n\r\nbody\r\n");
    let l = c.line().await;
    assert_eq!(l, "* 1 EXISTS\r\n");
    c.send("DONE\r\n").await;
    c.until("c OK").await;
    c.send("d LOGOUT\r\n").await;
    c.until("d OK").await;
    assert!(matches!(task.await.unwrap(), End::Closed));
}

#[tokio::test]
async fn starttls_upgrades_and_drops_pipelined_plaintext() {
    let tls = self_signed("imap.example.org");
    let store = FakeStore::new();
    let (client, server) = duplex(1 << 20);
    let s = session(
        &store,
        SessionProps {
            loopback: false,
            ..loopback()
        },
    );
    let acceptor = tls.provider.acceptor();
    let task = tokio::spawn(async move {
        serve_with_tls(
            server,
            s,
            &limits(),
            Some(&acceptor),
            CancellationToken::new(),
        )
        .await
    });
    let mut client = BufReader::new(client);
    let mut l = String::new();
    client.read_line(&mut l).await.unwrap();
    assert!(l.contains("STARTTLS") && l.contains("LOGINDISABLED"), "{l}");
    client
        .get_mut()
        .write_all(b"a STARTTLS\r\nb LOGIN alice secret\r\n")
        .await
        .unwrap();
    l.clear();
    client.read_line(&mut l).await.unwrap();
    assert_eq!(l, "a OK Begin TLS negotiation now\r\n");
    let raw = client.into_inner();
    let tls_stream = connector_trusting(&tls.ca_pem)
        .connect(server_name("imap.example.org"), raw)
        .await
        .expect("handshake");
    let mut c = BufReader::new(tls_stream);
    c.get_mut().write_all(b"c CAPABILITY\r\n").await.unwrap();
    let mut got = String::new();
    loop {
        let mut l = String::new();
        c.read_line(&mut l).await.unwrap();
        got.push_str(&l);
        if l.starts_with("c ") {
            break;
        }
    }
    assert!(
        !got.contains("b OK") && !got.contains("b NO"),
        "plaintext LOGIN dropped: {got}"
    );
    assert!(
        got.contains("AUTH=PLAIN") && !got.contains("STARTTLS"),
        "{got}"
    );
    c.get_mut()
        .write_all(b"d LOGIN alice secret\r\ne LOGOUT\r\n")
        .await
        .unwrap();
    let mut rest = String::new();
    loop {
        let mut l = String::new();
        if c.read_line(&mut l).await.unwrap() == 0 {
            break;
        }
        rest.push_str(&l);
        if l.starts_with("e ") {
            break;
        }
    }
    assert!(rest.contains("d OK"), "{rest}");
    assert!(matches!(task.await.unwrap(), End::Closed));
}

#[test]
fn rate_limit_allows_bursts_then_paces() {
    let t0 = Instant::now();
    let mut r = RateLimit::new(10.0, 3.0, t0);
    assert_eq!(r.take(t0), Duration::ZERO);
    assert_eq!(r.take(t0), Duration::ZERO);
    assert_eq!(r.take(t0), Duration::ZERO);
    let wait = r.take(t0);
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(100),
        "{wait:?}"
    );
    // After a quiet second the bucket is full again.
    let later = t0 + Duration::from_secs(5);
    let mut r = RateLimit::new(10.0, 3.0, t0);
    for _ in 0..3 {
        r.take(t0);
    }
    assert_eq!(r.take(later), Duration::ZERO);
}
