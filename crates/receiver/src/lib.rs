//! The SMTP receiver (RFC 5321): MX sessions that check the envelope, read the
//! message within limits and hand it to the spool. It answers 250 to DATA/BDAT
//! LAST only after the spool has the message fsynced.
//!
//! SKELETON: signatures are the contract other crates code against; the
//! bodies are being written.

use postamt_config::Config;
use postamt_directory::Directory;
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
}

/// Serves one SMTP connection until QUIT, error limit, timeout or shutdown
/// (on shutdown: `421 4.3.2` at the next command boundary).
pub async fn handle_connection<S>(
    stream: S,
    peer: SocketAddr,
    ctx: Arc<ReceiverContext>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let _ = (stream, peer, ctx, shutdown);
    todo!()
}
