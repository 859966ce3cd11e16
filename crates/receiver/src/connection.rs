//! Tokio I/O for one SMTP connection: bounded line framing, pipelining
//! (every command already buffered is answered before replies are flushed,
//! RFC 2920), body reading without losing pipelined bytes, the idle timeout
//! on every read and write, and shutdown at command boundaries.
//!
//! The protocol itself lives in [`Session`]; this module only moves bytes.
//! STARTTLS ends the plaintext command loop with the stream handed back:
//! its buffers, and with them every byte pipelined after the STARTTLS line,
//! are dropped, the handshake runs on the bare stream, and the loop starts
//! again over TLS with fresh buffers (CVE-2011-0411).

use crate::backend::Backend;
use crate::handshake;
use crate::mode::SessionOptions;
use crate::reply::Reply;
use crate::session::{Next, Session, SessionStats, Step};
use bytes::{Buf, BytesMut};
use postamt_config::Config;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use crate::command::MAX_LINE;
/// How much is read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// Pending replies beyond this are flushed even inside a pipelined batch.
const FLUSH_AT: usize = 16 * 1024;

/// Why a connection ended (for the disconnect log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The client sent QUIT.
    Quit,
    /// We closed after `limits.max_errors` bad commands.
    TooManyErrors,
    /// The client closed the connection.
    ClientClosed,
    /// The idle timeout expired.
    Timeout,
    /// The server is shutting down.
    Shutdown,
    /// A read or write failed.
    Io(String),
    /// The TLS handshake after STARTTLS failed (or timed out).
    TlsHandshake(String),
}

/// How a command loop ended.
enum Flow {
    End(End),
    /// STARTTLS was accepted and its 220 sent: upgrade the stream.
    StartTls,
}

/// Serves one MX connection (no STARTTLS) with `backend` until it ends;
/// returns the session's counters.
pub async fn serve<S, B>(
    stream: S,
    peer: SocketAddr,
    config: Arc<Config>,
    backend: &B,
    shutdown: CancellationToken,
) -> SessionStats
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    B: Backend,
{
    serve_with(
        stream,
        peer,
        config,
        backend,
        SessionOptions::mx(),
        None,
        shutdown,
    )
    .await
}

/// Serves one connection in the mode `options` give, offering STARTTLS
/// with `tls` (when given and TLS is not already active).
pub async fn serve_with<S, B>(
    stream: S,
    peer: SocketAddr,
    config: Arc<Config>,
    backend: &B,
    options: SessionOptions,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) -> SessionStats
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    B: Backend,
{
    info!(%peer, mode = options.mode.name(), tls = options.tls_active, "connect");
    // Counted as open until this function returns, whatever the path.
    let _open = postamt_metrics::global().session(options.mode.metrics_protocol());
    let timeout = config.limits.idle_timeout.get();
    let mut session = Session::with_options(config, peer, options, tls.is_some());
    let mut conn = Connection::new(stream, timeout);
    let end = match run(&mut conn, &mut session, backend, &shutdown, true).await {
        Flow::End(end) => {
            conn.close().await;
            end
        }
        Flow::StartTls => {
            let (stream, discarded) = conn.into_stream();
            if discarded > 0 {
                warn!(%peer, bytes = discarded, "discarded plaintext pipelined after STARTTLS");
            }
            match tls {
                Some(acceptor) => {
                    upgrade(stream, &acceptor, &mut session, backend, &shutdown, timeout).await
                }
                None => End::TlsHandshake("no TLS certificate".into()),
            }
        }
    };
    let stats = session.stats().clone();
    info!(
        %peer,
        helo = session.helo_name().unwrap_or(""),
        user = session.auth_user().unwrap_or(""),
        tls = session.tls_active(),
        end = ?end,
        commands = stats.commands,
        messages = stats.messages,
        rcpt_accepted = stats.recipients_accepted,
        rcpt_rejected = stats.recipients_rejected,
        errors = stats.errors,
        "disconnect"
    );
    stats
}

