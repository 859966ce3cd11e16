//! Outbound DKIM signing: the keys of the key directory, one per sender
//! domain, signing `c=relaxed/simple` with rsa-sha256 (simple body: mail-auth
//! mis-canonicalises trailing whitespace-only lines in relaxed bodies).

use crate::SenderAuthError;
use crate::domain::normalize_domain;
use crate::headers::header_names;
use crate::keys::{KEY_SUFFIX, bad_key, private_key_der, read_key_file};
use mail_auth::common::crypto::{Algorithm, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::Canonicalization;
use postamt_config::Config;
use std::collections::HashMap;
use std::sync::Arc;

/// The header fields signed when present, in `h=` order. `From` is also
/// signed once more than present ("oversigned") so no From can be added.
pub const SIGNED_HEADERS: [&str; 13] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Reply-To",
    "List-Id",
];

/// Key files read from the key directory at most (a sanity bound).
const MAX_KEYS: usize = 10_000;
/// Header fields looked at when choosing what to sign.
const MAX_HEADER_FIELDS: usize = 1_000;

/// The DKIM keys of the sender domains, ready to sign.
#[derive(Clone)]
pub struct DkimSigner {
    selector: String,
    keys: HashMap<String, Arc<RsaKey<Sha256>>>,
}

impl std::fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimSigner")
            .field("selector", &self.selector)
            .field("domains", &self.domains())
            .finish()
    }
}

/// A shared key: one parsed key signs from many tasks at once.
struct SharedKey(Arc<RsaKey<Sha256>>);

impl SigningKey for SharedKey {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

impl DkimSigner {
    /// A signer without keys for `selector` (add keys with [`Self::insert_pem`]).
    pub fn new(selector: &str) -> Result<DkimSigner, SenderAuthError> {
        Ok(DkimSigner {
            selector: normalize_domain(selector)?,
            keys: HashMap::new(),
        })
    }

    /// Loads every `<domain>.key` of the key directory (files with other
    /// names are ignored; a missing directory means no keys). A file that is
    /// not a usable RSA key is an error naming it. With `[dkim] sign = false`
    /// nothing is loaded and nothing is signed.
    pub fn load(config: &Config) -> Result<DkimSigner, SenderAuthError> {
        let mut signer = DkimSigner::new(&config.dkim.selector)?;
        if !config.dkim.sign {
            return Ok(signer);
        }
        let dir = config.dkim_key_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(dir = %dir.display(), "no DKIM key directory: nothing to sign with");
                return Ok(signer);
            }
            Err(e) => return Err(SenderAuthError::io(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| SenderAuthError::io(&dir, e))?;
            let file_name = entry.file_name();
            let Some(domain) = file_name
                .to_str()
                .and_then(|n| n.strip_suffix(KEY_SUFFIX))
                .and_then(|d| normalize_domain(d).ok())
            else {
                continue;
            };
            if signer.keys.len() >= MAX_KEYS {
                tracing::warn!(dir = %dir.display(), max = MAX_KEYS, "too many DKIM keys; the rest are ignored");
                break;
            }
            let path = entry.path();
            let pem = read_key_file(&path)?;
            let der = private_key_der(&path, &pem)?;
            let key = RsaKey::<Sha256>::from_key_der(der).map_err(|e| bad_key(&path, e))?;
            tracing::debug!(domain = %domain, path = %path.display(), "loaded DKIM key");
            signer.keys.insert(domain, Arc::new(key));
        }
        Ok(signer)
    }

    /// Adds (or replaces) the key of `domain` from PEM text.
    pub fn insert_pem(&mut self, domain: &str, pem: &[u8]) -> Result<(), SenderAuthError> {
        let domain = normalize_domain(domain)?;
        let path = std::path::PathBuf::from(format!("{domain}{KEY_SUFFIX}"));
        let der = private_key_der(&path, pem)?;
        let key = RsaKey::<Sha256>::from_key_der(der).map_err(|e| bad_key(&path, e))?;
        self.keys.insert(domain, Arc::new(key));
        Ok(())
    }

    /// The domains there is a key for, sorted.
    pub fn domains(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Whether mail from `domain` (exactly; not a parent) is signed.
    pub fn has_key(&self, domain: &str) -> bool {
        normalize_domain(domain).is_ok_and(|d| self.keys.contains_key(&d))
    }

    /// The `DKIM-Signature: ...\r\n` header field to prepend to `message`,
    /// when there is a key for `sender_domain` (exact match); `None`
    /// otherwise. Signs `c=relaxed/simple`, `a=rsa-sha256`, the
    /// [`SIGNED_HEADERS`] present, and From once more.
    pub fn sign(
        &self,
        message: &[u8],
        sender_domain: &str,
    ) -> Option<Result<String, SenderAuthError>> {
        let domain = normalize_domain(sender_domain).ok()?;
        let key = self.keys.get(&domain)?;
        let present = header_names(message, MAX_HEADER_FIELDS);
        let mut headers: Vec<&str> = SIGNED_HEADERS
            .iter()
            .copied()
            .filter(|h| present.iter().any(|p| p.eq_ignore_ascii_case(h.as_bytes())))
            .collect();
        headers.push("From");
        let result = mail_auth::dkim::DkimSigner::from_key(SharedKey(Arc::clone(key)))
            .domain(domain.as_str())
            .selector(self.selector.as_str())
            .headers(headers)
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Simple)
            .sign(message)
            .map(|signature| signature.to_header())
            .map_err(|e| SenderAuthError::Signing {
                domain: domain.clone(),
                reason: e.to_string(),
            });
        if let Err(e) = &result {
            tracing::warn!(domain = %domain, error = %e, "DKIM signing failed");
        }
        Some(result)
    }
}
