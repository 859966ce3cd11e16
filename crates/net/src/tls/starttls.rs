//! The server side of an in-band TLS upgrade (POP3 `STLS`, RFC 2595; IMAP
//! `STARTTLS`, RFC 3501 6.2.1) over the connection's raw stream, bounded by
//! a timeout and abandoned at server shutdown. The caller has already
//! dropped every byte read before the handshake, so nothing pipelined in
//! plaintext after the upgrade command is ever executed.

use std::io;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// Why an upgrade did not produce a TLS stream.
#[derive(Debug, Error)]
pub enum StartTlsError {
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] io::Error),
    #[error("TLS handshake timed out after {0:?}")]
    Timeout(Duration),
    #[error("server shutting down during the TLS handshake")]
    Shutdown,
    /// The session accepted the upgrade but the connection has no acceptor
    /// (a wiring error: TLS offered without a TLS configuration).
    #[error("STARTTLS accepted without a TLS configuration")]
    NoAcceptor,
}

/// Runs the server side of the TLS handshake over `stream`.
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
    use crate::tls::testing::{connector_trusting, self_signed, server_name};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    #[tokio::test]
    async fn handshake_and_data() {
        let tls = self_signed("pop.example.org");
        let (client, server) = duplex(1 << 16);
        let acceptor = tls.provider.acceptor();
        let token = CancellationToken::new();
        let srv = tokio::spawn(async move {
            let mut s = handshake(server, &acceptor, Duration::from_secs(30), &token)
                .await
                .expect("handshake");
            let (version, cipher) = describe(&s);
            assert!(version.starts_with("TLSv1_"), "{version}");
            assert!(!cipher.is_empty());
            s.write_all(b"hello").await.unwrap();
            s.shutdown().await.unwrap();
        });
        let mut c = connector_trusting(&tls.ca_pem)
            .connect(server_name("pop.example.org"), client)
            .await
            .expect("client handshake");
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        srv.await.unwrap();
    }

    #[tokio::test]
    async fn plaintext_instead_of_a_client_hello_fails() {
        let tls = self_signed("pop.example.org");
        let (mut client, server) = duplex(1 << 16);
        client.write_all(b"USER alice\r\n").await.unwrap();
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
        let tls = self_signed("pop.example.org");
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
        let tls = self_signed("pop.example.org");
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
