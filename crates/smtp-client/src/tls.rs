//! TLS for outbound SMTP: the opportunistic client configuration (RFC 7435:
//! any certificate is accepted, because an unauthenticated encrypted session
//! beats plaintext, but the handshake signatures are still checked so the
//! peer must hold the key of the certificate it shows), server names, and
//! what we log about an established session.

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Accepts any certificate chain; verifies handshake signatures with the
/// provider's algorithms.
#[derive(Debug)]
pub(crate) struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Builds the opportunistic client configuration.
fn build_opportunistic() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = postamt_net::tls::crypto_provider();
    let verifier = Arc::new(AcceptAnyCertificate {
        provider: Arc::clone(&provider),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(postamt_net::tls::PROTOCOL_VERSIONS)
        .map_err(|e| format!("cannot build the TLS client configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The shared opportunistic client configuration (built once).
pub(crate) fn opportunistic_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG.get_or_init(build_opportunistic).clone()
}

/// `name` as a TLS server name (DNS name or IP address literal, a trailing
/// dot removed), `None` when it is neither.
pub(crate) fn server_name(name: &str) -> Option<ServerName<'static>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    ServerName::try_from(name.to_string()).ok()
}

/// The server name for an unverified session: the host name when usable
/// (sent as SNI), else the address (no SNI is sent for addresses).
pub(crate) fn opportunistic_server_name(name: &str, ip: IpAddr) -> ServerName<'static> {
    server_name(name).unwrap_or_else(|| ServerName::IpAddress(ip.into()))
}

/// What is known about an established TLS session, for logs and headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// e.g. `TLSv1_3`.
    pub version: String,
    /// e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// The certificate was verified for the server name.
    pub verified: bool,
}

impl TlsInfo {
    pub(crate) fn of(stream: &TlsStream<TcpStream>, verified: bool) -> TlsInfo {
        let (_, conn) = stream.get_ref();
        let version = conn
            .protocol_version()
            .map(|v| v.as_str().map_or_else(|| format!("{v:?}"), str::to_string))
            .unwrap_or_else(|| "unknown".to_string());
        let cipher = conn
            .negotiated_cipher_suite()
            .map(|s| {
                let suite = s.suite();
                suite
                    .as_str()
                    .map_or_else(|| format!("{suite:?}"), str::to_string)
            })
            .unwrap_or_else(|| "unknown".to_string());
        TlsInfo {
            version,
            cipher,
            verified,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn server_names() {
        assert!(matches!(
            server_name("mx.example.org."),
            Some(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("192.0.2.1"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(server_name("").is_none());
        assert!(server_name("bad name").is_none());
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        assert_eq!(
            opportunistic_server_name("", ip),
            ServerName::IpAddress(ip.into())
        );
    }

    #[test]
    fn opportunistic_config_builds_and_is_shared() {
        let a = opportunistic_config().expect("builds");
        let b = opportunistic_config().expect("builds");
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn verifier_accepts_any_chain_but_not_bad_signatures() {
        let v = AcceptAnyCertificate {
            provider: postamt_net::tls::crypto_provider(),
        };
        let junk = CertificateDer::from(vec![1u8, 2, 3]);
        let name = server_name("mx.example.org").expect("valid");
        assert!(
            v.verify_server_cert(&junk, &[], &name, &[], UnixTime::now())
                .is_ok()
        );
        assert!(!v.supported_verify_schemes().is_empty());
    }
}
