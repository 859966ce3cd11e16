//! In-process connection tests over `tokio::io::duplex` with the fake backend.

use super::*;
use crate::capability::SessionProps;
use crate::fake::{FakeBackend, FakeStore};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::io::{DuplexStream, ReadBuf, duplex};

fn limits() -> ConnectionLimits {
    ConnectionLimits {
        idle_timeout: Duration::from_secs(30),
        transaction_timeout: Duration::from_secs(600),
        write_timeout: Duration::from_secs(30),
        max_line: MAX_LINE,
        handshake_timeout: Duration::from_secs(30),
    }
}

fn new_session(store: &Arc<FakeStore>) -> Session<FakeBackend> {
    Session::new(
        FakeBackend {
            store: store.clone(),
        },
        SessionProps {
            loopback: true,
            ..Default::default()
        },
        "127.0.0.1:40000",
        20,
    )
}

/// A stream that counts the flushes the server makes.
struct Counting {
    inner: DuplexStream,
    flushes: Arc<AtomicUsize>,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Writes `input` up front, runs the server to its end, returns what it sent.
async fn transcript(
    store: &Arc<FakeStore>,
    input: &[u8],
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> (String, End, usize) {
    let (mut client, server) = duplex(1 << 20);
    client.write_all(input).await.unwrap();
    // The client sends nothing more: sessions without QUIT end at EOF.
    client.shutdown().await.unwrap();
    let flushes = Arc::new(AtomicUsize::new(0));
    let stream = Counting {
        inner: server,
        flushes: flushes.clone(),
    };
    let session = new_session(store);
    let server = tokio::spawn(async move { serve(stream, session, &limits, shutdown).await });
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    let end = server.await.unwrap();
    (
        String::from_utf8(out).unwrap(),
        end,
        flushes.load(Ordering::SeqCst),
    )
}

#[tokio::test]
async fn pipelined_session_in_one_flush() {
    let m1: &[u8] = b"Subject: a\r\n\r\nhello\r\n";
    let m2: &[u8] = b"Subject: b\r\n\r\n.\r\n";
    let store = FakeStore::with_messages(&[("u1", m1), ("u2", m2)]);
    let input =
        b"CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nUIDL\r\nRETR 2\r\nDELE 1\r\nQUIT\r\n";
    let (out, end, flushes) = transcript(&store, input, limits(), CancellationToken::new()).await;
    let total = m1.len() + m2.len();
    let expected = format!(
        "+OK Postamt POP3 server ready\r\n\
         +OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n\
         PIPELINING\r\nSASL PLAIN\r\nIMPLEMENTATION Postamt\r\n.\r\n\
         +OK Send PASS\r\n\
         +OK Logged in, 2 messages ({total} octets)\r\n\
         +OK 2 {total}\r\n\
         +OK Unique-ID listing follows\r\n1 u1\r\n2 u2\r\n.\r\n\
         +OK {} octets\r\nSubject: b\r\n\r\n..\r\n.\r\n\
         +OK message 1 deleted\r\n\
         +OK Postamt POP3 server signing off (1 messages deleted, 1 left)\r\n",
        m2.len()
    );
    assert_eq!(out, expected);
    assert!(matches!(end, End::Closed), "{end:?}");
    // The greeting, then the whole pipelined batch at once (shutdown's
    // flush aside).
    assert!(flushes <= 3, "{flushes} flushes");
    assert_eq!(store.uids(), vec!["u2"]);
}

#[tokio::test]
async fn two_megabyte_message_round_trips() {
    let mut data = Vec::new();
    let mut i = 0u32;
    while data.len() < 2 * 1024 * 1024 {
        // Every 7th line starts with a dot; CRLF line ends only, so the
        // round trip is byte-exact.
        if i.is_multiple_of(7) {
            data.extend_from_slice(b".");
        }
        data.extend_from_slice(format!("line {i} of a large message\r\n").as_bytes());
        i += 1;
    }
    data.extend_from_slice(b".\r\n");
    let store = FakeStore::with_messages(&[("big", &data)]);
    let (out, end, _) = transcript(
        &store,
        b"USER alice\r\nPASS secret\r\nRETR 1\r\nQUIT\r\n",
        limits(),
        CancellationToken::new(),
    )
    .await;
    assert!(matches!(end, End::Closed));
    let status = format!("+OK {} octets\r\n", data.len());
    let start = out.find(&status).expect("RETR status") + status.len();
    let term = out[start..].find("\r\n.\r\n").expect("terminator") + start + 2;
    let mut back = Vec::new();
    for line in out.as_bytes()[start..term].split_inclusive(|&b| b == b'\n') {
        back.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    assert_eq!(back.len(), data.len());
    assert!(back == data, "2 MB message differs after unstuffing");
    assert!(out.ends_with("signing off (0 messages deleted, 1 left)\r\n"));
}

#[tokio::test]
async fn eof_without_quit_deletes_nothing() {
    let store = FakeStore::with_messages(&[("u1", b"x\r\n")]);
    let (out, end, _) = transcript(
        &store,
        b"USER alice\r\nPASS secret\r\nDELE 1\r\n",
        limits(),
        CancellationToken::new(),
    )
    .await;
    assert!(out.ends_with("+OK message 1 deleted\r\n"), "{out}");
    assert!(matches!(end, End::Eof), "{end:?}");
    assert_eq!(store.uids(), vec!["u1"]);
    assert!(!store.is_locked());
}

#[tokio::test]
async fn idle_timeout_closes_without_update() {
    let store = FakeStore::with_messages(&[("u1", b"x\r\n")]);
    let short = ConnectionLimits {
        idle_timeout: Duration::from_millis(50),
        transaction_timeout: Duration::from_millis(50),
        ..limits()
    };
    let (mut client, server) = duplex(1 << 16);
    client
        .write_all(b"USER alice\r\nPASS secret\r\nDELE 1\r\n")
        .await
        .unwrap();
    let session = new_session(&store);
    let end = serve(server, session, &short, CancellationToken::new()).await;
    assert!(matches!(end, End::Timeout), "{end:?}");
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.ends_with("-ERR Idle timeout, closing connection\r\n"),
        "{out}"
    );
    assert_eq!(store.uids(), vec!["u1"]);
    assert!(!store.is_locked());
}

#[tokio::test]
async fn shutdown_while_idle() {
    let store = FakeStore::with_messages(&[("u1", b"x\r\n")]);
    let (mut client, server) = duplex(1 << 16);
    let token = CancellationToken::new();
    let session = new_session(&store);
    let (t, l) = (token.clone(), limits());
    let task = tokio::spawn(async move { serve(server, session, &l, t).await });
    client
        .write_all(b"USER alice\r\nPASS secret\r\nDELE 1\r\n")
        .await
        .unwrap();
    // Wait for the DELE reply, then shut down.
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("deleted\r\n") {
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0, "server closed early");
        got.extend_from_slice(&buf[..n]);
    }
    token.cancel();
    let end = task.await.unwrap();
    assert!(matches!(end, End::Shutdown), "{end:?}");
    client.read_to_end(&mut got).await.unwrap();
    let out = String::from_utf8(got).unwrap();
    assert!(
        out.ends_with("-ERR [SYS/TEMP] server shutting down\r\n"),
        "{out}"
    );
    assert_eq!(store.uids(), vec!["u1"], "no UPDATE on shutdown");
    assert!(!store.is_locked());
}

#[tokio::test]
async fn shutdown_before_pipelined_commands() {
    let store = FakeStore::with_messages(&[("u1", b"x\r\n")]);
    let token = CancellationToken::new();
    token.cancel();
    let (out, end, _) = transcript(&store, b"USER alice\r\nPASS secret\r\n", limits(), token).await;
    assert_eq!(
        out,
        "+OK Postamt POP3 server ready\r\n-ERR [SYS/TEMP] server shutting down\r\n"
    );
    assert!(matches!(end, End::Shutdown));
}

#[tokio::test]
async fn overlong_line_closes() {
    let store = FakeStore::with_messages(&[]);
    let input = vec![b'A'; MAX_LINE + 100];
    let (out, end, _) = transcript(&store, &input, limits(), CancellationToken::new()).await;
    assert_eq!(
        out,
        "+OK Postamt POP3 server ready\r\n-ERR Line too long\r\n"
    );
    assert!(matches!(end, End::LineTooLong));
}

#[tokio::test]
async fn auth_plain_continuation_over_the_wire() {
    use base64::Engine;
    let store = FakeStore::with_messages(&[]);
    let creds = base64::engine::general_purpose::STANDARD.encode(b"\0alice\0secret");
    let input = format!("AUTH PLAIN\r\n{creds}\r\nSTAT\r\nQUIT\r\n");
    let (out, _, _) =
        transcript(&store, input.as_bytes(), limits(), CancellationToken::new()).await;
    assert_eq!(
        out,
        "+OK Postamt POP3 server ready\r\n+ \r\n+OK Logged in, 0 messages (0 octets)\r\n\
         +OK 0 0\r\n+OK Postamt POP3 server signing off (0 messages deleted, 0 left)\r\n"
    );
}

#[tokio::test]
async fn too_many_errors_over_the_wire() {
    let store = FakeStore::with_messages(&[]);
    let input = "NOPE\r\n".repeat(25);
    let (out, end, _) =
        transcript(&store, input.as_bytes(), limits(), CancellationToken::new()).await;
    assert_eq!(out.matches("-ERR Unknown command\r\n").count(), 19);
    assert!(out.ends_with("-ERR too many errors\r\n"));
    assert!(matches!(end, End::Closed));
}
