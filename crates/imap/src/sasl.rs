//! SASL PLAIN (RFC 4616) messages decoded into credentials (pure). The
//! codec has already undone the base64; this splits
//! `authzid NUL authcid NUL passwd` and refuses acting as someone else.

use thiserror::Error;

/// The user and password carried by a PLAIN message.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
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

/// Why a PLAIN message was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PlainError {
    #[error("malformed PLAIN message")]
    Malformed,
    #[error("PLAIN message is not UTF-8")]
    NotUtf8,
    #[error("authorization identity not permitted")]
    AuthzidNotPermitted,
}

/// Splits a decoded PLAIN message.
pub fn decode_plain(raw: &[u8]) -> Result<PlainCredentials, PlainError> {
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

    #[test]
    fn splits_credentials() {
        let c = decode_plain(b"\0alice\0s3cret pass").unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("alice", "s3cret pass")
        );
        let c = decode_plain(b"alice\0alice\0pw").unwrap();
        assert_eq!(c.user, "alice");
        assert!(!format!("{c:?}").contains("pw\""));
    }

    #[test]
    fn refuses_bad_messages() {
        assert_eq!(
            decode_plain(b"bob\0alice\0pw"),
            Err(PlainError::AuthzidNotPermitted)
        );
        assert_eq!(decode_plain(b"alice\0pw"), Err(PlainError::Malformed));
        assert_eq!(decode_plain(b"\0alice\0pw\0x"), Err(PlainError::Malformed));
        assert_eq!(decode_plain(b"\0\0pw"), Err(PlainError::Malformed));
        assert_eq!(decode_plain(b"\0alice\0"), Err(PlainError::Malformed));
        assert_eq!(decode_plain(b""), Err(PlainError::Malformed));
        assert_eq!(decode_plain(b"\0al\xffice\0pw"), Err(PlainError::NotUtf8));
    }
}
