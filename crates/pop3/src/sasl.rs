//! SASL PLAIN (RFC 4616) responses decoded into credentials (pure).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;

/// The user and password carried by a PLAIN response.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// The authentication identity (the account to log in as).
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for PlainCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why a PLAIN response was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PlainError {
    #[error("invalid base64 data")]
    Base64,
    #[error("malformed PLAIN response")]
    Malformed,
    #[error("PLAIN response is not UTF-8")]
    NotUtf8,
    /// The client asked to act as someone else (authzid != authcid).
    #[error("authorization identity not permitted")]
    AuthzidNotPermitted,
}

/// Decodes a base64 PLAIN response `authzid NUL authcid NUL passwd`.
///
/// `=` alone is the empty response (RFC 5034 §4), which is malformed for
/// PLAIN. The authzid must be empty or equal to the authcid.
pub fn decode_plain(b64: &str) -> Result<PlainCredentials, PlainError> {
    let b64 = b64.trim();
    if b64 == "=" || b64.is_empty() {
        return Err(PlainError::Malformed);
    }
    let raw = STANDARD.decode(b64).map_err(|_| PlainError::Base64)?;
    let mut parts = raw.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::Malformed);
    };
    if authcid.is_empty() || password.is_empty() {
        return Err(PlainError::Malformed);
    }
    let text = |b: &[u8]| {
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| PlainError::NotUtf8)
    };
    let (authzid, user, password) = (text(authzid)?, text(authcid)?, text(password)?);
    if !authzid.is_empty() && authzid != user {
        return Err(PlainError::AuthzidNotPermitted);
    }
    Ok(PlainCredentials { user, password })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(raw: &[u8]) -> String {
        STANDARD.encode(raw)
    }

    #[test]
    fn decodes_empty_authzid() {
        let c = decode_plain(&enc(b"\0alice\0s3cret pass")).unwrap();
        assert_eq!(c.user, "alice");
        assert_eq!(c.password, "s3cret pass");
    }

    #[test]
    fn accepts_authzid_equal_to_authcid() {
        let c = decode_plain(&enc(b"alice\0alice\0pw")).unwrap();
        assert_eq!(c.user, "alice");
        assert_eq!(c.password, "pw");
    }

    #[test]
    fn refuses_other_authzid() {
        assert_eq!(
            decode_plain(&enc(b"bob\0alice\0pw")),
            Err(PlainError::AuthzidNotPermitted)
        );
    }

    #[test]
    fn refuses_bad_base64() {
        assert_eq!(decode_plain("not base64!"), Err(PlainError::Base64));
        assert_eq!(decode_plain("AGFsaWNl*"), Err(PlainError::Base64));
    }

    #[test]
    fn refuses_malformed_structure() {
        assert_eq!(decode_plain(&enc(b"alice\0pw")), Err(PlainError::Malformed));
        assert_eq!(
            decode_plain(&enc(b"\0alice\0pw\0extra")),
            Err(PlainError::Malformed)
        );
        assert_eq!(decode_plain(&enc(b"\0\0pw")), Err(PlainError::Malformed));
        assert_eq!(decode_plain(&enc(b"\0alice\0")), Err(PlainError::Malformed));
        assert_eq!(decode_plain("="), Err(PlainError::Malformed));
        assert_eq!(decode_plain(""), Err(PlainError::Malformed));
    }

    #[test]
    fn refuses_non_utf8() {
        assert_eq!(
            decode_plain(&enc(b"\0al\xffice\0pw")),
            Err(PlainError::NotUtf8)
        );
    }

    #[test]
    fn debug_hides_password() {
        let c = decode_plain(&enc(b"\0alice\0topsecret")).unwrap();
        assert!(!format!("{c:?}").contains("topsecret"));
    }
}
