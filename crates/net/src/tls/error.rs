//! Why certificates could not be loaded, generated or used; every variant
//! about a file names it.

use std::path::PathBuf;

/// A TLS setup failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("TLS file {path} is missing")]
    Missing { path: PathBuf },
    #[error("cannot read TLS file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS file {path} is larger than {limit} bytes; is it really a PEM file?")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path} is not a valid PEM file: {reason}")]
    NotPem { path: PathBuf, reason: String },
    #[error("{path} contains no certificate (expected a PEM `BEGIN CERTIFICATE` block)")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds more than {limit} certificates")]
    TooManyCertificates { path: PathBuf, limit: usize },
    #[error(
        "{path} contains no private key (expected a PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block)"
    )]
    NoKey { path: PathBuf },
    #[error("the private key in {path} is encrypted; Postamt needs an unencrypted key")]
    EncryptedKey { path: PathBuf },
    #[error("{path}: unsupported private key: {reason}")]
    UnsupportedKey { path: PathBuf, reason: String },
    #[error("{path}: unreadable certificate: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("the private key in {key} does not match the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("cannot generate the self-signed certificate: {0}")]
    Generate(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}