/// STARTTLS: the handshake on the bare stream, then the command loop over
/// TLS with fresh buffers and a reset session.
async fn upgrade<S, B>(
    stream: S,
    acceptor: &TlsAcceptor,
    session: &mut Session,
    backend: &B,
    shutdown: &CancellationToken,
    timeout: Duration,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    B: Backend,
{
    let peer = session.peer();
    let proto = session.mode().metrics_protocol();
    let tls = match handshake::accept(acceptor, stream, timeout, shutdown).await {
        Ok(tls) => tls,
        Err(handshake::HandshakeError::Shutdown) => return End::Shutdown,
        Err(e) => {
            postamt_metrics::global().tls_handshake(proto, false);
            warn!(%peer, error = %e, "STARTTLS handshake failed, closing");
            return End::TlsHandshake(e.to_string());
        }
    };
    postamt_metrics::global().tls_handshake(proto, true);
    let (version, cipher) = handshake::describe(&tls);
    info!(%peer, %version, %cipher, "STARTTLS");
    session.tls_started();
    let mut conn = Connection::new(tls, timeout);
    let end = match run(&mut conn, session, backend, shutdown, false).await {
        Flow::End(end) => end,
        // The session refuses STARTTLS once TLS is active.
        Flow::StartTls => End::Io("STARTTLS inside TLS".into()),
    };
    conn.close().await;
    end
}

/// The command loop; `greet` sends the 220 first (not after STARTTLS).
async fn run<S, B>(
    conn: &mut Connection<S>,
    session: &mut Session,
    backend: &B,
    shutdown: &CancellationToken,
    greet: bool,
) -> Flow
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    B: Backend,
{
    if shutdown.is_cancelled() {
        conn.queue(&session.shutdown_reply());
        return Flow::End(End::Shutdown);
    }
    if greet {
        conn.queue(&session.greeting());
    }
    loop {
        match conn.next_line(|start| session.line_limit(start)) {
            LineEvent::Line(line) => {
                if shutdown.is_cancelled() {
                    conn.queue(&session.shutdown_reply());
                    return Flow::End(End::Shutdown);
                }
                let step = session.command(&line, backend).await;
                drop(line);
                if let Some(end) = apply(conn, session, backend, step).await {
                    return end;
                }
            }
            LineEvent::TooLong => {
                debug!(peer = %session.peer(), "command line too long");
                let step = session.line_too_long();
                if let Some(end) = apply(conn, session, backend, step).await {
                    return end;
                }
            }
            LineEvent::NeedMore => {
                if let Err(e) = conn.flush().await {
                    return Flow::End(End::Io(e.to_string()));
                }
                let read = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => None,
                    r = conn.read_more() => Some(r),
                };
                match read {
                    None => {
                        conn.queue(&session.shutdown_reply());
                        return Flow::End(End::Shutdown);
                    }
                    Some(ReadOutcome::Data) => {}
                    Some(ReadOutcome::Eof) => return Flow::End(End::ClientClosed),
                    Some(ReadOutcome::Timeout) => {
                        conn.queue(&session.timeout_reply());
                        return Flow::End(End::Timeout);
                    }
                    Some(ReadOutcome::Error(e)) => return Flow::End(End::Io(e.to_string())),
                }
            }
        }
    }
}

/// Queues a step's replies and follows it: reads a body (then the step
/// after it), ends the connection, or stops for STARTTLS (after sending
/// the 220). `Some(flow)` when the command loop must stop.
async fn apply<S, B>(
    conn: &mut Connection<S>,
    session: &mut Session,
    backend: &B,
    mut step: Step,
) -> Option<Flow>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    B: Backend,
{
    loop {
        for r in &step.replies {
            conn.queue(r);
        }
        if conn.pending() > FLUSH_AT
            && let Err(e) = conn.flush().await
        {
            return Some(Flow::End(End::Io(e.to_string())));
        }
        match step.next {
            Next::Command => return None,
            Next::Close => {
                return Some(Flow::End(match step.replies.last() {
                    Some(Reply { code: 221, .. }) => End::Quit,
                    _ => End::TooManyErrors,
                }));
            }
            Next::StartTls => {
                // The client waits for this 220 before its ClientHello.
                return Some(match conn.flush().await {
                    Ok(()) => Flow::StartTls,
                    Err(e) => Flow::End(End::Io(e.to_string())),
                });
            }
            Next::Body => {
                if let Err(end) = read_body(conn, session).await {
                    return Some(Flow::End(end));
                }
                step = session.finish_body(backend).await;
            }
        }
    }
}

