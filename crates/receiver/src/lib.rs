//! The SMTP receiver (RFC 5321): MX sessions that check the envelope, read the
//! message within limits and hand it to the spool. It answers 250 to DATA/BDAT
//! LAST only after the spool has the message fsynced.
//!
//! Layout: [`session`] is the protocol state machine (no I/O), [`reply`] the
//! reply texts, [`data`] the DATA/BDAT body decoders, [`received`] the trace
//! header and hop count, [`address`] small envelope checks, [`command`] raw
//! command-line parsing smtp-proto gets wrong, [`backend`] the
//! storage seam (directory + spool), and [`connection`] the tokio I/O.

pub mod address;
pub mod backend;
pub mod command;
pub mod connection;
pub mod data;
pub mod received;
pub mod reply;
pub mod session;

#[cfg(test)]
mod testing;

pub use backend::{Backend, ContextBackend, EnqueueError, RcptVerdict};
pub use session::{Session, SessionStats};

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
    let config = Arc::clone(&ctx.config);
    let backend = ContextBackend::new(ctx);
    connection::serve(stream, peer, config, &backend, shutdown).await;
}
