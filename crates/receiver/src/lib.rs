//! The SMTP receiver (RFC 5321): MX and submission sessions that check the
//! envelope, read the message within limits and hand it to the spool. It
//! answers 250 to DATA/BDAT LAST only after the spool has the message fsynced.
//! STARTTLS (RFC 3207) on both; SMTP AUTH (RFC 4954) and the submission rules
//! (RFC 6409) on the submission ports only; the MX port never relays.
//!
//! Layout: [`session`] is the protocol state machine (no I/O), [`mode`] the
//! per-port options, [`sasl`] the AUTH exchanges, [`reply`] the reply texts,
//! [`data`] the DATA/BDAT body decoders, [`received`] the trace header and
//! hop count, [`authres`] the inbound sender checks' headers (RFC 8601),
//! [`header_edit`] the in-place header rewrite, [`address`] small envelope
//! checks, [`recipient`] the directory's verdict on a recipient (lists,
//! SRS bounces), [`command`] raw
//! command-line parsing smtp-proto gets wrong, [`backend`] the storage seam
//! (directory + authenticator + spool), [`handshake`] the TLS upgrade, and
//! [`connection`] the tokio I/O.

pub mod address;
pub mod authres;
pub mod backend;
pub mod command;
pub mod connection;
pub mod data;
pub mod handshake;
pub mod header_edit;
pub mod mode;
pub mod received;
pub mod recipient;
pub mod reply;
pub mod sasl;
pub mod session;

#[cfg(test)]
mod testing;

#[cfg(test)]
mod context_tests;

pub use backend::{Backend, ContextBackend, EnqueueError, RcptVerdict, SenderCheck, SenderVerdict};
pub use mode::{Mode, SessionOptions};
pub use session::{Session, SessionStats};

use postamt_config::Config;
use postamt_directory::Directory;
use postamt_directory::auth::Authenticator;
use postamt_net::tls::TlsProvider;
use postamt_sender_auth::SenderVerifier;
use postamt_spool::Spool;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// Everything a session needs, shared by all sessions.
pub struct ReceiverContext {
    pub config: Arc<Config>,
    pub directory: Arc<Directory>,
    pub spool: Arc<Spool>,
    /// Certificates for STARTTLS; `None` = STARTTLS is not offered.
    pub tls: Option<Arc<TlsProvider>>,
    /// Login checks for SMTP AUTH (shared with POP3/IMAP: one set of
    /// failure counters and one credential cache per server).
    pub auth: Arc<Authenticator>,
    /// Inbound SPF/DKIM/DMARC checks on the MX port (`Authentication-Results`
    /// and the DMARC action); `None` = off (`[sender_auth] verify = false`).
    /// Submission mail (authenticated users) is never checked.
    pub sender_auth: Option<Arc<SenderVerifier>>,
    /// The Sender Rewriting Scheme key: with it, a bounce to one of our
    /// `SRS0=`/`SRS1=` addresses is accepted at RCPT when its hash and age
    /// check out, refused (`550 5.1.1`) when not. `None` = SRS addresses
    /// are looked up like any other.
    pub srs: Option<Arc<postamt_srs::Srs>>,
}

/// Serves one connection on the MX port (plaintext start, STARTTLS when
/// `ctx.tls` is set) until QUIT, error limit, timeout or shutdown (on
/// shutdown: `421 4.3.2` at the next command boundary).
pub async fn handle_connection<S>(
    stream: S,
    peer: SocketAddr,
    ctx: Arc<ReceiverContext>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    handle_connection_with(stream, peer, ctx, SessionOptions::mx(), shutdown).await;
}

/// Serves one connection as `options` say: [`SessionOptions::mx`] (port
/// 25), [`SessionOptions::submission`] (587) or
/// [`SessionOptions::submissions`] (465, `stream` being the TLS stream the
/// caller has already accepted).
pub async fn handle_connection_with<S>(
    stream: S,
    peer: SocketAddr,
    ctx: Arc<ReceiverContext>,
    options: SessionOptions,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let config = Arc::clone(&ctx.config);
    let acceptor = ctx.tls.as_ref().map(|p| p.acceptor());
    let backend = ContextBackend::new(ctx);
    connection::serve_with(stream, peer, config, &backend, options, acceptor, shutdown).await;
}