/// Feeds body bytes to the session until the body is complete. Shutdown
/// does not interrupt a body; the idle timeout bounds it.
async fn read_body<S>(conn: &mut Connection<S>, session: &mut Session) -> Result<(), End>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    loop {
        let progress = session.feed_body(&conn.rbuf);
        conn.rbuf.advance(progress.consumed);
        if progress.complete {
            return Ok(());
        }
        // Everything buffered was body: let the client see the 354 (or
        // earlier replies) before waiting for more.
        conn.flush().await.map_err(|e| End::Io(e.to_string()))?;
        match conn.read_more().await {
            ReadOutcome::Data => {}
            ReadOutcome::Eof => return Err(End::ClientClosed),
            ReadOutcome::Timeout => {
                conn.queue(&session.timeout_reply());
                return Err(End::Timeout);
            }
            ReadOutcome::Error(e) => return Err(End::Io(e.to_string())),
        }
    }
}

/// What the line framer found in the buffer.
enum LineEvent {
    /// A complete command line, LF included.
    Line(BytesMut),
    /// A line over [`MAX_LINE`] was dropped (the rest of it, up to the next
    /// LF, will be dropped silently).
    TooLong,
    /// No complete line buffered.
    NeedMore,
}

enum ReadOutcome {
    Data,
    Eof,
    Timeout,
    Error(io::Error),
}

/// The stream with its read and write buffers.
struct Connection<S> {
    stream: S,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    timeout: Duration,
    /// Dropping the tail of an over-long line until its LF.
    resync: bool,
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn new(stream: S, timeout: Duration) -> Connection<S> {
        Connection {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: Vec::with_capacity(1024),
            timeout,
            resync: false,
        }
    }

    /// The next command line from the buffer, bounded by `limit_for` (given
    /// the start of the buffered line: [`MAX_LINE`], longer for AUTH).
    fn next_line(&mut self, limit_for: impl Fn(&[u8]) -> usize) -> LineEvent {
        loop {
            let limit = limit_for(&self.rbuf);
            match memchr::memchr(b'\n', &self.rbuf) {
                Some(pos) if self.resync => {
                    self.rbuf.advance(pos + 1);
                    self.resync = false;
                }
                Some(pos) if pos + 1 > limit => {
                    self.rbuf.advance(pos + 1);
                    return LineEvent::TooLong;
                }
                Some(pos) => return LineEvent::Line(self.rbuf.split_to(pos + 1)),
                None if self.resync => {
                    self.rbuf.clear();
                    return LineEvent::NeedMore;
                }
                None if self.rbuf.len() >= limit => {
                    self.rbuf.clear();
                    self.resync = true;
                    return LineEvent::TooLong;
                }
                None => return LineEvent::NeedMore,
            }
        }
    }

    /// Reads more bytes into the buffer, within the idle timeout.
    async fn read_more(&mut self) -> ReadOutcome {
        self.rbuf.reserve(READ_CHUNK);
        match tokio::time::timeout(self.timeout, self.stream.read_buf(&mut self.rbuf)).await {
            Err(_) => ReadOutcome::Timeout,
            Ok(Ok(0)) => ReadOutcome::Eof,
            Ok(Ok(_)) => ReadOutcome::Data,
            Ok(Err(e)) => ReadOutcome::Error(e),
        }
    }

    fn queue(&mut self, r: &Reply) {
        r.write_to(&mut self.wbuf);
    }

    fn pending(&self) -> usize {
        self.wbuf.len()
    }

    /// Writes the pending replies, within the idle timeout.
    async fn flush(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let write = async {
            self.stream.write_all(&self.wbuf).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Ok(result) => result?,
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
        }
        self.wbuf.clear();
        Ok(())
    }

    /// The bare stream, for the TLS handshake, and how many buffered input
    /// bytes were dropped with the buffers. Replies must be flushed first.
    fn into_stream(self) -> (S, usize) {
        debug_assert!(self.wbuf.is_empty(), "replies flushed before STARTTLS");
        (self.stream, self.rbuf.len())
    }

    /// Sends what is pending and closes the write side.
    async fn close(&mut self) {
        if let Err(e) = self.flush().await {
            debug!(error = %e, "final flush failed");
        }
        let _ = tokio::time::timeout(self.timeout, self.stream.shutdown()).await;
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tls_tests;

#[cfg(test)]
mod sender_auth_tests;
