//! One IMAP connection over a tokio stream: framing with bounded lines and
//! literals ([`Framer`]), continuation requests for synchronising
//! literals, pipelined commands answered before one flush, a command rate
//! limit, the IDLE wait (the folder's change signal polled every 200 ms,
//! a full refresh every few seconds), timeouts (`[limits] idle_timeout`
//! before login, 30 minutes after, RFC 9051 5.4), `* BYE` at shutdown,
//! and the STARTTLS upgrade (buffered plaintext dropped, handshake, the
//! same session over TLS).

use crate::backend::Backend;
use crate::framer::{Event, Framer};
use crate::response;
use crate::session::{Session, Sink};
use crate::starttls::{self, StartTlsError};
use postamt_config::Config;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::limits as bounds;

/// Timeout after login (RFC 9051 5.4: at least 30 minutes).
pub const AUTHENTICATED_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Longest TLS handshake after STARTTLS (shorter when the idle timeout is).
pub const MAX_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often IDLE looks at the folder's change signal.
pub const IDLE_POLL: Duration = Duration::from_millis(200);
/// How often IDLE refreshes anyway (changes made by other processes).
pub const IDLE_FULL_REFRESH: Duration = Duration::from_secs(5);
/// Commands per second a connection may send in the long run...
pub const COMMAND_RATE: f64 = 500.0;
/// ...and in a burst.
pub const COMMAND_BURST: f64 = 2000.0;
const READ_CHUNK: usize = 8 * 1024;
const WRITE_BUFFER: usize = 8 * 1024;

pub const MSG_SHUTDOWN: &str = "Server shutting down";

/// Timeouts and limits of a connection.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// Waiting for a command before login.
    pub idle_timeout: Duration,
    /// Waiting for a command (or DONE) after login.
    pub authenticated_timeout: Duration,
    /// Longest time a write may make no progress.
    pub write_timeout: Duration,
    pub handshake_timeout: Duration,
    pub max_line: usize,
    /// Largest literal before login.
    pub max_preauth_literal: u64,
    /// Largest message (APPEND) after login.
    pub max_message_size: u64,
}

impl ConnectionLimits {
    pub fn from_config(config: &Config) -> Self {
        let idle = config.limits.idle_timeout.get();
        ConnectionLimits {
            idle_timeout: idle,
            authenticated_timeout: AUTHENTICATED_TIMEOUT,
            write_timeout: idle.max(Duration::from_secs(60)),
            handshake_timeout: idle.min(MAX_HANDSHAKE_TIMEOUT),
            max_line: bounds::MAX_LINE_LEN,
            max_preauth_literal: u64::from(bounds::MAX_LITERAL_BEFORE_AUTH),
            max_message_size: config.limits.max_message_size,
        }
    }

    /// The framer's capacity: a whole command (lines and literals) in
    /// the given state ([`bounds::max_command_size`]).
    fn framer_capacity(&self, authenticated: bool) -> u32 {
        bounds::max_command_size(authenticated, self.max_message_size)
    }
}

/// Why a connection ended.
#[derive(Debug)]
pub enum End {
    /// The session closed itself (LOGOUT, too many errors...).
    Closed,
    Eof,
    Timeout,
    Shutdown,
    LineTooLong,
    LiteralTooLarge,
    Io(io::Error),
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
            End::LiteralTooLarge => "literal too large",
            End::Io(_) => "I/O error",
            End::StartTls(StartTlsError::Shutdown) => "server shutdown",
            End::StartTls(_) => "TLS handshake failed",
        }
    }
}

enum Next {
    End(End),
    StartTls,
}

/// The session's responses go out through the buffered stream, each write
/// bounded by the write timeout.
struct Out<'a, S> {
    io: &'a mut BufWriter<S>,
    wt: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Sink for Out<'_, S> {
    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        // Large responses go out in slices so the timeout measures progress.
        for slice in bytes.chunks(64 * 1024) {
            match tokio::time::timeout(self.wt, self.io.write_all(slice)).await {
                Ok(r) => r?,
                Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
            }
        }
        Ok(())
    }
}

impl<S: AsyncWrite + Unpin> Out<'_, S> {
    async fn flush(&mut self) -> io::Result<()> {
        match tokio::time::timeout(self.wt, self.io.flush()).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "flush timed out")),
        }
    }
}

