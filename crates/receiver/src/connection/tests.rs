//! In-process connection tests over `tokio::io::duplex` with the fake
//! backend: pipelining, DATA/BDAT framing, smuggling, limits, timeout and
//! shutdown (paused time, no wall-clock waits).

use super::*;
use crate::testing::{FakeBackend, config};
use tokio::io::DuplexStream;
use tokio::task::JoinHandle;

/// The client side of a test connection (plaintext or TLS).
pub(super) struct Client<T = DuplexStream> {
    pub(super) io: T,
    pub(super) buf: Vec<u8>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Client<T> {
    pub(super) fn new(io: T) -> Client<T> {
        Client {
            io,
            buf: Vec::new(),
        }
    }

    pub(super) async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("write");
        self.io.flush().await.expect("flush");
    }

    /// One complete reply (all its lines, CRLF included); `None` at EOF.
    pub(super) async fn reply(&mut self) -> Option<String> {
        let mut out = String::new();
        loop {
            while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = String::from_utf8(line).expect("utf8 reply");
                let last = line.as_bytes().get(3) == Some(&b' ');
                out.push_str(&line);
                if last {
                    return Some(out);
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.io.read(&mut chunk).await.expect("read");
            if n == 0 {
                assert!(
                    out.is_empty() && self.buf.is_empty(),
                    "partial reply at EOF"
                );
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub(super) async fn expect(&mut self, prefix: &str) -> String {
        let r = self.reply().await.expect("a reply, not EOF");
        assert!(r.starts_with(prefix), "expected {prefix:?}, got {r:?}");
        r
    }

    pub(super) async fn expect_eof(&mut self) {
        assert_eq!(self.reply().await, None);
    }
}

fn start(
    cfg: Config,
    backend: Arc<FakeBackend>,
    shutdown: CancellationToken,
) -> (Client, JoinHandle<SessionStats>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let peer: SocketAddr = "192.0.2.20:5555".parse().expect("addr");
    let task =
        tokio::spawn(async move { serve(server, peer, Arc::new(cfg), &*backend, shutdown).await });
    (
        Client {
            io: client,
            buf: Vec::new(),
        },
        task,
    )
}

#[tokio::test]
async fn pipelined_transaction_in_one_write() {
    let backend = Arc::new(FakeBackend::new());
    let (mut c, task) = start(config(), Arc::clone(&backend), CancellationToken::new());
    c.send(
        b"EHLO client.example.net\r\nMAIL FROM:<a@b.net>\r\nRCPT TO:<alice@example.org>\r\n\
          RCPT TO:<x@elsewhere.net>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n",
    )
    .await;
    c.expect("220 mx.example.org ESMTP Postamt\r\n").await;
    let ehlo = c.expect("250-mx.example.org\r\n").await;
    assert!(ehlo.contains("250-PIPELINING\r\n") && ehlo.ends_with("250 CHUNKING\r\n"));
    c.expect("250 2.1.0").await;
    c.expect("250 2.1.5").await;
    c.expect("554 5.7.1").await;
    c.expect("250 2.1.5").await;
    c.expect("354 ").await;
    c.send(b"Subject: x\r\n\r\n..hi\r\n.\r\nQUIT\r\n").await;
    let queued = c.expect("250 2.0.0 Ok: queued as ").await;
    c.expect("221 2.0.0").await;
    c.expect_eof().await;
    let stats = task.await.expect("task");
    assert_eq!(stats.messages, 1);
    let q = backend.queued();
    assert_eq!(q.len(), 1);
    let id = q[0].0.id.clone().expect("id");
    assert!(queued.contains(&id.0));
    assert!(q[0].1.ends_with(b"\r\nSubject: x\r\n\r\n.hi\r\n"));
    assert_eq!(
        q[0].0.recipients,
        vec!["alice@example.org", "bob@example.org"]
    );
}

#[tokio::test]
async fn data_sent_without_waiting_for_354_and_commands_after_it() {
    let backend = Arc::new(FakeBackend::new());
    let (mut c, task) = start(config(), Arc::clone(&backend), CancellationToken::new());
    // Everything in one write: the bytes after the end of data are commands.
    c.send(
        b"HELO c\r\nMAIL FROM:<a@b.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n\
          one\r\n.\r\nMAIL FROM:<c@d.net>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\ntwo\r\n.\r\nQUIT\r\n",
    )
    .await;
    c.expect("220").await;
    c.expect("250 mx.example.org").await;
    c.expect("250 2.1.0").await;
    c.expect("250 2.1.5").await;
    c.expect("354").await;
    c.expect("250 2.0.0 Ok: queued").await;
    c.expect("250 2.1.0").await;
    c.expect("250 2.1.5").await;
    c.expect("354").await;
    c.expect("250 2.0.0 Ok: queued").await;
    c.expect("221").await;
    c.expect_eof().await;
    task.await.expect("task");
    let q = backend.queued();
    assert_eq!(q.len(), 2);
    assert!(q[0].1.ends_with(b"\r\none\r\n"));
    assert!(q[1].1.ends_with(b"\r\ntwo\r\n"));
    assert_eq!(q[1].0.mail_from, "c@d.net");
}

#[tokio::test]
async fn smuggling_attempt_stays_one_message() {
    let backend = Arc::new(FakeBackend::new());
    let (mut c, task) = start(config(), Arc::clone(&backend), CancellationToken::new());
    c.send(b"EHLO c\r\nMAIL FROM:<a@b.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        .await;
    for prefix in ["220", "250-", "250 2.1.0", "250 2.1.5", "354"] {
        c.expect(prefix).await;
    }
    let smuggle = b"Subject: real\r\n\r\nhello\n.\nMAIL FROM:<evil@x.net>\r\n\
                    RCPT TO:<bob@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\n.\r\n";
    c.send(smuggle).await;
    c.expect("250 2.0.0 Ok: queued").await;
    c.send(b"QUIT\r\n").await;
    c.expect("221").await;
    task.await.expect("task");
    let q = backend.queued();
    assert_eq!(q.len(), 1, "exactly one message");
    assert!(q[0].1.ends_with(b"hello\n.\nMAIL FROM:<evil@x.net>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\n"));
}

#[tokio::test]
async fn bdat_pipelined_with_binary_chunk() {
    let backend = Arc::new(FakeBackend::new());
    let (mut c, task) = start(config(), Arc::clone(&backend), CancellationToken::new());
    c.send(b"EHLO c\r\nMAIL FROM:<a@b.net>\r\nRCPT TO:<alice@example.org>\r\n")
        .await;
    c.send(b"BDAT 12\r\n\r\n.\r\nQUIT\r\n\0BDAT 0 LAST\r\nNOOP\r\n")
        .await;
    for prefix in ["220", "250-", "250 2.1.0", "250 2.1.5"] {
        c.expect(prefix).await;
    }
    c.expect("250 2.0.0 12 octets received").await;
    c.expect("250 2.0.0 Ok: queued as").await;
    c.expect("250 2.0.0 Ok").await;
    drop(c);
    task.await.expect("task");
    let q = backend.queued();
    assert!(q[0].1.ends_with(b"\r\n.\r\nQUIT\r\n\0"));
}

#[tokio::test]
async fn long_line_is_refused_and_the_stream_resyncs() {
    let backend = Arc::new(FakeBackend::new());
    let (mut c, task) = start(config(), Arc::clone(&backend), CancellationToken::new());
    c.expect("220").await;
    let mut long = b"NOOP ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 10_000));
    long.extend_from_slice(b"\r\nNOOP\r\n");
    c.send(&long).await;
    c.expect("500 5.5.2 Line too long").await;
    c.expect("250 2.0.0 Ok").await;
    // A line just over the limit with its LF already buffered.
    let mut over = vec![b'y'; MAX_LINE];
    over.extend_from_slice(b"\nQUIT\r\n");
    c.send(&over).await;
    c.expect("500 5.5.2 Line too long").await;
    c.expect("221").await;
    c.expect_eof().await;
    let stats = task.await.expect("task");
    assert_eq!(stats.errors, 2);
}

#[tokio::test]
async fn too_many_errors_closes_the_connection() {
    let backend = Arc::new(FakeBackend::new());
    let (mut c, task) = start(config(), backend, CancellationToken::new());
    c.expect("220").await;
    c.send(b"A\r\nB\r\nC\r\nD\r\nE\r\nNOOP\r\n").await;
    for _ in 0..5 {
        c.expect("500 5.5.2").await;
    }
    c.expect("421 4.7.0 mx.example.org Too many errors").await;
    c.expect_eof().await;
    task.await.expect("task");
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_closes_with_421() {
    let backend = Arc::new(FakeBackend::new());
    let (mut c, task) = start(config(), backend, CancellationToken::new());
    c.expect("220").await;
    c.send(b"EHLO c\r\n").await;
    c.expect("250-").await;
    // Say nothing: paused time jumps to the timeout.
    c.expect("421 4.4.2 mx.example.org Timeout").await;
    c.expect_eof().await;
    task.await.expect("task");
}

#[tokio::test(start_paused = true)]
async fn timeout_during_data_queues_nothing() {
    let backend = Arc::new(FakeBackend::new());
    let (mut c, task) = start(config(), Arc::clone(&backend), CancellationToken::new());
    c.send(b"EHLO c\r\nMAIL FROM:<a@b.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\npartial")
        .await;
    for prefix in ["220", "250-", "250 2.1.0", "250 2.1.5", "354"] {
        c.expect(prefix).await;
    }
    c.expect("421 4.4.2").await;
    c.expect_eof().await;
    task.await.expect("task");
    assert!(backend.queued().is_empty());
}

#[tokio::test]
async fn shutdown_at_command_boundary() {
    let backend = Arc::new(FakeBackend::new());
    let token = CancellationToken::new();
    let (mut c, task) = start(config(), backend, token.clone());
    c.expect("220").await;
    c.send(b"EHLO c\r\n").await;
    c.expect("250-").await;
    token.cancel();
    c.expect("421 4.3.2 mx.example.org Service shutting down")
        .await;
    c.expect_eof().await;
    task.await.expect("task");
}

#[tokio::test]
async fn shutdown_lets_data_in_progress_finish() {
    let backend = Arc::new(FakeBackend::new());
    let token = CancellationToken::new();
    let (mut c, task) = start(config(), Arc::clone(&backend), token.clone());
    c.send(b"EHLO c\r\nMAIL FROM:<a@b.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nfirst half ")
        .await;
    for prefix in ["220", "250-", "250 2.1.0", "250 2.1.5", "354"] {
        c.expect(prefix).await;
    }
    token.cancel();
    // Give the server a chance to observe the cancellation mid-DATA.
    tokio::task::yield_now().await;
    c.send(b"second half\r\n.\r\nNOOP\r\n").await;
    c.expect("250 2.0.0 Ok: queued").await;
    c.expect("421 4.3.2").await;
    c.expect_eof().await;
    task.await.expect("task");
    let q = backend.queued();
    assert!(q[0].1.ends_with(b"first half second half\r\n"));
}

#[tokio::test]
async fn already_cancelled_gets_421_instead_of_greeting() {
    let token = CancellationToken::new();
    token.cancel();
    let (mut c, task) = start(config(), Arc::new(FakeBackend::new()), token);
    c.expect("421 4.3.2").await;
    c.expect_eof().await;
    task.await.expect("task");
}

#[tokio::test]
async fn client_closing_mid_data_queues_nothing() {
    let backend = Arc::new(FakeBackend::new());
    let (mut c, task) = start(config(), Arc::clone(&backend), CancellationToken::new());
    c.send(b"EHLO c\r\nMAIL FROM:<a@b.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nabc\r\n")
        .await;
    for prefix in ["220", "250-", "250 2.1.0", "250 2.1.5", "354"] {
        c.expect(prefix).await;
    }
    drop(c);
    let stats = task.await.expect("task");
    assert_eq!(stats.messages, 0);
    assert!(backend.queued().is_empty());
}

#[test]
fn handle_connection_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let ctx: Option<Arc<crate::ReceiverContext>> = None;
    if let Some(ctx) = ctx {
        let (_, server) = tokio::io::duplex(16);
        let fut = crate::handle_connection(
            server,
            "127.0.0.1:1".parse().expect("addr"),
            ctx,
            CancellationToken::new(),
        );
        assert_send(&fut);
    }
}

/// A session and its message show in the process metrics. Other tests run
/// at the same time and bump the same counters, so the checks are "grew by
/// at least".
#[tokio::test]
async fn sessions_and_messages_are_counted_in_the_metrics() {
    use postamt_metrics::{Protocol, global};
    let smtp = Protocol::ALL
        .iter()
        .position(|p| *p == Protocol::Smtp)
        .expect("smtp is a protocol");
    let before = global().snapshot();
    let backend = Arc::new(FakeBackend::new());
    let (mut c, task) = start(config(), Arc::clone(&backend), CancellationToken::new());
    c.send(b"HELO c\r\nMAIL FROM:<a@b.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        .await;
    c.expect("220").await;
    c.expect("250").await;
    c.expect("250 2.1.0").await;
    c.expect("250 2.1.5").await;
    c.expect("354 ").await;
    let during = global().snapshot();
    assert!(
        during.sessions_active[smtp] >= 1,
        "an open session is active"
    );
    c.send(b"Message-ID: <metrics-test@x>\r\n\r\nhello\r\n.\r\nQUIT\r\n")
        .await;
    c.expect("250 2.0.0").await;
    c.expect("221").await;
    c.expect_eof().await;
    task.await.expect("task");
    let after = global().snapshot();
    assert!(after.sessions_total[smtp] > before.sessions_total[smtp]);
    assert!(after.received[smtp] > before.received[smtp]);
    let size = backend.queued()[0].1.len() as u64;
    assert!(after.bytes_received >= before.bytes_received + 10 && size > 10);
}
