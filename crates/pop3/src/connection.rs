//! One POP3 connection over a tokio stream: bounded line reading, pipelined
//! commands answered in one flush, idle timeouts, shutdown at a command
//! boundary, message bodies streamed from the stored bytes, and the `STLS`
//! upgrade (buffered plaintext dropped, handshake, same session over TLS).

use crate::backend::Backend;
use crate::dot_stuff::DotStuffed;
use crate::line::LineBuffer;
use crate::response::Reply;
use crate::session::Session;
use crate::starttls::{self, StartTlsError};
use postamt_config::Config;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// RFC 1939 §3: the autologout timer in TRANSACTION is at least 10 minutes.
pub const MIN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest TLS handshake after `STLS` (shorter when the idle timeout is).
pub const MAX_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest input line (AUTH continuation lines included), line end included.
pub const MAX_LINE: usize = 8 * 1024;
const READ_CHUNK: usize = 8 * 1024;
const WRITE_BUFFER: usize = 16 * 1024;
/// Largest single write, so that the write timeout measures progress.
const WRITE_SLICE: usize = 64 * 1024;

pub const MSG_SHUTDOWN: &str = "[SYS/TEMP] server shutting down";

/// Timeouts and limits of a connection.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// Waiting for a command before login.
    pub idle_timeout: Duration,
    /// Waiting for a command after login (at least 10 minutes).
    pub transaction_timeout: Duration,
    /// Longest time a write may make no progress.
    pub write_timeout: Duration,
    /// Longest input line, line end included.
    pub max_line: usize,
    /// Longest TLS handshake after `STLS`.
    pub handshake_timeout: Duration,
}

impl ConnectionLimits {
    pub fn from_config(config: &Config) -> Self {
        let idle = config.limits.idle_timeout.get();
        ConnectionLimits {
            idle_timeout: idle,
            transaction_timeout: idle.max(MIN_TRANSACTION_TIMEOUT),
            write_timeout: idle.max(Duration::from_secs(60)),
            max_line: MAX_LINE,
            handshake_timeout: idle.min(MAX_HANDSHAKE_TIMEOUT),
        }
    }
}

/// Why a connection ended.
#[derive(Debug)]
pub enum End {
    /// The session closed itself (QUIT, too many errors).
    Closed,
    /// The client closed the connection.
    Eof,
    Timeout,
    Shutdown,
    LineTooLong,
    Io(io::Error),
    /// `STLS` was accepted but no TLS session came of it; the connection
    /// is closed without another word (the peer expects TLS now).
    StartTls(StartTlsError),
}

impl End {
    pub fn reason(&self) -> &'static str {
        match self {
            End::Closed => "closed",
            End::Eof => "connection closed by client",
            End::Timeout => "idle timeout",
            End::Shutdown => "server shutdown",
            End::LineTooLong => "line too long",
            End::Io(_) => "I/O error",
            End::StartTls(StartTlsError::Shutdown) => "server shutdown",
            End::StartTls(_) => "TLS handshake failed",
        }
    }
}

/// What the command loop stopped for.
enum Next {
    End(End),
    /// `STLS` was accepted and its reply flushed; every byte read after the
    /// `STLS` line has been dropped.
    StartTls,
}

