//! The server side of the TLS handshake after STARTTLS: bounded by the idle
//! timeout and abandoned on shutdown, with the negotiated parameters for the
//! log. The caller hands over the bare stream, so no plaintext buffered
//! before the handshake can reach the encrypted session.

use std::io;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// Why a handshake did not complete.
#[derive(Debug, Error)]
pub enum HandshakeError {
    #[error("TLS handshake timed out")]
    Timeout,
    #[error("server shutting down during the TLS handshake")]
    Shutdown,
    #[error("TLS handshake failed: {0}")]
    Tls(#[from] io::Error),
}

/// Runs the handshake on `stream` within `timeout`.
pub async fn accept<S>(
    acceptor: &TlsAcceptor,
    stream: S,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> Result<TlsStream<S>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => Err(HandshakeError::Shutdown),
        r = tokio::time::timeout(timeout, acceptor.accept(stream)) => match r {
            Err(_) => Err(HandshakeError::Timeout),
            Ok(Err(e)) => Err(HandshakeError::Tls(e)),
            Ok(Ok(tls)) => Ok(tls),
        },
    }
}

/// The negotiated protocol version and cipher suite (`TLSv1_3`,
/// `TLS13_AES_256_GCM_SHA384`), for logs.
pub use postamt_net::tls::starttls::describe;
