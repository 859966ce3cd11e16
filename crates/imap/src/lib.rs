//! The IMAP server (IMAP4rev1, RFC 3501, with IDLE, UIDPLUS, MOVE,
//! NAMESPACE, ID, ENABLE, LITERAL+ (which covers LITERAL-), UNSELECT,
//! CHILDREN, SPECIAL-USE, LIST-EXTENDED/LIST-STATUS, SASL-IR,
//! CONDSTORE/QRESYNC, ESEARCH, STATUS=SIZE and UTF8=ACCEPT; IMAP4rev2 is
//! not announced) over the local store's folders.
//!
//! The path of a command: the connection reads a bounded command with its
//! literals (imap-codec's fragmentizer), the session state machine
//! (not authenticated / authenticated / selected / logout) runs it against
//! the store, [`fetch`] renders FETCH items from the index records (and the
//! message file only when a body section is asked for), [`search`]
//! evaluates SEARCH keys.
//!
//! Modules: [`connection`] (I/O, IDLE wait, STARTTLS), [`framer`]
//! (commands with literals, bounded by [`limits`]), [`session`] (the state
//! machine), [`view`] (sequence numbers), [`backend`] (directory and store
//! behind traits), [`names`] (modified UTF-7, refused names), [`pattern`]
//! (LIST wildcards), [`extended`] (ESEARCH and LIST-EXTENDED syntax),
//! [`capability`], [`response`], [`sasl`], [`starttls`].

pub mod backend;
pub mod capability;
pub mod connection;
pub mod extended;
pub mod fetch;
pub mod framer;
pub mod limits;
pub mod names;
pub mod pattern;
pub mod response;
pub mod sasl;
pub mod search;
pub mod session;
pub mod starttls;
pub mod view;

#[cfg(test)]
pub(crate) mod fake;

pub use backend::{Backend, MailAccount, MailFolder, StoreBackend};
pub use connection::{ConnectionLimits, End};
pub use session::{Session, SessionLimits, Sink};

use postamt_config::Config;
use postamt_directory::auth::Authenticator;
use postamt_net::tls::TlsProvider;
use postamt_store::MailStore;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// Everything a session needs, shared by all sessions.
pub struct ImapContext {
    pub config: Arc<Config>,
    pub auth: Arc<Authenticator>,
    pub store: Arc<MailStore>,
    /// Certificates for `STARTTLS` (and for the imaps listener, whose
    /// handshake the caller runs). `None`: no STARTTLS is offered.
    pub tls: Option<Arc<TlsProvider>>,
}

/// Properties of one connection, fixed at accept time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionProps {
    /// The stream is already TLS (imaps).
    pub secure: bool,
    /// The peer is a loopback address (plaintext login allowed).
    pub loopback: bool,
    /// STARTTLS may be offered (cleared when the context has no TLS).
    pub tls_available: bool,
}

/// Serves one IMAP connection until LOGOUT, timeout or shutdown (on
/// shutdown: `* BYE` and close).
pub async fn handle_connection_with<S>(
    stream: S,
    peer: SocketAddr,
    ctx: Arc<ImapContext>,
    props: SessionProps,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut props = props;
    let acceptor = match &ctx.tls {
        Some(tls) if props.tls_available && !props.secure => Some(tls.acceptor()),
        _ => None,
    };
    props.tls_available = acceptor.is_some();
    let limits = ConnectionLimits::from_config(&ctx.config);
    let session_limits = SessionLimits {
        max_errors: ctx.config.limits.max_errors,
        max_message_size: ctx.config.limits.max_message_size,
        ..SessionLimits::default()
    };
    let backend = StoreBackend {
        ctx: ctx.clone(),
        ip: peer.ip(),
    };
    let session = Session::new(backend, props, peer.to_string(), session_limits);
    connection::serve_with_tls(stream, session, &limits, acceptor.as_ref(), shutdown).await;
}

/// Like [`handle_connection_with`] for a plaintext connection whose
/// properties follow from the peer address: plaintext logins from
/// loopback, STARTTLS when `ctx.tls` is set.
pub async fn handle_connection<S>(
    stream: S,
    peer: SocketAddr,
    ctx: Arc<ImapContext>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let props = SessionProps {
        secure: false,
        loopback: peer.ip().to_canonical().is_loopback(),
        tls_available: ctx.tls.is_some(),
    };
    handle_connection_with(stream, peer, ctx, props, shutdown).await;
}
