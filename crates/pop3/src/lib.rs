//! The POP3 server (RFC 1939, 2449, 5034) over the local store.
//!
//! The path of a command: [`connection`] reads a bounded line ([`line`]),
//! [`session`] parses it ([`command`]) and runs the AUTHORIZATION /
//! TRANSACTION / UPDATE state machine against a [`backend`] (the directory's
//! authenticator and the store, or fakes in tests), and the [`response`] goes
//! back, message bodies dot-stuffed on the fly ([`dot_stuff`]). `STLS`
//! upgrades a plaintext connection in place ([`starttls`]); on the implicit
//! TLS port (pop3s) the caller runs the handshake and hands over the TLS
//! stream with [`handle_connection_with`].

pub mod backend;
pub mod capability;
pub mod command;
pub mod connection;
pub mod dot_stuff;
pub mod line;
pub mod response;
pub mod sasl;
pub mod session;
pub mod starttls;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod service_tests;

use postamt_config::Config;
use postamt_directory::auth::Authenticator;
use postamt_net::tls::TlsProvider;
use postamt_store::MailStore;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

pub use backend::{Backend, Mailbox, StoreBackend};
pub use capability::SessionProps;
pub use connection::{ConnectionLimits, End};
pub use session::Session;
pub use starttls::StartTlsError;

/// Everything a session needs, shared by all sessions.
pub struct Pop3Context {
    pub config: Arc<Config>,
    pub auth: Arc<Authenticator>,
    pub store: Arc<MailStore>,
    /// Certificates for `STLS` (and for the pop3s listener, whose handshake
    /// the caller runs). `None`: no STLS is offered.
    pub tls: Option<Arc<TlsProvider>>,
}

/// Serves one POP3 connection until QUIT, timeout or shutdown.
///
/// The connection starts in plaintext: plaintext logins are accepted from
/// loopback peers, from anyone else only after `STLS` (offered when
/// `ctx.tls` is set).
pub async fn handle_connection<S>(
    stream: S,
    peer: SocketAddr,
    ctx: Arc<Pop3Context>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let props = SessionProps {
        secure: false,
        loopback: peer.ip().to_canonical().is_loopback(),
        tls_available: ctx.tls.is_some(),
    };
    handle_connection_with(stream, peer, ctx, props, shutdown).await;
}

/// Like [`handle_connection`], with the session's properties given. On an
/// implicit-TLS listener (pop3s) the caller runs the TLS handshake and
/// passes the TLS stream with `secure: true`: plaintext logins are then
/// allowed from any address and `STLS` is neither offered nor accepted.
/// Otherwise `STLS` is offered when `props.tls_available` and `ctx.tls` is
/// set (`tls_available` is cleared when `ctx.tls` is `None`).
pub async fn handle_connection_with<S>(
    stream: S,
    peer: SocketAddr,
    ctx: Arc<Pop3Context>,
    mut props: SessionProps,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let acceptor = match &ctx.tls {
        Some(tls) if props.tls_available && !props.secure => Some(tls.acceptor()),
        _ => None,
    };
    props.tls_available = acceptor.is_some();
    let limits = ConnectionLimits::from_config(&ctx.config);
    let max_errors = ctx.config.limits.max_errors;
    let backend = StoreBackend { ctx, ip: peer.ip() };
    let session = Session::new(backend, props, peer.to_string(), max_errors);
    connection::serve_with_tls(stream, session, &limits, acceptor.as_ref(), shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compile-time check: a connection can be spawned on the runtime.
    #[allow(dead_code)]
    fn connection_future_is_send(
        ctx: Arc<Pop3Context>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
    ) {
        fn is_send<T: Send>(_: &T) {}
        let fut = handle_connection(stream, peer, ctx, CancellationToken::new());
        is_send(&fut);
    }

    #[test]
    fn mapped_loopback_counts_as_loopback() {
        let v4: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:1".parse().unwrap();
        let remote: SocketAddr = "192.0.2.1:1".parse().unwrap();
        assert!(v4.ip().to_canonical().is_loopback());
        assert!(mapped.ip().to_canonical().is_loopback());
        assert!(!remote.ip().to_canonical().is_loopback());
    }
}
