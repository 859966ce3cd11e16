//! The TLS handshake after STARTTLS (RFC 3501 6.2.1, RFC 9051 11.1) over
//! the connection's raw stream, bounded by a timeout and abandoned at
//! shutdown. The caller has dropped every byte buffered before it, so no
//! plaintext pipelined after STARTTLS is ever executed.

use std::io;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// Why a STARTTLS upgrade produced no TLS stream.
#[derive(Debug, Error)]
pub enum StartTlsError {
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] io::Error),
    #[error("TLS handshake timed out after {0:?}")]
    Timeout(Duration),
    #[error("server shutting down during the TLS handshake")]
    Shutdown,
    /// STARTTLS was accepted without an acceptor (a wiring error).
    #[error("STARTTLS accepted without a TLS configuration")]
    NoAcceptor,
}

/// Runs the server side of the handshake over `stream`.
pub async fn handshake<S>(
    stream: S,
    acceptor: &TlsAcceptor,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> Result<TlsStream<S>, StartTlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => Err(StartTlsError::Shutdown),
        done = tokio::time::timeout(timeout, acceptor.accept(stream)) => match done {
            Err(_) => Err(StartTlsError::Timeout(timeout)),
            Ok(Err(e)) => Err(StartTlsError::Handshake(e)),
            Ok(Ok(tls)) => Ok(tls),
        },
    }
}

/// The negotiated protocol version and cipher suite, for logs.
pub fn describe<S>(stream: &TlsStream<S>) -> (String, String) {
    let (_, conn) = stream.get_ref();
    let version = conn
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|c| format!("{:?}", c.suite()))
        .unwrap_or_default();
    (version, cipher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use postamt_net::tls::testing::self_signed;
    use tokio::io::{AsyncWriteExt, duplex};

    #[tokio::test]
    async fn plaintext_instead_of_a_client_hello_fails() {
        let tls = self_signed("imap.example.org");
        let (mut client, server) = duplex(1 << 16);
        client.write_all(b"a LOGIN alice secret\r\n").await.unwrap();
        let r = handshake(
            server,
            &tls.provider.acceptor(),
            Duration::from_secs(30),
            &CancellationToken::new(),
        )
        .await;
        assert!(matches!(r, Err(StartTlsError::Handshake(_))), "{r:?}");
    }

    #[tokio::test]
    async fn silent_client_times_out() {
        let tls = self_signed("imap.example.org");
        let (_client, server) = duplex(1 << 16);
        let r = handshake(
            server,
            &tls.provider.acceptor(),
            Duration::from_millis(20),
            &CancellationToken::new(),
        )
        .await;
        assert!(matches!(r, Err(StartTlsError::Timeout(_))), "{r:?}");
    }

    #[tokio::test]
    async fn shutdown_abandons_the_handshake() {
        let tls = self_signed("imap.example.org");
        let (_client, server) = duplex(1 << 16);
        let token = CancellationToken::new();
        token.cancel();
        let r = handshake(
            server,
            &tls.provider.acceptor(),
            Duration::from_secs(30),
            &token,
        )
        .await;
        assert!(matches!(r, Err(StartTlsError::Shutdown)), "{r:?}");
    }
}