/// A token bucket for the command rate (pure arithmetic; the caller sleeps).
#[derive(Clone, Debug)]
pub struct RateLimit {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl RateLimit {
    pub fn new(rate: f64, burst: f64, now: Instant) -> RateLimit {
        RateLimit {
            tokens: burst,
            rate,
            burst,
            last: now,
        }
    }

    /// Takes one token at `now`; returns how long to wait first.
    pub fn take(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// Serves `session` over `stream` until it ends; STARTTLS upgrades in
/// place with `tls` (without it, STARTTLS is withdrawn).
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
        session.withdraw_tls();
    }
    info!(peer = %session.peer(), secure = session.props().secure, "session start");
    // Counted as open until this function returns, whatever the path.
    let _open = postamt_metrics::global().session(postamt_metrics::Protocol::Imap);
    let mut io = BufWriter::with_capacity(WRITE_BUFFER, stream);
    match run(&mut io, &mut session, limits, &shutdown, true).await {
        Next::End(end) => finish(io, &mut session, end, limits).await,
        Next::StartTls => {
            let raw = io.into_inner();
            match upgrade(raw, &mut session, limits, tls, &shutdown).await {
                Ok(tls_stream) => {
                    let mut io = BufWriter::with_capacity(WRITE_BUFFER, tls_stream);
                    let end = match run(&mut io, &mut session, limits, &shutdown, false).await {
                        Next::End(end) => end,
                        Next::StartTls => {
                            error!(peer = %session.peer(), "STARTTLS accepted over TLS");
                            End::Closed
                        }
                    };
                    finish(io, &mut session, end, limits).await
                }
                Err(e) => {
                    session.abort("TLS handshake failed");
                    warn!(peer = %session.peer(), error = %e, "session end: STARTTLS failed");
                    End::StartTls(e)
                }
            }
        }
    }
}

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
    let user = session.user().map(str::to_owned);
    session.abort(end.reason());
    match &end {
        End::Io(e) => {
            debug!(peer = %session.peer(), user = user.as_deref(), error = %e, "session end: I/O error")
        }
        other => {
            info!(peer = %session.peer(), user = user.as_deref(), reason = other.reason(), "session end")
        }
    }
    let _ = tokio::time::timeout(limits.write_timeout, io.shutdown()).await;
    end
}

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
    let done = starttls::handshake(raw, acceptor, limits.handshake_timeout, shutdown).await;
    if !matches!(done, Err(StartTlsError::Shutdown)) {
        postamt_metrics::global().tls_handshake(postamt_metrics::Protocol::Imap, done.is_ok());
    }
    let stream = done?;
    session.tls_established();
    let (version, cipher) = starttls::describe(&stream);
    info!(peer = %session.peer(), version, cipher, "STARTTLS: TLS established");
    Ok(stream)
}

