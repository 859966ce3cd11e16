//! The crate's error type: every failure names what it was about (the
//! domain, the file) and why.

use std::path::PathBuf;

/// What can go wrong making keys, signing, or setting up verification.
#[derive(Debug, thiserror::Error)]
pub enum SenderAuthError {
    /// A domain (or selector) that is not a plain DNS name.
    #[error("`{0}` is not a valid domain name")]
    InvalidDomain(String),
    /// `generate_key` without `force` when a key is already there.
    #[error("a DKIM key already exists at {}: not overwritten (use --force to replace it)", path.display())]
    KeyExists { path: PathBuf },
    /// Reading or writing a key file or the key directory.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A key file that is not a usable RSA private key.
    #[error("{}: not a usable DKIM private key: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    /// RSA key generation or encoding failed.
    #[error("generating the DKIM key failed: {0}")]
    KeyGeneration(String),
    /// Signing a message failed.
    #[error("DKIM signing for {domain} failed: {reason}")]
    Signing { domain: String, reason: String },
    /// A `[dns] nameservers` entry that is not `ip:port`.
    #[error("dns.nameservers: `{0}` is not an address ip:port")]
    BadNameserver(String),
    /// The system resolver configuration could not be read or used.
    #[error("DNS resolver setup failed: {0}")]
    Resolver(String),
}

impl SenderAuthError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SenderAuthError::Io {
            path: path.into(),
            source,
        }
    }
}
