//! The POP3 server (RFC 1939, 2449, 5034) over the local store.
//!
//! The path of a command: [`connection`] reads a bounded line ([`line`]),
//! [`session`] parses it ([`command`]) and runs the AUTHORIZATION /
//! TRANSACTION / UPDATE state machine against a [`backend`] (the directory's
//! authenticator and the store, or fakes in tests), and the [`response`] goes
//! back, message bodies dot-stuffed on the fly ([`dot_stuff`]).

pub mod backend;
pub mod capability;
pub mod command;
pub mod connection;
pub mod dot_stuff;
pub mod line;
pub mod response;
pub mod sasl;
pub mod session;

#[cfg(test)]
pub(crate) mod fake;

use postamt_config::Config;
use postamt_directory::auth::Authenticator;
use postamt_store::MailStore;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

pub use backend::{Backend, Mailbox, StoreBackend};
pub use capability::SessionProps;
pub use connection::ConnectionLimits;
pub use session::Session;

/// Everything a session needs, shared by all sessions.
pub struct Pop3Context {
    pub config: Arc<Config>,
    pub auth: Arc<Authenticator>,
    pub store: Arc<MailStore>,
}

/// Serves one POP3 connection until QUIT, timeout or shutdown.
///
/// The connection is plaintext: logins are accepted only from loopback peers.
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
        tls_available: false,
    };
    handle_connection_with(stream, peer, ctx, props, shutdown).await;
}

/// Like [`handle_connection`], with the session's properties given (for
/// example `secure: true` on an implicit-TLS listener).
pub async fn handle_connection_with<S>(
    stream: S,
    peer: SocketAddr,
    ctx: Arc<Pop3Context>,
    props: SessionProps,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let limits = ConnectionLimits::from_config(&ctx.config);
    let max_errors = ctx.config.limits.max_errors;
    let backend = StoreBackend { ctx, ip: peer.ip() };
    let session = Session::new(backend, props, peer.to_string(), max_errors);
    connection::serve(stream, session, &limits, shutdown).await;
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
