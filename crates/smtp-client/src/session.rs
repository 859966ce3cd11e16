//! Command/reply I/O on one stream with a timeout per step: writing command
//! lines and data, reading bounded replies, upgrading to TLS. Knows nothing
//! about the order of SMTP commands (that is [`crate::connection`]).

use crate::reply::ReplyBuffer;
use crate::stream::SmtpStream;
use crate::{ClientError, Reply};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The stage names carried by [`ClientError::Timeout`], [`ClientError::Io`]
/// and [`ClientError::Reply`], for callers that branch on them (e.g. a
/// reply at [`stage::GREETING`] refuses service on this host only; try the
/// next MX).
pub mod stage {
    pub const CONNECT: &str = "connecting";
    pub const GREETING: &str = "greeting";
    pub const EHLO: &str = "EHLO";
    pub const HELO: &str = "HELO";
    pub const STARTTLS: &str = "STARTTLS";
    pub const TLS_HANDSHAKE: &str = "TLS handshake";
    pub const AUTH: &str = "AUTH";
    pub const MAIL: &str = "MAIL FROM";
    pub const RCPT: &str = "RCPT TO";
    pub const DATA: &str = "DATA";
    pub const DATA_BLOCK: &str = "sending the message";
    pub const DATA_END: &str = "end of data";
    pub const RSET: &str = "RSET";
    pub const QUIT: &str = "QUIT";
}

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 8 * 1024;

/// Why a TLS upgrade failed (the caller maps it per TLS policy).
#[derive(Debug)]
pub(crate) enum TlsFailure {
    /// Bytes followed the STARTTLS reply before the handshake: they could
    /// be injected commands (CVE-2011-0411 style) and are not trusted.
    Pipelined,
    Timeout,
    Handshake(String),
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsFailure::Pipelined => {
                f.write_str("the server sent data right after its STARTTLS reply")
            }
            TlsFailure::Timeout => f.write_str("the TLS handshake timed out"),
            TlsFailure::Handshake(e) => f.write_str(e),
        }
    }
}

/// TLS handshake over `tcp` within `limit`.
pub(crate) async fn handshake(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
    limit: Duration,
) -> Result<TlsStream<TcpStream>, TlsFailure> {
    match timeout(limit, TlsConnector::from(config).connect(name, tcp)).await {
        Err(_) => Err(TlsFailure::Timeout),
        Ok(Err(e)) => Err(TlsFailure::Handshake(e.to_string())),
        Ok(Ok(s)) => Ok(s),
    }
}

/// One SMTP byte stream with its unread replies.
#[derive(Debug)]
pub(crate) struct Session {
    stream: SmtpStream,
    replies: ReplyBuffer,
    peer: SocketAddr,
    read_buf: Box<[u8]>,
    /// The server said 421 (closing): the connection cannot be reused.
    pub(crate) closing: bool,
}

impl Session {
    pub(crate) fn new(stream: SmtpStream, peer: SocketAddr) -> Session {
        Session {
            stream,
            replies: ReplyBuffer::new(),
            peer,
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            closing: false,
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Writes and flushes `bytes` within `limit`.
    pub(crate) async fn write(
        &mut self,
        bytes: &[u8],
        limit: Duration,
        stage: &'static str,
    ) -> Result<(), ClientError> {
        let stream = &mut self.stream;
        let io = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        match timeout(limit, io).await {
            Err(_) => Err(ClientError::Timeout(stage)),
            Ok(Err(e)) => Err(ClientError::Io(stage, e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Reads the next complete reply within `limit` (for the whole reply,
    /// so a server dripping bytes cannot stretch it).
    pub(crate) async fn read_reply(
        &mut self,
        limit: Duration,
        stage: &'static str,
    ) -> Result<Reply, ClientError> {
        let Session {
            stream,
            replies,
            read_buf,
            ..
        } = self;
        let read = async {
            loop {
                match replies.next_reply() {
                    Ok(Some(reply)) => return Ok(reply),
                    Ok(None) => {}
                    Err(e) => return Err(ClientError::Protocol(format!("{stage}: {e}"))),
                }
                let n = stream
                    .read(read_buf)
                    .await
                    .map_err(|e| ClientError::Io(stage, e))?;
                if n == 0 {
                    return Err(ClientError::Io(
                        stage,
                        std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the server closed the connection",
                        ),
                    ));
                }
                replies.feed(&read_buf[..n]);
            }
        };
        let reply = match timeout(limit, read).await {
            Err(_) => Err(ClientError::Timeout(stage)),
            Ok(r) => r,
        }?;
        tracing::debug!(peer = %self.peer, stage, code = reply.code, reply = %reply, "SMTP reply");
        if reply.code == 421 {
            self.closing = true;
        }
        Ok(reply)
    }

    /// Sends one command line and reads its reply.
    pub(crate) async fn command(
        &mut self,
        line: &str,
        limit: Duration,
        stage: &'static str,
    ) -> Result<Reply, ClientError> {
        tracing::debug!(peer = %self.peer, command = line, "SMTP command");
        self.secret_command(line, limit, stage).await
    }

    /// Like [`Session::command`], without logging the line (credentials).
    pub(crate) async fn secret_command(
        &mut self,
        line: &str,
        limit: Duration,
        stage: &'static str,
    ) -> Result<Reply, ClientError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.write(&bytes, limit, stage).await?;
        self.read_reply(limit, stage).await
    }

    /// Upgrades to TLS after the server's 220 to STARTTLS. Unread bytes at
    /// this point are refused.
    pub(crate) async fn start_tls(
        self,
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
        limit: Duration,
    ) -> Result<Session, TlsFailure> {
        if self.replies.has_pending() {
            return Err(TlsFailure::Pipelined);
        }
        let tcp = match self.stream {
            SmtpStream::Plain(tcp) => tcp,
            SmtpStream::Tls(_) => {
                return Err(TlsFailure::Handshake(
                    "the session is already encrypted".into(),
                ));
            }
        };
        let tls = handshake(tcp, config, name, limit).await?;
        Ok(Session::new(SmtpStream::Tls(Box::new(tls)), self.peer))
    }

    /// The TLS stream, when encrypted (for session details).
    pub(crate) fn tls_stream(&self) -> Option<&TlsStream<TcpStream>> {
        match &self.stream {
            SmtpStream::Tls(s) => Some(s),
            SmtpStream::Plain(_) => None,
        }
    }

    /// Closes the stream (TLS close_notify first), within `limit`.
    pub(crate) async fn shutdown(&mut self, limit: Duration) {
        let _ = timeout(limit, self.stream.shutdown()).await;
    }
}
