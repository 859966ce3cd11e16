//! A scripted fake SMTP server on 127.0.0.1 for the client tests: each test
//! writes its server side as a script over a [`Peer`], which records every
//! byte the client sent. Test code: it panics on anything unexpected.

#![allow(dead_code)]

use postamt_smtp_client::{ClientConfig, Timeouts};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long the fake server waits for the client before failing the test.
const PEER_LIMIT: Duration = Duration::from_secs(10);

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

/// The server side of one connection.
pub struct Peer {
    io: Io,
    buf: Vec<u8>,
    /// Every byte received from the client (decrypted after TLS).
    pub received: Vec<u8>,
}

impl Peer {
    async fn read_some(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = match &mut self.io {
            Io::Plain(s) => s.read(&mut chunk).await?,
            Io::Tls(s) => s.read(&mut chunk).await?,
            Io::Gone => 0,
        };
        self.buf.extend_from_slice(&chunk[..n]);
        self.received.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Sends `text` as is.
    pub async fn send(&mut self, text: &str) {
        self.try_send(text.as_bytes())
            .await
            .expect("the client reads the server's reply");
    }

    /// Sends, ignoring failures (for clients expected to hang up early).
    pub async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.io {
            Io::Plain(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Io::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Io::Gone => Ok(()),
        }
    }

    /// The next line without CRLF; `None` at end of stream.
    pub async fn read_line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8(self.buf[..i].to_vec()).expect("UTF-8 command");
                self.buf.drain(..i + 2);
                return Some(line);
            }
            let n = timeout(PEER_LIMIT, self.read_some())
                .await
                .expect("the client sends within the limit")
                .unwrap_or(0);
            if n == 0 {
                assert!(self.buf.is_empty(), "partial line at end: {:?}", self.buf);
                return None;
            }
        }
    }

    /// Reads one line and checks it.
    pub async fn expect(&mut self, want: &str) {
        assert_eq!(self.read_line().await.as_deref(), Some(want));
    }

    /// Reads message data up to and including the end mark.
    pub async fn read_data(&mut self) -> Vec<u8> {
        loop {
            let end = if self.buf.starts_with(b".\r\n") {
                Some(3)
            } else {
                self.buf
                    .windows(5)
                    .position(|w| w == b"\r\n.\r\n")
                    .map(|i| i + 5)
            };
            if let Some(end) = end {
                let data = self.buf[..end].to_vec();
                self.buf.drain(..end);
                return data;
            }
            let n = timeout(PEER_LIMIT, self.read_some())
                .await
                .expect("the client sends within the limit")
                .expect("read data");
            assert!(n > 0, "end of stream inside DATA");
        }
    }

    /// True when the client has sent nothing beyond what was consumed: no
    /// buffered bytes and no bytes ready on the socket right now. (It can
    /// miss bytes still in flight, never report bytes that were not sent.)
    pub async fn nothing_more_sent(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        // A zero timeout polls the read exactly once.
        match timeout(Duration::ZERO, self.read_some()).await {
            Err(_) => true,
            Ok(Ok(n)) => n == 0,
            Ok(Err(_)) => true,
        }
    }

    /// Waits until the client closes the connection; true if it sent nothing
    /// more.
    pub async fn closed_without_more(&mut self) -> bool {
        self.read_line().await.is_none()
    }

    /// The TLS handshake as the server, after a STARTTLS 220 (or at once
    /// for implicit TLS).
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor) {
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Gone) else {
            panic!("start_tls on a non-plain stream");
        };
        let tls = timeout(PEER_LIMIT, acceptor.accept(tcp))
            .await
            .expect("handshake in time")
            .expect("TLS handshake succeeds");
        self.io = Io::Tls(Box::new(tls));
    }

    /// Tries the TLS handshake as the server; false when it fails (the
    /// stream is gone then).
    pub async fn try_start_tls(&mut self, acceptor: &TlsAcceptor) -> bool {
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Gone) else {
            panic!("start_tls on a non-plain stream");
        };
        match timeout(PEER_LIMIT, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                self.io = Io::Tls(Box::new(tls));
                true
            }
            Ok(Err(_)) => false,
            Err(_) => panic!("handshake neither done nor failed in time"),
        }
    }

    /// Reads and ignores everything up to the end of the stream.
    pub async fn drain(&mut self) {
        loop {
            match timeout(PEER_LIMIT, self.read_some()).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => self.buf.clear(),
                Err(_) => panic!("the client does not hang up"),
            }
        }
    }

    /// The raw TCP stream (to misbehave at the TLS layer).
    pub fn tcp(&mut self) -> &mut TcpStream {
        match &mut self.io {
            Io::Plain(s) => s,
            _ => panic!("not a plain stream"),
        }
    }
}

/// Starts a fake server for `connections` connections, running `script` for
/// each in turn; the handle yields what each connection received.
pub async fn serve_many<F, Fut>(
    connections: usize,
    script: F,
) -> (SocketAddr, JoinHandle<Vec<Vec<u8>>>)
where
    F: Fn(usize, Peer) -> Fut + Send + 'static,
    Fut: Future<Output = Peer> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let handle = tokio::spawn(async move {
        let mut all = Vec::new();
        for i in 0..connections {
            let (tcp, _) = timeout(PEER_LIMIT, listener.accept())
                .await
                .expect("the client connects")
                .expect("accept");
            let peer = Peer {
                io: Io::Plain(tcp),
                buf: Vec::new(),
                received: Vec::new(),
            };
            all.push(script(i, peer).await.received);
        }
        all
    });
    (addr, handle)
}

/// One connection; the handle yields what it received.
pub async fn serve<F, Fut>(script: F) -> (SocketAddr, JoinHandle<Vec<u8>>)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: Future<Output = Peer> + Send,
{
    let script = std::sync::Mutex::new(Some(script));
    let (addr, handle) = serve_many(1, move |_, peer| {
        let script = script
            .lock()
            .expect("not poisoned")
            .take()
            .expect("one connection only");
        script(peer)
    })
    .await;
    let handle = tokio::spawn(async move {
        let mut all = handle.await.expect("fake server did not panic");
        all.pop().expect("one connection")
    });
    (addr, handle)
}

/// A rustls client configuration trusting nothing.
pub fn trust_nothing() -> Arc<rustls::ClientConfig> {
    let config = rustls::ClientConfig::builder_with_provider(postamt_net::tls::crypto_provider())
        .with_protocol_versions(postamt_net::tls::PROTOCOL_VERSIONS)
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    Arc::new(config)
}

/// The client configuration for tests: every timeout `limit`.
pub fn config(limit: Duration, verified_tls: Arc<rustls::ClientConfig>) -> ClientConfig {
    ClientConfig {
        helo_name: "client.example".into(),
        timeouts: Timeouts {
            connect: limit,
            greeting: limit,
            command: limit,
            data_init: limit,
            data_block: limit,
            data_end: limit,
        },
        verified_tls,
    }
}

/// Default test configuration: 5 s timeouts, no trusted roots.
pub fn default_config() -> ClientConfig {
    config(Duration::from_secs(5), trust_nothing())
}
