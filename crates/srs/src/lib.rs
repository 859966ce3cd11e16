//! Sender Rewriting Scheme (SRS) for forwarded mail: a pure codec plus the
//! loading of its secret key.
//!
//! When we forward a message from `alice@example.com` to another server, we
//! send it with the envelope sender rewritten to one of our own addresses,
//! so that SPF at the destination checks our domain, and a bounce comes back
//! to us; we then [`Srs::reverse`] the address and send the bounce on to
//! Alice. The format is the usual one (Shevek's scheme, as in libsrs2):
//!
//! - `SRS0=HHHH=TT=example.com=alice@our.domain`: `TT` is the day the
//!   address was made (two base32 characters, days since the epoch modulo
//!   1024), `HHHH` an HMAC-SHA256 of the rest, keyed with our secret, so
//!   nobody else can make us bounce mail to an address of their choice;
//! - forwarding mail whose sender is already `SRS0=…@first.forwarder` gives
//!   `SRS1=HHHH=first.forwarder==HHHH=TT=example.com=alice@our.domain`: a
//!   bounce goes straight back to the first forwarder, which checks its own
//!   hash and age. Forwarding an `SRS1` address keeps its first forwarder and
//!   only replaces hash and domain.
//!
//! Hashes and timestamps are base32 (RFC 4648 alphabet) and compared without
//! regard to case, because some mail systems change the case of local parts;
//! the HMAC is computed over the lowercased fields, each separated by a NUL
//! byte so that `ab`+`c` and `a`+`bc` hash differently.
//!
//! Modules: [`codec`] the address formats (no I/O), [`key`] the secret file.

pub mod codec;
pub mod key;

use std::path::Path;

pub use codec::{HASH_LEN, MAX_ADDRESS_LEN, MAX_AGE_DAYS};

/// Why an address could not be reversed, or the key not loaded.
#[derive(Debug, thiserror::Error)]
pub enum SrsError {
    /// The address is not an SRS address at all.
    #[error("not an SRS address")]
    NotSrs,
    /// The hash does not match: forged, damaged, or made with another key.
    #[error("SRS hash does not match")]
    BadHash,
    /// The address is older than [`MAX_AGE_DAYS`] (or dated in the future).
    #[error("SRS address has expired")]
    Expired,
    /// It looks like SRS but cannot be parsed; or a bad key file.
    #[error("malformed SRS: {0}")]
    Malformed(String),
    /// Reading or creating the key file.
    #[error("SRS key file: {0}")]
    Io(#[from] std::io::Error),
}

/// The SRS codec: our secret key and the domain our SRS addresses are at.
#[derive(Clone)]
pub struct Srs {
    key: [u8; 32],
    /// Lowercased, without a trailing dot.
    our_domain: String,
}

impl std::fmt::Debug for Srs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Srs")
            .field("our_domain", &self.our_domain)
            .finish_non_exhaustive()
    }
}

impl Srs {
    /// Loads the secret from `path` (32 random bytes), creating it (mode
    /// 0600) if missing. A file of another length is [`SrsError::Malformed`].
    pub fn load_or_create(path: &Path, our_domain: &str) -> Result<Srs, SrsError> {
        let key = key::load_or_create(path)?;
        Ok(Srs::with_key(key, our_domain))
    }

    /// A codec with the given key (tests, or a key kept elsewhere).
    pub fn with_key(key: [u8; 32], our_domain: &str) -> Srs {
        Srs {
            key,
            our_domain: codec::normalise_domain(our_domain),
        }
    }

    /// The domain our SRS addresses are at (lowercased, no trailing dot).
    pub fn our_domain(&self) -> &str {
        &self.our_domain
    }

    /// The envelope sender for a forwarded copy of mail from `sender`
    /// (`""` stays `""`): `SRS0=HHHH=TT=domain=local@our_domain`; an SRS0
    /// address of another forwarder becomes SRS1 (Shevek's scheme); an
    /// address already ours (at `our_domain`, SRS or not) is returned
    /// unchanged, as is one we cannot rewrite (no domain, or a quoted local
    /// part).
    pub fn forward(&self, sender: &str, now_unix: i64) -> String {
        codec::forward(&self.key, &self.our_domain, sender, now_unix)
    }

    /// The original sender behind one of our SRS addresses (SRS0 or SRS1),
    /// checking hash (case-insensitive) and age (at most 21 days). For SRS0
    /// that is the original sender; for SRS1 the SRS0 address at the first
    /// forwarder. The domain of `address` is not checked (the caller knows
    /// it is one of ours; the hash does not depend on it); a bare local part
    /// is accepted too.
    pub fn reverse(&self, address: &str, now_unix: i64) -> Result<String, SrsError> {
        codec::reverse(&self.key, address, now_unix)
    }

    /// Whether the local part looks like SRS (cheap syntactic check):
    /// `SRS0` or `SRS1` (any case) followed by `=`, `+` or `-`.
    pub fn looks_like_srs(local_part: &str) -> bool {
        codec::srs_kind(local_part).is_some()
    }
}

#[cfg(test)]
mod tests;
