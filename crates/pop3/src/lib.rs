//! The POP3 server (RFC 1939, 2449, 5034) over the local store.
//!
//! SKELETON: signatures are the contract other crates code against; the
//! bodies are being written.

use postamt_config::Config;
use postamt_directory::auth::Authenticator;
use postamt_store::MailStore;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// Everything a session needs, shared by all sessions.
pub struct Pop3Context {
    pub config: Arc<Config>,
    pub auth: Arc<Authenticator>,
    pub store: Arc<MailStore>,
}

/// Serves one POP3 connection until QUIT, timeout or shutdown.
pub async fn handle_connection<S>(
    stream: S,
    peer: SocketAddr,
    ctx: Arc<Pop3Context>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let _ = (stream, peer, ctx, shutdown);
    todo!()
}
