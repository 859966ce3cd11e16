//! Postamt sender authentication: DKIM keys (`postamt dkim generate`) and
//! outbound signing (`c=relaxed/simple`), inbound SPF/DKIM/DMARC checks
//! with their `Authentication-Results` header and the DMARC action, and the
//! DNS records a domain should publish (`postamt dns-records`).
//!
//! Built on mail-auth (ring crypto, hickory DNS). Pure library: the receiver,
//! the delivery agent and the CLI call it.

mod domain;
mod error;
mod headers;
mod keys;
mod quarantine;
mod records;
mod resolver;
mod signer;
mod verifier;
mod zone;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

pub use domain::{is_valid_domain, normalize_domain};
pub use error::SenderAuthError;
pub use keys::{
    GeneratedKey, KEY_BITS, dkim_record_name, dkim_txt_value, generate_key, key_path,
    read_key_record,
};
pub use quarantine::{QUARANTINE_FIELD, is_quarantined};
pub use records::{DnsRecord, dns_records, zone_file_lines};
pub use resolver::{DEFAULT_QUERY_TIMEOUT, build_authenticator};
pub use signer::{DkimSigner, SIGNED_HEADERS};
pub use verifier::{
    Action, AuthResult, DmarcOutcome, DmarcPolicy, SenderVerifier, Verdict, VerifyLimits, decide,
};
pub use zone::{txt_rdata, txt_zone_line};

/// mail-auth, re-exported so callers use the very same version.
pub use mail_auth;