/// Sends `bytes` and flushes, best effort (the connection is ending).
async fn last_words<S: AsyncRead + AsyncWrite + Unpin + Send>(out: &mut Out<'_, S>, bytes: &[u8]) {
    if out.send(bytes).await.is_ok() {
        let _ = out.flush().await;
    }
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
    let mut out = Out { io, wt };
    if greet {
        let g = session.greeting();
        if let Err(e) = out.send(&g).await {
            return Next::End(End::Io(e));
        }
        if let Err(e) = out.flush().await {
            return Next::End(End::Io(e));
        }
    }
    // Local to this run: whatever it holds is dropped at a STARTTLS upgrade.
    let mut framer = Framer::new(
        limits.framer_capacity(session.is_authenticated()),
        limits.max_line,
    );
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut rate = RateLimit::new(COMMAND_RATE, COMMAND_BURST, Instant::now());
    let mut last_input = Instant::now();
    let mut last_full_refresh = Instant::now();
    loop {
        loop {
            match framer.poll() {
                Event::NeedMore => break,
                Event::TooLong => {
                    warn!(peer = %session.peer(), user = session.user(), "input line too long, closing");
                    last_words(&mut out, &response::bye("Input line too long")).await;
                    return Next::End(End::LineTooLong);
                }
                Event::Literal {
                    length,
                    sync,
                    so_far,
                } => {
                    let authed = session.is_authenticated();
                    let limit = if authed {
                        u64::from(bounds::max_literal_after_auth(limits.max_message_size))
                    } else {
                        limits.max_preauth_literal
                    };
                    let total = u64::from(limits.framer_capacity(authed));
                    let fits = u64::from(length) <= limit
                        && (so_far as u64).saturating_add(u64::from(length)) <= total;
                    if fits {
                        if sync {
                            let r = out
                                .send(&response::continuation("Ready for literal data"))
                                .await;
                            if let Err(e) = r.and(out.flush().await) {
                                return Next::End(End::Io(e));
                            }
                        }
                        continue;
                    }
                    warn!(peer = %session.peer(), user = session.user(), length, "literal too large");
                    if sync && session.is_authenticated() {
                        // The client waits for `+`: refuse just this command.
                        let tag = framer.tag().unwrap_or_else(|| "*".to_string());
                        framer.skip();
                        let no = response::tagged(
                            &tag,
                            response::Status::No,
                            Some("TOOBIG"),
                            "Literal too large",
                        );
                        if let Err(e) = out.send(&no).await {
                            return Next::End(End::Io(e));
                        }
                        continue;
                    }
                    last_words(
                        &mut out,
                        &response::bye_with(Some("TOOBIG"), "Literal too large"),
                    )
                    .await;
                    return Next::End(End::LiteralTooLarge);
                }
                Event::Message => {
                    if shutdown.is_cancelled() {
                        last_words(&mut out, &response::bye(MSG_SHUTDOWN)).await;
                        return Next::End(End::Shutdown);
                    }
                    let wait = rate.take(Instant::now());
                    if !wait.is_zero() {
                        let _ = out.flush().await;
                        tokio::time::sleep(wait).await;
                    }
                    let result = session.handle_message(framer.message(), &mut out).await;
                    framer.finish_with_capacity(limits.framer_capacity(session.is_authenticated()));
                    if let Err(e) = result {
                        return Next::End(End::Io(e));
                    }
                    if session.wants_tls() {
                        let discarded = framer.pending();
                        if discarded > 0 {
                            warn!(peer = %session.peer(), discarded, "STARTTLS: dropping plaintext pipelined after STARTTLS");
                        }
                        return match out.flush().await {
                            Ok(()) => Next::StartTls,
                            Err(e) => Next::End(End::Io(e)),
                        };
                    }
                    if session.is_closed() {
                        return Next::End(match out.flush().await {
                            Ok(()) => End::Closed,
                            Err(e) => End::Io(e),
                        });
                    }
                    if session.is_idling() {
                        last_full_refresh = Instant::now();
                    }
                }
            }
        }
        if let Err(e) = out.flush().await {
            return Next::End(End::Io(e));
        }
        let timeout = if session.is_authenticated() {
            limits.authenticated_timeout
        } else {
            limits.idle_timeout
        };
        let deadline = last_input + timeout;
        let idling = session.is_idling();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                session.end_idle();
                last_words(&mut out, &response::bye(MSG_SHUTDOWN)).await;
                return Next::End(End::Shutdown);
            }
            _ = tokio::time::sleep(IDLE_POLL), if idling => {
                let force = last_full_refresh.elapsed() >= IDLE_FULL_REFRESH;
                if force {
                    last_full_refresh = Instant::now();
                }
                if let Err(e) = session.idle_poll(&mut out, force).await {
                    return Next::End(End::Io(e));
                }
                if session.is_closed() {
                    let _ = out.flush().await;
                    return Next::End(End::Closed);
                }
                if Instant::now() >= deadline {
                    session.end_idle();
                    last_words(&mut out, &response::bye("Idle timeout")).await;
                    return Next::End(End::Timeout);
                }
            }
            read = tokio::time::timeout_at(deadline, out.io.read(&mut chunk)) => match read {
                Err(_) => {
                    session.end_idle();
                    last_words(&mut out, &response::bye("Idle timeout, closing connection")).await;
                    return Next::End(End::Timeout);
                }
                Ok(Ok(0)) => return Next::End(End::Eof),
                Ok(Ok(n)) => {
                    last_input = Instant::now();
                    framer.feed(&chunk[..n]);
                }
                Ok(Err(e)) => return Next::End(End::Io(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests;
