//! Server-side sessions of the web UI: random ids (256 bits) in an
//! `HttpOnly; SameSite=Strict` cookie, each with its own CSRF token, an
//! idle expiry and an absolute lifetime, a bounded store, a flash message
//! for the page after a redirect. Pure data: no I/O.

use rand::RngCore;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie's name.
pub const COOKIE: &str = "postamt_session";
/// A session unused this long is gone.
pub const IDLE: Duration = Duration::from_secs(60 * 60);
/// No session lives longer than this, used or not.
pub const LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Most sessions kept; the least recently used go first beyond it.
pub const MAX_SESSIONS: usize = 10_000;

/// A flash message shown once on the next page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flash {
    /// `ok` or `error`.
    pub kind: &'static str,
    pub text: String,
}

/// One logged-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    pub user: String,
    pub csrf: String,
    created: Instant,
    last_used: Instant,
    flash: Option<Flash>,
}

/// The sessions of one admin server.
#[derive(Debug, Default)]
pub struct SessionStore {
    map: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes as 64 lowercase hex digits (from the OS-seeded CSPRNG).
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a presented session id has the shape we issue (cheap filter).
fn plausible_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl SessionStore {
    pub fn new() -> SessionStore {
        SessionStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // Each update is one map operation: a poisoned lock holds a
        // consistent map.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session for `user`; returns its id.
    pub fn create(&self, user: &str, now: Instant) -> String {
        let id = random_token();
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            prune(&mut map, now);
        }
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Session {
                user: user.to_owned(),
                csrf: random_token(),
                created: now,
                last_used: now,
                flash: None,
            },
        );
        id
    }

    /// The live session with this id (its idle clock restarted).
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        if !plausible_id(id) {
            return None;
        }
        let mut map = self.lock();
        let live = map.get(id).map(|s| alive(s, now))?;
        if !live {
            map.remove(id);
            return None;
        }
        let s = map.get_mut(id)?;
        s.last_used = now;
        Some(s.clone())
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Ends every session of `user` (account deleted, password changed).
    pub fn remove_user(&self, user: &str) {
        self.lock()
            .retain(|_, s| !s.user.eq_ignore_ascii_case(user));
    }

    /// Leaves a message for the next page of this session.
    pub fn set_flash(&self, id: &str, kind: &'static str, text: String) {
        if let Some(s) = self.lock().get_mut(id) {
            s.flash = Some(Flash { kind, text });
        }
    }

    /// Takes the pending message, if any.
    pub fn take_flash(&self, id: &str) -> Option<Flash> {
        self.lock().get_mut(id).and_then(|s| s.flash.take())
    }

    /// Drops expired sessions; returns how many are left.
    pub fn prune(&self, now: Instant) -> usize {
        let mut map = self.lock();
        prune(&mut map, now);
        map.len()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn alive(s: &Session, now: Instant) -> bool {
    now.saturating_duration_since(s.last_used) < IDLE
        && now.saturating_duration_since(s.created) < LIFETIME
}

fn prune(map: &mut HashMap<String, Session>, now: Instant) {
    map.retain(|_, s| alive(s, now));
}

/// The `Set-Cookie` value that starts a session.
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends one.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The session id in a `Cookie:` header value, if any.
pub fn cookie_value(header: &str) -> Option<&str> {
    header.split(';').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        (k == COOKIE && !v.is_empty()).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_long() {
        let a = random_token();
        let b = random_token();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn session_lives_until_idle_or_lifetime() {
        let s = SessionStore::new();
        let t0 = Instant::now();
        let id = s.create("alice", t0);
        assert_eq!(s.get(&id, t0).unwrap().user, "alice");
        // Used every 50 minutes: still alive at 10 h, dead at 12 h.
        let mut t = t0;
        for _ in 0..12 {
            t += Duration::from_secs(50 * 60);
            assert!(s.get(&id, t).is_some());
        }
        t += Duration::from_secs(50 * 60) * 3;
        assert!(s.get(&id, t).is_none(), "past the lifetime");
        let id2 = s.create("bob", t);
        assert!(s.get(&id2, t + IDLE).is_none(), "idle too long");
        assert!(s.is_empty());
    }

    #[test]
    fn unknown_and_malformed_ids_find_nothing() {
        let s = SessionStore::new();
        let now = Instant::now();
        s.create("alice", now);
        assert!(s.get("nope", now).is_none());
        assert!(s.get(&"0".repeat(64), now).is_none());
    }

    #[test]
    fn remove_user_ends_all_their_sessions() {
        let s = SessionStore::new();
        let now = Instant::now();
        let a1 = s.create("alice", now);
        let a2 = s.create("alice", now);
        let b = s.create("bob", now);
        s.remove_user("ALICE");
        assert!(s.get(&a1, now).is_none() && s.get(&a2, now).is_none());
        assert!(s.get(&b, now).is_some());
        s.remove(&b);
        assert!(s.get(&b, now).is_none());
    }

    #[test]
    fn flash_is_shown_once() {
        let s = SessionStore::new();
        let now = Instant::now();
        let id = s.create("alice", now);
        s.set_flash(&id, "ok", "saved".into());
        assert_eq!(s.take_flash(&id).unwrap().text, "saved");
        assert!(s.take_flash(&id).is_none());
    }

    #[test]
    fn store_is_bounded() {
        let s = SessionStore::new();
        let now = Instant::now();
        for _ in 0..MAX_SESSIONS + 5 {
            s.create("u", now);
        }
        assert_eq!(s.len(), MAX_SESSIONS);
    }

    #[test]
    fn cookies() {
        assert_eq!(
            set_cookie("abc", true),
            "postamt_session=abc; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(!set_cookie("abc", false).contains("Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
        assert_eq!(cookie_value("a=1; postamt_session=xyz; b=2"), Some("xyz"));
        assert_eq!(cookie_value("a=1"), None);
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
