//! Domain name validation and normalisation for names that end up in file
//! paths and DNS record names (no path tricks, no zone-file injection).

use crate::SenderAuthError;

/// Longest domain name in presentation form (RFC 1035, without the root dot).
const MAX_DOMAIN_LEN: usize = 253;
/// Longest label.
const MAX_LABEL_LEN: usize = 63;

/// Lowercases `domain`, strips one trailing dot, and checks that it is a
/// plain LDH host name (ASCII letters, digits, hyphens; labels of 1-63
/// characters; at most 253 in all). IDNs must be given as A-labels (`xn--`).
pub fn normalize_domain(domain: &str) -> Result<String, SenderAuthError> {
    let d = domain.strip_suffix('.').unwrap_or(domain);
    let valid = !d.is_empty()
        && d.len() <= MAX_DOMAIN_LEN
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL_LEN
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(d.to_ascii_lowercase())
    } else {
        Err(SenderAuthError::InvalidDomain(truncate_for_message(domain)))
    }
}

/// Whether `domain` is a valid name (see [`normalize_domain`]).
pub fn is_valid_domain(domain: &str) -> bool {
    normalize_domain(domain).is_ok()
}

/// A bounded, printable copy of untrusted input for an error message.
fn truncate_for_message(s: &str) -> String {
    s.chars()
        .take(80)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_lowercases_host_names() {
        assert_eq!(normalize_domain("Example.ORG").unwrap(), "example.org");
        assert_eq!(normalize_domain("example.org.").unwrap(), "example.org");
        assert_eq!(
            normalize_domain("xn--bcher-kva.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(normalize_domain("localhost").unwrap(), "localhost");
    }

    #[test]
    fn rejects_path_tricks_and_junk() {
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/b",
            "a\\b",
            ".example.org",
            "example..org",
            "-a.org",
            "a-.org",
            "a b.org",
            "a\0.org",
            "a\"; rm.org",
            "bücher.example",
            "_dmarc.example.org",
        ] {
            assert!(normalize_domain(bad).is_err(), "{bad:?} accepted");
        }
        let long_label = format!("{}.org", "a".repeat(64));
        assert!(normalize_domain(&long_label).is_err());
        let long_name = ["abcdefghi"; 26].join(".");
        assert!(long_name.len() > 253);
        assert!(normalize_domain(&long_name).is_err());
    }
}
