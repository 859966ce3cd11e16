//! Password hashing with argon2id (PHC strings, argon2's recommended default
//! parameters, a random 16-byte salt from the OS) and verification, including
//! the equal-cost check against a dummy hash for unknown users.
//!
//! These functions are CPU-heavy (tens of milliseconds): call them outside
//! the database lock, and from async code on `spawn_blocking`.

use crate::DirectoryError;
use crate::names::MAX_PASSWORD_LEN;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::OnceLock;

/// The hasher for new hashes: argon2id, version 0x13, default cost.
fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// Checks a new password's length.
pub fn validate_new_password(password: &str) -> Result<(), DirectoryError> {
    if password.is_empty() {
        return Err(DirectoryError::Hash(
            "the password must not be empty".into(),
        ));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(DirectoryError::Hash(format!(
            "the password is longer than {MAX_PASSWORD_LEN} bytes"
        )));
    }
    Ok(())
}

/// Hashes a new password to a PHC string (`$argon2id$v=19$m=...`).
pub fn hash_password(password: &str) -> Result<String, DirectoryError> {
    validate_new_password(password)?;
    hasher()
        .hash_password(password.as_bytes())
        .map(|h: PasswordHash| h.to_string())
        .map_err(|e| DirectoryError::Hash(e.to_string()))
}

/// A hash of a random password with the same parameters as real hashes,
/// made once per process: verifying against it costs what a real check
/// costs, so an unknown user is not faster to reject than a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let secret: [u8; 16] = rand::random();
        let mut password = String::with_capacity(32);
        for b in secret {
            password.push_str(&format!("{b:02x}"));
        }
        // Fixed salt: the dummy never matches anything real, it only has to cost.
        hasher()
            .hash_password_with_salt(password.as_bytes(), b"postamt-dummy-salt")
            .map(|h: PasswordHash| h.to_string())
            // Hashing with valid default parameters and a valid salt does not fail;
            // should it, verification against "" still fails closed below.
            .unwrap_or_default()
    })
}

/// Verifies `password` against a stored PHC string. A malformed stored hash
/// or an over-long password never verifies.
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(phc) else {
        tracing::warn!("a stored password hash is not a valid PHC string");
        return false;
    };
    // The parameters come from the stored hash, not from this instance.
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Does the work of a verification for a user who does not exist; always false.
pub fn verify_dummy(password: &str) -> bool {
    // Evaluate, then discard: the point is the cost, not the answer.
    let _ = verify(password, dummy_hash());
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("s3cret").expect("hash");
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify("s3cret", &h));
        assert!(!verify("s3cret ", &h));
        assert!(!verify("", &h));
    }

    #[test]
    fn salts_differ() {
        let a = hash_password("same").expect("hash");
        let b = hash_password("same").expect("hash");
        assert_ne!(a, b);
    }

    #[test]
    fn dummy_never_matches_and_is_a_real_hash() {
        assert!(dummy_hash().starts_with("$argon2id$"));
        assert!(!verify_dummy(""));
        assert!(!verify_dummy("password"));
    }

    #[test]
    fn malformed_hash_fails_closed() {
        assert!(!verify("x", ""));
        assert!(!verify("x", "$argon2id$garbage"));
    }

    #[test]
    fn rejects_empty_and_huge_passwords() {
        assert!(hash_password("").is_err());
        assert!(hash_password(&"x".repeat(MAX_PASSWORD_LEN + 1)).is_err());
        assert!(!verify(&"x".repeat(MAX_PASSWORD_LEN + 1), dummy_hash()));
    }
}
