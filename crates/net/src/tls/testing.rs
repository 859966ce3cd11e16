//! Helpers for tests in any crate: a throwaway self-signed [`TlsProvider`] in
//! memory and rustls clients that trust it. Not for production use: they
//! panic on failure, as test helpers should.

use super::{PROTOCOL_VERSIONS, TlsProvider, crypto_provider, selfsigned};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use tokio_rustls::TlsConnector;

/// A provider with a fresh self-signed certificate, and what a client needs
/// to trust it.
#[derive(Debug, Clone)]
pub struct TestTls {
    pub provider: Arc<TlsProvider>,
    /// The certificate as PEM: the trust anchor for clients (pass it to
    /// [`client_config_trusting`], or to Python's `ssl` as `cafile`).
    pub ca_pem: String,
    /// The certificate's private key as PEM (PKCS#8).
    pub key_pem: String,
    /// The host name the certificate is for (also valid: `localhost`,
    /// `127.0.0.1`, `::1`).
    pub hostname: String,
    /// SHA-256 fingerprint of the certificate, `AB:CD:...`.
    pub fingerprint_sha256: String,
}

/// Makes a self-signed certificate for `hostname` (plus `localhost`,
/// 127.0.0.1 and ::1) and a provider serving it.
pub fn self_signed(hostname: &str) -> TestTls {
    let generated = selfsigned::generate(hostname, super::info::now_unix())
        .expect("generating a test certificate with fixed parameters");
    let provider =
        TlsProvider::from_pem(generated.cert_pem.as_bytes(), generated.key_pem.as_bytes())
            .expect("a freshly generated certificate loads");
    let fingerprint_sha256 = provider
        .certificate_info()
        .first()
        .map(|i| i.fingerprint_sha256.clone())
        .unwrap_or_default();
    TestTls {
        provider,
        ca_pem: generated.cert_pem,
        key_pem: generated.key_pem,
        hostname: hostname.to_ascii_lowercase(),
        fingerprint_sha256,
    }
}

/// A client configuration (ring, TLS 1.2 and 1.3, no ALPN) trusting exactly
/// the certificates in `pem`.
pub fn client_config_trusting(pem: &str) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots
            .add(cert.expect("test PEM parses"))
            .expect("test certificate is a usable trust anchor");
    }
    assert!(!roots.is_empty(), "no certificate in the PEM given");
    let config = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A tokio-rustls connector trusting exactly the certificates in `pem`.
pub fn connector_trusting(pem: &str) -> TlsConnector {
    TlsConnector::from(client_config_trusting(pem))
}

/// `host` as the name a client verifies (a DNS name or an IP address).
pub fn server_name(host: &str) -> ServerName<'static> {
    ServerName::try_from(host.to_string()).expect("a valid test host name or IP address")
}