/// Serves `session` over a plaintext `stream` without `STLS` support (see
/// [`serve_with_tls`]). A session that did not finish with QUIT is aborted:
/// nothing is deleted, the lock is released.
pub async fn serve<S, B>(
    stream: S,
    session: Session<B>,
    limits: &ConnectionLimits,
    shutdown: CancellationToken,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    B: Backend,
{
    serve_with_tls(stream, session, limits, None, shutdown).await
}

/// Serves `session` over `stream` until it ends. When the session accepts
/// `STLS` (its props say `tls_available` and not `secure`; without `tls`,
/// STLS is withdrawn from the session), the plaintext input already
/// buffered is dropped, the handshake runs with `tls` and the same session
/// continues over TLS. A failed handshake ends the connection. A session
/// that did not finish with QUIT is aborted: nothing is deleted, the lock
/// is released.
pub async fn serve_with_tls<S, B>(
    stream: S,
    mut session: Session<B>,
    limits: &ConnectionLimits,
    tls: Option<&TlsAcceptor>,
    shutdown: CancellationToken,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    B: Backend,
{
    if tls.is_none() {
        // Never answer STLS with +OK without the means to follow it.
        session.withdraw_tls();
    }
    info!(peer = %session.peer(), secure = session.props().secure, "session start");
    // Counted as open until this function returns, whatever the path.
    let _open = postamt_metrics::global().session(postamt_metrics::Protocol::Pop3);
    let mut io = BufWriter::with_capacity(WRITE_BUFFER, stream);
    match run(&mut io, &mut session, limits, &shutdown, true).await {
        Next::End(end) => finish(io, &mut session, end, limits).await,
        Next::StartTls => {
            // Flushed by `run`, so nothing is lost with the buffer.
            let raw = io.into_inner();
            match upgrade(raw, &mut session, limits, tls, &shutdown).await {
                Ok(tls_stream) => {
                    let mut io = BufWriter::with_capacity(WRITE_BUFFER, tls_stream);
                    let end = match run(&mut io, &mut session, limits, &shutdown, false).await {
                        Next::End(end) => end,
                        // The session refuses STLS once secure.
                        Next::StartTls => {
                            error!(peer = %session.peer(), "STLS accepted over TLS");
                            End::Closed
                        }
                    };
                    finish(io, &mut session, end, limits).await
                }
                // The peer expects a TLS handshake: no plaintext reply, the
                // raw stream is simply dropped.
                Err(e) => {
                    session.abort("TLS handshake failed");
                    warn!(peer = %session.peer(), error = %e, "session end: STLS failed");
                    End::StartTls(e)
                }
            }
        }
    }
}

/// Ends the session (releasing any mailbox lock first), logs why, and
/// closes the stream.
async fn finish<S, B>(
    mut io: BufWriter<S>,
    session: &mut Session<B>,
    end: End,
    limits: &ConnectionLimits,
) -> End
where
    S: AsyncWrite + Unpin,
    B: Backend,
{
    if !session.is_closed() {
        session.abort(end.reason());
    }
    match &end {
        End::Io(e) => debug!(peer = %session.peer(), error = %e, "session end: I/O error"),
        other => info!(peer = %session.peer(), reason = other.reason(), "session end"),
    }
    // Best effort: the peer may already be gone.
    let _ = tokio::time::timeout(limits.write_timeout, io.shutdown()).await;
    end
}

/// The TLS handshake after an accepted `STLS`; on success the session is
/// told it is secure now.
async fn upgrade<S, B>(
    raw: S,
    session: &mut Session<B>,
    limits: &ConnectionLimits,
    tls: Option<&TlsAcceptor>,
    shutdown: &CancellationToken,
) -> Result<tokio_rustls::server::TlsStream<S>, StartTlsError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    B: Backend,
{
    let acceptor = tls.ok_or(StartTlsError::NoAcceptor)?;
    let metrics = postamt_metrics::global();
    let stream = match starttls::handshake(raw, acceptor, limits.handshake_timeout, shutdown).await
    {
        Ok(stream) => stream,
        Err(e) => {
            if !matches!(e, StartTlsError::Shutdown) {
                metrics.tls_handshake(postamt_metrics::Protocol::Pop3, false);
            }
            return Err(e);
        }
    };
    metrics.tls_handshake(postamt_metrics::Protocol::Pop3, true);
    session.tls_established();
    let (version, cipher) = starttls::describe(&stream);
    info!(peer = %session.peer(), version, cipher, "STLS: TLS established");
    Ok(stream)
}

async fn run<S, B>(
    io: &mut BufWriter<S>,
    session: &mut Session<B>,
    limits: &ConnectionLimits,
    shutdown: &CancellationToken,
    greet: bool,
) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    B: Backend,
{
    let wt = limits.write_timeout;
    if greet && let Err(e) = send(io, &session.greeting(), wt, true).await {
        return Next::End(End::Io(e));
    }
    // Local to this run: whatever it holds is dropped at an STLS upgrade.
    let mut lines = LineBuffer::new(limits.max_line);
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        // Answer every complete line already received before flushing.
        loop {
            let line = match lines.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(_) => {
                    let _ = send(io, &Reply::err("Line too long"), wt, true).await;
                    return Next::End(End::LineTooLong);
                }
            };
            if shutdown.is_cancelled() {
                let _ = send(io, &Reply::err(MSG_SHUTDOWN), wt, true).await;
                return Next::End(End::Shutdown);
            }
            let reply = session.handle_line(&line).await;
            if let Err(e) = send(io, &reply, wt, false).await {
                return Next::End(End::Io(e));
            }
            if session.wants_tls() {
                let discarded = lines.pending();
                if discarded > 0 {
                    warn!(
                        peer = %session.peer(),
                        discarded,
                        "STLS: dropping plaintext pipelined after STLS"
                    );
                }
                return match flush(io, wt).await {
                    Ok(()) => Next::StartTls,
                    Err(e) => Next::End(End::Io(e)),
                };
            }
            if session.is_closed() {
                return Next::End(match flush(io, wt).await {
                    Ok(()) => End::Closed,
                    Err(e) => End::Io(e),
                });
            }
        }
        if let Err(e) = flush(io, wt).await {
            return Next::End(End::Io(e));
        }
        let wait = if session.is_authenticated() {
            limits.transaction_timeout
        } else {
            limits.idle_timeout
        };
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                let _ = send(io, &Reply::err(MSG_SHUTDOWN), wt, true).await;
                return Next::End(End::Shutdown);
            }
            read = tokio::time::timeout(wait, io.read(&mut chunk)) => match read {
                Err(_) => {
                    let _ = send(io, &Reply::err("Idle timeout, closing connection"), wt, true).await;
                    return Next::End(End::Timeout);
                }
                Ok(Ok(0)) => return Next::End(End::Eof),
                Ok(Ok(n)) => lines.extend(&chunk[..n]),
                Ok(Err(e)) => return Next::End(End::Io(e)),
            }
        }
    }
}

/// Writes one reply (streaming a message body piece by piece), flushing
/// when asked. Each write must make progress within `wt`.
async fn send<W>(w: &mut W, reply: &Reply, wt: Duration, and_flush: bool) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    write_timed(w, &reply.head_bytes(), wt).await?;
    if let Some(body) = reply.body() {
        for piece in DotStuffed::new(body) {
            for slice in piece.chunks(WRITE_SLICE) {
                write_timed(w, slice, wt).await?;
            }
        }
    }
    if and_flush {
        flush(w, wt).await?;
    }
    Ok(())
}

async fn write_timed<W: AsyncWrite + Unpin>(
    w: &mut W,
    data: &[u8],
    wt: Duration,
) -> io::Result<()> {
    match tokio::time::timeout(wt, w.write_all(data)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
    }
}

async fn flush<W: AsyncWrite + Unpin>(w: &mut W, wt: Duration) -> io::Result<()> {
    match tokio::time::timeout(wt, w.flush()).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "flush timed out")),
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
