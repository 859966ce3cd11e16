//! The verified-credential cache (like Dovecot's auth cache): after a
//! successful argon2 check, remember the stored hash string it was checked
//! against and a keyed digest of the password. A later login with the same
//! password is accepted without argon2 only while the stored hash is still
//! that very string, so a password change (by any process) invalidates the
//! entry by itself.
//!
//! The digest is keyed BLAKE2b-512 under a random per-process secret, so the
//! cache holds nothing that helps an offline guess even if memory leaks, and
//! comparisons are constant-time.

use blake2::Blake2bMac512;
use blake2::digest::{KeyInit, Mac};
use std::collections::HashMap;
use std::time::Instant;

/// Most cached credentials.
pub const MAX_CACHED: usize = 100_000;

struct Entry {
    /// The PHC string the password was verified against.
    hash: String,
    /// Keyed digest of (user, password).
    tag: [u8; 64],
    last_used: Instant,
}

/// Cache of verified credentials, keyed by the folded user name.
pub struct CredentialCache {
    secret: [u8; 64],
    map: HashMap<String, Entry>,
    cap: usize,
}

impl CredentialCache {
    pub fn new(cap: usize) -> Self {
        CredentialCache {
            secret: rand::random(),
            map: HashMap::new(),
            cap: cap.max(1),
        }
    }

    /// The keyed digest of a login attempt.
    pub fn tag(&self, user_lc: &str, password: &str) -> [u8; 64] {
        let mut out = [0u8; 64];
        // A 64-byte key is within BLAKE2b's limit: this cannot fail.
        if let Ok(mut mac) = Blake2bMac512::new_from_slice(&self.secret) {
            mac.update(
                &u64::try_from(user_lc.len())
                    .unwrap_or(u64::MAX)
                    .to_be_bytes(),
            );
            mac.update(user_lc.as_bytes());
            mac.update(password.as_bytes());
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
        out
    }

    /// Whether `(user_lc, tag)` was verified against exactly `stored_hash`.
    pub fn hit(&mut self, user_lc: &str, stored_hash: &str, tag: &[u8; 64], now: Instant) -> bool {
        match self.map.get_mut(user_lc) {
            Some(e) if e.hash == stored_hash && ct_eq(&e.tag, tag) => {
                e.last_used = now;
                true
            }
            _ => false,
        }
    }

    /// Remembers a verified credential.
    pub fn insert(&mut self, user_lc: &str, stored_hash: String, tag: [u8; 64], now: Instant) {
        if !self.map.contains_key(user_lc) && self.map.len() >= self.cap {
            self.evict_oldest_tenth();
        }
        self.map.insert(
            user_lc.to_owned(),
            Entry {
                hash: stored_hash,
                tag,
                last_used: now,
            },
        );
    }

    /// Forgets a user (deleted, or the password failed against a new hash).
    pub fn remove(&mut self, user_lc: &str) {
        self.map.remove(user_lc);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    fn evict_oldest_tenth(&mut self) {
        let mut ages: Vec<Instant> = self.map.values().map(|e| e.last_used).collect();
        if ages.is_empty() {
            return;
        }
        let nth = (ages.len() / 10).min(ages.len() - 1);
        let (_, cutoff, _) = ages.select_nth_unstable(nth);
        let cutoff = *cutoff;
        self.map.retain(|_, e| e.last_used > cutoff);
    }
}

/// Constant-time equality of two tags.
fn ct_eq(a: &[u8; 64], b: &[u8; 64]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn hit_only_for_same_password_and_same_hash() {
        let now = Instant::now();
        let mut c = CredentialCache::new(10);
        let t = c.tag("bob", "pw");
        assert!(!c.hit("bob", "H1", &t, now));
        c.insert("bob", "H1".into(), t, now);
        assert!(c.hit("bob", "H1", &t, now));
        assert!(!c.hit("bob", "H2", &t, now), "hash changed");
        let wrong = c.tag("bob", "pw2");
        assert!(!c.hit("bob", "H1", &wrong, now), "other password");
        let other_user = c.tag("alice", "pw");
        assert_ne!(t, other_user);
        assert!(!c.hit("alice", "H1", &other_user, now));
        c.remove("bob");
        assert!(!c.hit("bob", "H1", &t, now));
    }

    #[test]
    fn tags_depend_on_the_secret() {
        let a = CredentialCache::new(1);
        let b = CredentialCache::new(1);
        assert_ne!(a.tag("bob", "pw"), b.tag("bob", "pw"));
        assert_eq!(a.tag("bob", "pw"), a.tag("bob", "pw"));
        // Length-prefixed: the user/password boundary matters.
        assert_ne!(a.tag("bo", "bpw"), a.tag("bob", "pw"));
    }

    #[test]
    fn bounded() {
        let t0 = Instant::now();
        let mut c = CredentialCache::new(50);
        for i in 0..500u64 {
            let user = format!("u{i}");
            let tag = c.tag(&user, "pw");
            c.insert(&user, "H".into(), tag, t0 + Duration::from_millis(i));
            assert!(c.len() <= 50);
        }
        let tag = c.tag("u499", "pw");
        assert!(c.hit("u499", "H", &tag, t0));
        let tag = c.tag("u0", "pw");
        assert!(!c.hit("u0", "H", &tag, t0));
    }
}
